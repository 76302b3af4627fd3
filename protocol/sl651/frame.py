"""SL 651-2014 HEX/BCD frames (Tables 20-23): header, STX/SYN, body bytes, end, CRC.

A ``Frame`` is the transport envelope with its body as raw bytes; ``protocol.sl651.body``
gives the body its meaning. Up (station -> centre) and down (centre -> station) frames
order the two addresses differently and end with different control characters. This
module must never import anything of the project, never interpret a body, and raise only
``Sl651Error`` subclasses on any input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocol.sl651.errors import (
    BadFrameError,
    BadValueError,
    CrcError,
    LengthError,
    TruncatedError,
)
from protocol.sl651.wire import crc16

START = b"\x7e\x7e"
#: What starts a frame in ASCII mode, which this codec refuses by name (see ``frame_size``).
SOH = b"\x01"
STX = 0x02
SYN = 0x16
#: start (2) + addresses (6) + password (2) + function (1) + direction/length (2) + STX (1)
HEADER_SIZE = 14
#: end character (1) + CRC (2)
TRAILER_SIZE = 3
MAX_BODY = 0x0FFF
#: the 3 bytes after SYN: packet count (high 12 bits) and sequence number (low 12 bits)
PACKET_FIELD_SIZE = 3


class Direction(enum.IntEnum):
    """The high nibble of the length field: 0 up (station -> centre), 8 down."""

    UP = 0x0
    DOWN = 0x8


class Control(enum.IntEnum):
    """Control characters that end a frame (Table 10)."""

    ETX = 0x03  # up: end of text, nothing follows
    ETB = 0x17  # up: end of block, more packets follow
    ENQ = 0x05  # down: enquiry (query or command)
    EOT = 0x04  # down: end of transmission, the station may hang up
    ACK = 0x06  # down: acknowledged, send the next frame
    NAK = 0x15  # down: negative, resend the packet named
    ESC = 0x1B  # down: end, but the station stays online for commands


UP_ENDS = frozenset({Control.ETX, Control.ETB})
DOWN_ENDS = frozenset({Control.ENQ, Control.EOT, Control.ACK, Control.NAK, Control.ESC})


class FunctionCode(enum.IntEnum):
    """Function codes of Appendix B this codec gives a meaning to (others stay raw)."""

    LINK_KEEPALIVE = 0x2F
    TEST = 0x30
    EQUAL_INTERVAL = 0x31
    TIMED = 0x32
    ADD = 0x33  # 加报: a threshold was crossed
    HOURLY = 0x34
    MANUAL = 0x35
    PICTURE = 0x36
    QUERY_REALTIME = 0x37
    QUERY_PERIOD = 0x38
    QUERY_ELEMENTS = 0x3A


@dataclass(frozen=True)
class StationAddress:
    """The 5-byte station address (6.2.3.2) as 10 upper-case hex digits.

    Hydrological stations use 10 BCD digits (A5 = 00); others put an administrative code
    in BCD and a station number in HEX in the last two bytes, so any hex digit may occur.
    """

    hex: str

    def __post_init__(self) -> None:
        text = self.hex
        if len(text) != 10 or any(c not in "0123456789ABCDEF" for c in text):
            raise BadValueError(f"station address {text!r} is not 10 upper-case hex digits")

    @classmethod
    def of(cls, data: bytes) -> StationAddress:
        """The address carried in ``data`` (5 bytes)."""
        return cls(data.hex().upper())

    def to_bytes(self) -> bytes:
        """The 5 bytes on the wire."""
        return bytes.fromhex(self.hex)

    def __str__(self) -> str:
        return self.hex


@dataclass(frozen=True)
class Packet:
    """Multi-packet (M3) numbering after SYN: packet ``number`` of ``count``, both 1..4095."""

    count: int
    number: int

    def __post_init__(self) -> None:
        if not (1 <= self.count <= 0xFFF and 1 <= self.number <= self.count):
            raise BadValueError(
                f"packet {self.number} of {self.count}: need 1 <= number <= count <= 4095"
            )

    def to_bytes(self) -> bytes:
        """The 3 bytes after SYN."""
        return ((self.count << 12) | self.number).to_bytes(3, "big")


@dataclass(frozen=True)
class Header:
    """Who sends to whom, with what password and function code."""

    direction: Direction
    centre: int
    station: StationAddress
    password: int
    function: int

    def __post_init__(self) -> None:
        # SL 651 says 1..255; stations in the field send 0, so the codec takes 0 as well.
        if not 0 <= self.centre <= 0xFF:
            raise BadValueError(f"centre address {self.centre} is outside 0..255")
        if not 0 <= self.password <= 0xFFFF:
            raise BadValueError(f"password {self.password} is outside 0..0xFFFF")
        if not 0 <= self.function <= 0xFF:
            raise BadValueError(f"function code {self.function} is outside 0..0xFF")


@dataclass(frozen=True)
class Frame:
    """One frame: ``body`` is the text between STX (or the packet field after SYN) and the end."""

    header: Header
    body: bytes
    end: Control
    packet: Packet | None = None

    def __post_init__(self) -> None:
        allowed = UP_ENDS if self.header.direction is Direction.UP else DOWN_ENDS
        if self.end not in allowed:
            raise BadValueError(f"{self.end.name} cannot end a {self.header.direction.name} frame")
        size = len(self.body) + (PACKET_FIELD_SIZE if self.packet else 0)
        if size > MAX_BODY:
            raise BadValueError(f"body of {size} bytes exceeds the 4095 the length field holds")


def _function(code: int) -> int:
    """``code`` as a ``FunctionCode`` when this codec knows it, else the plain integer."""
    try:
        return FunctionCode(code)
    except ValueError:
        return code


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame``, CRC included (high byte first)."""
    head = frame.header
    if head.direction is Direction.UP:
        addresses = bytes([head.centre]) + head.station.to_bytes()
    else:
        addresses = head.station.to_bytes() + bytes([head.centre])
    text = (frame.packet.to_bytes() if frame.packet else b"") + frame.body
    length = (head.direction << 12) | len(text)
    out = b"".join(
        (
            START,
            addresses,
            head.password.to_bytes(2, "big"),
            bytes([head.function]),
            length.to_bytes(2, "big"),
            bytes([SYN if frame.packet else STX]),
            text,
            bytes([frame.end]),
        )
    )
    return out + crc16(out).to_bytes(2, "big")


def frame_size(data: bytes) -> int | None:
    """The size of the frame starting ``data``, or None while its header is incomplete.

    For a stream reader: read until ``len(buffer) >= frame_size(buffer)``. Raises
    ``BadFrameError`` when ``data`` does not start a frame.
    """
    if data[:1] == SOH:
        raise BadFrameError(
            "an ASCII-mode frame (SOH, 01): this codec takes HEX/BCD frames (7E7E) only; "
            "set the station to HEX/BCD"
        )
    if data[:2] != START[: len(data[:2])]:
        raise BadFrameError(f"a frame starts with 7E7E, not {data[:2].hex().upper()}")
    if len(data) < HEADER_SIZE - 1:
        return None
    return HEADER_SIZE + (int.from_bytes(data[11:13], "big") & MAX_BODY) + TRAILER_SIZE


def decode_frame(data: bytes) -> Frame:
    """The frame ``data`` holds, exactly; refused with the reason otherwise."""
    size = frame_size(data)
    if size is None or len(data) < HEADER_SIZE:
        raise TruncatedError(f"{len(data)} bytes is shorter than a frame header")
    nibble = data[11] >> 4
    if nibble not in (Direction.UP, Direction.DOWN):
        raise BadFrameError(f"direction nibble {nibble:X} is neither 0 (up) nor 8 (down)")
    direction = Direction(nibble)
    if len(data) < size:
        raise TruncatedError(f"the header announces {size} bytes, {len(data)} arrived")
    if len(data) > size:
        raise LengthError(f"the header announces {size} bytes, {len(data)} arrived")
    expected = crc16(data[:-2])
    received = int.from_bytes(data[-2:], "big")
    if expected != received:
        raise CrcError(f"CRC {received:04X} received, {expected:04X} computed")
    start = data[13]
    try:
        end = Control(data[-3])
    except ValueError:
        raise BadFrameError(f"{data[-3]:02X} is not an end character") from None
    if end not in (UP_ENDS if direction is Direction.UP else DOWN_ENDS):
        raise BadFrameError(f"{end.name} cannot end a {direction.name} frame")
    text = data[HEADER_SIZE:-TRAILER_SIZE]
    packet = None
    if start == SYN:
        if len(text) < PACKET_FIELD_SIZE:
            raise TruncatedError("a SYN frame needs 3 bytes of packet count and number")
        field = int.from_bytes(text[:3], "big")
        count, number = field >> 12, field & 0xFFF
        if not 1 <= number <= count:
            raise BadFrameError(f"packet {number} of {count} is not a packet number")
        packet = Packet(count, number)
        text = text[3:]
    elif start != STX:
        raise BadFrameError(f"{start:02X} after the header is neither STX (02) nor SYN (16)")
    if direction is Direction.UP:
        centre, station = data[2], data[3:8]
    else:
        station, centre = data[2:7], data[7]
    header = Header(
        direction,
        centre,
        StationAddress.of(station),
        int.from_bytes(data[8:10], "big"),
        _function(data[10]),
    )
    return Frame(header, text, end, packet)
