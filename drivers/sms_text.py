"""How SMS text travels over AT commands in UCS2 mode, shared by the modem client and its simulator.

With ``AT+CSCS="UCS2"`` every string parameter (numbers too) and every message body is
UTF-16BE written as hexadecimal digits; one SMS carries at most 70 UTF-16 code units
(140 octets, data coding scheme 8). Pure functions: nothing here logs. Numbers are masked
with ``protocol.contacts.mask_phone``, the one masking the fleet and the gateway share.
"""

from __future__ import annotations

import re

#: UTF-16 code units one UCS2 SMS carries without a concatenation header (140 octets).
UCS2_UNITS_PER_SMS = 70

_HEX = re.compile(r"^(?:[0-9A-Fa-f]{4})+$")


class Ucs2Error(ValueError):
    """Hexadecimal text that is not UTF-16BE."""


def to_ucs2_hex(text: str) -> str:
    """``"+86"`` -> ``"002B00380036"``: UTF-16BE as upper-case hex, as modems expect it."""
    return text.encode("utf-16-be").hex().upper()


def from_ucs2_hex(digits: str) -> str:
    """Decode UTF-16BE hex digits; raises Ucs2Error on anything else."""
    if not _HEX.match(digits):
        msg = "not UCS2 hex: expected groups of four hexadecimal digits"
        raise Ucs2Error(msg)
    try:
        return bytes.fromhex(digits).decode("utf-16-be")
    except UnicodeDecodeError as exc:
        msg = f"not UCS2 hex: {exc.reason}"
        raise Ucs2Error(msg) from None


def looks_like_ucs2_hex(text: str) -> bool:
    """True when the text could be UCS2 hex (groups of four hexadecimal digits)."""
    return bool(_HEX.match(text))


def ucs2_units(text: str) -> int:
    """UTF-16 code units of the text: a character beyond the BMP (an emoji) counts two."""
    return len(text.encode("utf-16-be")) // 2


def split_for_sms(text: str, units: int = UCS2_UNITS_PER_SMS) -> list[str]:
    """Cut a text into pieces of at most ``units`` UTF-16 code units, in order.

    A character is never cut in half (a surrogate pair stays in one piece). The empty
    text gives no pieces.
    """
    if units < 2:
        msg = f"units must be at least 2 (one surrogate pair), got {units}"
        raise ValueError(msg)
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > units:
            pieces.append("".join(current))
            current, used = [], 0
        current.append(char)
        used += width
    if current:
        pieces.append("".join(current))
    return pieces
