"""SL 651-2014 multi-packet (M3) uploads: split a long body into SYN packets and back.

Each packet carries its count and number after SYN; all but the last end with ETB, the
last with ETX; only the first carries the serial (6.6.2.4), because the packets are
slices of one body. This module must never import anything of the project and raises
only ``Sl651Error`` subclasses.
"""

from __future__ import annotations

from protocol.sl651.body import Body, RawBody
from protocol.sl651.errors import BadFrameError, BadValueError
from protocol.sl651.frame import (
    MAX_BODY,
    PACKET_FIELD_SIZE,
    Control,
    Direction,
    Frame,
    Header,
    Packet,
    encode_frame,
)
from protocol.sl651.message import Message, decode_body, encode_body

MAX_PACKETS = 0xFFF


def split(header: Header, body: Body, slice_size: int) -> list[bytes]:
    """The frames of an M3 upload of ``body``, each carrying at most ``slice_size`` bytes."""
    if header.direction is not Direction.UP:
        raise BadValueError("an M3 upload goes up, from the station")
    if not 1 <= slice_size <= MAX_BODY - PACKET_FIELD_SIZE:
        raise BadValueError(f"slice size {slice_size} is outside 1..{MAX_BODY - PACKET_FIELD_SIZE}")
    data = encode_body(header, body)
    slices = [data[i : i + slice_size] for i in range(0, len(data), slice_size)] or [b""]
    if len(slices) > MAX_PACKETS:
        raise BadValueError(f"{len(slices)} packets exceed the 4095 an M3 upload numbers")
    count = len(slices)
    return [
        encode_frame(
            Frame(header, part, Control.ETX if n == count else Control.ETB, Packet(count, n))
        )
        for n, part in enumerate(slices, start=1)
    ]


class Reassembly:
    """Collects the packets of one M3 upload; ``add`` returns the message once complete.

    A packet sent again replaces the earlier copy (a resend after NAK). Packets of
    another station, function or count are refused: one ``Reassembly`` per upload.
    """

    def __init__(self) -> None:
        self.header: Header | None = None
        self.count = 0
        self.parts: dict[int, bytes] = {}

    def missing(self) -> list[int]:
        """Numbers of the packets not yet received (to NAK), in order."""
        return [n for n in range(1, self.count + 1) if n not in self.parts]

    def add(self, packet: Message) -> Message | None:
        """Take one decoded SYN packet; the whole message when it was the last missing."""
        number = packet.packet
        if number is None:
            raise BadFrameError("an M3 packet starts with SYN and carries its number")
        if packet.header.direction is not Direction.UP:
            raise BadFrameError("an M3 upload goes up, from the station")
        if self.header is None:
            self.header, self.count = packet.header, number.count
        elif packet.header != self.header or number.count != self.count:
            raise BadFrameError(
                f"packet {number.number}/{number.count} of {packet.header.station} "
                f"function {packet.header.function:02X} is not part of this upload"
            )
        if not isinstance(packet.body, RawBody):
            raise BadFrameError("an M3 packet's body is a raw slice (decode leaves it so)")
        self.parts[number.number] = packet.body.data
        if self.missing():
            return None
        data = b"".join(self.parts[n] for n in range(1, self.count + 1))
        return Message(self.header, decode_body(self.header, data, Control.ETX), Control.ETX)
