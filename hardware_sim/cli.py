"""The ``hwsim`` command: serve a simulated station over real Modbus, list device profiles.

``hwsim modem`` serves a simulated SMS modem on a pty instead.

It runs in the foreground until Ctrl-C or SIGTERM and only ever listens on loopback.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from contextlib import AsyncExitStack, ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from drivers.bus import quiet_pymodbus
from drivers.clock import ScaledClock
from drivers.profile_listing import print_uncut
from drivers.profiles import builtin_profiles
from drivers.siren_node.registers import DEFAULT_UNIT_ID
from hardware_sim.demo import run_demo
from hardware_sim.device import SimulatedDevice
from hardware_sim.modem import SentSms, SimulatedModem
from hardware_sim.pty_link import PtyLinkError, PtyPair
from hardware_sim.scenarios import CreekLevel, DesignStorm
from hardware_sim.server import LOOPBACK, serve_rtu, serve_tcp
from hardware_sim.siren_node import RainSignal, serve_siren_node
from hardware_sim.sl651_station import Delivery, Scenario, Sl651Station, report_scenario
from hardware_sim.station import (
    LinkSpec,
    Station,
    StationError,
    StationSpec,
    load_station,
    resolve_station,
)
from protocol.contacts import mask_phone

app = typer.Typer(
    help="Simulated HazardWatch field hardware that speaks real Modbus (TCP and RTU over a pty).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


@app.callback()
def _quiet() -> None:
    # Simulated hardware drops and refuses connections on purpose: pymodbus's own log of
    # each is noise here, as in the agent.
    quiet_pymodbus()


def _parse_origin(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        msg = f"not an ISO 8601 time: {text!r} (e.g. 2024-09-17T06:00:00Z)"
        raise typer.BadParameter(msg, param_hint="--origin") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _load_or_exit(station: str) -> StationSpec:
    try:
        return load_station(resolve_station(station))
    except StationError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc


OriginOpt = Annotated[
    str | None,
    typer.Option(help="Simulated time at the anchor, ISO 8601 (UTC if no zone); default: now."),
]
AnchorOpt = Annotated[
    float | None,
    typer.Option(help="Wall-clock epoch seconds at which simulated time equals the origin."),
]


def _clock(speed: float, origin: str | None, anchor: float | None) -> ScaledClock:
    if speed <= 0:
        raise typer.BadParameter(f"must be positive, got {speed}", param_hint="--speed")
    # Millisecond anchors print exactly, so an agent given the printed numbers agrees.
    wall = round(time.time(), 3) if anchor is None else anchor
    return ScaledClock(speed, _parse_origin(origin, wall), wall)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _print_clock(clock: ScaledClock) -> None:
    console.print(
        f"simulated time starts at {_iso(clock.origin)} and runs {clock.speed:g}x; give the "
        f"agent the same clock: --speed {clock.speed:g} --origin {_iso(clock.origin)} "
        f"--anchor {clock.anchor!r}"
    )


def _print_devices(station: Station, link: str) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("unit", "device", "profile", "signals"):
        table.add_column(column)
    for spec in station.spec.devices:
        if spec.link == link:
            bound = "\n".join(f"{c} = {b.source}" for c, b in spec.signals.items()) or "-"
            table.add_row(str(spec.unit_id), spec.name, spec.profile.name, bound)
    console.print(table)


async def _serve_link(
    link: LinkSpec,
    devices: list[SimulatedDevice],
    tcp_port: int,
    buses: AsyncExitStack,
    ptys: ExitStack,
) -> str:
    """Start serving one link and return where the agent should connect."""
    name = escape(link.name)
    if link.kind == "tcp":
        bus = await buses.enter_async_context(serve_tcp(devices, LOOPBACK, tcp_port))
        return (
            f"[bold]{name}[/]: Modbus TCP listening on {bus.host}:{bus.port}; "
            f"agent connects to tcp://{bus.host}:{bus.port}"
        )
    pty = ptys.enter_context(PtyPair(agent_end=link.path))
    settings = (link.baudrate, link.parity, link.stopbits, link.bytesize)
    await buses.enter_async_context(serve_rtu(devices, str(pty.device_end), *settings))
    return (
        f"[bold]{name}[/]: Modbus RTU on {escape(str(pty.device_end))}; agent opens "
        f"{escape(str(pty.agent_end))} at {link.baudrate} {link.bytesize}{link.parity}"
        f"{link.stopbits}"
    )


async def _run(
    spec: StationSpec, clock: ScaledClock, seed: int | None, tcp_port: int | None
) -> None:
    station = spec.build(clock, clock.origin, seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tcp_links = [link.name for link in spec.links if link.kind == "tcp"]
    with ExitStack() as ptys:
        async with AsyncExitStack() as buses:
            for link in spec.links:
                if tcp_port is None or link.kind != "tcp":
                    port = link.port
                else:
                    port = tcp_port + tcp_links.index(link.name) if tcp_port else 0
                devices = station.devices_on(link.name)
                console.print(await _serve_link(link, devices, port, buses, ptys))
                _print_devices(station, link.name)
            _print_clock(clock)
            console.print("serving; Ctrl-C or SIGTERM stops")
            await stop.wait()
    console.print("stopped")


@app.command()
def serve(
    station: Annotated[str, typer.Argument(help="Station file, or the name of a shipped station.")],
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    origin: OriginOpt = None,
    anchor: AnchorOpt = None,
    seed: Annotated[int | None, typer.Option(help="Override the station's seed.")] = None,
    tcp_port: Annotated[
        int | None,
        typer.Option(help="Port for the first TCP link (later ones count up); 0 picks free ports."),
    ] = None,
) -> None:
    """Serve a station's simulated devices until Ctrl-C or SIGTERM."""
    spec = _load_or_exit(station)
    clock = _clock(speed, origin, anchor)
    try:
        asyncio.run(_run(spec, clock, seed, tcp_port))
    except (OSError, PtyLinkError) as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="Real seconds the storm runs.")] = 90.0,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 240.0,
) -> None:
    """The whole system on this machine: fleet, three stations in a storm, three gateways.

    Starts the county fleet with its embedded broker, enrolls a gateway for a creek
    village, a creeping slope and a river gauge, runs the storm with them, and ends with
    a check that the fleet holds exactly the readings the gateways stored.
    """
    if speed <= 0 or duration <= 0:
        raise typer.BadParameter("--speed and --duration must be positive")
    console.print(
        f"[bold]HazardWatch demo[/]: the fleet and three gateways; the storm at {speed:g}x for "
        f"{duration:g} s (about {duration * speed / 3600:.1f} simulated hours; it starts 30 min "
        "in), the slope faster so that its creep ends within the demo. Ctrl-C stops."
    )
    try:
        status = asyncio.run(run_demo(duration, speed, console))
    except KeyboardInterrupt:
        status = 130
    except (OSError, RuntimeError, StationError) as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    raise typer.Exit(status)


@app.command()
def profiles() -> None:
    """List the device profiles shipped with HazardWatch."""
    table = Table(show_header=True, header_style="bold")
    # A name is what a station file's `profile =` takes: it is never wrapped or cut short.
    table.add_column("profile", no_wrap=True)
    for column in ("model", "vendor", "unit", "channels"):
        table.add_column(column, overflow="fold")
    for name, profile in builtin_profiles().items():
        table.add_row(
            name,
            profile.model,
            profile.vendor,
            str(profile.default_unit_id),
            ", ".join(c.name for c in profile.channels),
        )
    print_uncut(console, table)


async def _run_siren_node(
    clock: ScaledClock, rain_mm: RainSignal, path: Path, unit_id: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serve_siren_node(clock, rain_mm, agent_end=path, unit_id=unit_id) as (bus, node):
        console.print(
            f"[bold]siren node[/] (unit {unit_id}) on Modbus RTU; agent opens "
            f"{escape(bus.device)} at {bus.baudrate} 8N1"
        )
        _print_clock(clock)
        console.print("serving; Ctrl-C or SIGTERM stops")
        await stop.wait()
    for change in node.siren_log:
        console.print(f"siren {'on' if change.value else 'off'} at {_iso(change.sim_time)}")
    console.print("stopped")


@app.command("siren-node")
def siren_node(
    station: Annotated[
        str, typer.Argument(help="Station file or shipped station whose storm fills the bucket.")
    ] = "creek_village",
    path: Annotated[
        Path, typer.Option(help="Where the agent's end of the node's RS485 pty appears.")
    ] = Path("/tmp/hazardwatch/siren-node"),
    unit_id: Annotated[int, typer.Option(min=1, max=247, help="Modbus unit id.")] = (
        DEFAULT_UNIT_ID
    ),
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    origin: OriginOpt = None,
    anchor: AnchorOpt = None,
) -> None:
    """Run the siren node's firmware logic behind a pty until Ctrl-C or SIGTERM."""
    spec = _load_or_exit(station)
    clock = _clock(speed, origin, anchor)
    storm = spec.build(clock, clock.origin).scenarios.get("storm")
    if not isinstance(storm, DesignStorm):
        problem = f"station {spec.name} has no [scenario.storm] to rain on the node's bucket"
        errors.print(f"[red]error:[/] {escape(problem)}")
        raise typer.Exit(2)
    try:
        asyncio.run(_run_siren_node(clock, storm.cumulative_mm, path, unit_id))
    except (OSError, PtyLinkError) as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


async def _run_modem(path: Path, reply: str | None, rssi: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with PtyPair(agent_end=path) as pty:
        async with SimulatedModem(pty.device_end, rssi=rssi) as modem:

            def sent(sms: SentSms) -> None:
                console.print(f"SMS {sms.ref} to {mask_phone(sms.number)}: {escape(sms.text)}")
                if reply is not None:
                    index = modem.deliver(sms.number, reply)
                    who = mask_phone(sms.number)
                    console.print(f"reply from {who} stored at {index}: {escape(reply)}")

            modem.on_sent = sent
            console.print(
                f"[bold]SMS modem[/] (AT commands, 27.005 text mode); the gateway opens "
                f"{escape(str(pty.agent_end))}"
            )
            console.print("serving; Ctrl-C or SIGTERM stops")
            await stop.wait()
    console.print(f"stopped; {len(modem.outbox)} SMS sent")


async def _run_sl651_station(
    field_station: Sl651Station, clock: ScaledClock, scenario: Scenario, every_s: float, lose: int
) -> None:
    def heard(kind: str, delivery: Delivery | None) -> None:
        if delivery is None:
            console.print(f"{kind} report serial {field_station.serial}: [red]no answer[/]")
            return
        again = f" after {delivery.sends} sends" if delivery.sends > 1 else ""
        end = delivery.answer.end.name
        console.print(f"{kind} report serial {delivery.serial}: answered {end}{again}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with field_station, asyncio.TaskGroup() as group:
        reporting = group.create_task(
            report_scenario(
                field_station,
                clock.now,
                scenario,
                every_s=every_s,
                speed=clock.speed,
                lose_every=lose,
                on_delivery=heard,
            )
        )
        await stop.wait()
        reporting.cancel()


@app.command("sl651-station")
def sl651_station(
    station: Annotated[
        str,
        typer.Argument(help="Station file or shipped station whose storm and creek it reports."),
    ] = "creek_village",
    centre: Annotated[str, typer.Option(help="The receiving centre, HOST:PORT.")] = (
        "127.0.0.1:5005"
    ),
    address: Annotated[str, typer.Option(help="Station address, 10 hex digits.")] = "0012345678",
    password: Annotated[str, typer.Option(help="Station password, 4 hex digits.")] = "5A7C",
    every: Annotated[float, typer.Option(help="Simulated seconds between timed reports.")] = 300.0,
    lose_every: Annotated[
        int, typer.Option(min=0, help="Lose the answer to every Nth report (0: never).")
    ] = 0,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    origin: OriginOpt = None,
    anchor: AnchorOpt = None,
) -> None:
    """Report a station file's storm and creek to an SL 651 centre until Ctrl-C or SIGTERM.

    Timed reports (32) every --every seconds and hourly reports (34) on the hour; a report
    whose answer is lost is sent again, same serial and times.
    """
    host, _, port = centre.rpartition(":")
    if not port.isdigit() or not host:
        raise typer.BadParameter(f"{centre!r}: give HOST:PORT", param_hint="--centre")
    if not re.fullmatch(r"[0-9A-Fa-f]{10}", address):
        raise typer.BadParameter("10 hex digits, e.g. 0012345678", param_hint="--address")
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", password):
        raise typer.BadParameter("4 hex digits, e.g. 5A7C", param_hint="--password")
    if every <= 0:
        raise typer.BadParameter(f"must be positive, got {every}", param_hint="--every")
    spec = _load_or_exit(station)
    clock = _clock(speed, origin, anchor)
    built = spec.build(clock, clock.origin).scenarios
    storm, creek = built.get("storm"), built.get("creek")
    scenario = Scenario(
        storm.cumulative_mm if isinstance(storm, DesignStorm) else None,
        creek.level_m if isinstance(creek, CreekLevel) else None,
    )
    _print_clock(clock)
    field_station = Sl651Station(address.upper(), int(password, 16), host, int(port))
    console.print(f"[bold]SL 651 station {field_station.address}[/] reporting to {escape(centre)}")
    asyncio.run(_run_sl651_station(field_station, clock, scenario, every, lose_every))


@app.command("modem")
def modem(
    path: Annotated[
        Path, typer.Option(help="Where the gateway's end of the modem's serial pty appears.")
    ] = Path("/tmp/hazardwatch/modem"),
    reply: Annotated[
        str | None,
        typer.Option(help="Answer every SMS the gateway sends with this reply, e.g. 收到."),
    ] = None,
    rssi: Annotated[
        int, typer.Option(min=0, max=99, help="Signal strength AT+CSQ reports (99: unknown).")
    ] = 21,
) -> None:
    """Run a simulated SMS modem behind a pty until Ctrl-C or SIGTERM.

    Prints every SMS the gateway sends (numbers masked).
    """
    try:
        asyncio.run(_run_modem(path, reply, rssi))
    except (OSError, PtyLinkError) as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
