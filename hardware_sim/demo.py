"""The quickstart demo: three simulated stations in one storm, three real gateways, the fleet.

The simulator serves a creek village, a creeping slope and a river gauge over Modbus TCP;
the county fleet runs with its embedded broker; each station's gateway is enrolled with
``edge enroll`` and runs as ``edge run`` with the agent's example site file. At the end the
gateways are stopped and drained and the fleet's readings are checked against each
gateway's store. It never imports the agent or the fleet: it finds the example site files
on disk, starts both as subprocesses and reads the fleet over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
import tomllib
from contextlib import AsyncExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live

from drivers.clock import ScaledClock
from hardware_sim.demo_calls import VILLAGE_DEADLINE_S, DemoRobots, RobotMessage, red_policy
from hardware_sim.demo_fleet import DemoFleet, run_cli
from hardware_sim.demo_slope import SlopeWatch
from hardware_sim.demo_view import (
    Exactness,
    GatewayView,
    alarm_table,
    coil_table,
    escalation_table,
    exactness_table,
    live_view,
)
from hardware_sim.scenarios import CreepingSlope
from hardware_sim.server import LOOPBACK, serve_tcp
from hardware_sim.station import Station, builtin_stations, load_station

#: The creek's second rain gauge falls silent for this window (seconds after the origin),
#: so the demo shows a dead sensor reported while the rest of the bus carries on.
DEMO_OUTAGE_S = (9000.0, 10800.0)
DEMO_OUTAGE_DEVICE = "rain_generic"
#: The slope runs faster than the storm so that its four days of creep end, inside the
#: demo, in the failure its gateway must warn of; this is the share of the demo it takes.
SLOPE_SHARE = 0.9
AGENT_STOP_S = 30.0
#: Real seconds between starting the gateways and the simulation origin. A gateway loads
#: its alarm kernels (compiled beforehand, ``warm_kernels``) before it polls; on a fast
#: clock a stall of seconds would be hours of missing data, so the gateways start early,
#: in the calm before the storm, and the storm's clock starts once they are up.
WARM_UP_S = 8.0
#: How long the first demo on a machine may take to compile the alarm kernels.
KERNEL_COMPILE_TIMEOUT_S = 900.0
#: After the storm, how long the demo waits for a township to have been called and to
#: answer (a red alarm raised late in the storm reaches the township this much later).
TOWNSHIP_WAIT_S = VILLAGE_DEADLINE_S + 20.0
#: Appended to each example site file: on clocks hundreds of times fast, the default
#: minute between health reports is hours of simulated time, and a slope's newest
#: forecast would reach the fleet after the demo had ended.
DEMO_UPLINK = "\n[uplink]\nhealth_interval_s = 1\n"


@dataclass(frozen=True, slots=True)
class DemoSite:
    """A shipped station and the agent's example site file that guards it."""

    station: str
    example: str
    port_line: str


DEMO_SITES = (
    DemoSite("creek_village", "creek_village.toml", "port = 5020"),
    DemoSite("slope", "slope_road.toml", "port = 5021"),
    DemoSite("river_gauge", "river_gauge.toml", "port = 5022"),
)


def example_site(name: str, port_line: str, port: int) -> str:
    """One of the agent's example site files, its Modbus TCP port set to ``port``.

    Raises:
        FileNotFoundError: when the edge agent is not installed beside the simulator.
    """
    spec = importlib.util.find_spec("edge_agent")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        msg = "the edge agent package is not installed"
        raise FileNotFoundError(msg)
    path = Path(next(iter(spec.submodule_search_locations))) / "examples" / name
    text = path.read_text(encoding="utf-8")
    if port_line not in text:
        msg = f"{path} no longer says '{port_line}'"
        raise FileNotFoundError(msg)
    return text.replace(port_line, f"port = {port}")


async def _cancelled(task: asyncio.Task[float]) -> None:
    """Cancel ``task`` if it still runs (the demo ended early) and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, RuntimeError):
        await task


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


@dataclass
class DemoGateway:
    """One station, its clock, and the gateway process that guards it."""

    site: DemoSite
    data_dir: Path
    site_id: str
    gateway_id: str = ""
    station: Station | None = None
    clock: ScaledClock | None = None
    process: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        """The agent's log file."""
        return self.data_dir / "agent.log"

    def view(self) -> GatewayView:
        """What the live view shows of this gateway."""
        assert self.station is not None
        assert self.clock is not None
        return GatewayView(
            self.site.station, self.gateway_id, self.station, self.clock, self.log, self.site_id
        )


def _speed(station: Station, origin: float, speed: float, duration_s: float) -> float:
    slope = station.scenarios.get("slope")
    if isinstance(slope, CreepingSlope):
        return max(speed, (slope.failure_time - origin) / (SLOPE_SHARE * duration_s))
    return speed


async def _enroll(gateway: DemoGateway, fleet: DemoFleet, token: str) -> None:
    await run_cli(
        "edge_agent.cli", "enroll", "-d", str(gateway.data_dir), "--fleet", fleet.url,
        "--token", token,
    )  # fmt: skip
    enrollment = json.loads((gateway.data_dir / "enrollment.json").read_text())
    gateway.gateway_id = str(enrollment["gateway_id"])


def _numba_cache() -> Path:
    """Where the gateways keep their compiled alarm kernels.

    The cache outlives the demo, so only the first demo on a machine compiles them.
    """
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return Path(configured)
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "hazardwatch" / "numba"


async def warm_kernels(numba_cache: Path) -> float:
    """Compile every alarm kernel into ``numba_cache`` before any clock starts; seconds taken.

    A gateway loads its kernels before it polls. On the first demo on a machine it would
    compile them there, tens of seconds while its station's clock ran days ahead.

    Raises:
        RuntimeError: when they do not compile (the compiler's last words).
    """
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.alarm_preload",  # every kernel, compiled or loaded
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NUMBA_CACHE_DIR": str(numba_cache)},
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(process.communicate(), KERNEL_COMPILE_TIMEOUT_S)
    except TimeoutError:
        msg = f"the alarm kernels did not compile within {KERNEL_COMPILE_TIMEOUT_S:g} s"
        raise RuntimeError(msg) from None
    finally:
        if process.returncode is None:  # timed out, or the demo was stopped meanwhile
            process.kill()
            await process.wait()
    if process.returncode != 0:
        msg = f"the alarm kernels did not compile: {err.decode(errors='replace').strip()[-500:]}"
        raise RuntimeError(msg)
    return time.monotonic() - started


async def _start_agent(gateway: DemoGateway, site_file: Path, numba_cache: Path) -> None:
    clock = gateway.clock
    assert clock is not None
    gateway.process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "run",
        "--config", str(site_file), "--data-dir", str(gateway.data_dir),
        "--speed", repr(clock.speed), "--origin", _iso(clock.origin),
        "--anchor", repr(clock.anchor), "--log-level", "WARNING",
        stdout=gateway.log.open("wb"), stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NUMBA_CACHE_DIR": str(numba_cache)},
        start_new_session=True,  # Ctrl-C is for the demo, which stops its gateways itself
    )  # fmt: skip


async def _stop_agent(gateway: DemoGateway) -> int:
    process = gateway.process
    if process is None:
        return 0
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), AGENT_STOP_S)
        except TimeoutError:
            process.kill()
            await process.wait()
    code = process.returncode or 0
    return 0 if code in (0, -signal.SIGTERM) else code


def _stored_seqs(data_dir: Path) -> list[int]:
    """The reading seqs in a stopped gateway's store (its SQLite file, read-only)."""
    uri = f"file:{data_dir / 'store.sqlite'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM readings ORDER BY seq")]


async def _check(gateway: DemoGateway, fleet: DemoFleet) -> Exactness:
    drained = True
    try:
        await run_cli("edge_agent.cli", "uplink", "drain", "-d", str(gateway.data_dir))
    except RuntimeError:
        drained = False
    ours = await asyncio.to_thread(_stored_seqs, gateway.data_dir)
    theirs = await fleet.reading_seqs(gateway.gateway_id)
    return Exactness(
        station=gateway.site.station,
        gateway_id=gateway.gateway_id,
        stored=len(ours),
        at_fleet=len(theirs),
        missing=len(set(ours) - set(theirs)),
        extra=len(set(theirs) - set(ours)),
        twice=len(theirs) - len(set(theirs)),
        drained=drained,
    )


async def _enroll_all(folder: Path, fleet: DemoFleet, console: Console) -> list[DemoGateway]:
    gateways = []
    for site in DEMO_SITES:
        example = tomllib.loads(example_site(site.example, site.port_line, 0))
        gateways.append(DemoGateway(site, folder / site.station, str(example["site"]["id"])))
    tokens = await asyncio.gather(*(fleet.token(g.site_id) for g in gateways))
    for gateway, token in zip(gateways, tokens, strict=True):
        await _enroll(gateway, fleet, token)  # one at a time, as technicians in the field do
    for g in gateways:
        console.print(f"enrolled {g.site.station} as {g.gateway_id} (site {g.site_id})")
    return gateways


async def _serve_and_start(
    gateway: DemoGateway,
    stack: AsyncExitStack,
    folder: Path,
    wall: float,
    speed: float,
    duration_s: float,
) -> None:
    """Serve the gateway's station on a free port; start its agent on the station's clock.

    ``wall`` is the wall-clock time of the simulation origin, shared by every station.
    """
    spec = load_station(builtin_stations()[gateway.site.station])
    # Built once at the storm's speed to learn the scenario, then on its own clock.
    at_storm_speed = spec.build(ScaledClock(speed, wall, wall), wall)
    gateway.clock = ScaledClock(_speed(at_storm_speed, wall, speed, duration_s), wall, wall)
    station = gateway.station = spec.build(gateway.clock, wall)
    if DEMO_OUTAGE_DEVICE in station.devices:
        start, end = DEMO_OUTAGE_S
        station.devices[DEMO_OUTAGE_DEVICE].faults.outages = [(wall + start, wall + end)]
    bus = await stack.enter_async_context(
        serve_tcp(station.devices_on(spec.links[0].name), LOOPBACK, 0)
    )
    assert bus.port is not None
    site_file = folder / f"{gateway.site.station}.toml"
    site_text = example_site(gateway.site.example, gateway.site.port_line, bus.port)
    site_file.write_text(site_text + DEMO_UPLINK)
    await _start_agent(gateway, site_file, _numba_cache())
    stack.push_async_callback(_stop_agent, gateway)


async def _watch(
    gateways: list[DemoGateway],
    fleet: DemoFleet,
    until: float,
    console: Console,
    slope: SlopeWatch,
) -> None:
    """The live view until wall time ``until``, a gateway dies, or Ctrl-C (then the checks)."""
    views = [g.view() for g in gateways]
    with Live(await live_view(views, fleet), console=console, refresh_per_second=2) as live:
        try:
            while time.time() < until and all(
                g.process is not None and g.process.returncode is None for g in gateways
            ):
                await asyncio.sleep(1.0)
                live.update(await live_view(views, fleet))
                await slope.look(fleet)
        except asyncio.CancelledError:
            console.print("stopped early; checking what was stored so far")


async def _set_up_calls(
    gateways: list[DemoGateway], fleet: DemoFleet, robots: DemoRobots, folder: Path
) -> str:
    """The county's roster of every site (``fleet roster import``) and each site's policy."""
    sites = [g.site_id for g in gateways]
    roster = folder / "roster.csv"
    roster.write_text(robots.roster_csv(sites), encoding="utf-8")
    imported = await fleet.import_roster(roster)
    for site_id in sites:
        await fleet.put(f"/api/v1/sites/{site_id}/escalation-policy", red_policy())
    return imported


async def _township_answers(robots: DemoRobots, fleet: DemoFleet) -> RobotMessage:
    """Nobody at a village answers; the first township officer called confirms by link."""
    while True:
        for message in robots.messages:
            if message.robot.endswith("-township") and message.answer_link:
                await fleet.answer(message.answer_link)
                return message
        await asyncio.sleep(0.2)


async def _show_escalation(
    gateways: list[DemoGateway],
    fleet: DemoFleet,
    answering: asyncio.Task[RobotMessage],
    console: Console,
) -> None:
    """The record of the escalation the township answered (waiting a little for it)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(answering), TOWNSHIP_WAIT_S)
    if not answering.done():
        answering.cancel()
        console.print(
            f"[bold yellow]叫应:[/] no red alarm stayed red {VILLAGE_DEADLINE_S} s, so no "
            "township was called"
        )
        return
    message = answering.result()
    robot = message.robot
    gateway = next(g for g in gateways if robot == f"{g.site_id}-township")
    for alarm in await fleet.get("/api/v1/alarms", gateway_id=gateway.gateway_id, limit=100):
        detail = await fleet.get(f"/api/v1/alarms/{alarm['id']}")
        escalation = detail["escalation"][-1] if detail["escalation"] else None
        if escalation and "(township) via link" in (escalation["end_reason"] or ""):
            console.print(escalation_table(gateway.site.station, detail))
            kinds = [step["kind"] for step in escalation["record"]]
            console.print(
                f"[bold green]叫应:[/] started, {kinds.count('call_sent')} call(s) sent, "
                f"the village did not answer in {VILLAGE_DEADLINE_S} s so the township was "
                f"called, and the escalation ended: {escalation['end_reason']}"
            )
            console.print(f"the township's message: {message.text}", markup=False)
            return
    console.print("[bold red]叫应: the township's answer is not on the alarm's record[/]")


async def _finish(
    gateways: list[DemoGateway], fleet: DemoFleet, console: Console, slope: SlopeWatch
) -> int:
    """Stop and drain the gateways, show what happened, and check the fleet holds it all."""
    codes = await asyncio.gather(*(_stop_agent(g) for g in gateways))
    console.print("gateways stopped; draining what they stored since the last ack ...")
    checks = await asyncio.gather(*(_check(g, fleet) for g in gateways))
    views = [g.view() for g in gateways]
    console.print(await alarm_table(views, fleet))
    for table in slope.tables():
        console.print(table)
    console.print(coil_table(views))
    console.print(exactness_table(checks))
    ingest = await fleet.get("/api/v1/ingest")
    exact = all(c.exact for c in checks)
    if exact:
        console.print(
            f"[bold green]exactly once:[/] the fleet holds exactly the "
            f"{sum(c.stored for c in checks)} readings the {len(checks)} gateways stored (none "
            f"missing, none twice; {ingest['rows_duplicate']} resent rows recognised and ignored)"
        )
    else:
        console.print("[bold red]the fleet does not hold exactly what the gateways stored[/]")
    failed = [g.site.station for g, code in zip(gateways, codes, strict=True) if code]
    if failed:
        console.print(f"[bold red]gateway(s) exited with an error:[/] {', '.join(failed)}")
    return 0 if exact and not failed else 1


async def run_demo(duration_s: float, speed: float, console: Console) -> int:
    """Run the whole system for ``duration_s`` real seconds; 0 when every check passed."""
    async with AsyncExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hwsim-demo-")))
        fleet = DemoFleet(folder)
        stack.push_async_callback(fleet.stop)
        # The kernels compile (first demo on this machine) while the fleet starts.
        kernels = asyncio.create_task(warm_kernels(_numba_cache()))
        stack.push_async_callback(_cancelled, kernels)
        console.print("starting the county fleet (REST, SQLite, embedded MQTT broker) ...")
        await fleet.start()
        console.print(
            f"fleet at {fleet.url} (OpenAPI at /docs), MQTT broker on "
            f"127.0.0.1:{fleet.broker_port}",
            highlight=False,
        )
        # A throwaway viewer token of this demo's own fleet, shown so a person can watch
        # the storm on the county console's map while the demo runs.
        console.print(
            f"county console: {fleet.url}/ (sign in with the demo's viewer token "
            f"{fleet.viewer_token}; the storm shows on the map live)",
            highlight=False,
        )
        gateways = await _enroll_all(folder, fleet, console)
        robots = DemoRobots()
        await robots.start()
        stack.push_async_callback(robots.stop)
        imported = await _set_up_calls(gateways, fleet, robots, folder)
        console.print(
            f"roster imported ({imported.replace(chr(10), ', ')}); red calls the village "
            f"first, which has {VILLAGE_DEADLINE_S} s to answer, then the township",
            highlight=False,
        )
        answering = asyncio.create_task(_township_answers(robots, fleet))
        if not kernels.done():
            console.print(
                f"compiling the alarm kernels into {_numba_cache()} (the first demo on a "
                "machine only; up to a minute) ...",
                highlight=False,
            )
        console.print(f"alarm kernels ready ({await kernels:.1f} s)")
        origin = round(time.time() + WARM_UP_S, 3)
        for gateway in gateways:
            await _serve_and_start(gateway, stack, folder, origin, speed, duration_s)
        slope = SlopeWatch([g.view() for g in gateways])
        await _watch(gateways, fleet, origin + duration_s, console, slope)
        placed = [
            f"{s['site_id']} ({s['lat']:.4f}, {s['lon']:.4f}) {s['level_name']}"
            for s in await fleet.get("/api/v1/sites")
            if s["lat"] is not None
        ]
        console.print(f"on the console's map: {'; '.join(placed) or 'no site'}", highlight=False)
        code = await _finish(gateways, fleet, console, slope)
        await _show_escalation(gateways, fleet, answering, console)
        return code
    raise AssertionError  # unreachable: the block returns
