"""Starting and stopping the fleet's parts in order: storage, keys, broker, ingest.

``run_fleet`` is ``fleet serve``'s (inside the FastAPI lifespan); ``run_ingest_worker`` is
``fleet ingest``'s (no REST, no broker files). On start ``fleet serve`` rewrites the
broker's access files, so the fleet's own account and every enrolled gateway can connect.
``open_repository`` and ``open_ingest_store`` are the one place a backend is chosen: the
SQLite file in the data directory, or PostgreSQL for ``settings.database``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fleet.broker_files import FleetAccount
from fleet.database_url import check_database, redacted
from fleet.embedded_broker import EmbeddedBroker
from fleet.enrollment import BrokerAddress, Enrollment
from fleet.ingest import IngestWorker
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import IngestStore, Repository
from fleet.settings import FleetSettings
from fleet.signing import SigningKey
from fleet.sqlite_repository import SQLiteRepository
from ota.crash_points import armed

log = logging.getLogger(__name__)

#: The shared subscription every ingest connection joins on an external broker, so that
#: ``fleet serve`` and any number of ``fleet ingest`` workers split the messages.
INGEST_GROUP = "hazardwatch-ingest"


@dataclass(frozen=True, slots=True)
class FleetService:
    """The running parts; ``ingest_task`` is None when ingest is off."""

    settings: FleetSettings
    repository: Repository
    enrollment: Enrollment
    ingest: IngestWorker | None
    ingest_task: asyncio.Task[None] | None


class DatabaseUnreachableError(RuntimeError):
    """The PostgreSQL database cannot be reached; the message never holds a password."""


def check_reachable(url: str, timeout_s: int = 10) -> None:
    """Connect to ``url`` once, so a command says at once why the database is not usable."""
    import psycopg  # noqa: PLC0415 - the 'fleet' extra, as in open_repository

    try:
        psycopg.connect(check_database(url), connect_timeout=timeout_s).close()
    except psycopg.Error as exc:
        # libpq's own words name the host and port, never the password.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        msg = f"{redacted(url)}: cannot connect: {reason}"
        raise DatabaseUnreachableError(msg) from None


def open_repository(settings: FleetSettings) -> Repository:
    """The repository for ``settings`` (also used by the CLI's offline commands).

    PostgreSQL for ``settings.database`` (release files stay in the data directory's
    ``releases/``), else SQLite in the data directory.
    """
    if settings.database is not None:
        # psycopg is the 'fleet' extra: a county on SQLite runs without it.
        from fleet.postgres_repository import PostgresRepository  # noqa: PLC0415

        log.info("the fleet stores in PostgreSQL at %s", redacted(settings.database))
        return PostgresRepository(
            check_database(settings.database), files_dir=settings.data_dir / "releases"
        )
    return SQLiteRepository(
        settings.db_path,
        durable=settings.durable,
        hold_before_commit=armed("fleet.ingest.commit"),  # crash tests only
    )


def drop_old_readings(database_url: str, cutoff: float) -> list[str]:
    """Retention (PostgreSQL): drop the day partitions of raw readings older than ``cutoff``.

    Returns the partitions dropped (see ``PostgresRepository.drop_readings_before``).
    """
    from fleet.postgres_repository import PostgresRepository  # noqa: PLC0415 - the 'fleet' extra

    store = PostgresRepository(check_database(database_url))
    try:
        return store.drop_readings_before(cutoff)
    finally:
        store.close()


def open_ingest_store(settings: FleetSettings) -> IngestStore:
    """Where ``fleet ingest`` commits: PostgreSQL for ``settings.database``, else SQLite."""
    if settings.database is None:
        return open_repository(settings)
    # psycopg is the 'fleet' extra: a county on SQLite runs without it.
    from fleet.postgres_repository import PostgresRepository  # noqa: PLC0415

    log.info("ingest commits to PostgreSQL at %s", redacted(settings.database))
    return PostgresRepository(check_database(settings.database), pool_size=4)


#: Groups one PostgreSQL ingest worker commits side by side: one fills its transaction
#: while the other waits on the disk (SQLite has one writer, so one there).
POSTGRES_COMMIT_THREADS = 2


def commit_threads(settings: FleetSettings) -> int:
    """How many groups an ingest worker of ``settings`` may commit at once."""
    return POSTGRES_COMMIT_THREADS if settings.database is not None else 1


def open_enrollment(settings: FleetSettings, repository: Repository) -> Enrollment:
    """The enrollment service for ``settings``; creates the signing key and account once."""
    ca = settings.gateway_broker_ca
    return Enrollment(
        repository,
        SigningKey.load_or_create(settings.data_dir),
        FleetAccount.load_or_create(settings.data_dir),
        BrokerAddress(settings.gateway_broker_url, ca.read_text() if ca else None),
        settings.broker_dir,
        settings.fleet_url,
        settings.mosquitto_pid_file,
    )


def ingest_client_id(settings: FleetSettings) -> str:
    """The MQTT client id prefix of this ``fleet serve``'s ingest connections.

    On an external broker several replicas may connect at once: each process gets its own
    (the connections are clean sessions, so nothing is kept under an old id).
    """
    if settings.broker == "external":
        return f"hazardwatch-fleet-{secrets.token_hex(4)}"
    return "hazardwatch-fleet"


@asynccontextmanager
async def run_fleet(
    settings: FleetSettings, *, client_id: str = "hazardwatch-fleet"
) -> AsyncIterator[FleetService]:
    """Start everything ``settings`` asks for; stop it all (ingest first) on exit.

    ``client_id`` prefixes the ingest connections' MQTT client ids (unique per process).
    """
    repository = open_repository(settings)
    async with AsyncExitStack() as stack:
        stack.callback(repository.close)
        enrollment = open_enrollment(settings, repository)
        enrollment.sync_broker()
        if settings.broker == "embedded":
            await stack.enter_async_context(
                EmbeddedBroker(settings.broker_dir, settings.embedded_host, settings.embedded_port)
            )
        worker: IngestWorker | None = None
        task: asyncio.Task[None] | None = None
        if settings.ingest:
            account = enrollment.fleet_account
            worker = IngestWorker(
                repository,
                BrokerConnection(
                    settings.broker_url, account.username, account.password, settings.mqtt_ca
                ),
                client_id=client_id,
                connections=settings.ingest_connections,
                shared_group=INGEST_GROUP if settings.broker == "external" else None,
                commit_threads=commit_threads(settings),
            )
            task = asyncio.create_task(worker.run(), name="fleet-ingest")
            task.add_done_callback(_report_ingest_stopped)
            stack.push_async_callback(_cancel, task)
        yield FleetService(settings, repository, enrollment, worker, task)


@asynccontextmanager
async def run_ingest_worker(
    settings: FleetSettings, *, client_id: str
) -> AsyncIterator[asyncio.Task[None]]:
    """``fleet ingest``: one more ingest worker on the external broker; yields its task.

    It joins the shared subscription of ``fleet serve`` and every other worker, so the
    broker splits the gateways' messages among them; the broker, its access files and
    the fleet's keys are ``fleet serve``'s (only the fleet's broker account is read here).
    """
    store = open_ingest_store(settings)
    async with AsyncExitStack() as stack:
        stack.callback(store.close)
        account = FleetAccount.load_or_create(settings.data_dir)
        worker = IngestWorker(
            store,
            BrokerConnection(
                settings.broker_url, account.username, account.password, settings.mqtt_ca
            ),
            client_id=client_id,
            connections=settings.ingest_connections,
            shared_group=INGEST_GROUP,
            commit_threads=commit_threads(settings),
        )
        task = asyncio.create_task(worker.run(), name="fleet-ingest")
        task.add_done_callback(_report_ingest_stopped)
        stack.push_async_callback(_cancel, task)
        yield task


def _report_ingest_stopped(task: asyncio.Task[None]) -> None:
    """Say at once, not at shutdown, that ingest failed: nothing is stored or acked now."""
    if task.cancelled() or task.exception() is None:
        return
    log.critical(
        "ingest stopped: no gateway data is stored or acknowledged until the fleet restarts",
        exc_info=task.exception(),
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
