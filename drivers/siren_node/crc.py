"""CRC-16/MODBUS (reflected polynomial 0xA001, initial value 0xFFFF) of RTU frames.

Table-driven so that a full 256-byte frame costs one table lookup per byte on the board.
Pure arithmetic: no I/O, nothing MicroPython lacks.
"""


def _make_table() -> list[int]:
    table: list[int] = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc16(data: bytes) -> int:
    """Return the Modbus CRC of ``data``; on the wire it goes low byte first."""
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """Return ``body`` followed by its CRC, ready to send."""
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def crc_ok(frame: bytes) -> bool:
    """Return True when the last two bytes of ``frame`` are the CRC of the bytes before."""
    if len(frame) < 3:
        return False
    crc = crc16(frame[:-2])
    return frame[-2] == crc & 0xFF and frame[-1] == crc >> 8
