"""MQTT ingest: validate gateway messages, commit them in groups, then ack what is stored.

The event loop only receives and queues raw payloads. A decoding thread takes them in
groups and validates a group while the previous one commits; a writer thread commits each
group in one transaction (``commit_threads`` writers commit groups side by side, for a
store whose commits may overlap: PostgreSQL's take a lock per gateway); an ack is
published only after its batch's transaction has committed. Validating outside the write
lock lets another ingest process (``fleet ingest``) commit meanwhile, and keeps the event
loop from competing with a commit for the GIL, which sqlite3 takes back after every
statement (a busy event loop would hold it up to the switch interval each time: ``fleet
serve`` and ``fleet ingest`` shorten it for their whole process, this module leaves it
alone). A bad message is counted and logged (first time per gateway and reason at
WARNING) and never stops ingest. Every task it starts (connections, the commit loop, each
group's commit with its round of acks, the outbox) lives in one TaskGroup: none outlives
the worker, and a failed round of acks is logged with its traceback and counted, never
lost. Queued commands and signed documents go out through ``fleet.outbox`` on the
worker's connection; this module never publishes them itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

import aiomqtt
from pydantic import ValidationError

from fleet.batch_decoder import decode_data_batch
from fleet.mqtt_connection import BrokerConnection
from fleet.outbox import OutboxPublisher
from fleet.repository import CommitResult, IngestStore, Received, Uplink
from protocol import (
    MAX_PAYLOAD_BYTES,
    Ack,
    CommandResult,
    DataBatch,
    EventBatch,
    GatewayState,
    Health,
    Stream,
    Topic,
    gateway_topic,
    parse_topic,
    subscription,
)
from protocol.reconnect import Backoff, ReconnectTiming, ReconnectWait, tcp_probe

log = logging.getLogger(__name__)

UPLINK: dict[Topic, type[Uplink]] = {
    Topic.DATA: DataBatch,
    Topic.EVENTS: EventBatch,
    Topic.HEALTH: Health,
    Topic.STATE: GatewayState,
    Topic.CMD_RESULT: CommandResult,
}
#: Most payload bytes one commit takes (about 50,000 readings); bigger groups gain little
#: and delay the first acks. A single larger message is still taken whole.
MAX_COMMIT_BYTES = 2 * 1024 * 1024
#: Backoff between full sessions of one ingest connection (``protocol.reconnect``).
RECONNECT_MIN_S = 1.0
RECONNECT_MAX_S = 30.0
#: Probe the broker's port twice a second while waiting; the fleet's few connections come
#: back at once when it answers again (no spread: they are not a county of gateways).
RECONNECT_TIMING = ReconnectTiming(probe_interval_s=0.5, return_spread_s=0.0, probe_timeout_s=1.0)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that was not stored, and why (``reason`` is a counter name)."""

    gateway_id: str | None
    reason: str
    detail: str


def decode(topic: str, payload: bytes, *, retained: bool, now: float) -> Received | Rejection:
    """Validate one uplink message against the topic it came on.

    Reasons: ``unknown_topic``, ``oversize``, ``malformed_json``, ``schema``,
    ``gateway_mismatch`` (the payload names another gateway than the topic).
    """
    parsed = parse_topic(topic)
    if parsed is None or parsed[1] not in UPLINK:
        return Rejection(None, "unknown_topic", f"not an uplink topic: {topic!r}")
    gateway_id, kind = parsed
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"{kind.value} payload of {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        return Rejection(gateway_id, "oversize", detail)
    # Most messages are readings batches: the fast decoder takes the valid ones, and
    # pydantic (the protocol's definition, and its error messages) everything else.
    message: Uplink | None = decode_data_batch(payload) if kind is Topic.DATA else None
    try:
        if message is None:
            message = UPLINK[kind].model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "payload"
        if first["type"] == "json_invalid":
            return Rejection(gateway_id, "malformed_json", f"{kind.value}: {first['msg']}")
        if first["type"] == "too_long" and where == "rows":
            return Rejection(gateway_id, "oversize", f"{kind.value}: rows: {first['msg']}")
        detail = f"{kind.value}: {where}: {first['msg']} ({exc.error_count()} errors)"
        return Rejection(gateway_id, "schema", detail)
    claimed = getattr(message, "gateway_id", gateway_id)
    if claimed != gateway_id:
        detail = f"{kind.value} on {gateway_id}'s topic claims gateway {claimed!r}"
        return Rejection(gateway_id, "gateway_mismatch", detail)
    return Received(gateway_id, now, message, retained)


def group_size(payload_sizes: Iterable[int]) -> int:
    """How many of the queued messages, with these payload sizes, the next commit takes."""
    taken = total = 0
    for size in payload_sizes:
        total += size
        if taken and total > MAX_COMMIT_BYTES:
            break
        taken += 1
    return taken


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An uplink message as it came off the wire, not yet validated."""

    topic: str
    payload: bytes
    retained: bool
    received_at: float


@dataclass(slots=True)
class IngestStats:
    """Counters since start; ``rejected`` by reason."""

    messages: int = 0
    batches: int = 0
    rows_stored: int = 0
    rows_duplicate: int = 0
    commits: int = 0
    acks_sent: int = 0
    acks_failed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class IngestWorker:
    """Subscribes to every gateway's uplink topics and stores what arrives exactly once.

    With ``shared_group`` every connection subscribes as a member of that shared
    subscription (``$share/{group}/...``, mosquitto only): the broker hands each message to
    one member, so several connections and several ``fleet ingest`` processes split the
    load. ``client_id`` must be unique per process. Run with ``await worker.run()``;
    ``ready`` is set once every connection has subscribed. ``outbox`` delivers queued
    commands and documents on the first connected client. ``rng`` jitters reconnections.
    ``commit_threads`` groups may commit at once (1 unless ``repository.commit`` is safe
    to call from several threads and its commits may overlap); each commit's acks go out
    as soon as it has committed.
    """

    def __init__(
        self,
        repository: IngestStore,
        broker: BrokerConnection,
        *,
        client_id: str = "hazardwatch-fleet-ingest",
        connections: int = 1,
        shared_group: str | None = None,
        rng: random.Random | None = None,
        commit_threads: int = 1,
    ) -> None:
        if commit_threads < 1:
            raise ValueError(f"commit_threads must be at least 1, not {commit_threads}")
        self.repository = repository
        self.broker = broker
        self.client_id = client_id
        self.connections = connections
        self.shared_group = shared_group
        self.stats = IngestStats()
        self.ready = asyncio.Event()
        self._clients: list[aiomqtt.Client | None] = [None] * connections
        self._subscribed: set[int] = set()
        self._pending: list[RawMessage] = []
        self._has_pending = asyncio.Event()
        self.commit_threads = commit_threads
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-decode")
        self._writer = ThreadPoolExecutor(
            max_workers=commit_threads, thread_name_prefix="fleet-commit"
        )
        self._logged: set[tuple[str | None, str]] = set()
        self._commit_failing = False
        self._rng = rng or random.Random()
        self.outbox = OutboxPublisher(repository, self._client)

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled: the connections, the commit loop, its acks and the outbox."""
        try:
            async with asyncio.TaskGroup() as group:
                # Task names start with the client id: whose task it is shows in a dump.
                for index in range(self.connections):
                    name = f"{self.client_id}-{index}"
                    group.create_task(self._connection(index), name=name)
                group.create_task(self._commit_loop(group), name=f"{self.client_id} commit")
                group.create_task(self.outbox.run(), name=f"{self.client_id} outbox")
        finally:
            self._decoder.shutdown(wait=True)
            self._writer.shutdown(wait=True)

    def wake_outbox(self) -> None:
        """Deliver queued commands and documents now; safe to call from any thread."""
        self.outbox.wake()

    # --- receiving --------------------------------------------------------------------------

    async def _connection(self, index: int) -> None:
        identifier = f"{self.client_id}-{index}"
        backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S, self._rng)
        wait = ReconnectWait(backoff, self._rng, RECONNECT_TIMING)
        timing = RECONNECT_TIMING
        probe = partial(tcp_probe, self.broker.host, self.broker.port, timing.probe_timeout_s)
        while True:
            try:
                # A clean session: the gateways' stores are the buffer, not the broker. A
                # persistent member of a shared subscription would have the broker queue its
                # share while it is down; gateways resend whatever is not acked anyway.
                async with self.broker.client(identifier, clean_session=True) as client:
                    for kind in UPLINK:
                        await client.subscribe(subscription(kind, self.shared_group), qos=1)
                    self._clients[index] = client
                    self._subscribed.add(index)
                    if len(self._subscribed) == self.connections:
                        self.ready.set()
                    log.info("ingest connection %d subscribed at %s", index, self.broker.url)
                    backoff.reset()
                    async for message in client.messages:
                        try:
                            self._on_message(message)
                        except Exception:  # a bug must cost one message, not the ingest
                            log.exception("could not handle a message on %s", message.topic)
                            self.stats.rejected["internal_error"] += 1
            except aiomqtt.MqttError as exc:
                # The first failure after a working session at ERROR, its repeats quietly.
                level = logging.ERROR if backoff.attempt == 0 else logging.DEBUG
                log.log(level, "ingest connection %d to %s lost: %s", index, self.broker.url, exc)
            finally:
                self._clients[index] = None
            await wait.wait(probe)

    def _on_message(self, message: aiomqtt.Message) -> None:
        self.stats.messages += 1
        raw = message.payload
        payload = raw if isinstance(raw, bytes) else str(raw or "").encode()
        self._pending.append(RawMessage(str(message.topic), payload, message.retain, time.time()))
        self._has_pending.set()

    def _reject(self, gateway_id: str | None, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        key = (gateway_id, reason)
        level = logging.DEBUG if key in self._logged else logging.WARNING
        self._logged.add(key)
        log.log(level, "rejected message from %s (%s): %s", gateway_id or "?", reason, detail)

    # --- committing ---------------------------------------------------------------------------

    def _take_group(self) -> list[RawMessage]:
        taken = group_size(len(item.payload) for item in self._pending)
        group, self._pending = self._pending[:taken], self._pending[taken:]
        if not self._pending:
            self._has_pending.clear()
        return group

    @staticmethod
    def _decode_group(group: Sequence[RawMessage]) -> tuple[list[Received], list[Rejection]]:
        """Validate a group (on the decoding thread, while the previous group commits)."""
        received: list[Received] = []
        rejected: list[Rejection] = []
        for raw in group:
            try:
                decoded = decode(raw.topic, raw.payload, retained=raw.retained, now=raw.received_at)
            except Exception:  # a bug must cost one message, not the group or the ingest
                log.exception("could not validate a message on %s", raw.topic)
                decoded = Rejection(None, "internal_error", f"validation failed on {raw.topic}")
            if isinstance(decoded, Rejection):
                rejected.append(decoded)
            else:
                received.append(decoded)
        return received, rejected

    async def _commit_loop(self, tasks: asyncio.TaskGroup) -> None:
        """Decode group after group; each commits, then sends its acks, in a task of ``tasks``.

        At most ``commit_threads`` groups commit at once; the next group is decoded
        meanwhile, and waits for a free writer.
        """
        loop = asyncio.get_running_loop()
        writers = asyncio.Semaphore(self.commit_threads)
        while True:
            await self._has_pending.wait()
            raw = self._take_group()
            group, rejected = await loop.run_in_executor(self._decoder, self._decode_group, raw)
            for rejection in rejected:
                self._reject(rejection.gateway_id, rejection.reason, rejection.detail)
            if not group:
                continue
            await writers.acquire()
            tasks.create_task(self._commit(group, writers), name=f"{self.client_id} commit")

    async def _commit(self, group: list[Received], writers: asyncio.Semaphore) -> None:
        """Commit one group on a writer thread, then publish its acks. Never raises."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._writer, self.repository.commit, group)
        except Exception:
            # Nothing is acked, so every gateway resends these; ingest goes on. The first
            # failure is logged with its traceback, repeats quietly until a commit works.
            level = logging.DEBUG if self._commit_failing else logging.ERROR
            log.log(level, "could not commit %d messages", len(group), exc_info=True)
            self._commit_failing = True
            self.stats.rejected["storage_error"] += len(group)
            return
        finally:
            writers.release()
        if self._commit_failing:
            log.warning("commits work again")
            self._commit_failing = False
        self._account(group, result)
        if result.acks:
            await self._send_acks(result.acks)

    def _account(self, group: Sequence[Received], result: CommitResult) -> None:
        self.stats.commits += 1
        self.stats.batches += sum(isinstance(r.payload, DataBatch | EventBatch) for r in group)
        self.stats.rows_stored += result.rows_stored
        self.stats.rows_duplicate += result.rows_duplicate
        for gateway_id, reason, detail in result.rejected:
            self._reject(gateway_id, reason, detail)

    def _client(self) -> aiomqtt.Client | None:
        return next((c for c in self._clients if c is not None), None)

    async def _send_acks(self, acks: dict[tuple[str, Stream], int]) -> None:
        """Publish one commit's acks. Never raises: a failure costs acks, not the ingest.

        Gateways whose ack is lost resend after their ack timeout and are acked then.
        """
        try:
            await self._publish_acks(acks)
        except Exception:  # a bug: logged and counted, and the task group goes on
            log.exception("could not send %d acks; those gateways will resend", len(acks))
            self.stats.acks_failed += len(acks)

    async def _publish_acks(self, acks: dict[tuple[str, Stream], int]) -> None:
        client = self._client()
        if client is None:
            self.stats.acks_failed += len(acks)
            return
        # Every message is built before the first publish starts, so a bad one fails the
        # round before any publish is under way.
        messages = [
            (gateway_topic(gateway_id, Topic.ACK), Ack(stream=stream, seq=seq).model_dump_json())
            for (gateway_id, stream), seq in acks.items()
        ]
        results = await asyncio.gather(
            *(client.publish(topic, payload, qos=1) for topic, payload in messages),
            return_exceptions=True,
        )
        failed = sum(isinstance(r, BaseException) for r in results)
        self.stats.acks_sent += len(results) - failed
        self.stats.acks_failed += failed
        if failed:
            log.debug("%d acks not published; those gateways will resend", failed)
