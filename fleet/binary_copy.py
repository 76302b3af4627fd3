"""Columns of numbers encoded as PostgreSQL's binary ``COPY`` stream, in bulk.

PostgreSQL's binary ``COPY`` format is a header, then per row a 16-bit field count and,
per field, a 32-bit length (-1 for NULL) and the value's bytes in network order, then a
trailer of -1. Every field here is a fixed-width number (``int4``, ``int8``, ``float8``),
so all rows with the same NULLs have one layout: numpy writes each such set of rows as
one structured array, instead of a Python call per row and field (psycopg's
``write_row``, about a microsecond a row). Rows with different NULLs are written apart;
row order inside one ``COPY`` does not matter to PostgreSQL.

A float column's NaN is sent as NULL where the column is nullable (``nullable=True``),
since the wire and the tables never hold a NaN; a non-nullable column with a NaN is
refused, never sent.

This module must never open a connection or know a table: it only encodes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)

#: PostgreSQL type name -> its big-endian numpy type (binary ``COPY`` is network order).
WIRE_TYPES = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}


class UnencodableError(ValueError):
    """A value the column cannot carry: a NaN where NULL is not allowed."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its values, PostgreSQL type, and whether NaN means NULL."""

    values: npt.NDArray[np.generic]
    pg_type: str
    nullable: bool = False


def encode(columns: Sequence[Column]) -> bytes:
    """The whole binary ``COPY`` stream (header, rows, trailer) of ``columns``.

    Raises ``UnencodableError`` for a NaN in a column that is not nullable (bad data), and
    ValueError for columns of unequal length or an unknown type (a caller's mistake).
    """
    if not columns:
        raise ValueError("a COPY needs at least one column")
    count = len(columns[0].values)
    nulls = np.zeros((count, len(columns)), dtype=bool)
    for index, column in enumerate(columns):
        if column.pg_type not in WIRE_TYPES:
            raise ValueError(f"column {index}: no binary encoding for {column.pg_type!r}")
        if len(column.values) != count:
            raise ValueError(f"column {index} has {len(column.values)} values, not {count}")
        if column.values.dtype.kind == "f":
            missing = np.isnan(column.values)
            if missing.any() and not column.nullable:
                raise UnencodableError(f"column {index} holds NaN and is not nullable")
            nulls[:, index] = missing
    parts = [HEADER]
    if not nulls.any():
        parts.append(_rows(columns, np.ones(len(columns), dtype=bool), slice(None)))
    else:
        patterns, which = np.unique(nulls, axis=0, return_inverse=True)
        for number, pattern in enumerate(patterns):
            parts.append(_rows(columns, ~pattern, np.flatnonzero(which.ravel() == number)))
    parts.append(TRAILER)
    return b"".join(parts)


def _rows(
    columns: Sequence[Column],
    present: npt.NDArray[np.bool_],
    rows: slice | npt.NDArray[np.intp],
) -> bytes:
    """The rows ``rows`` of ``columns``, all with the NULLs ``~present``, as one block."""
    layout: list[tuple[str, str]] = [("fields", ">i2")]
    for index, column in enumerate(columns):
        layout.append((f"length{index}", ">i4"))
        if present[index]:
            layout.append((f"value{index}", WIRE_TYPES[column.pg_type]))
    block = np.empty(len(columns[0].values[rows]), dtype=np.dtype(layout))
    block["fields"] = len(columns)
    for index, column in enumerate(columns):
        if present[index]:
            block[f"length{index}"] = np.dtype(WIRE_TYPES[column.pg_type]).itemsize
            block[f"value{index}"] = column.values[rows]
        else:
            block[f"length{index}"] = -1
    return block.tobytes()
