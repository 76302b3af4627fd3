"""The ``fleet`` command: run the county service and manage tokens and broker files.

``serve`` runs REST with ingest (and the embedded broker, for the demo and trials,
unless ``--mqtt`` names mosquitto, the production setup); ``ingest`` runs only the MQTT
worker. The token, API token and broker-config commands work on the fleet's database
directly (the SQLite file in the data directory, or ``--database``/``HAZARDWATCH_DATABASE``),
with the service stopped or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from fleet.backup import BackupError, backup_postgres, backup_sqlite
from fleet.broker_files import (
    ACL_FILE,
    CONF_FILE,
    FLEET_PASSWORD_FILE,
    PASSWORD_FILE,
    Listener,
    mosquitto_conf,
)
from fleet.cli_options import DEFAULT_DATA_DIR, Database, DataDir, checked_database
from fleet.enrollment import BUNDLE_TTL_S
from fleet.escalation_config import load_escalation_settings
from fleet.leases import LEASE_S, MAX_LEASE_S, check_lease_s
from fleet.repository import ApiToken, ConflictError, NotFoundError, Role
from fleet.rollout_cli import release_app, rollout_app
from fleet.roster_cli import roster_app
from fleet.schemas import MAX_API_TOKEN_TTL_S, SITE_ID_PATTERN
from fleet.service import (
    drop_old_readings,
    open_enrollment,
    open_repository,
    run_ingest_worker,
)
from fleet.settings import FleetSettings
from fleet.sl651_cli import sl651_app
from fleet.timestamps import iso

#: How long `fleet serve` lets requests finish after SIGTERM.
SHUTDOWN_GRACE_S = 5

app = typer.Typer(help="HazardWatch county fleet service.", no_args_is_help=True)
token_app = typer.Typer(help="One-time enrollment tokens for gateways.", no_args_is_help=True)
apitoken_app = typer.Typer(help="API tokens for the REST console.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(apitoken_app, name="apitoken")
app.add_typer(release_app, name="release")
app.add_typer(rollout_app, name="rollout")
app.add_typer(roster_app, name="roster")
app.add_typer(sl651_app, name="sl651")

Mqtt = Annotated[
    str | None,
    typer.Option(
        "--mqtt",
        help="External broker (mosquitto, the production setup): its fleet listener "
        "(see broker-config), e.g. mqtt://127.0.0.1:1884.",
    ),
]
Broker = Annotated[
    str,
    typer.Option(
        "--broker",
        help="'embedded': run amqtt in-process, for the demo, tests and trials on one host "
        "(ignored with --mqtt; use mosquitto in production).",
    ),
]
MqttCa = Annotated[
    Path | None, typer.Option("--mqtt-ca", help="CA file to verify an mqtts broker.")
]
BrokerHost = Annotated[str, typer.Option("--broker-host", help="Embedded broker bind address.")]
BrokerPort = Annotated[int, typer.Option("--broker-port", help="Embedded broker port.")]
PublicBroker = Annotated[
    str | None,
    typer.Option(
        "--public-broker-url",
        help="Broker URL handed to gateways, its gateway listener (default: --mqtt).",
    ),
]
PublicCa = Annotated[
    Path | None, typer.Option("--public-broker-ca", help="CA PEM handed to gateways for mqtts.")
]
FleetUrl = Annotated[
    str, typer.Option("--fleet-url", help="This service's URL as gateways reach it.")
]
PidFile = Annotated[
    Path | None,
    typer.Option("--mosquitto-pid-file", help="SIGHUP this mosquitto after each enrollment."),
]
Connections = Annotated[
    int, typer.Option("--ingest-connections", min=1, help="MQTT ingest sessions ($share).")
]
LogLevel = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
EscalationFile = Annotated[
    Path | None,
    typer.Option(
        "--escalation",
        help="叫应 settings (TOML): [smtp], [kannel], [policy.levels.*], sms_callback_key.",
    ),
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``15m``, ``24h`` or ``30d``."""
    match = _DURATION.match(text.strip())
    if not match:
        msg = f"{text!r} is not a duration like 3600, 15m, 24h or 30d"
        raise typer.BadParameter(msg)
    return float(match.group(1)) * _UNITS[match.group(2)]


def _site(site: str) -> str:
    if not re.fullmatch(SITE_ID_PATTERN, site):
        msg = f"site id {site!r}: use lower-case letters, digits, '-' and '_' (e.g. creek-village)"
        raise typer.BadParameter(msg)
    return site


def _settings(
    data_dir: Path,
    broker: str,
    mqtt: str | None,
    mqtt_ca: Path | None,
    broker_host: str,
    broker_port: int,
    public_broker_url: str | None,
    public_broker_ca: Path | None,
    fleet_url: str,
    mosquitto_pid_file: Path | None,
    connections: int,
) -> FleetSettings:
    if mqtt is None and broker != "embedded":
        msg = f"--broker {broker!r}: use --broker embedded, or --mqtt URL for an external broker"
        raise typer.BadParameter(msg)
    return FleetSettings(
        data_dir=data_dir,
        broker="external" if mqtt else "embedded",
        mqtt_url=mqtt,
        mqtt_ca=mqtt_ca,
        embedded_host=broker_host,
        embedded_port=broker_port,
        public_broker_url=public_broker_url,
        public_broker_ca=public_broker_ca,
        fleet_url=fleet_url,
        mosquitto_pid_file=mosquitto_pid_file,
        ingest_connections=connections,
    )


#: GIL switch interval of a fleet process (Python's default is 5 ms). sqlite3 gives up the
#: GIL for every statement and must get it back from the event loop thread; at the default
#: a commit holding the write lock can wait up to 5 ms per statement that way. It is a
#: choice for the whole process, so it is made here, where the process starts, never by a
#: library class (``fleet.ingest`` runs in tests and benches too).
SWITCH_INTERVAL_S = 0.0005
#: Allocations between two collections of the youngest generation (Python's default is
#: 700), and the default 10 and 10 above it. Ingest allocates a tuple or two per reading,
#: hundreds of thousands a second, and at 700 the collector ran every few hundred
#: readings: a fleet process collects a hundred times less often, and its memory goes back
#: by reference counting as before (measured with ``bench/scale.py``: an ingest worker's
#: CPU a million readings went from 1.9 to 1.6 s).
GC_THRESHOLD = (100_000, 10, 10)


def _process_wide(level: str) -> None:
    """What a fleet process sets for itself before it starts: logging, the GIL, the GC."""
    _logging(level)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLD)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The embedded broker logs every connection and state change at INFO.
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="REST bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="REST port.")] = 8080,
    broker: Broker = "embedded",
    mqtt: Mqtt = None,
    mqtt_ca: MqttCa = None,
    broker_host: BrokerHost = "127.0.0.1",
    broker_port: BrokerPort = 1883,
    public_broker_url: PublicBroker = None,
    public_broker_ca: PublicCa = None,
    fleet_url: FleetUrl = "",
    mosquitto_pid_file: PidFile = None,
    ingest_connections: Connections = 1,
    log_level: LogLevel = "info",
    escalation: EscalationFile = None,
    database: Database = None,
    lease_s: Annotated[
        float,
        typer.Option(
            "--lease-s",
            min=1.0,
            max=MAX_LEASE_S,
            help="Seconds a replica's lease on 叫应 and rollouts lasts unless renewed: "
            "another replica on the same database takes over within this after a crash.",
        ),
    ] = LEASE_S,
) -> None:
    """Run the REST console (OpenAPI at /docs) with MQTT ingest in its lifespan.

    Several replicas may serve one database (PostgreSQL, or one SQLite data directory):
    the one holding a lease runs 叫应 and the rollout scheduler (docs/scaling.md).
    """
    _process_wide(log_level)
    settings = _settings(
        data_dir,
        broker,
        mqtt,
        mqtt_ca,
        broker_host,
        broker_port,
        public_broker_url,
        public_broker_ca,
        fleet_url or f"http://{host}:{port}",
        mosquitto_pid_file,
        ingest_connections,
    )
    try:
        check_lease_s(lease_s)  # typer's range lets NaN through
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lease-s") from None
    settings = replace(
        settings, database=checked_database(database, reachable=True), lease_s=lease_s
    )
    if escalation is not None:
        try:
            settings = replace(settings, escalation=load_escalation_settings(escalation))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--escalation") from exc
    # Only `serve` needs the app: importing it (FastAPI, every router) would cost each
    # token, roster or rollout command 0.2 s of CPU, a third of its start.
    from fleet.main import create_app  # noqa: PLC0415

    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level.lower(),
        # An open console's live feed never ends by itself: on SIGTERM, wait this long
        # for requests to finish, then close the streams, so a stop never hangs.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )


@app.command()
def ingest(
    mqtt: Annotated[
        str,
        typer.Option("--mqtt", help="The broker's fleet listener, e.g. mqtt://127.0.0.1:1884."),
    ],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    mqtt_ca: MqttCa = None,
    worker: Annotated[
        str, typer.Option("--worker", help="Name unique among workers (MQTT client id).")
    ] = "1",
    ingest_connections: Connections = 1,
    log_level: LogLevel = "info",
    database: Database = None,
) -> None:
    """Run an extra MQTT ingest worker beside ``fleet serve`` (same data directory).

    Workers and serve share one subscription, so the broker splits messages among them;
    SQLite serialises their commits, PostgreSQL (``--database``) lets them commit side by
    side. Acks stay exact whichever worker commits.
    """
    _process_wide(log_level)
    settings = FleetSettings(
        data_dir=data_dir,
        broker="external",
        mqtt_url=mqtt,
        mqtt_ca=mqtt_ca,
        ingest_connections=ingest_connections,
        database=checked_database(database),
    )

    async def run() -> None:
        client_id = f"hazardwatch-fleet-worker-{worker}"
        async with run_ingest_worker(settings, client_id=client_id) as task:
            await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@token_app.command("create")
def token_create(
    site: Annotated[str, typer.Option("--site", help="Site id the gateway will belong to.")],
    ttl: Annotated[str, typer.Option("--ttl", help="Validity, e.g. 24h or 7d.")] = "24h",
    note: Annotated[str | None, typer.Option(help="Free text, e.g. who installs it.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
) -> None:
    """Create a one-time enrollment token and print it (shown only now)."""
    url = checked_database(database, reachable=True)
    repository = open_repository(FleetSettings(data_dir=data_dir, database=url))
    try:
        token, secret = repository.create_enrollment_token(
            _site(site), time.time() + parse_duration(ttl), "cli", note, time.time()
        )
    finally:
        repository.close()
    typer.echo(secret)
    typer.echo(f"site {token.site_id}, valid until {iso(token.expires_at)}, works once", err=True)


@token_app.command("bundle")
def token_bundle(
    site: Annotated[str, typer.Option("--site", help="Site id the gateway will belong to.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle file to write (mode 0600).")],
    ttl: Annotated[str, typer.Option("--ttl", help="Validity, e.g. 30d.")] = "",
    note: Annotated[str | None, typer.Option(help="Free text.")] = None,
    fleet_url: FleetUrl = "http://127.0.0.1:8080",
    public_broker_url: PublicBroker = None,
    public_broker_ca: PublicCa = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
) -> None:
    """Write an offline enrollment bundle for a USB stick (`edge enroll --bundle FILE`)."""
    settings = FleetSettings(
        data_dir=data_dir,
        database=checked_database(database, reachable=True),
        fleet_url=fleet_url,
        public_broker_url=public_broker_url,
        public_broker_ca=public_broker_ca,
    )
    repository = open_repository(settings)
    try:
        enrollment = open_enrollment(settings, repository)
        ttl_s = parse_duration(ttl) if ttl else BUNDLE_TTL_S
        bundle = enrollment.bundle(_site(site), ttl_s, "cli", note, time.time())
    finally:
        repository.close()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(bundle.model_dump_json(indent=2) + "\n")
    typer.echo(f"wrote {out}: site {site}, valid until {iso(bundle.expires_at)}, works once")


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="The copy to write (never over a file).")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
) -> None:
    """Write a consistent copy of the fleet's database while the fleet runs.

    SQLite (the default): its online backup API, checked afterwards. PostgreSQL
    (``--database``): pg_dump's custom format, for pg_restore. The copy is mode 0600.
    """
    url = checked_database(database)
    try:
        if url is None:
            backup_sqlite(FleetSettings(data_dir=data_dir).db_path, out)
        else:
            backup_postgres(url, out)
    except BackupError as exc:
        typer.echo(f"backup failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {out} ({out.stat().st_size:,} bytes)")


@app.command()
def migrate(
    source: Annotated[
        Path, typer.Option("--from", help="The SQLite fleet file, e.g. fleet-data/fleet.sqlite.")
    ],
    to: Annotated[
        str, typer.Option("--to", help="The PostgreSQL database, e.g. postgresql://fleet@db/hw.")
    ],
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Rows per transaction.")] = 5000,
) -> None:
    """Copy a SQLite fleet into an empty PostgreSQL database; run it again to resume.

    Stop the fleet first. A run cut short (killed, a lost connection) goes on from its last
    committed chunk when run again; the result is the same as one clean run.
    """
    url = checked_database(to)
    assert url is not None
    # psycopg is the 'fleet' extra: a county on SQLite runs without it.
    from fleet.migrate import MigrateError, run_migration  # noqa: PLC0415

    try:
        result = run_migration(source, url, chunk=chunk)
    except MigrateError as exc:
        typer.echo(f"migrate failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if result.already_done:
        typer.echo("already copied: nothing to do")
    for table, rows in result.copied.items():
        if rows:
            typer.echo(f"{table}: {rows:,} rows copied")
    for table, rows in result.left_behind.items():
        typer.echo(
            f"not copied: {table} ({rows:,} rows): PostgreSQL has no store for it yet", err=True
        )
    typer.echo("migration finished")


#: The least ``prune-readings --older-than`` takes: a slip of the keyboard must not empty
#: the readings of the day being watched.
MIN_PRUNE_AGE_S = 86400.0


@app.command("prune-readings")
def prune_readings(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Raw readings older than this go, e.g. 90d.")
    ],
    database: Database = None,
) -> None:
    """Drop raw readings older than a duration, whole days at a time (PostgreSQL only).

    The charts keep the dropped days through the hour and minute rollups, and the stream
    marks, not the rows, recognise a resend, so a resent old batch is still ignored. Run it
    from a timer (daily, say): nothing runs it on its own.
    """
    age_s = parse_duration(older_than)
    if age_s < MIN_PRUNE_AGE_S:
        msg = f"{older_than!r} is under a day: raw readings are kept at least 1d"
        raise typer.BadParameter(msg, param_hint="--older-than")
    url = checked_database(database, reachable=True)
    if url is None:
        typer.echo(
            "prune-readings is for PostgreSQL (--database): the SQLite store's charts read"
            " the raw readings themselves, so it keeps every one",
            err=True,
        )
        raise typer.Exit(2)
    cutoff = time.time() - age_s
    dropped = drop_old_readings(url, cutoff)
    typer.echo(f"readings before {iso(cutoff)}: {len(dropped)} day partitions dropped")
    for name in dropped:
        typer.echo(f"  {name}")


@app.command("broker-config")
def broker_config(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    listen: Annotated[
        list[str] | None, typer.Option("--listen", help="Plain listener HOST:PORT (repeatable).")
    ] = None,
    tls_listen: Annotated[
        str | None, typer.Option("--tls-listen", help="TLS listener HOST:PORT.")
    ] = None,
    fleet_listen: Annotated[
        str,
        typer.Option(
            "--fleet-listen",
            help="The fleet's own listener HOST:PORT (fleet account only; its connections "
            "keep their client ids). Point `fleet serve --mqtt` and `fleet ingest` here.",
        ),
    ] = "127.0.0.1:1884",
    certfile: Annotated[Path | None, typer.Option(help="Broker certificate (TLS).")] = None,
    keyfile: Annotated[Path | None, typer.Option(help="Broker private key (TLS).")] = None,
    cafile: Annotated[Path | None, typer.Option(help="CA file for the TLS listener.")] = None,
    mosquitto_pid_file: PidFile = None,
    database: Database = None,
) -> None:
    """Write mosquitto's password file, ACL and a config snippet for all enrolled gateways."""
    settings = FleetSettings(
        data_dir=data_dir,
        mosquitto_pid_file=mosquitto_pid_file,
        database=checked_database(database, reachable=True),
    )
    repository = open_repository(settings)
    try:
        open_enrollment(settings, repository).sync_broker()
        gateways = len(repository.broker_accounts())
    finally:
        repository.close()
    listeners = [_listener(text) for text in (listen or ["127.0.0.1:1883"])]
    if tls_listen:
        if certfile is None or keyfile is None:
            msg = "--tls-listen needs --certfile and --keyfile"
            raise typer.BadParameter(msg)
        listeners.append(_listener(tls_listen, certfile, keyfile))
    listeners.append(_listener(fleet_listen, fleet=True))
    conf = settings.broker_dir / CONF_FILE
    conf.write_text(mosquitto_conf(settings.broker_dir, listeners, cafile))
    for name in (PASSWORD_FILE, FLEET_PASSWORD_FILE, ACL_FILE, CONF_FILE):
        typer.echo(settings.broker_dir / name)
    typer.echo(
        f"{gateways} gateways; run mosquitto -c {conf} (or include it from conf.d)", err=True
    )


def _listener(
    text: str, certfile: Path | None = None, keyfile: Path | None = None, *, fleet: bool = False
) -> Listener:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        msg = f"{text!r}: expected HOST:PORT, e.g. 0.0.0.0:8883"
        raise typer.BadParameter(msg)
    return Listener(int(port), host or "127.0.0.1", certfile, keyfile, fleet)


ApiTokenTtl = Annotated[
    str,
    typer.Option(
        "--ttl", help="How long the token works, e.g. 30d or 12h (default 90d, at most 730d)."
    ),
]


def _api_token_ttl(text: str) -> float:
    ttl_s = parse_duration(text)
    if not 0 < ttl_s <= MAX_API_TOKEN_TTL_S:
        msg = f"--ttl {text}: give a lifetime above 0 and at most 730d; rotate tokens instead"
        raise typer.BadParameter(msg)
    return ttl_s


def _print_api_token(token: ApiToken, secret: str) -> None:
    """The secret on stdout (for a script to capture), what it is on stderr."""
    typer.echo(secret)
    about = {"id": token.id, "name": token.name, "role": token.role}
    about["expires_at"] = iso(token.expires_at) if token.expires_at is not None else None
    typer.echo(json.dumps(about), err=True)


@apitoken_app.command("create")
def apitoken_create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the token.")],
    role: Annotated[
        Role,
        typer.Option(
            "--role", help="viewer, operator, configurator (signs site configs) or admin."
        ),
    ],
    ttl: ApiTokenTtl = "90d",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
) -> None:
    """Create an API token and print it (shown only now; stored hashed)."""
    ttl_s = _api_token_ttl(ttl)
    url = checked_database(database, reachable=True)
    repository = open_repository(FleetSettings(data_dir=data_dir, database=url))
    try:
        token, secret = repository.create_api_token(name, role, time.time(), ttl_s)
    finally:
        repository.close()
    _print_api_token(token, secret)


@apitoken_app.command("rotate")
def apitoken_rotate(
    token_id: Annotated[int, typer.Argument(help="The token's id (see apitoken list).")],
    ttl: ApiTokenTtl = "90d",
    data_dir: DataDir = DEFAULT_DATA_DIR,
    database: Database = None,
) -> None:
    """Give a token a new secret and expiry, and print the secret; the old one stops now."""
    ttl_s = _api_token_ttl(ttl)
    url = checked_database(database, reachable=True)
    repository = open_repository(FleetSettings(data_dir=data_dir, database=url))
    try:
        token, secret = repository.rotate_api_token(token_id, time.time(), ttl_s)
    except (NotFoundError, ConflictError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        repository.close()
    _print_api_token(token, secret)


@apitoken_app.command("list")
def apitoken_list(data_dir: DataDir = DEFAULT_DATA_DIR, database: Database = None) -> None:
    """Every API token (never a secret): id, name, role, and until when it works."""
    url = checked_database(database, reachable=True)
    repository = open_repository(FleetSettings(data_dir=data_dir, database=url))
    try:
        tokens = repository.list_api_tokens()
    finally:
        repository.close()
    now = time.time()
    for token in tokens:
        if token.revoked_at is not None:
            state = f"revoked {iso(token.revoked_at)}"
        elif token.expires_at is None or token.expires_at <= now:
            state = "expired" + (f" {iso(token.expires_at)}" if token.expires_at else "")
        else:
            state = f"expires {iso(token.expires_at)}"
        typer.echo(f"{token.id}\t{token.name}\t{token.role.value}\t{state}")


if __name__ == "__main__":
    app()
