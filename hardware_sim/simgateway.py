"""A simulated gateway uplink speaking protocol v1 with aiomqtt: for tests and the benchmark.

It enrolls like ``edge enroll`` (Ed25519 key, signed request) and uploads pre-encoded
batches following the store-and-forward rules: at most ``window`` unacknowledged batches,
watermark advanced only by acks, resend from watermark + 1 when acks stop. The real
uplink is the edge agent's; this one keeps no store.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import aiomqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.mqtt_connection import BrokerConnection
from protocol import (
    ACK_TIMEOUT_S,
    MAX_INFLIGHT_BATCHES,
    Ack,
    DataBatch,
    EnrollmentRequest,
    EventBatch,
    GatewayState,
    Stream,
    Topic,
    enrollment_message,
    gateway_topic,
)


def enrollment_request(token: str, hostname: str | None = None) -> EnrollmentRequest:
    """A signed enrollment request for ``token`` with a fresh Ed25519 key pair."""
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public_key = base64.b64encode(raw).decode()
    signature = base64.b64encode(key.sign(enrollment_message(token, public_key))).decode()
    return EnrollmentRequest(
        token=token, public_key=public_key, signature=signature, hostname=hostname
    )


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch ready to publish: its seq range and JSON bytes."""

    first_seq: int
    last_seq: int
    payload: bytes

    @classmethod
    def of(cls, batch: DataBatch | EventBatch) -> EncodedBatch:
        """Encode a batch model."""
        return cls(batch.first_seq, batch.last_seq, batch.model_dump_json().encode())


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if it carried on.

    On Python 3.11 ``asyncio.wait_for`` (inside aiomqtt's publish, and in ``upload``) can
    swallow a cancellation that races with its result; one ``cancel()`` is then lost and
    the task would wait for its next message for ever.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        task.result()


class SimulatedGateway:
    """One gateway's MQTT session: publishes uplink messages and follows acks.

    Use as an async context manager; ``acked[stream]`` is the fleet's last ack.
    """

    def __init__(
        self,
        gateway_id: str,
        broker: BrokerConnection,
        *,
        ack_timeout: float = ACK_TIMEOUT_S,
        window: int = MAX_INFLIGHT_BATCHES,
    ) -> None:
        self.gateway_id = gateway_id
        self.broker = broker
        self.ack_timeout = ack_timeout
        self.window = window
        self.acked: dict[Stream, int] = dict.fromkeys(Stream, 0)
        self.commands: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        self.resends = 0
        self._ack_changed = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def client(self) -> aiomqtt.Client:
        """The connected client."""
        if self._client is None:
            msg = "not connected"
            raise RuntimeError(msg)
        return self._client

    async def __aenter__(self) -> SimulatedGateway:
        will = aiomqtt.Will(
            gateway_topic(self.gateway_id, Topic.STATE),
            GatewayState(state="offline").model_dump_json(),
            qos=1,
            retain=True,
        )
        client = self.broker.client(self.gateway_id, will=will)
        await client.__aenter__()
        self._client = client
        try:
            await client.subscribe(gateway_topic(self.gateway_id, Topic.ACK), qos=1)
            await client.subscribe(gateway_topic(self.gateway_id, Topic.CMD), qos=1)
        except BaseException:
            await client.__aexit__(None, None, None)
            raise
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await self._client.__aexit__(exc_type, exc, tb)
            self._client = None

    async def _read(self) -> None:
        ack_topic = gateway_topic(self.gateway_id, Topic.ACK)
        async for message in self.client.messages:
            if str(message.topic) != ack_topic:
                await self.commands.put(message)
                continue
            raw = message.payload
            ack = Ack.model_validate_json(raw if isinstance(raw, bytes) else str(raw))
            if ack.seq > self.acked[ack.stream]:
                self.acked[ack.stream] = ack.seq
                self._ack_changed.set()

    async def publish(self, kind: Topic, payload: bytes | str, *, retain: bool = False) -> None:
        """Publish one message on this gateway's ``kind`` topic with QoS 1."""
        await self.client.publish(
            gateway_topic(self.gateway_id, kind), payload, qos=1, retain=retain
        )

    async def wait_acked(self, stream: Stream, seq: int) -> None:
        """Wait until the fleet acked ``stream`` through ``seq`` (bound it with a timeout)."""
        while self.acked[stream] < seq:
            self._ack_changed.clear()
            await self._ack_changed.wait()

    async def upload(
        self,
        batches: Sequence[EncodedBatch],
        stream: Stream = Stream.READINGS,
        *,
        window_sent: asyncio.Event | None = None,
    ) -> None:
        """Publish ``batches`` (in seq order) until the fleet acked the last one.

        Keeps at most ``window`` batches beyond the watermark in flight; when no ack moves
        for ``ack_timeout``, starts again from the first batch beyond the watermark.
        ``window_sent`` is set once the first window is published (the broker has it).
        """
        if not batches:
            if window_sent is not None:
                window_sent.set()
            return
        kind = Topic.DATA if stream is Stream.READINGS else Topic.EVENTS
        final = batches[-1].last_seq
        lowest = 0  # first batch not yet acknowledged in full
        next_index = 0
        while self.acked[stream] < final:
            watermark = self.acked[stream]
            while batches[lowest].last_seq <= watermark:
                lowest += 1
            next_index = max(next_index, lowest)
            while next_index < len(batches) and next_index - lowest < self.window:
                await self.publish(kind, batches[next_index].payload)
                next_index += 1
            if window_sent is not None:
                window_sent.set()
            self._ack_changed.clear()
            if self.acked[stream] != watermark:
                continue
            try:
                await asyncio.wait_for(self._ack_changed.wait(), self.ack_timeout)
            except TimeoutError:
                # Resend from watermark + 1: the fleet ignores what it already has.
                next_index = lowest
                self.resends += 1
