"""SL 651's byte-level primitives: CRC-16, BCD digits and BCD times.

The CRC is CRC-16/MODBUS (polynomial X16+X15+X2+1 reflected, 0xA001, initial 0xFFFF);
SL 651 sends it HIGH byte first, unlike Modbus RTU (checked against every worked example
in tests/test_sl651_codec.py). Times are station-local and naive: SL 651 carries no
zone. This module must never import anything of the project and raises only
``Sl651Error`` subclasses.
"""

from __future__ import annotations

from datetime import datetime

from protocol.sl651.errors import BadBcdError, BadTimeError, BadValueError, TruncatedError


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` as an integer (send it with ``.to_bytes(2, "big")``)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def bcd_digits(data: bytes, what: str) -> str:
    """The decimal digits of ``data``, two per byte; ``BadBcdError`` naming ``what`` if not."""
    text = data.hex()
    if not text.isdigit() and text:
        raise BadBcdError(f"{what}: {data.hex().upper()} is not BCD")
    return text


def bcd_bytes(digits: str, size: int, what: str) -> bytes:
    """``digits`` (decimal, at most ``2 * size``) left-padded with zeros into ``size`` bytes."""
    if not digits.isdigit() or len(digits) > 2 * size:
        raise BadValueError(f"{what}: {digits!r} does not fit {size} BCD byte(s)")
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def _time_from(digits: str, what: str) -> datetime:
    fields = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    year, month, day, hour, minute = fields[:5]
    second = fields[5] if len(fields) > 5 else 0
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise BadTimeError(f"{what}: {digits} is not a date and time ({exc})") from None


def decode_send_time(data: bytes) -> datetime:
    """The 6-byte BCD send time YYMMDDHHmmSS."""
    if len(data) < 6:
        raise TruncatedError(f"send time needs 6 bytes, {len(data)} left")
    return _time_from(bcd_digits(data[:6], "send time"), "send time")


def decode_observation_time(data: bytes) -> datetime:
    """The 5-byte BCD observation time YYMMDDHHmm."""
    if len(data) < 5:
        raise TruncatedError(f"observation time needs 5 bytes, {len(data)} left")
    return _time_from(bcd_digits(data[:5], "observation time"), "observation time")


def _check_year(when: datetime, what: str) -> None:
    if not 2000 <= when.year <= 2099:
        raise BadValueError(f"{what}: year {when.year} is outside 2000..2099 (two BCD digits)")
    if when.tzinfo is not None:
        raise BadValueError(f"{what}: SL 651 times are station-local; pass a naive datetime")


def encode_send_time(when: datetime) -> bytes:
    """``when`` as 6 BCD bytes YYMMDDHHmmSS (microseconds are dropped)."""
    _check_year(when, "send time")
    return bytes.fromhex(when.strftime("%y%m%d%H%M%S"))


def encode_observation_time(when: datetime) -> bytes:
    """``when`` as 5 BCD bytes YYMMDDHHmm; seconds must be zero."""
    _check_year(when, "observation time")
    if when.second or when.microsecond:
        raise BadValueError(f"observation time {when} has seconds; SL 651 carries minutes")
    return bytes.fromhex(when.strftime("%y%m%d%H%M"))
