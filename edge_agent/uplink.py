"""The uplink: store-and-forward of readings and events to the county fleet over MQTT.

Batches go out with QoS 1, events before the readings backlog; the watermark advances
only on the fleet's ack of its highest contiguous seq, and every (re)connection resends
from watermark + 1. It reconnects forever (``protocol.reconnect``: jittered backoff
between full sessions, cheap probes that bring it back within seconds of a broker's
return) and contains every failure of its own, so trouble on the link never reaches
polling, alarms or actuation; it never blocks the event loop on the network or the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal

import aiomqtt
from pydantic import ValidationError

from edge_agent.control_messages import UplinkReply, UplinkRequest
from edge_agent.enroll import (
    EnrollmentError,
    EnrollmentRefusedError,
    StoredEnrollment,
    broker_endpoint,
    complete_pending,
    enrollment_state,
    load_enrollment,
)
from edge_agent.health import AgentView, build_health, config_version, host_health
from edge_agent.store import LocalStore
from edge_agent.upload_progress import StreamProgress
from edge_agent.upload_source import UploadSource
from protocol import (
    Ack,
    Command,
    CommandResult,
    GatewayState,
    SiteSummary,
    Stream,
    Topic,
    gateway_topic,
)
from protocol.broker_url import parse_broker_url
from protocol.payloads import sendable_timestamp
from protocol.reconnect import Backoff, ReconnectTiming, ReconnectWait, tcp_probe
from site_schema.site_config import UplinkSettings

log = logging.getLogger(__name__)

#: aiomqtt warns on bursts of concurrent publishes; our own log says what matters.
MQTT_LOGGER = logging.getLogger("edge_agent.uplink.mqtt")
MQTT_LOGGER.setLevel(logging.ERROR)

#: How often the store is looked at for new rows when no commit woke the uplink (each
#: commit of the store does: ``LocalStore.on_commit``).
STORE_POLL_S = 2.0
#: Seconds to wait for the broker at connect and for each PUBACK.
MQTT_TIMEOUT_S = 10.0
#: MQTT keepalive: the broker publishes the Last Will after 1.5 of these of silence.
KEEPALIVE_S = 30
_TOPICS = {Stream.READINGS: Topic.DATA, Stream.EVENTS: Topic.EVENTS}

CommandHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
UplinkState = Literal[
    "starting", "enrolling", "refused", "not_enrolled", "connecting", "connected", "waiting"
]


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class Uplink:
    """One gateway's link to the fleet; ``run`` until cancelled, ``drain`` to empty the store.

    ``agent`` (absent when draining a stopped gateway's store) supplies the health report
    and ``commands`` handles fleet commands by name (e.g. ``ack_alarm``); ``documents``
    takes the signed documents of the retained ``config`` and ``release`` topics (each
    handler only queues the bytes: receiving never waits on an update).
    """

    def __init__(
        self,
        data_dir: Path,
        store: LocalStore,
        settings: UplinkSettings,
        agent_version: str,
        agent: AgentView | None = None,
        commands: Mapping[str, CommandHandler] | None = None,
        rng: random.Random | None = None,
        documents: Mapping[Topic, Callable[[bytes], None]] | None = None,
        reconnect: ReconnectTiming | None = None,
        site: SiteSummary | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.site = site
        self.store = store
        self.settings = settings
        self.agent_version = agent_version
        self.agent = agent
        self.commands = dict(commands or {})
        self.documents = dict(documents or {})
        rng = rng or random.Random()
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s, rng)
        self.reconnect = ReconnectWait(self.backoff, rng, reconnect)
        self.streams = {s: StreamProgress(s) for s in Stream}
        self.state: UplinkState = "starting"
        self.gateway_id: str | None = None
        self.broker_url: str | None = None
        self.connected_since: float | None = None
        self.last_ack_at: float | None = None
        self.last_health_at: float | None = None
        self.last_error: str | None = None
        self.counters: Counter[str] = Counter()
        self._wake = asyncio.Event()
        store.on_commit(self._wake.set)
        self._failing = False
        self._config_version: str | None = None

    # --- public surface ----------------------------------------------------------------------

    async def run(self) -> None:
        """Upload until cancelled; returns early only when there is no usable enrollment.

        No failure of the uplink leaves this method: it is logged and the uplink starts
        over after a backoff, so the agent's other tasks never see it.
        """
        while True:
            try:
                enrollment = await self._enrollment()
                if enrollment is None:
                    return
                await self._serve(enrollment, drain=False)
            except Exception as exc:
                self._failure(exc)
                await asyncio.sleep(self.backoff.next())

    async def drain(self) -> None:
        """Upload until everything in the store is acknowledged, then return."""
        enrollment = await self._enrollment()
        if enrollment is None:
            msg = f"this gateway is not enrolled ({self.last_error or 'no enrollment'})"
            raise EnrollmentError(msg)
        await self._serve(enrollment, drain=True)

    def status(self) -> dict[str, Any]:
        """The uplink's state for ``edge uplink status`` (JSON-ready)."""
        return {
            "state": self.state,
            "gateway_id": self.gateway_id,
            "broker": self.broker_url,
            "connected_since": self.connected_since,
            "last_ack_at": self.last_ack_at,
            "last_health_at": self.last_health_at,
            "last_error": self.last_error,
            "counters": dict(self.counters),
            "reconnect": {"probes": self.reconnect.probes, "returns": self.reconnect.returns},
            "streams": {
                s.value: {
                    "acked": p.acked,
                    "sent": p.sent_max,
                    "inflight": len(p.inflight),
                    "batches": p.batches,
                    "rows": p.rows,
                }
                for s, p in self.streams.items()
            },
        }

    async def control(self, _request: UplinkRequest) -> UplinkReply:
        """Control-socket handler: the status with ``ok``."""
        return UplinkReply.model_validate({"ok": True, **self.status()})

    # --- enrollment ----------------------------------------------------------------------------

    async def _enrollment(self) -> StoredEnrollment | None:
        while True:
            state = await asyncio.to_thread(enrollment_state, self.data_dir)
            if state == "enrolled":
                return await asyncio.to_thread(load_enrollment, self.data_dir)
            if state in ("none", "refused"):
                self.state = "not_enrolled" if state == "none" else "refused"
                return None
            self.state = "enrolling"
            try:
                stored = await asyncio.to_thread(
                    complete_pending, self.data_dir, self.agent_version
                )
            except EnrollmentRefusedError as exc:
                self.last_error = str(exc)
                self.state = "refused"
                log.error("offline enrollment refused; the uplink stays off: %s", exc)
                return None
            except EnrollmentError as exc:
                self._failure(exc)
                await asyncio.sleep(self.backoff.next())
                continue
            log.warning(
                "enrolled as %s (site %s) from the offline bundle",
                stored.gateway_id,
                stored.site_id,
            )
            return stored

    # --- connection ------------------------------------------------------------------------------

    async def _serve(self, enrollment: StoredEnrollment, *, drain: bool) -> None:
        self.gateway_id = enrollment.gateway_id
        self.broker_url = enrollment.broker_url
        if self.agent is not None and self.agent.site.site_id != enrollment.site_id:
            log.warning(
                "the site file says site %s but this gateway was enrolled for site %s",
                self.agent.site.site_id,
                enrollment.site_id,
            )
        source = UploadSource(
            self.store.path,
            enrollment.gateway_id,
            {
                Stream.READINGS: self.settings.batch_rows,
                Stream.EVENTS: self.settings.event_batch_rows,
            },
        )
        _scheme, host, port = parse_broker_url(enrollment.broker_url)
        probe = partial(tcp_probe, host, port, self.reconnect.timing.probe_timeout_s)
        try:
            while True:
                self.state = "connecting"
                try:
                    await self._session(enrollment, source, drain=drain)
                    return  # only a drain ends by itself
                except Exception as exc:
                    self._failure(_leaf(exc))
                self.connected_since = None
                self.state = "waiting"
                await self.reconnect.wait(probe)
        finally:
            await asyncio.to_thread(source.close)

    def _failure(self, exc: BaseException) -> None:
        """Log the first failure at ERROR and repeats at DEBUG until the next success."""
        text = f"{type(exc).__name__}: {exc}"
        self.last_error = text
        self.counters["failures"] += 1
        expected = isinstance(exc, aiomqtt.MqttError | OSError | EnrollmentError | TimeoutError)
        if self._failing:
            log.debug("uplink still failing: %s", text)
        elif expected:
            log.error("uplink to %s failed, retrying with backoff: %s", self.broker_url, text)
        else:
            log.error("uplink failed, retrying with backoff", exc_info=exc)
        self._failing = True

    def _client(self, enrollment: StoredEnrollment) -> aiomqtt.Client:
        host, port, tls = broker_endpoint(enrollment)
        offline = GatewayState(state="offline", agent_version=self.agent_version)
        return aiomqtt.Client(
            host,
            port,
            username=enrollment.mqtt.username,
            password=enrollment.mqtt.password,
            identifier=enrollment.mqtt.client_id,
            # A persistent session: acks and commands sent while the link is down wait
            # in the broker instead of being lost.
            clean_session=False,
            will=aiomqtt.Will(
                self._topic(Topic.STATE), offline.model_dump_json(), qos=1, retain=True
            ),
            logger=MQTT_LOGGER,
            tls_context=tls,
            timeout=MQTT_TIMEOUT_S,
            keepalive=KEEPALIVE_S,
        )

    def _topic(self, kind: Topic) -> str:
        assert self.gateway_id is not None
        return gateway_topic(self.gateway_id, kind)

    async def _session(
        self, enrollment: StoredEnrollment, source: UploadSource, *, drain: bool
    ) -> None:
        marks = await source.watermarks()
        async with self._client(enrollment) as client:
            await client.subscribe(self._topic(Topic.ACK), qos=1)
            await client.subscribe(self._topic(Topic.CMD), qos=1)
            for kind in self.documents:
                await client.subscribe(self._topic(kind), qos=1)
            online = GatewayState(
                state="online",
                ts=sendable_timestamp(time.time()),
                agent_version=self.agent_version,
                site=self.site,
            )
            await client.publish(
                self._topic(Topic.STATE), online.model_dump_json(), qos=1, retain=True
            )
            self._connected()
            now = time.monotonic()
            for stream, progress in self.streams.items():
                progress.acked = max(progress.acked, marks[stream])
                progress.sent_max = max(progress.sent_max, progress.acked)
                progress.restart(now)
            try:
                async with asyncio.TaskGroup() as group:
                    receive = group.create_task(self._receive(client), name="uplink-receive")
                    send = group.create_task(self._send(client, source, drain=drain))
                    if self.agent is not None:
                        group.create_task(self._health(client, source), name="uplink-health")
                    if drain:
                        await send
                        receive.cancel()
            except asyncio.CancelledError:
                await self._say_offline(client)
                raise
            await self._say_offline(client)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Publish the offline state before a clean disconnect (which sends no Last Will)."""
        offline = GatewayState(
            state="offline", ts=sendable_timestamp(time.time()), agent_version=self.agent_version
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                client.publish(
                    self._topic(Topic.STATE), offline.model_dump_json(), qos=1, retain=True
                ),
                2.0,
            )

    def _connected(self) -> None:
        if self._failing:
            log.warning("uplink to %s is back after %s", self.broker_url, self.last_error)
        else:
            log.info("uplink connected to %s as %s", self.broker_url, self.gateway_id)
        self._failing = False
        self.backoff.reset()
        self.state = "connected"
        self.connected_since = time.time()
        self.counters["connects"] += 1

    # --- receiving -------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        ack_topic = self._topic(Topic.ACK)
        cmd_topic = self._topic(Topic.CMD)
        document_topics = [(self._topic(kind), handler) for kind, handler in self.documents.items()]
        async for message in client.messages:
            raw = message.payload
            payload = raw if isinstance(raw, bytes) else str(raw or "").encode()
            if message.topic.matches(ack_topic):
                await self._on_ack(payload)
            elif message.topic.matches(cmd_topic):
                await self._on_command(client, payload)
            else:
                for topic, handler in document_topics:
                    if message.topic.matches(topic) and payload:
                        handler(payload)

    async def _on_ack(self, payload: bytes) -> None:
        try:
            ack = Ack.model_validate_json(payload)
        except ValidationError as exc:
            self.counters["bad_acks"] += 1
            log.warning("ignoring a malformed ack: %s", exc.errors()[0]["msg"])
            return
        progress = self.streams[ack.stream]
        if progress.acknowledge(ack.seq, time.monotonic()):
            await self.store.set_watermark(ack.stream.value, progress.acked)
            self.last_ack_at = time.time()
            self._wake.set()

    async def _on_command(self, client: aiomqtt.Client, payload: bytes) -> None:
        try:
            command = Command.model_validate_json(payload)
        except ValidationError as exc:
            self.counters["bad_commands"] += 1
            log.warning("ignoring a malformed command: %s", exc.errors()[0]["msg"])
            return
        handler = self.commands.get(command.name)
        if handler is None:
            known = ", ".join(sorted(self.commands)) or "none"
            ok, detail = False, f"unknown command {command.name!r} (this gateway knows: {known})"
        else:
            try:
                reply = await handler(dict(command.args))
            except Exception as exc:
                log.exception("command %s (%s) failed", command.name, command.id)
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            ok = bool(reply.get("ok"))
            detail = str(
                reply.get("error") or ", ".join(f"{k} {v}" for k, v in reply.items() if k != "ok")
            )
        log.warning("fleet command %s %s: %s", command.name, "done" if ok else "failed", detail)
        result = CommandResult(
            id=command.id, ok=ok, detail=detail[:1000], ts=sendable_timestamp(time.time())
        )
        await client.publish(self._topic(Topic.CMD_RESULT), result.model_dump_json(), qos=1)

    # --- sending ---------------------------------------------------------------------------------

    async def _send(self, client: aiomqtt.Client, source: UploadSource, *, drain: bool) -> None:
        events = self.streams[Stream.EVENTS]
        readings = self.streams[Stream.READINGS]
        while True:
            self._wake.clear()
            published = await self._fill(client, source, events)
            # Alarm events reach the fleet before any more of the readings backlog, unless
            # the fleet has stopped acknowledging events (then readings must not wait).
            if not (events.inflight and not events.stalled):
                published += await self._fill(client, source, readings)
            now = time.monotonic()
            for progress in (events, readings):
                if progress.inflight and now - progress.progress_at > self.settings.ack_timeout_s:
                    log.info(
                        "no %s ack for %.0f s; resending from seq %d",
                        progress.stream.value,
                        self.settings.ack_timeout_s,
                        progress.acked + 1,
                    )
                    progress.restart(now)
                    progress.stalled = True
                    self.counters["resends"] += 1
                    published += 1
            if drain and not published and await self._drained(source):
                return
            if published:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), STORE_POLL_S)

    async def _fill(
        self, client: aiomqtt.Client, source: UploadSource, progress: StreamProgress
    ) -> int:
        published = 0
        topic = self._topic(_TOPICS[progress.stream])
        while len(progress.inflight) < self.settings.max_inflight:
            batch = await source.batch(progress.stream, progress.next_after)
            if batch is None:
                break
            await client.publish(topic, batch.payload, qos=1)
            progress.sent(batch.last_seq, batch.rows, time.monotonic())
            published += 1
        return published

    async def _drained(self, source: UploadSource) -> bool:
        last = await source.last_seqs()
        return all(self.streams[s].acked >= last[s] for s in Stream)

    # --- health ----------------------------------------------------------------------------------

    async def _health(self, client: aiomqtt.Client, source: UploadSource) -> None:
        agent = self.agent
        assert agent is not None
        assert self.gateway_id is not None
        if self._config_version is None:
            self._config_version = await asyncio.to_thread(config_version, agent.site)
        while True:
            host = await asyncio.to_thread(host_health, self.data_dir)
            last = await source.last_seqs()
            backlog = {s: last[s] - self.streams[s].acked for s in Stream}
            health = build_health(
                agent, self.gateway_id, host, backlog, self.agent_version, self._config_version
            )
            await client.publish(
                self._topic(Topic.HEALTH), health.model_dump_json(), qos=1, retain=True
            )
            self.last_health_at = time.time()
            await asyncio.sleep(self.settings.health_interval_s)
