"""``fleet sl651``: register SL 651 telemetry stations and run the receiving centre.

``add-station`` and ``stations`` work on the data directory directly, with the service
stopped or running; ``serve`` runs the centre beside ``fleet serve`` on the same data
directory. A station's password is never printed or logged.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from fleet.service import open_repository
from fleet.settings import FleetSettings
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_stations import StationError, StationRegistry, parse_password
from fleet.station_ids import STATION_OFFLINE_AFTER_S

sl651_app = typer.Typer(
    help="SL 651-2014 telemetry stations (遥测站): registry and receiving centre.",
    no_args_is_help=True,
)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="HAZARDWATCH_FLEET_DIR",
        help="Database, signing key and broker files live here.",
    ),
]
DEFAULT_DATA_DIR = Path("fleet-data")


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
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Register a station (or change its password or site); its readings go to SITE."""
    try:
        secret = parse_password(password)
    except StationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--password") from None
    registry = _open(data_dir)
    try:
        station = registry.add_station(address, secret, site, time.time())
    except StationError as exc:
        raise typer.BadParameter(str(exc)) from None
    finally:
        registry.close()
    typer.echo(f"station {station.address} at site {station.site_id} as {station.gateway_id}")


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
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the receiving centre until SIGINT or SIGTERM: stations report over TCP."""
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
    _open_files_for(max_connections)
    registry = _open(data_dir)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with ReceivingCentre(registry, settings):
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
