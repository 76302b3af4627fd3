"""Binary ``COPY`` streams built from numpy columns (``fleet.binary_copy``).

Read back by a real PostgreSQL (the suite's throwaway cluster), value for value, NULLs
included; the refusals by their messages.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from fleet.binary_copy import Column, encode
from hardware_sim.harness.postgres import PostgresCluster


@pytest.fixture
def url(postgres: PostgresCluster) -> Iterator[str]:
    with postgres.fresh_schema() as schema_url:
        yield schema_url


def test_postgresql_reads_back_every_value_and_null_of_every_row(url: str) -> None:
    rng = random.Random(3)
    count = 500
    ids = [rng.randrange(-(2**62), 2**62) for _ in range(count)]
    stamps = [1.75e9 + rng.uniform(0, 86400) for _ in range(count)]
    values = [None if rng.random() < 0.2 else rng.uniform(-1e6, 1e6) for _ in range(count)]
    other = [None if rng.random() < 0.3 else rng.uniform(-1, 1) for _ in range(count)]
    flags = [rng.randrange(-(2**31), 2**31) for _ in range(count)]
    stream = encode(
        [
            Column(np.array(ids, dtype=np.int64), "int8"),
            Column(np.array(stamps, dtype=np.float64), "float8"),
            Column(np.array(values, dtype=np.float64), "float8", nullable=True),
            Column(np.array(other, dtype=np.float64), "float8", nullable=True),
            Column(np.array(flags, dtype=np.int32), "int4"),
        ]
    )
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (a int8, b float8, c float8, d float8, e int4)")
        with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(stream)
        stored = conn.execute("SELECT a, b, c, d, e FROM t").fetchall()
    rows = list(zip(ids, stamps, values, other, flags, strict=True))
    # All four NULL patterns occur; rows come back grouped by them, in any order.
    assert len({(r[2] is None, r[3] is None) for r in rows}) == 4
    assert sorted(stored, key=repr) == sorted(rows, key=repr)


def test_a_nan_in_a_column_that_is_not_nullable_is_refused() -> None:
    with pytest.raises(ValueError, match="column 1 holds NaN and is not nullable"):
        encode([Column(np.array([1]), "int8"), Column(np.array([math.nan]), "float8")])


def test_unequal_columns_and_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError, match="column 1 has 2 values, not 1"):
        encode([Column(np.array([1]), "int8"), Column(np.array([1, 2]), "int8")])
    with pytest.raises(ValueError, match="no binary encoding for 'text'"):
        encode([Column(np.array([1]), "text")])


def test_no_rows_is_a_header_and_a_trailer() -> None:
    assert encode([Column(np.array([], dtype=np.int64), "int8")]) == (
        b"PGCOPY\n\xff\r\n\x00" + bytes(8) + b"\xff\xff"
    )
