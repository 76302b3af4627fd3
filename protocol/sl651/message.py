"""SL 651-2014 messages: a frame whose body has its meaning, and the centre's answers.

``decode`` turns the bytes of one frame into a ``Message`` (or raises ``Sl651Error`` with
the reason, whatever the input); ``encode`` turns a ``Message`` back into the same bytes.
``acknowledge`` builds the centre's answer (ESC keeps the station online, EOT lets it hang
up). This module must never import anything of the project, never do I/O, and never read
a clock: every time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocol.sl651.body import (
    Acknowledgement,
    Body,
    LinkKeepAlive,
    Query,
    RawBody,
    Report,
    decode_exact_stamp,
    decode_report,
    encode_report,
    encode_stamp,
)
from protocol.sl651.errors import BadValueError
from protocol.sl651.frame import (
    Control,
    Direction,
    Frame,
    FunctionCode,
    Header,
    Packet,
    decode_frame,
    encode_frame,
)

#: Up-going functions whose body is a report (station blocks and observation groups).
REPORT_FUNCTIONS = frozenset(
    {
        FunctionCode.TEST,
        FunctionCode.EQUAL_INTERVAL,
        FunctionCode.TIMED,
        FunctionCode.ADD,
        FunctionCode.HOURLY,
        FunctionCode.PICTURE,
        FunctionCode.QUERY_REALTIME,
        FunctionCode.QUERY_PERIOD,
        FunctionCode.QUERY_ELEMENTS,
    }
)
#: Reports whose last element is a series of values after a time step (6.6.4.4).
EQUAL_INTERVAL_FUNCTIONS = frozenset({FunctionCode.EQUAL_INTERVAL, FunctionCode.QUERY_PERIOD})
#: Down-going ends that answer a station (ENQ asks instead).
ANSWER_ENDS = frozenset({Control.EOT, Control.ESC, Control.ACK, Control.NAK})


@dataclass(frozen=True)
class Message:
    """One frame with its body decoded; ``packet`` is set on M3 (SYN) frames only."""

    header: Header
    body: Body
    end: Control
    packet: Packet | None = None


def decode_body(header: Header, data: bytes, end: Control) -> Body:
    """The meaning of a whole (reassembled) body for ``header``'s direction and function."""
    if header.direction is Direction.UP:
        if header.function == FunctionCode.LINK_KEEPALIVE:
            return LinkKeepAlive(*decode_exact_stamp(data, "link keep-alive"))
        if header.function in REPORT_FUNCTIONS:
            equal_interval = header.function in EQUAL_INTERVAL_FUNCTIONS
            return decode_report(data, equal_interval)
        return RawBody(data)
    if len(data) == 8:
        if end in ANSWER_ENDS:
            return Acknowledgement(*decode_exact_stamp(data, "acknowledgement"))
        return Query(*decode_exact_stamp(data, "query"))
    return RawBody(data)


def encode_body(header: Header, body: Body) -> bytes:
    """The bytes of ``body``; refuses a body that does not fit ``header``'s function."""
    if isinstance(body, RawBody):
        return body.data
    up = header.direction is Direction.UP
    if isinstance(body, Report):
        if not (up and header.function in REPORT_FUNCTIONS):
            raise BadValueError(
                f"function {header.function:02X} {header.direction.name} is no report"
            )
        return encode_report(body, header.function in EQUAL_INTERVAL_FUNCTIONS)
    if isinstance(body, LinkKeepAlive) and not (up and header.function == 0x2F):
        raise BadValueError("a link keep-alive goes up with function 2F")
    if isinstance(body, Acknowledgement | Query) and up:
        raise BadValueError(f"{type(body).__name__} goes down, from the centre")
    return encode_stamp(body.serial, body.sent_at)


def decode(data: bytes) -> Message:
    """The message in ``data`` (exactly one frame).

    The body of a single up-going M3 packet stays raw (only the first packet carries the
    serial): put the packets through ``protocol.sl651.multipacket.Reassembly``.
    """
    frame = decode_frame(data)
    if frame.packet is not None and frame.header.direction is Direction.UP:
        return Message(frame.header, RawBody(frame.body), frame.end, frame.packet)
    body = decode_body(frame.header, frame.body, frame.end)
    return Message(frame.header, body, frame.end, frame.packet)


def encode(message: Message) -> bytes:
    """The bytes of ``message``."""
    up = message.header.direction is Direction.UP
    if message.packet is not None and up and not isinstance(message.body, RawBody):
        raise BadValueError("an M3 packet carries a slice of a body: use multipacket.split")
    body = encode_body(message.header, message.body)
    return encode_frame(Frame(message.header, body, message.end, message.packet))


def acknowledge(
    report: Message,
    sent_at: datetime,
    end: Control = Control.EOT,
    packet: Packet | None = None,
) -> Message:
    """The centre's answer to ``report``: same station, centre, password and function.

    ``end`` is EOT (the station may hang up) or ESC (it stays online for commands); ACK
    and NAK answer single packets. ``packet`` numbers the answer to an M3 upload (count
    and the last number for EOT/ESC, the packet to resend for NAK).
    """
    body = report.body
    if not isinstance(body, Report | LinkKeepAlive):
        raise BadValueError(f"only a report is acknowledged, not {type(body).__name__}")
    if end not in ANSWER_ENDS:
        raise BadValueError(f"{end.name} does not answer a report")
    head = report.header
    header = Header(Direction.DOWN, head.centre, head.station, head.password, head.function)
    return Message(header, Acknowledgement(body.serial, sent_at), end, packet)
