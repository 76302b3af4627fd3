"""The command outbox: deliver what the fleet queued for gateways over ingest's connection.

Commands (``hw/v1/{id}/cmd``, e.g. ``ack_alarm``) and signed documents (configurations and
releases, retained so an offline gateway gets the last one when it returns) are queued in
the repository; this publisher claims them, publishes them and hands back whatever could
not be published, so it goes out on a later round. It wakes when told (``wake``, from any
thread) and every ``OUTBOX_POLL_S`` otherwise.

It never opens a broker connection of its own (it borrows one of the ingest worker's),
never reads, stores or acknowledges uplink messages, and never drops a claimed item on a
failed publish: every failure is released back to the queue. A claim carries an expiry: a
publisher killed between claim and publish leaves the command to the next (any process's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiomqtt

from fleet.repository import IngestStore, OutboxDocument
from fleet.worker_threads import in_thread
from protocol import Command, Topic, gateway_topic

log = logging.getLogger(__name__)

#: How often queued commands are looked for when nobody wakes the outbox.
OUTBOX_POLL_S = 5.0


class OutboxPublisher:
    """Publishes queued commands and signed documents; run with ``await outbox.run()``.

    ``client`` answers a connected client to publish on, or None while there is none (the
    queue then waits for the next round). ``commands_sent`` counts commands published.
    """

    def __init__(
        self,
        repository: IngestStore,
        client: Callable[[], aiomqtt.Client | None],
        *,
        poll_s: float = OUTBOX_POLL_S,
    ) -> None:
        self.repository = repository
        self.client = client
        self.poll_s = poll_s
        self.commands_sent = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Deliver queued commands and documents now; safe to call from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Deliver on every wake and every ``poll_s``, until cancelled."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)
                self._wake.clear()
                client = self.client()
                if client is None:
                    continue
                try:
                    await self._deliver_commands(client)
                    await self._deliver_documents(client)
                except Exception:
                    log.exception("could not deliver commands or documents; will try again")
        finally:
            self._loop = None

    async def _deliver_commands(self, client: aiomqtt.Client) -> None:
        claimed = await in_thread(self.repository.claim_commands, time.time())
        for queued in claimed:
            command = Command(
                id=queued.id,
                name=queued.name,
                args=queued.args,
                issued_at=queued.issued_at,
                issued_by=queued.issued_by,
            )
            try:
                await client.publish(
                    gateway_topic(queued.gateway_id, Topic.CMD),
                    command.model_dump_json(),
                    qos=1,
                )
            except aiomqtt.MqttError as exc:
                log.warning("could not deliver command %s, will retry: %s", queued.id, exc)
                await in_thread(self.repository.release_command, queued.id)
                continue
            self.commands_sent += 1
            # Until this is written the claim expires (COMMAND_CLAIM_S) and another
            # publisher sends it again: a kill just here is the window for a duplicate.
            await in_thread(self.repository.command_sent, queued.id)

    async def _deliver_documents(self, client: aiomqtt.Client) -> None:
        """Publish signed configs and releases, retained, so an offline gateway gets the last."""
        claimed = await in_thread(self.repository.ota.claim_documents, time.time())
        if not claimed:
            return
        results = await asyncio.gather(
            *(
                client.publish(
                    gateway_topic(doc.gateway_id, Topic(doc.kind.value)),
                    doc.document,
                    qos=1,
                    retain=True,
                )
                for doc in claimed
            ),
            return_exceptions=True,
        )
        published: list[OutboxDocument] = []
        failed: list[OutboxDocument] = []
        for doc, result in zip(claimed, results, strict=True):
            (failed if isinstance(result, Exception) else published).append(doc)
        if failed:
            log.warning("could not publish %d signed documents, will retry", len(failed))
        await in_thread(self.repository.ota.finish_documents, published, failed, time.time())
