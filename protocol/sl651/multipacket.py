"""SL 651-2014 multi-packet (M3) uploads: split a long body into SYN packets and back.

Each packet carries its count and number after SYN; all but the last end with ETB, the
last with ETX; only the first carries the serial (6.6.2.4), because the packets are
slices of one body. This module must never import anything of the project and raises
only ``Sl651Error`` subclasses.
"""

from __future__ import annotations

from datetime import datetime

from protocol.sl651.body import Acknowledgement, Body, RawBody
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
    another station, function or count are refused: one ``Reassembly`` per upload. Once
    the last packet (ETX) has come, ``negative_acknowledge`` asks again for the first
    packet still missing (6.4.3, M3: the centre NAKs a missing packet by its number).
    """

    def __init__(self) -> None:
        self.header: Header | None = None
        self.count = 0
        self.parts: dict[int, bytes] = {}
        #: Whether the packet that ends the upload (ETX, the count-th) has come.
        self.ended = False

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
        self.ended = self.ended or packet.end is Control.ETX or number.number == self.count
        if self.missing():
            return None
        data = b"".join(self.parts[n] for n in range(1, self.count + 1))
        return Message(self.header, decode_body(self.header, data, Control.ETX), Control.ETX)

    def serial(self) -> int | None:
        """The upload's serial, once its first packet (the only one to carry it) has come."""
        first = self.parts.get(1)
        return int.from_bytes(first[:2], "big") if first is not None and len(first) >= 2 else None

    def negative_acknowledge(self, sent_at: datetime) -> Message | None:
        """The centre's NAK for the first missing packet, once the upload's end has come.

        None while the station is still sending (the end has not come) or once nothing is
        missing. The NAK carries the upload's serial, or 0 while its first packet (the one
        that carries it) is the one missing, and names the packet to send again.
        """
        missing = self.missing()
        if self.header is None or not self.ended or not missing:
            return None
        head = self.header
        header = Header(Direction.DOWN, head.centre, head.station, head.password, head.function)
        body = Acknowledgement(self.serial() or 0, sent_at)
        return Message(header, body, Control.NAK, Packet(self.count, missing[0]))
