"""The quickstart demo: a simulated creek village in a storm, guarded by the real agent.

The simulator serves the station over Modbus TCP; the gateway runs as a separate
``edge run`` process with the example site file and no network configured. This module
shows what the simulator sees (the storm, the creek, the relay coils) next to the
agent's own log, so the two sides can be compared. It never imports the agent: it finds
the example site file on disk and starts ``edge`` as a subprocess.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import tempfile
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from drivers.clock import ScaledClock
from hardware_sim.device import SimulatedDevice
from hardware_sim.scenarios import CreekLevel, DesignStorm
from hardware_sim.server import LOOPBACK, serve_tcp
from hardware_sim.station import Station, StationSpec

#: The second rain gauge falls silent for this window (seconds after the origin), so the
#: demo shows a dead sensor reported while the rest of the bus carries on.
DEMO_OUTAGE_S = (9000.0, 10800.0)
DEMO_OUTAGE_DEVICE = "rain_generic"
EXAMPLE_PORT_LINE = "port = 5020"


def example_site(port: int) -> str:
    """The agent's example creek-village site file, pointed at ``port``.

    Raises:
        FileNotFoundError: when the edge agent is not installed beside the simulator.
    """
    spec = importlib.util.find_spec("edge_agent")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        msg = "the edge agent package is not installed"
        raise FileNotFoundError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "examples" / "creek_village.toml"
    text = path.read_text(encoding="utf-8")
    if EXAMPLE_PORT_LINE not in text:
        msg = f"{path} no longer says '{EXAMPLE_PORT_LINE}'"
        raise FileNotFoundError(msg)
    return text.replace(EXAMPLE_PORT_LINE, f"port = {port}")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _view(station: Station, clock: ScaledClock, log: Path) -> Group:
    now = clock.now()
    storm = station.scenarios.get("storm")
    creek = station.scenarios.get("creek")
    relays = station.devices.get("siren_relays")
    table = Table(title=f"simulated field, {datetime.fromtimestamp(now, UTC):%Y-%m-%d %H:%M} UTC")
    for column in (
        "rain so far",
        "rain last 1 h",
        "creek stage",
        "siren (relay1)",
        "strobe (relay2)",
    ):
        table.add_column(column, justify="right")
    on = Text("ON", style="bold red")
    off = Text("off")
    table.add_row(
        f"{storm.cumulative_mm(now):.1f} mm" if isinstance(storm, DesignStorm) else "-",
        f"{storm.window_sum_mm(now, 3600):.1f} mm" if isinstance(storm, DesignStorm) else "-",
        f"{creek.level_m(now):.2f} m" if isinstance(creek, CreekLevel) else "-",
        on if relays and relays.coil(0) else off,
        on if relays and relays.coil(1) else off,
    )
    lines = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
    return Group(
        table, Text("agent log (alarms and actuation):", style="bold"), *map(_short, lines)
    )


def _short(line: str) -> Text:
    """'2026-11-25 11:42:47,142 WARNING edge_agent.agent: alarm ...' -> '11:42:47 alarm ...'."""
    parts = line.split(" ", 4)
    if len(parts) == 5 and parts[3].endswith(":"):
        return Text(f"{parts[1][:8]} {parts[4]}", style="red" if parts[2] == "ERROR" else "")
    return Text(line)


def _summary(relays: SimulatedDevice | None) -> Table:
    table = Table(title="relay coil changes (simulated time)")
    for column in ("UTC", "coil", "state"):
        table.add_column(column)
    for change in relays.coil_log if relays else []:
        stamp = datetime.fromtimestamp(change.sim_time, UTC).strftime("%H:%M:%S")
        table.add_row(stamp, f"relay{change.address + 1}", "on" if change.value else "off")
    return table


async def run_demo(
    spec: StationSpec, station: Station, clock: ScaledClock, duration_s: float, console: Console
) -> int:
    """Serve the station, run the agent against it for ``duration_s``; return its status."""
    if DEMO_OUTAGE_DEVICE in station.devices:
        start, end = DEMO_OUTAGE_S
        station.devices[DEMO_OUTAGE_DEVICE].faults.outages = [
            (clock.origin + start, clock.origin + end)
        ]
    tcp = [link for link in spec.links if link.kind == "tcp"]
    async with AsyncExitStack() as stack:
        bus = await stack.enter_async_context(
            serve_tcp(station.devices_on(tcp[0].name), LOOPBACK, 0)
        )
        assert bus.port is not None
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hwsim-demo-")))
        site = folder / "site.toml"
        site.write_text(example_site(bus.port))
        log = folder / "agent.log"
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "run",
            "--config", str(site), "--data-dir", str(folder / "data"),
            "--speed", repr(clock.speed), "--origin", _iso(clock.origin),
            "--anchor", repr(clock.anchor), "--log-level", "WARNING",
            stdout=log.open("wb"), stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        status: dict[str, Any] = {}
        try:
            with Live(_view(station, clock, log), console=console, refresh_per_second=4) as live:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + duration_s
                while loop.time() < deadline and agent.returncode is None:
                    live.update(_view(station, clock, log))
                    await asyncio.sleep(0.25)
        finally:
            if agent.returncode is None:
                agent.terminate()
            status["code"] = await agent.wait()
        console.print(_summary(station.devices.get("siren_relays")))
    code = int(status["code"])
    return 0 if code in (0, -15) else code
