"""``fleet sl651``: register SL 651 telemetry stations and run the receiving centre.

``add-station``, ``set-rules``, ``rules`` and ``stations`` work on the data directory
directly, with the service stopped or running; ``serve`` runs the centre beside ``fleet
serve`` on the same data directory, evaluating each station's rules. A rules file is
checked before it is kept (``fleet.sl651_rules_file``); a running centre takes new rules
at the station's next report. A station's password is never printed or logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from fleet.cli_options import DEFAULT_DATA_DIR, DataDir
from fleet.service import open_repository
from fleet.settings import FleetSettings
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_rules_file import StationRulesError, parse_station_rules
from fleet.sl651_stations import (
    StationError,
    StationRegistry,
    UnknownStationError,
    parse_address,
    parse_password,
)
from fleet.station_ids import STATION_OFFLINE_AFTER_S

sl651_app = typer.Typer(
    help="SL 651-2014 telemetry stations (遥测站): registry and receiving centre.",
    no_args_is_help=True,
)

RulesFile = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        help="The station's alarm rules: [[rule]] tables on its channels (README).",
        exists=True,
        dir_okay=False,
    ),
]


def _checked_rules(path: Path) -> str:
    """The text of a station's rules file, refused with the reason if it is not valid."""
    try:
        text = path.read_text(encoding="utf-8")
        parse_station_rules(text, path.name)
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{path}: cannot read it: {exc}", param_hint="rules") from None
    except StationRulesError as exc:
        raise typer.BadParameter(str(exc), param_hint="rules") from None
    return text


def _open(data_dir: Path) -> StationRegistry:
    """The registry on the fleet database (created and migrated by the repository first)."""
    settings = FleetSettings(data_dir=data_dir)
    open_repository(settings).close()
    return StationRegistry(settings.db_path, durable=settings.durable)


@sl651_app.command("add-station")
def add_station(
    address: Annotated[str, typer.Argument(help="The station's address: 10 hex digits.")],
    password: Annotated[
        str, typer.Option("--password", help="Its password: 4 hex digits, as on the wire.")
    ],
    site: Annotated[str, typer.Option("--site", help="The site its readings belong to.")],
    rules: RulesFile = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Register a station (or change its password or site); its readings go to SITE.

    With --rules, the file's alarm rules are checked and kept for it (without, rules it
    already has stay).
    """
    try:
        secret = parse_password(password)
    except StationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--password") from None
    text = None if rules is None else _checked_rules(rules)
    registry = _open(data_dir)
    try:
        station = registry.add_station(address, secret, site, time.time())
        if text is not None:
            registry.set_rules(station.address, text)
    except StationError as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        registry.close()
    typer.echo(f"station {station.address} at site {station.site_id} as {station.gateway_id}")
    if rules is not None:
        typer.echo(f"rules of {station.address} set from {rules}")


@sl651_app.command("set-rules")
def set_rules(
    address: Annotated[str, typer.Argument(help="The station's address: 10 hex digits.")],
    rules: Annotated[
        Path | None,
        typer.Argument(help="Its new rules file (see README).", exists=True, dir_okay=False),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Take its rules away.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Give a registered station new alarm rules (or none, with --clear).

    A running centre builds them at the station's next report, from its stored history.
    """
    if (rules is None) == (not clear):
        raise typer.BadParameter("give a rules file, or --clear to take the rules away")
    try:
        address = parse_address(address)
    except StationError as exc:
        raise typer.BadParameter(str(exc), param_hint="address") from None
    text = None if rules is None else _checked_rules(rules)
    registry = _open(data_dir)
    try:
        revision = registry.set_rules(address, text)
    except UnknownStationError as exc:
        raise typer.BadParameter(f"{exc}: register it first (fleet sl651 add-station)") from None
    finally:
        registry.close()
    what = "cleared" if text is None else f"set from {rules}"
    typer.echo(f"rules of {address} {what} (revision {revision})")


@sl651_app.command("rules")
def show_rules(
    address: Annotated[str, typer.Argument(help="The station's address: 10 hex digits.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print the rules file kept for a station (nothing if it has none)."""
    registry = _open(data_dir)
    try:
        text, _ = registry.rules_text(parse_address(address))
    except (StationError, UnknownStationError) as exc:
        raise typer.BadParameter(str(exc), param_hint="address") from None
    finally:
        registry.close()
    if text is not None:
        typer.echo(text, nl=False)


@sl651_app.command("stations")
def list_stations(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Every registered station: address, site, gateway id, last report (UTC) and state.

    Never its password. A station is offline after two hours without a report or a
    keep-alive (keep-alives are written once a minute by a running centre).
    """
    registry = _open(data_dir)
    try:
        seen = registry.last_seen()
        now = time.time()
        for station in registry.stations():
            last = seen.get(station.address)
            if last is None:
                when, state = "never", "never_seen"
            else:
                when = datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                state = "offline" if now - last > STATION_OFFLINE_AFTER_S else "online"
            typer.echo(
                f"{station.address}\t{station.site_id}\t{station.gateway_id}\t{when}\t{state}"
            )
    finally:
        registry.close()


@sl651_app.command("serve")
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[
        str, typer.Option(help="Bind address (0.0.0.0 for stations on the network).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port the stations report to.")] = 5005,
    max_connections: Annotated[int, typer.Option(min=1, help="Stations connected at once.")] = 6000,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds a connection may go without a whole frame.")
    ] = 300.0,
    utc_offset: Annotated[
        float, typer.Option(help="Hours the stations' clocks are ahead of UTC.")
    ] = 8.0,
    centre: Annotated[
        int, typer.Option(min=0, max=255, help="This centre's address; 0 takes any.")
    ] = 0,
    rules_backend: Annotated[
        str, typer.Option(help="Alarm engine: auto (numba if it imports), numba or reference.")
    ] = "auto",
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the receiving centre until SIGINT or SIGTERM: stations report over TCP.

    Each station's rules (add-station --rules, set-rules) are evaluated on its readings.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = CentreSettings(
            host=host,
            port=port,
            max_connections=max_connections,
            idle_timeout_s=idle_timeout,
            utc_offset=timedelta(hours=utc_offset),
            centre_address=centre,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if rules_backend not in ("auto", "numba", "reference"):
        raise typer.BadParameter("auto, numba or reference", param_hint="--rules-backend")
    _open_files_for(max_connections)
    # Compiled kernels are kept beside the database, as the gateway keeps its own.
    os.environ.setdefault("NUMBA_CACHE_DIR", str(data_dir / "numba-cache"))
    from fleet.sl651_rules import check_kept_rules, rules_for  # noqa: PLC0415 - numba is heavy

    registry = _open(data_dir)
    try:
        with_rules = check_kept_rules(registry, rules_backend)
    except ValueError as exc:  # the backend asked for is not there
        registry.close()
        raise typer.BadParameter(str(exc), param_hint="--rules-backend") from None
    logging.getLogger(__name__).info("SL 651: %d station(s) have alarm rules", with_rules)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        built = rules_for(registry, rules_backend)
        async with ReceivingCentre(registry, settings, rules_for=built):
            await stop.wait()
        logging.getLogger(__name__).info("SL 651 centre stopped")

    try:
        asyncio.run(run())
    finally:
        registry.close()


#: File descriptors the process needs beside its stations' sockets (database, logs, ...).
SPARE_FILES = 64


def _open_files_for(connections: int) -> None:
    """Raise this process's open-file limit for ``connections`` sockets, or say it cannot.

    A process-wide choice, so it is made here, where the process starts.
    """
    wanted = connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    if limit < wanted:
        logging.getLogger(__name__).warning(
            "open files are limited to %d: fewer than --max-connections %d stations can "
            "connect; raise the hard limit (LimitNOFILE= in the systemd unit)",
            limit,
            connections,
        )
