"""The first packet a client sends to the embedded broker, read and judged before amqtt sees it.

amqtt parses any CONNECT as MQTT 3.1.1: an MQTT 5 CONNECT (which carries properties)
makes it read past the packet, wait for bytes that never come and end in a traceback.
Here the whole first packet is read within a deadline and a size limit, and anything but
a 3.1.1 CONNECT is refused cleanly. This module never accepts a client by itself: a
packet that passes is handed on, byte for byte, to amqtt's own checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

#: MQTT 3.1.1's protocol level, the only one amqtt 0.12 speaks.
MQTT_311_LEVEL = 4
#: Longer CONNECTs are refused: ours carry a short will (the offline state) and credentials.
MAX_CONNECT_BYTES = 64 * 1024
#: A client must send its whole CONNECT within this many seconds of opening the connection.
CONNECT_DEADLINE_S = 10.0
#: CONNACK with return code 0x01, "unacceptable protocol version" (MQTT 3.1.1, 3.2.2.3).
UNACCEPTABLE_PROTOCOL_CONNACK = bytes([0x20, 0x02, 0x00, 0x01])
_CONNECT = 0x10
_PROTOCOL_NAMES = (b"MQTT", b"MQIsdp")


class ConnectRefusedError(Exception):
    """The first packet is not an acceptable CONNECT; ``answer`` is what to send back, if any."""

    def __init__(self, reason: str, answer: bytes = b"") -> None:
        super().__init__(reason)
        self.answer = answer


@dataclass(frozen=True, slots=True)
class FirstPacket:
    """The raw bytes of a client's CONNECT, fixed header included."""

    raw: bytes


def judge_connect(header: int, body: bytes) -> None:
    """Raise ``ConnectRefusedError`` unless ``body`` is the variable header of a 3.1.1 CONNECT."""
    if header != _CONNECT:
        msg = f"first packet is of type {header >> 4}, not CONNECT"
        raise ConnectRefusedError(msg)
    if len(body) < 2:
        msg = "CONNECT too short to name a protocol"
        raise ConnectRefusedError(msg)
    name_length = int.from_bytes(body[:2], "big")
    name = body[2 : 2 + name_length]
    if len(body) < 3 + name_length or name not in _PROTOCOL_NAMES:
        msg = f"CONNECT names protocol {name[:16]!r}, not MQTT"
        raise ConnectRefusedError(msg)
    level = body[2 + name_length]
    if level != MQTT_311_LEVEL or name != b"MQTT":
        version = {3: "3.1", 5: "5"}.get(level, f"level {level}")
        msg = f"MQTT {version} CONNECT; this broker speaks MQTT 3.1.1 only"
        raise ConnectRefusedError(msg, UNACCEPTABLE_PROTOCOL_CONNACK)


async def read_first_packet(reader: asyncio.StreamReader) -> FirstPacket:
    """Read the client's first packet whole, within the deadline and size limit, and judge it."""
    async with asyncio.timeout(CONNECT_DEADLINE_S):
        header = (await reader.readexactly(1))[0]
        length_bytes = b""
        length = 0
        for shift in range(0, 28, 7):
            byte = (await reader.readexactly(1))[0]
            length_bytes += bytes([byte])
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        else:
            msg = "malformed remaining length"
            raise ConnectRefusedError(msg)
        if header == _CONNECT and length > MAX_CONNECT_BYTES:
            msg = f"CONNECT of {length} bytes exceeds {MAX_CONNECT_BYTES}"
            raise ConnectRefusedError(msg)
        # Judge what we have before waiting for a body a non-CONNECT may never send.
        if header != _CONNECT:
            judge_connect(header, b"")
        body = await reader.readexactly(length)
    judge_connect(header, body)
    return FirstPacket(bytes([header]) + length_bytes + body)
