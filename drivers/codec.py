"""Decode Modbus registers into numbers and encode numbers into registers.

Pure functions over 16-bit register lists; the poller and the simulator share them so
the two sides can never disagree on a word order. Never touches I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal, get_args

DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "bool"]
#: ``big``: the most significant word comes first (Modbus "ABCD"); ``little``: least first ("CDAB").
WordOrder = Literal["big", "little"]
#: ``big``: each register is sent high byte first, as Modbus says; ``little``: swapped ("BADC").
ByteOrder = Literal["big", "little"]

DATA_TYPES: tuple[str, ...] = get_args(DataType)
WORD_ORDERS: tuple[str, ...] = get_args(WordOrder)
BYTE_ORDERS: tuple[str, ...] = get_args(ByteOrder)

_STRUCT = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "bool": 1}


def register_width(dtype: DataType) -> int:
    """Return how many registers (or bits, for ``bool``) one value of ``dtype`` occupies."""
    return _WIDTH[dtype]


def _arrange(words: list[int], word_order: WordOrder, byte_order: ByteOrder) -> list[int]:
    """Reorder words and bytes between wire order and big-endian order (an involution)."""
    if word_order == "little":
        words = words[::-1]
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def decode(
    registers: Sequence[int],
    dtype: DataType,
    word_order: WordOrder = "big",
    byte_order: ByteOrder = "big",
) -> float:
    """Decode one value from its registers as read off the wire.

    Raises:
        ValueError: when the number of registers (or bits) does not match the type.
    """
    width = _WIDTH[dtype]
    if len(registers) != width:  # an empty read of a coil too, not an IndexError
        msg = f"{dtype} needs {width} register(s), got {len(registers)}"
        raise ValueError(msg)
    if dtype == "bool":
        return float(bool(registers[0]))
    words = _arrange([int(r) & 0xFFFF for r in registers], word_order, byte_order)
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    return float(struct.unpack(_STRUCT[dtype], raw)[0])


def encode(
    value: float,
    dtype: DataType,
    word_order: WordOrder = "big",
    byte_order: ByteOrder = "big",
) -> list[int]:
    """Encode one raw value into the registers a device would put on the wire.

    Integers are rounded to the nearest and must fit the type.

    Raises:
        ValueError: when the value does not fit the type.
    """
    if dtype == "bool":
        return [1 if value else 0]
    fmt = _STRUCT[dtype]
    number: float | int = float(value) if dtype == "float32" else round(value)
    try:
        raw = struct.pack(fmt, number)
    except struct.error as exc:
        msg = f"value {value!r} does not fit {dtype}"
        raise ValueError(msg) from exc
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return _arrange(words, word_order, byte_order)
