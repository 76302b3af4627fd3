"""Starting and stopping the fleet's parts in order: storage, keys, broker, ingest.

Shared by ``fleet serve`` (inside the FastAPI lifespan) and ``fleet ingest`` (without
REST). On start the broker's access files are rewritten, so the fleet's own account and
every enrolled gateway can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from fleet.broker_files import FleetAccount
from fleet.embedded_broker import EmbeddedBroker
from fleet.enrollment import BrokerAddress, Enrollment
from fleet.ingest import IngestWorker
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import Repository
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


def open_repository(settings: FleetSettings) -> Repository:
    """The repository for ``settings`` (also used by the CLI's offline commands)."""
    return SQLiteRepository(
        settings.db_path,
        durable=settings.durable,
        hold_before_commit=armed("fleet.ingest.commit"),  # crash tests only
    )


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


@asynccontextmanager
async def run_fleet(
    settings: FleetSettings, *, client_id: str = "hazardwatch-fleet", as_worker: bool = False
) -> AsyncIterator[FleetService]:
    """Start everything ``settings`` asks for; stop it all (ingest first) on exit.

    ``client_id`` prefixes the ingest connections' MQTT client ids (unique per process).
    ``as_worker`` (``fleet ingest``) leaves the broker and its access files to ``fleet serve``.
    """
    repository = open_repository(settings)
    async with AsyncExitStack() as stack:
        stack.callback(repository.close)
        enrollment = open_enrollment(settings, repository)
        if not as_worker:
            enrollment.sync_broker()
        if settings.broker == "embedded" and not as_worker:
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
            )
            task = asyncio.create_task(worker.run(), name="fleet-ingest")
            task.add_done_callback(_report_ingest_stopped)
            stack.push_async_callback(_cancel, task)
        yield FleetService(settings, repository, enrollment, worker, task)


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
