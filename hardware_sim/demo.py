"""The quickstart demo: a simulated station served over Modbus TCP, polled live by ``edge``.

The gateway side runs as a separate ``edge poll`` process that knows nothing of the
simulator except the site file written here and the shared clock numbers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

from drivers.clock import ScaledClock
from drivers.profiles import Table
from hardware_sim.server import LOOPBACK, serve_tcp
from hardware_sim.station import DeviceSpec, Station, StationSpec

#: Simulated seconds between polls of every device in the demo site.
DEMO_POLL_INTERVAL_S = 30
#: The second rain gauge falls silent for this window (seconds after the origin), so the
#: demo shows a dead sensor flagged while the rest of the bus carries on.
DEMO_OUTAGE_S = (9000.0, 10800.0)
DEMO_OUTAGE_DEVICE = "rain_generic"


def site_toml(spec: StationSpec, ports: dict[str, int]) -> str:
    """Write the site file a gateway at this station would have, for its TCP links."""
    lines = [
        "# Written by `hwsim demo` from the station file; every device the station serves.",
        "[site]",
        f'id = "{spec.name}"',
        f'name = "{spec.name.replace("_", " ").capitalize()} (simulated)"',
        "",
    ]
    for link, port in ports.items():
        lines += [
            "[[bus]]",
            f'name = "{link}"',
            'kind = "tcp"',
            f'host = "{LOOPBACK}"',
            f"port = {port}",
            "",
        ]
    for device in spec.devices:
        if device.link not in ports:
            continue
        lines += [
            "[[device]]",
            f'name = "{device.name}"',
            f'bus = "{device.link}"',
            f'profile = "{device.profile.name}"',
            f"unit_id = {device.unit_id}",
            f"poll_interval_s = {DEMO_POLL_INTERVAL_S}",
            f"channels = {json.dumps(_demo_channels(device))}",
            "",
        ]
    return "\n".join(lines)


def _demo_channels(device: DeviceSpec) -> list[str]:
    """The channels worth watching: those the scenario drives, or the first two relays."""
    if device.signals:
        return [c.name for c in device.profile.channels if c.name in device.signals]
    coils = [c.name for c in device.profile.channels if c.table is Table.COIL]
    return coils[:2]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


async def run_demo(
    spec: StationSpec, station: Station, clock: ScaledClock, duration_s: float
) -> int:
    """Serve the station's TCP links, run ``edge poll`` against them, return its status."""
    if DEMO_OUTAGE_DEVICE in station.devices:
        start, end = DEMO_OUTAGE_S
        station.devices[DEMO_OUTAGE_DEVICE].faults.outages = [
            (clock.origin + start, clock.origin + end)
        ]
    async with AsyncExitStack() as stack:
        ports: dict[str, int] = {}
        for link in spec.links:
            if link.kind != "tcp":
                continue
            bus = await stack.enter_async_context(
                serve_tcp(station.devices_on(link.name), LOOPBACK, 0)
            )
            assert bus.port is not None
            ports[link.name] = bus.port
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hwsim-demo-")))
        site = folder / "site.toml"
        site.write_text(site_toml(spec, ports))
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "poll",
            "--config", str(site),
            "--speed", repr(clock.speed),
            "--origin", _iso(clock.origin),
            "--anchor", repr(clock.anchor),
            "--duration", repr(duration_s),
        )  # fmt: skip
        try:
            return await agent.wait()
        finally:
            if agent.returncode is None:
                agent.terminate()
                await agent.wait()
