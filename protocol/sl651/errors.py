"""Why the SL 651 codec refused a frame: one exception type per reason.

Every failure of the codec, on any input, is a ``Sl651Error`` carrying a ``Reason``; a
receiving centre logs the reason and the message and drops the frame. This module must
never import anything of the project, and the codec must never let another exception
type out of ``decode`` (tests/test_sl651_codec.py fuzzes it).
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """The reasons a frame, a body or a value is refused."""

    CRC = "crc"
    LENGTH = "length"
    TRUNCATED = "truncated"
    UNKNOWN_ELEMENT = "unknown element"
    BAD_BCD = "bad bcd"
    BAD_TIME = "bad time"
    BAD_FRAME = "bad frame"
    BAD_VALUE = "bad value"


class Sl651Error(ValueError):
    """A frame, body or value the codec refuses; ``reason`` says why in one word."""

    reason: Reason = Reason.BAD_FRAME

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.reason.value}: {message}")
        self.detail = message


class CrcError(Sl651Error):
    """The CRC-16 at the end of the frame is not the one its bytes give."""

    reason = Reason.CRC


class LengthError(Sl651Error):
    """A length (the header's, an element's, a body's) does not match the bytes."""

    reason = Reason.LENGTH


class TruncatedError(Sl651Error):
    """The input ends before the frame, body or element it started is complete."""

    reason = Reason.TRUNCATED


class UnknownElementError(Sl651Error):
    """An element identifier the codec does not know (not in SL 651-2014 Appendix C)."""

    reason = Reason.UNKNOWN_ELEMENT


class BadBcdError(Sl651Error):
    """A nibble of a BCD field is not a decimal digit."""

    reason = Reason.BAD_BCD


class BadTimeError(Sl651Error):
    """A send or observation time is well-formed BCD but not a date and time."""

    reason = Reason.BAD_TIME


class BadFrameError(Sl651Error):
    """The frame's structure is wrong: start bytes, direction, control characters."""

    reason = Reason.BAD_FRAME


class BadValueError(Sl651Error):
    """A value handed to the encoder cannot be sent as SL 651 says it must be."""

    reason = Reason.BAD_VALUE
