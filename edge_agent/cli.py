"""The ``edge`` command: what a field technician runs on the gateway.

Every command validates its input first and exits with status 2 and a one-line reason
when the site file or an option is wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from drivers.model import Quality, Reading
from drivers.profiles import builtin_profiles
from edge_agent.cli_console import (
    console,
    err_console,
    fail,
    print_json,
    warn,
    write_json_line,
)
from edge_agent.doctor_cli import doctor
from edge_agent.update_cli import update_app
from edge_agent.uplink_cli import enroll, uplink_app
from site_schema.site_errors import SiteConfigError

if TYPE_CHECKING:
    from drivers.bus_config import BusConfig
    from drivers.clock import Clock
    from drivers.poller import DeviceHealth, Poller
    from edge_agent.control_messages import ControlRequest, ReplyT
    from edge_agent.local_settings import LocalSettings
    from edge_agent.scan import ScanHit
    from edge_agent.start_signals import StartSignals
    from site_schema.site_config import SiteConfig

# asyncio, Modbus, the site parser and the views are imported inside the commands that
# use them: `edge run` loads its alarm kernels before anything else (see
# edge_agent.alarm_preload), and every module imported before that raises its peak.

app = typer.Typer(
    help="HazardWatch edge agent: run a monitoring gateway, poll and scan its buses.",
    no_args_is_help=True,
    add_completion=False,
)

COMM_FAILURE = Quality.TIMEOUT | Quality.CRC_ERROR | Quality.EXCEPTION | Quality.NO_CONNECTION


def _load(config: Path, *, opens_ports: bool = False) -> SiteConfig:
    """The site file, validated; with ``opens_ports``, absent serial devices are named.

    An absent device is a warning, not a refusal: a USB adapter unplugged at boot must not
    keep the gateway's other buses from polling and its sirens from sounding. Its devices
    read as no connection until it appears.
    """
    from edge_agent.site_file import absent_serial_ports, load_site  # noqa: PLC0415

    try:
        site = load_site(config)
    except SiteConfigError as exc:
        raise fail(str(exc)) from None
    if opens_ports:
        for problem in absent_serial_ports(site):
            warn(f"{problem}; its devices will read as no connection until it appears")
    return site


def _local_settings(path: Path | None, data_dir: Path, site: SiteConfig) -> LocalSettings:
    """The gateway's agent.toml, with the site's player checked against it."""
    from edge_agent.local_settings import (  # noqa: PLC0415
        SETTINGS_FILE,
        LocalSettingsError,
        bind_player,
        load_local_settings,
    )

    try:
        settings = load_local_settings(path or data_dir / SETTINGS_FILE)
        bind_player(site, settings)
    except (LocalSettingsError, SiteConfigError) as exc:
        raise fail(str(exc)) from None
    return settings


def make_clock(speed: float, origin: str | None, anchor: float | None) -> Clock:
    """Build the clock the CLI options describe (the real clock unless sped up or shifted)."""
    from drivers.clock import ScaledClock, SystemClock  # noqa: PLC0415

    if speed == 1.0 and origin is None:
        return SystemClock()
    start = None
    if origin is not None:
        try:
            start = datetime.fromisoformat(origin).timestamp()
        except ValueError:
            raise fail(f"--origin {origin!r} is not an ISO 8601 time") from None
    try:
        return ScaledClock(speed, origin=start, anchor=anchor)
    except ValueError as exc:  # --speed nan, --anchor inf: click's range lets them through
        raise fail(f"--speed/--anchor: {exc}") from None


SpeedOpt = Annotated[
    float, typer.Option(min=0.001, help="Simulated seconds per real second (match hwsim).")
]
OriginOpt = Annotated[
    str | None, typer.Option(help="Simulated start time, ISO 8601 (match hwsim).")
]
AnchorOpt = Annotated[
    float | None, typer.Option(help="Wall-clock epoch at which simulated time == origin.")
]


@app.command()
def poll(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file (TOML).")],
    once: Annotated[bool, typer.Option(help="Poll every device once and exit.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON lines: one compact object per reading.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many real seconds.")
    ] = None,
    speed: SpeedOpt = 1.0,
    origin: OriginOpt = None,
    anchor: AnchorOpt = None,
) -> None:
    """Print every channel with its value, unit and quality.

    With --once the exit status is 1 when any device failed to answer.
    """
    import asyncio  # noqa: PLC0415

    from edge_agent.control_messages import DeviceStatus  # noqa: PLC0415
    from edge_agent.poll_view import (  # noqa: PLC0415
        device_problems,
        reading_table,
        readings_json_lines,
    )

    site = _load(config, opens_ports=True)
    clock = make_clock(speed, origin, anchor)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from drivers.bus import quiet_pymodbus  # noqa: PLC0415 - with the bus, only when polling

    quiet_pymodbus()
    if once or not json_out:
        # Here edge poll prints each device's problems itself (device_problems), with the
        # hint; the poller's log lines would only repeat them, and break the live table.
        # Live JSON lines keep them: the log on stderr is then where problems are told.
        logging.getLogger("drivers.poller").setLevel(logging.CRITICAL)
    if once:
        readings, health = asyncio.run(_poll_once(site, clock))
        problems = device_problems({n: DeviceStatus.of(h) for n, h in health.items()})
        if json_out:
            sys.stdout.write(readings_json_lines(readings))
            sys.stdout.flush()
        else:
            latest = {r.channel_id: r for r in readings}
            console.print(reading_table(latest, health, f"{site.name}: one poll"))
        # On stderr beside JSON lines, so a script's stdout stays one reading per line.
        out = err_console if json_out else console
        for line in problems:
            out.print(line, markup=False, highlight=False)
        if any(r.quality & COMM_FAILURE for r in readings):
            raise typer.Exit(code=1)
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_poll_live(site, clock, json_out, duration))


async def _poll_once(
    site: SiteConfig, clock: Clock
) -> tuple[list[Reading], dict[str, DeviceHealth]]:
    from drivers.poller import Poller  # noqa: PLC0415

    poller = Poller(site.buses, site.devices, clock)
    try:
        readings = await poller.poll_all_once()
    finally:
        await poller.close()
    return readings, {d.config.name: d.health for d in poller.devices}


async def _poll_live(
    site: SiteConfig, clock: Clock, json_out: bool, duration: float | None
) -> None:
    from drivers.poller import Poller  # noqa: PLC0415
    from edge_agent.control_messages import DeviceStatus  # noqa: PLC0415
    from edge_agent.poll_view import (  # noqa: PLC0415
        device_problems,
        reading_table,
        readings_json_lines,
    )

    title = f"{site.name} ({site.source})"
    if json_out:

        def emit(readings: list[Reading]) -> None:
            sys.stdout.write(readings_json_lines(readings))
            sys.stdout.flush()

        await _run_for(Poller(site.buses, site.devices, clock, emit), duration)
        return
    poller = Poller(site.buses, site.devices, clock)

    def render() -> Group:
        health = {d.config.name: d.health for d in poller.devices}
        devices = {n: DeviceStatus.of(h) for n, h in health.items()}
        problems = [Text(line) for line in device_problems(devices)]
        return Group(reading_table(poller.latest, health, title), *problems)

    with Live(render(), console=console, refresh_per_second=4, transient=False) as live:
        poller.sink = lambda _readings: live.update(render())
        await _run_for(poller, duration)
    console.print()


async def _run_for(poller: Poller, duration: float | None) -> None:
    import asyncio  # noqa: PLC0415

    task = asyncio.create_task(poller.run())
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=duration)
    except TimeoutError:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _bus_from_options(tcp: str | None, serial: str | None, baud: int) -> BusConfig:
    from drivers.bus_config import SerialBusConfig, TcpBusConfig  # noqa: PLC0415

    if (tcp is None) == (serial is None):
        raise fail("give exactly one of --tcp HOST:PORT or --serial DEVICE")
    if tcp is not None:
        host, _, port_text = tcp.rpartition(":")
        if not host or not port_text.isdigit():
            raise fail(f"--tcp {tcp!r} must look like 127.0.0.1:5020")
        return TcpBusConfig("scan", host, int(port_text))
    assert serial is not None
    return SerialBusConfig("scan", serial, baudrate=baud)


@app.command()
def scan(
    tcp: Annotated[str | None, typer.Option(help="Modbus TCP gateway, HOST:PORT.")] = None,
    serial: Annotated[str | None, typer.Option(help="Serial port, e.g. /dev/ttyUSB0.")] = None,
    ids: Annotated[str, typer.Option(help="Unit ids to try, e.g. 1-247 or 1,2,192.")] = "1-247",
    bauds: Annotated[
        str, typer.Option(help="Baud rates to try on a serial port, comma separated.")
    ] = "9600",
    timeout: Annotated[float, typer.Option(min=0.01, help="Seconds to wait per unit id.")] = 0.2,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Walk unit ids (and baud rates) on a bus and list who answered and what it may be."""
    import asyncio  # noqa: PLC0415

    from edge_agent.scan import parse_id_range, scan_bus  # noqa: PLC0415

    try:
        unit_ids = parse_id_range(ids)
        rates = [int(b) for b in bauds.split(",")] if serial else [0]
    except ValueError as exc:
        raise fail(str(exc)) from None
    from drivers.bus import quiet_pymodbus  # noqa: PLC0415 - with the bus, only when scanning

    # pymodbus logs every silent unit id with a frame dump: 247 of them bury the progress.
    quiet_pymodbus()
    profiles = list(builtin_profiles().values())
    hits: list[ScanHit] = []
    # On a terminal (stderr) a bar with ids done, devices found and the time left; in a
    # pipe or a log, nothing at all: the result is the table (or JSON) on stdout.
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ids, {task.fields[found]} answered"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as progress:
        for rate in rates:
            bus = _bus_from_options(tcp, serial, rate or 9600)
            label = f"{serial} @ {rate} baud" if serial else f"tcp {tcp}"
            task = progress.add_task(f"scanning {label}", total=len(unit_ids), found=0)

            def advance(_unit_id: int, task: TaskID = task) -> None:
                progress.advance(task)

            def found(_hit: ScanHit, task: TaskID = task) -> None:
                progress.update(task, found=progress.tasks[task].fields["found"] + 1)

            hits += asyncio.run(
                scan_bus(
                    bus, unit_ids, profiles, timeout, rate or None, progress=advance, found=found
                )
            )
    if json_out:
        print_json(
            [
                {
                    "unit_id": h.unit_id,
                    "baudrate": h.baudrate,
                    "answer": h.answer,
                    "matches": list(h.matches),
                }
                for h in hits
            ]
        )
        return
    table = RichTable(title=f"{len(hits)} device(s) answered")
    for column in ("unit id", "baud", "answer", "probably"):
        table.add_column(column)
    for h in hits:
        table.add_row(
            str(h.unit_id), str(h.baudrate or "-"), h.answer, ", ".join(h.matches) or "unknown"
        )
    console.print(table)


DataDirOpt = Annotated[
    Path,
    typer.Option("--data-dir", "-d", help="The agent's data directory (store, control socket)."),
]


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file (TOML).")],
    data_dir: DataDirOpt,
    speed: SpeedOpt = 1.0,
    origin: OriginOpt = None,
    anchor: AnchorOpt = None,
    backend: Annotated[str, typer.Option(help="Alarm kernels: auto, numba or reference.")] = "auto",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
    confirm_deadline: Annotated[
        float,
        typer.Option(help="Seconds a configuration received over the air has to prove itself."),
    ] = 60.0,
    slots: Annotated[
        Path | None,
        typer.Option(help="Release slot tree this agent runs from (takes releases over the air)."),
    ] = None,
    agent_settings: Annotated[
        Path | None,
        typer.Option(
            help="The gateway's own settings: allowed players and clips "
            "(default: agent.toml in the data directory)."
        ),
    ] = None,
    stage_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="HAZARDWATCH_STAGE_DIR",
            help="A directory in RAM (tmpfs, e.g. /run/hazardwatch) where each poll round's "
            "readings are committed; they move into the store every 5 minutes, which spares "
            "the SD card. A SIGKILL loses none; a power cut the last 5 minutes' readings.",
        ),
    ] = None,
) -> None:
    """Poll, store, detect and actuate until stopped; needs no network at all."""
    from edge_agent.start_signals import StartSignals, StoppedWhileStarting  # noqa: PLC0415

    try:
        level = logging.getLevelNamesMapping()[log_level.upper()]
    except KeyError:
        raise fail(f"--log-level {log_level!r} is not DEBUG, INFO, WARNING or ERROR") from None
    log = logging.getLogger("edge_agent")
    # A stop while starting ends the run as one after start-up does (status 0): from the
    # moment the handlers are in, every step is inside the ``try`` that says so.
    signals = StartSignals()
    signals.install()
    try:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log.info("starting: site file %s, data directory %s", config, data_dir)
        _start_and_run(
            config, data_dir, (speed, origin, anchor), backend,
            confirm_deadline, slots, agent_settings, signals, stage_dir,
        )  # fmt: skip
    except StoppedWhileStarting as stop:
        log.warning("stopped by %s while starting; the agent did not run", stop)


def _start_and_run(
    config: Path,
    data_dir: Path,
    clock_options: tuple[float, str | None, float | None],
    backend: str,
    confirm_deadline: float,
    slots: Path | None,
    agent_settings: Path | None,
    signals: StartSignals,
    stage_dir: Path | None = None,
) -> None:
    """``edge run`` once its stop signals are held: prepare, load the kernels, run."""
    from edge_agent.alarm_preload import preload_for_site  # noqa: PLC0415 - numba is heavy
    from edge_agent.config_state import prepare_start  # noqa: PLC0415

    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(data_dir / "numba-cache"))
    # A configuration that keeps the agent from starting is given up first, so that the
    # kernels are chosen from the site file that will run. It writes: a stop waits for it.
    with signals.writing():
        prepare_start(config, data_dir)
    # The alarm kernels load next, while the process is small, and the compiler's pages
    # are handed back before Modbus, asyncio, the uplink and the models are imported.
    try:
        preload_for_site(config, backend)
    except ValueError as exc:
        raise fail(str(exc)) from None
    from edge_agent.daemon import run_daemon  # noqa: PLC0415

    site = _load(config, opens_ports=True)
    settings = _local_settings(agent_settings, data_dir, site)
    clock = make_clock(*clock_options)
    run_daemon(
        site, config, data_dir, clock, backend, confirm_deadline, signals, slots, settings,
        stage_dir,
    )  # fmt: skip


def _ask(data_dir: Path, message: ControlRequest, reply: type[ReplyT]) -> ReplyT:
    """``message`` to the running agent, its answer as ``reply``; a refusal exits with its text."""
    import asyncio  # noqa: PLC0415

    from edge_agent.control import SOCKET_NAME, ControlError, ask  # noqa: PLC0415

    try:
        return asyncio.run(ask(data_dir / SOCKET_NAME, message, reply))
    except ControlError as exc:
        raise fail(str(exc)) from None


@app.command()
def status(
    data_dir: DataDirOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the running agent: buses, last polls, channel values, alarm levels, backlog."""
    from edge_agent.control_messages import StatusReply, StatusRequest  # noqa: PLC0415

    reply = _ask(data_dir, StatusRequest(), StatusReply)
    if json_out:
        print_json(reply.wire())
        return
    console.print(
        f"[bold]{reply.site}[/] agent {reply.version}, up {reply.uptime_s} s, "
        f"site level [bold]{reply.level}[/], backlog {reply.store['backlog']} readings, "
        f"alarm kernels {reply.alarm_backend}"
    )
    store = reply.store
    if store.get("unwritable"):
        console.print(
            f"[bold red]store cannot write[/] ({escape(store['unwritable'])}): "
            f"{store['held_events']} events and {store['held_readings']} readings held in "
            f"memory; {store['refused_writes']} writes refused, {store['readings_thinned']} "
            f"readings thinned, {store['events_lost']} events lost",
            highlight=False,
        )
    if (calls := reply.village_call) is not None:
        modem = "[red]" + escape(calls["modem_error"]) + "[/]" if calls["modem_error"] else "ok"
        calling = ", ".join(f"{c['rule']} ({c['level']})" for c in calls["calling"]) or "nobody"
        console.print(
            f"village call: modem {escape(calls['modem'])} {modem}; "
            f"{calls['persons']} persons; texting about {calling}",
            highlight=False,
        )
    if (sl651 := reply.sl651_uplink) is not None:
        error = f"; [red]{escape(sl651['last_error'])}[/]" if sl651["last_error"] else ""
        console.print(
            f"SL 651 uplink to {escape(sl651['centre'])} as station {sl651['station']}: "
            f"{sl651['state']}, {'connected' if sl651['connected'] else 'not connected'}; "
            f"watermark {sl651['watermark']} of {sl651['last_frame']} frames, "
            f"backlog {sl651['backlog']}{error}",
            highlight=False,
        )
    from edge_agent.poll_view import status_tables  # noqa: PLC0415

    console.print(status_tables(reply))


@app.command()
def alarms(
    data_dir: DataDirOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List alarm levels per rule and the recent alarm history."""
    from edge_agent.control_messages import AlarmsReply, AlarmsRequest  # noqa: PLC0415

    reply = _ask(data_dir, AlarmsRequest(), AlarmsReply)
    if json_out:
        print_json(reply.wire())
        return
    from edge_agent.poll_view import alarm_tables  # noqa: PLC0415

    console.print(alarm_tables(reply.wire()))


@app.command()
def ack(
    rule: Annotated[str, typer.Argument(help="Rule id whose latched alarm to acknowledge.")],
    data_dir: DataDirOpt,
    by: Annotated[str, typer.Option(help="Who acknowledges (kept in the event log).")] = "local",
) -> None:
    """Acknowledge a latched alarm so its level may fall again."""
    from pydantic import ValidationError  # noqa: PLC0415

    from edge_agent.control_messages import AckReply, AckRequest, problems  # noqa: PLC0415

    try:
        request = AckRequest(rule=rule, by=by)
    except ValidationError as exc:
        raise fail(f"edge ack: {problems(exc)}") from None
    reply = _ask(data_dir, request, AckReply)
    console.print(f"acknowledged {reply.rule}; its level is now {reply.level}")


siren_app = typer.Typer(help="Siren commands.", no_args_is_help=True)
app.add_typer(siren_app, name="siren")
app.command()(enroll)
app.command()(doctor)
app.add_typer(uplink_app, name="uplink")
app.add_typer(update_app, name="update")


@siren_app.command("test")
def siren_test(
    data_dir: DataDirOpt,
    audible: Annotated[bool, typer.Option(help="Sound the test pattern briefly.")] = False,
) -> None:
    """Read every relay back (silent), or sound the test pattern (--audible)."""
    from edge_agent.control_messages import SirenTestReply, SirenTestRequest  # noqa: PLC0415

    reply = _ask(data_dir, SirenTestRequest(audible=audible), SirenTestReply)
    if not reply.ok:
        raise fail(reply.detail or json.dumps(reply.wire()))
    print_json(reply.wire())


@app.command()
def replay(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site file (TOML).")],
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", "-d", help="Data directory whose store to replay."),
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="ISO 8601 start.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="ISO 8601 end.")] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="A record to backtest: columns time, value.")
    ] = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="Site channel the CSV stands for.")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="With --csv: draw 1/v and the forecast here.")
    ] = None,
    utc_offset: Annotated[
        str | None,
        typer.Option("--utc-offset", help="With --csv: zone of zoneless times (+08:00)."),
    ] = None,
    backend: Annotated[str, typer.Option(help="auto, numba or reference.")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Re-evaluate the site's rules over stored history, or backtest them on a CSV record."""
    site = _load(config)
    if csv_file is not None:
        _replay_csv(site, csv_file, channel, plot, utc_offset, backend, json_out)
        return
    if utc_offset is not None:
        raise fail("--utc-offset goes with --csv: a gateway's store keeps UTC times")
    if data_dir is None:
        raise fail("give --data-dir (a gateway's store) or --csv FILE --channel NAME")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(data_dir / "numba-cache"))
    from edge_agent.replay import replay_store  # noqa: PLC0415

    try:
        changes = replay_store(site, data_dir, _epoch(start), _epoch(end), backend)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    _print_changes(changes, json_out)


def _print_changes(changes: list[dict[str, Any]], json_out: bool) -> None:
    for change in changes:
        if json_out:
            write_json_line(change)
        else:
            console.print(
                f"{change['time']}  {change['rule']:<24} {change['from']:>7} -> {change['to']:<7} "
                f"{change['detail']}",
                highlight=False,
                markup=False,
            )
    if not json_out:
        console.print(f"{len(changes)} level change(s)")


def _replay_csv(
    site: SiteConfig,
    csv_file: Path,
    channel: str | None,
    plot: Path | None,
    utc_offset: str | None,
    backend: str,
    json_out: bool,
) -> None:
    from edge_agent.replay import change_rows  # noqa: PLC0415 - numba loads only when replaying
    from edge_agent.replay_csv import (  # noqa: PLC0415
        RecordError,
        backtest,
        forecast_steps,
        parse_utc_offset,
        plot_inverse_velocity,
        read_record,
    )

    if channel is None:
        raise fail("--csv needs --channel NAME: the site channel the record stands for")
    try:
        zone = UTC if utc_offset is None else parse_utc_offset(utc_offset)
        record = read_record(csv_file, zone)
        for note in record.notes():  # on stderr: --json keeps stdout to JSON lines
            err_console.print(f"{csv_file}: {note}", highlight=False, markup=False, soft_wrap=True)
        result = backtest(site, channel, record.t, record.x, backend)
        if plot is not None:
            plot_inverse_velocity(site, result, plot)
    except RecordError as exc:
        raise fail(str(exc)) from None
    for step in forecast_steps(site, result):
        when = datetime.fromtimestamp(step["t"], UTC).isoformat(timespec="seconds")
        if json_out:  # an infinite lead ("no failure in sight") as "inf"
            write_json_line({"forecast": step, "time": when})
        elif math.isfinite(step["lead_h"]):
            console.print(
                f"{when}  {step['rule']:<24} forecast: failure in {step['lead_h']:.1f} h "
                f"(alpha {step['alpha']:.2f}, v {step['velocity_mm_day']:.3g} mm/day, "
                f"evidence {step['evidence']:.0f})"
                + ("" if step["passes"] else f"; set aside: {step['set_aside']}"),
                highlight=False,
                markup=False,
            )
    _print_changes(change_rows(result.changes), json_out)
    if plot is not None and not json_out:
        console.print(f"plot written to {plot}")


def _epoch(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise fail(f"{text!r} is not an ISO 8601 time") from None


@app.command()
def profiles() -> None:
    """List the device profiles shipped with HazardWatch."""
    from drivers.profile_listing import print_uncut  # noqa: PLC0415

    table = RichTable(title="Shipped device profiles")
    # A name is what a site file's `profile =` takes: it is never wrapped or cut short.
    table.add_column("name", no_wrap=True)
    for column in ("model", "vendor", "unit id", "channels"):
        table.add_column(column, overflow="fold")
    for name, p in builtin_profiles().items():
        table.add_row(name, p.model, p.vendor, str(p.default_unit_id), str(len(p.channels)))
    print_uncut(console, table)


if __name__ == "__main__":
    app()
