"""The ceilings' ``COPY`` stream: readings rows encoded as the fleet's ingest encodes them.

``fleet.binary_copy`` builds the binary stream from numpy columns, as
``fleet.postgres_ingest`` does, so a ceiling measures PostgreSQL, not a Python loop per
row in the client. This module must never time anything: the benches do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fleet.binary_copy import Column, encode


def reading_copy(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """The binary ``COPY`` stream of ``(gw, seq, ts, channel, value, quality)`` rows."""
    gw, seq, ts, channel, value, quality = zip(*rows, strict=True)
    return encode(
        [
            Column(np.array(gw, dtype=np.int64), "int8"),
            Column(np.array(seq, dtype=np.int64), "int8"),
            Column(np.array(ts, dtype=np.float64), "float8"),
            Column(np.array(channel, dtype=np.int64), "int8"),
            Column(np.array(value, dtype=np.float64), "float8", nullable=True),
            Column(np.array(quality, dtype=np.int32), "int4"),
        ]
    )
