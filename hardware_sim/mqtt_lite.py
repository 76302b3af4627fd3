"""A minimal MQTT 3.1.1 client on an asyncio protocol, so one process holds thousands.

A simulated gateway at scale needs only CONNECT, SUBSCRIBE, PUBLISH at QoS 1 both ways
(PUBACK), PINGREQ and DISCONNECT. ``aiomqtt`` (paho underneath) costs tens of kilobytes
and a task per client; this costs one transport and a few small objects, so the scale
benchmark can keep 10,000 gateways connected to one broker from a few processes.

It is a test double of the gateway's uplink connection for benches: never imported by
the production packages, never used where ``aiomqtt`` fits (the edge agent, the fleet,
``hardware_sim.simgateway``). It does not retry, queue offline or keep session state: a
lost connection is reported through ``closed`` and left to the caller. It never logs a
password.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

#: What a CONNACK's return code means (MQTT 3.1.1, 3.2.2.3).
REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MqttLiteError(Exception):
    """The broker refused or dropped the connection, or sent what this client cannot read."""


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    """CONNECT with a clean session, user name and password."""
    flags = 0x80 | 0x40 | 0x02
    head = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return _packet(CONNECT, head + _string(client_id) + _string(username) + _string(password))


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH at QoS 1."""
    return _packet(PUBLISH | 0x02, _string(topic) + struct.pack("!H", packet_id) + payload)


#: Called with (topic, payload) for every message the broker delivers.
OnMessage = Callable[[str, bytes], None]


class LiteClient(asyncio.Protocol):
    """One MQTT connection. ``await LiteClient.connect(...)``, then subscribe and publish.

    ``on_message`` runs in the event loop for each delivered message (acknowledged at
    QoS 1 before it runs). ``closed`` is set when the connection ends, by either side.
    ``last_sent`` is the loop time of the last packet sent, for keep-alive pings.
    """

    def __init__(self, on_message: OnMessage) -> None:
        self.on_message = on_message
        self.closed = asyncio.Event()
        self.last_sent = 0.0
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._next_id = 0
        self._waiting: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        client_id: str,
        username: str,
        password: str,
        on_message: OnMessage,
        keepalive: int = 60,
        timeout: float = 30.0,  # noqa: ASYNC109 - one bound for TCP connect and CONNACK
    ) -> LiteClient:
        """Open the connection and wait for the broker's CONNACK; raises if refused."""
        loop = asyncio.get_running_loop()
        _transport, client = await asyncio.wait_for(
            loop.create_connection(lambda: cls(on_message), host, port), timeout
        )
        answer = client._expect(CONNACK, 0)
        client._send(connect_packet(client_id, username, password, keepalive))
        body = await asyncio.wait_for(answer, timeout)
        if body[1] != 0:
            client.close()
            reason = REFUSALS.get(body[1], f"code {body[1]}")
            raise MqttLiteError(f"{client_id}: connection refused: {reason}")
        return client

    # --- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this)."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever waits for an answer and set ``closed`` (asyncio calls this)."""
        self._transport = None
        self.closed.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(MqttLiteError(f"connection lost: {exc or 'closed'}"))
        self._waiting.clear()

    def data_received(self, data: bytes) -> None:
        """Handle every whole packet received so far (asyncio calls this)."""
        self._buffer += data
        while True:
            packet = self._take_packet()
            if packet is None:
                return
            self._handle(*packet)

    # --- sending ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the connection is open."""
        return self._transport is not None

    def _send(self, data: bytes) -> None:
        if self._transport is None:
            raise MqttLiteError("not connected")
        self._transport.write(data)
        self.last_sent = self._loop.time()

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    def _expect(self, kind: int, packet_id: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[(kind, packet_id)] = future
        return future

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK; raises if the broker refused the filter."""
        packet_id = self._packet_id()
        answer = self._expect(SUBACK, packet_id)
        body = struct.pack("!H", packet_id) + _string(topic_filter) + bytes([qos])
        self._send(_packet(SUBSCRIBE, body))
        granted = await answer
        if granted[2] == 0x80:
            raise MqttLiteError(f"subscription to {topic_filter!r} refused")

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        packet_id = self._packet_id()
        answer = self._expect(PUBACK, packet_id)
        self._send(publish_packet(topic, payload, packet_id))
        await answer

    def ping(self) -> None:
        """Send PINGREQ (the answer is read and dropped)."""
        self._send(bytes([PINGREQ, 0]))

    def close(self) -> None:
        """Send DISCONNECT and close the transport."""
        if self._transport is not None:
            self._transport.write(bytes([DISCONNECT, 0]))
            self._transport.close()

    # --- receiving --------------------------------------------------------------------------

    def _take_packet(self) -> tuple[int, bytes] | None:
        buffer = self._buffer
        length = shift = 0
        index = 1
        while True:
            if index >= len(buffer):
                return None
            byte = buffer[index]
            length += (byte & 0x7F) << shift
            index += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(buffer) < index + length:
            return None
        first = buffer[0]
        body = bytes(buffer[index : index + length])
        del buffer[: index + length]
        return first, body

    def _handle(self, first: int, body: bytes) -> None:
        kind = first & 0xF0
        if kind == PUBLISH:
            self._deliver(first, body)
        elif kind in (PUBACK, SUBACK):
            (packet_id,) = struct.unpack_from("!H", body)
            future = self._waiting.pop((kind, packet_id), None)
            if future is not None and not future.done():
                future.set_result(body)
        elif kind == CONNACK:
            future = self._waiting.pop((CONNACK, 0), None)
            if future is not None and not future.done():
                future.set_result(body)
        elif kind != PINGRESP and self._transport is not None:
            self._transport.close()  # a packet a client never gets: not an MQTT broker

    def _deliver(self, first: int, body: bytes) -> None:
        (topic_length,) = struct.unpack_from("!H", body)
        topic = body[2 : 2 + topic_length].decode()
        offset = 2 + topic_length
        qos = (first >> 1) & 0x03
        if qos:
            (packet_id,) = struct.unpack_from("!H", body, offset)
            offset += 2
            self._send(bytes([PUBACK, 2]) + struct.pack("!H", packet_id))
        self.on_message(topic, body[offset:])
