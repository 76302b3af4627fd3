"""The rollups an ingest worker sums before it stores them (``fleet.reading_rollups``).

That they equal PostgreSQL's own aggregate of the raw rows is checked on a real cluster
in ``tests/test_postgres_storage.py``; here, the buckets' edges and what counts as bad.
"""

from __future__ import annotations

import math
import random
from typing import Any

from fleet.reading_rollups import Bucket, ReadingColumns, rollups
from protocol import BAD_QUALITY_MASK, Quality

HOUR0 = 1_750_032_000.0  # a UTC midnight


def rollup_buckets(
    rows: list[tuple[Any, ...]], bad_mask: int
) -> tuple[dict[tuple[int, float], Bucket], dict[tuple[int, float], Bucket]]:
    """The minute and hour buckets of ``(gw, seq, ts, channel, value, quality)`` rows."""
    minutes, hours = rollups(ReadingColumns.of_rows(rows), bad_mask)
    return minutes.buckets(), hours.buckets()


def test_a_reading_a_hair_before_an_hour_counts_in_the_hour_sql_puts_it_in() -> None:
    rng = random.Random(14)
    for _ in range(2_000):
        boundary = 3600.0 * rng.randrange(0, 2**33 // 3600)
        for ts in (math.nextafter(boundary, 0.0), boundary, math.nextafter(boundary, math.inf)):
            _minutes, hours = rollup_buckets([(1, 1, ts, 7, 1.0, 0)], BAD_QUALITY_MASK)
            assert list(hours) == [(7, math.floor(ts / 3600.0) * 3600.0)]


def test_bad_quality_and_missing_values_are_counted_apart_from_the_good() -> None:
    rows = [
        (1, 1, HOUR0 + 5, 7, 2.5, 0),
        (1, 2, HOUR0 + 15, 7, None, 0),
        (1, 3, HOUR0 + 25, 7, 99.0, int(Quality.SPIKE)),
        (1, 4, HOUR0 + 35, 7, -1.0, int(Quality.SIMULATED)),  # not a bad bit
        (1, 5, HOUR0 + 65, 7, 4.0, 0),
        (1, 6, HOUR0 + 70, 8, 1.0, 0),
    ]
    minutes, hours = rollup_buckets(rows, BAD_QUALITY_MASK)
    assert minutes == {
        (7, HOUR0): Bucket(good=2, bad=2, total=1.5, low=-1.0, high=2.5),
        (7, HOUR0 + 60): Bucket(good=1, bad=0, total=4.0, low=4.0, high=4.0),
        (8, HOUR0 + 60): Bucket(good=1, bad=0, total=1.0, low=1.0, high=1.0),
    }
    assert hours == {
        (7, HOUR0): Bucket(good=3, bad=2, total=5.5, low=-1.0, high=4.0),
        (8, HOUR0): Bucket(good=1, bad=0, total=1.0, low=1.0, high=1.0),
    }


def test_a_minute_of_only_bad_readings_has_no_least_nor_greatest() -> None:
    rows = [(1, 1, HOUR0, 7, 3.0, int(Quality.TIMEOUT)), (1, 2, HOUR0 + 61, 7, 5.0, 0)]
    minutes, hours = rollup_buckets(rows, BAD_QUALITY_MASK)
    assert minutes[(7, HOUR0)] == Bucket(good=0, bad=1, total=0.0, low=None, high=None)
    assert hours[(7, HOUR0)] == Bucket(good=1, bad=1, total=5.0, low=5.0, high=5.0)


def test_buckets_come_sorted_by_channel_and_start_whatever_the_row_order() -> None:
    rng = random.Random(7)
    rows = [
        (1, n, HOUR0 + rng.uniform(0, 7200), rng.choice((3, 9, 5)), rng.uniform(-5, 5), 0)
        for n in range(500)
    ]
    minutes, hours = rollup_buckets(rows, BAD_QUALITY_MASK)
    assert list(minutes) == sorted(minutes)
    assert sum(b.good for b in minutes.values()) == sum(b.good for b in hours.values()) == 500
    for (channel, start), bucket in hours.items():
        inside = [r[4] for r in rows if r[3] == channel and start <= r[2] < start + 3600]
        assert bucket.good == len(inside)
        assert (bucket.low, bucket.high) == (min(inside), max(inside))
        assert math.isclose(bucket.total, sum(inside), abs_tol=1e-9)


def test_no_readings_make_no_buckets() -> None:
    minutes, hours = rollups(ReadingColumns.of_rows([]), BAD_QUALITY_MASK)
    assert (len(minutes), len(hours)) == (0, 0)
