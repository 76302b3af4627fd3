"""Health probe of a candidate site configuration, run while the current one keeps working.

Every device of the candidate must answer its first read and every relay actuator must
read back its coils. A line the running agent already owns is shared as is when the
candidate keeps its settings, and borrowed when it changes them: one device or actuator
at a time, so the running agent's polls and siren commands get the line in between. A
line the running agent does not know is opened just for the probe. The answer is None when
everything answered, else the first problem in words a duty officer can act on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os.path
from collections.abc import AsyncIterator, Mapping

from drivers.bus import ModbusBus, TransactionError
from drivers.bus_config import BusConfig, SerialBusConfig, same_line
from drivers.device_config import DeviceConfig
from drivers.plan import plan_profile
from edge_agent.actuation import RelayActuator
from site_schema.site_config import SiteConfig


def _describe(bus: BusConfig) -> str:
    if isinstance(bus, SerialBusConfig):
        return f"bus {bus.name} ({bus.device} at {bus.baudrate} baud)"
    return f"bus {bus.name} ({bus.host}:{bus.port})"


def _absent(bus: SerialBusConfig) -> bool:
    """True when the bus's device node is not there (a stat: nothing to wait for).

    The fleet cannot see the gateway's ports, so this is where a pushed file naming the
    wrong adapter is caught, with a reason better than a timeout.
    """
    return not os.path.exists(bus.device)


@contextlib.asynccontextmanager
async def _line(config: BusConfig, live: Mapping[str, ModbusBus]) -> AsyncIterator[ModbusBus]:
    """The bus to probe ``config`` through: shared, borrowed or opened for the probe."""
    owner = next((bus for bus in live.values() if same_line(bus.config, config)), None)
    if owner is not None and dataclasses.replace(owner.config, name=config.name) == config:
        yield owner
    elif owner is not None:
        async with owner.lend(config) as probe:
            yield probe
    else:
        probe = ModbusBus(config)
        try:
            yield probe
        finally:
            await probe.close()


async def probe_device(bus: ModbusBus, device: DeviceConfig) -> str | None:
    """None when ``device`` answers the first read of its plan, else why not (in words)."""
    blocks = plan_profile(device.profile, device.channels)
    if not blocks:
        return None
    first = blocks[0]
    attempts = device.retries + 1
    failure: TransactionError | None = None
    for _ in range(attempts):
        try:
            await bus.read(
                device.unit_id, first.table, first.address, first.count, device.timeout_s
            )
        except TransactionError as exc:
            failure = exc
            continue
        return None
    assert failure is not None
    return f"device {device.name} (unit {device.unit_id}) did not answer: {failure.detail}"


async def probe_site(site: SiteConfig, live: Mapping[str, ModbusBus]) -> str | None:
    """Probe every device and actuator of ``site``; None when all answered, else why not."""
    for bus_config in site.buses:
        if isinstance(bus_config, SerialBusConfig) and _absent(bus_config):
            return f"{_describe(bus_config)}: serial device {bus_config.device} does not exist"
        for device in (d for d in site.devices if d.bus == bus_config.name):
            async with _line(bus_config, live) as bus:
                problem = await probe_device(bus, device)
            if problem:
                return f"{_describe(bus_config)}: {problem}"
        for spec in (a for a in site.actuation.actuators if a.device.bus == bus_config.name):
            try:
                async with _line(bus_config, live) as bus:
                    await RelayActuator(spec, bus, lambda *_: None).read_back()
            except TransactionError as exc:
                return (
                    f"{_describe(bus_config)}: actuator {spec.id} did not read back its "
                    f"coils: {exc.detail}"
                )
    return None
