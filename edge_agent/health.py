"""The gateway's health report: host figures from /proc and /sys, agent figures from the agent.

Host figures come from local files only (``/proc``, ``/sys/class/thermal``, the data
directory's file system) and are read on a worker thread; a figure this machine does not
offer is None, never an error. It never touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drivers.clock import Clock
from drivers.poller import Poller
from edge_agent.faults import FaultTracker
from protocol import BusHealth, Health, Stream
from protocol.events import StandingForecast
from protocol.payloads import sendable_timestamp
from site_schema.site_config import SiteConfig

THERMAL_DIR = Path("/sys/class/thermal")
MEMINFO = Path("/proc/meminfo")
#: Thermal zone types that are the CPU or the SoC (Raspberry Pi: cpu-thermal).
CPU_ZONE_HINTS = ("cpu", "soc", "x86_pkg", "core")
#: Channel quantities that are the supply or the battery voltage of a device.
VOLTAGE_QUANTITIES = ("supply_v", "battery_v")


class AgentView(Protocol):
    """What the health report reads from the running agent (on the event loop)."""

    @property
    def site(self) -> SiteConfig: ...  # noqa: D102

    @property
    def poller(self) -> Poller: ...  # noqa: D102

    @property
    def faults(self) -> FaultTracker: ...  # noqa: D102

    @property
    def clock(self) -> Clock: ...  # noqa: D102

    @property
    def started(self) -> float: ...  # noqa: D102

    def site_level(self) -> int: ...  # noqa: D102

    def standing_forecasts(self) -> dict[str, StandingForecast]: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class HostHealth:
    """Figures of the machine itself; None where it does not offer them."""

    cpu_temp_c: float | None
    load: tuple[float, float, float] | None
    mem_total: int | None
    mem_available: int | None
    disk_total: int | None
    disk_free: int | None
    store_bytes: int | None


def cpu_temperature(thermal_dir: Path = THERMAL_DIR) -> float | None:
    """The CPU temperature in degrees Celsius from the kernel's thermal zones."""
    zones = sorted(thermal_dir.glob("thermal_zone*"))
    if not zones:
        return None

    def is_cpu(zone: Path) -> bool:
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            return False
        return any(hint in kind for hint in CPU_ZONE_HINTS)

    for zone in sorted(zones, key=lambda z: not is_cpu(z)):
        try:
            return int((zone / "temp").read_text().strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return None


def memory(meminfo: Path = MEMINFO) -> tuple[int | None, int | None]:
    """Total and available memory in bytes, from ``/proc/meminfo``."""
    values: dict[str, int] = {}
    try:
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None, None
    return values.get("MemTotal"), values.get("MemAvailable")


def host_health(data_dir: Path) -> HostHealth:
    """Read the host figures (blocking: call it on a worker thread)."""
    try:
        load: tuple[float, float, float] | None = os.getloadavg()
    except OSError:
        load = None
    disk_total: int | None = None
    disk_free: int | None = None
    with contextlib.suppress(OSError):
        disk = shutil.disk_usage(data_dir)
        disk_total, disk_free = int(disk.total), int(disk.free)
    store = 0
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "store.sqlite-journal"):
        try:
            store += (data_dir / name).stat().st_size
        except OSError:
            continue
    mem_total, mem_available = memory()
    return HostHealth(
        cpu_temperature(), load, mem_total, mem_available, disk_total, disk_free, store or None
    )


def config_version(site: SiteConfig) -> str | None:
    """A short digest of the site file in use, until configurations carry signed versions."""
    try:
        digest = hashlib.sha256(Path(site.source).read_bytes()).hexdigest()
    except OSError:
        return None
    return f"sha256:{digest[:12]}"


def voltages(agent: AgentView) -> dict[str, float]:
    """The newest good supply and battery voltages among the polled channels."""
    quantity_of = {}
    for device in agent.site.devices:
        for spec in device.profile.channels:
            if spec.quantity in VOLTAGE_QUANTITIES:
                quantity_of[device.channel_id(spec.name)] = spec.quantity
    found: dict[str, float] = {}
    for channel_id, quantity in sorted(quantity_of.items()):
        reading = agent.poller.latest.get(channel_id)
        if reading is not None and reading.good and quantity not in found:
            found[quantity] = reading.value
    return found


def build_health(
    agent: AgentView,
    gateway_id: str,
    host: HostHealth,
    backlog: Mapping[Stream, int],
    agent_version: str,
    site_config_version: str | None,
) -> Health:
    """The health message of ``gateway_id`` (call on the event loop: it reads agent state)."""
    last_poll: dict[str, float] = {}
    for device in agent.poller.devices:
        when = device.health.last_success
        bus = device.config.bus
        if when is not None and when > last_poll.get(bus, float("-inf")):
            last_poll[bus] = when
    load = host.load or (None, None, None)
    found = voltages(agent)
    return Health(
        gateway_id=gateway_id,
        ts=sendable_timestamp(agent.clock.now()),
        uptime_s=round(time.monotonic() - agent.started, 3),  # ms: a first report comes early
        agent_version=agent_version,
        config_version=site_config_version,
        cpu_temp_c=host.cpu_temp_c,
        load_1m=load[0],
        load_5m=load[1],
        load_15m=load[2],
        mem_total=host.mem_total,
        mem_available=host.mem_available,
        disk_total=host.disk_total,
        disk_free=host.disk_free,
        store_bytes=host.store_bytes,
        backlog_readings=max(0, backlog.get(Stream.READINGS, 0)),
        backlog_events=max(0, backlog.get(Stream.EVENTS, 0)),
        alarm_level=int(agent.site_level()),  # strict on the wire: no numpy ints
        buses={
            name: BusHealth(
                last_success=_timestamp(last_poll.get(name)),
                transactions=bus.stats.transactions,
                failures=sum(bus.stats.failures.values()),
            )
            for name, bus in agent.poller.buses.items()
        },
        sensor_faults=dict(agent.faults.counts),
        supply_v=_finite(found.get("supply_v")),
        battery_v=_finite(found.get("battery_v")),
        forecasts=agent.standing_forecasts(),
    )


def _finite(value: float | None) -> float | None:
    """``value``, or None for what the wire refuses (NaN, an infinity)."""
    return value if value is not None and math.isfinite(value) else None


def _timestamp(value: float | None) -> float | None:
    """``value`` clamped into the wire's time range (None stays None)."""
    return None if value is None else sendable_timestamp(value)
