"""Per-minute and per-hour rollups of readings, summed in memory before they are stored.

A bucket holds, for one channel and one bucket start, the count of good readings, the
count of bad ones, and the sum, least and greatest of the good values. A reading is good
when it has a value and none of ``bad_mask``'s quality bits. A bucket starts at
``floor(ts / step) * step``, the same float arithmetic as PostgreSQL's
``floor(ts / step) * step``, so a bucket summed here lands on the row SQL would make.

This module must never touch a database or decide which readings are new: it sums what
it is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from math import floor
from typing import Any

MINUTE_S = 60
HOUR_S = 3600


@dataclass(slots=True)
class Bucket:
    """One channel's readings in one bucket: good and bad counts, sum/min/max of the good."""

    good: int = 0
    bad: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None


#: (channel id, bucket start) -> its bucket.
Buckets = dict[tuple[int, float], Bucket]


def rollup_buckets(rows: Iterable[tuple[Any, ...]], bad_mask: int) -> tuple[Buckets, Buckets]:
    """The per-minute and per-hour buckets of ``rows``.

    ``rows`` are ``readings`` rows: ``(gw, seq, ts, channel id, value, quality)``.
    """
    minutes: Buckets = {}
    hours: Buckets = {}
    minute, hour = float(MINUTE_S), float(HOUR_S)
    for row in rows:
        ts, channel, value, quality = row[2], row[3], row[4], row[5]
        m_key = (channel, floor(ts / minute) * minute)
        h_key = (channel, floor(ts / hour) * hour)
        m = minutes.get(m_key)
        if m is None:
            m = minutes[m_key] = Bucket()
        h = hours.get(h_key)
        if h is None:
            h = hours[h_key] = Bucket()
        if value is None or quality & bad_mask:
            m.bad += 1
            h.bad += 1
            continue
        _add_good(m, value)
        _add_good(h, value)
    return minutes, hours


def _add_good(bucket: Bucket, value: float) -> None:
    bucket.good += 1
    bucket.total += value
    if bucket.low is None or value < bucket.low:
        bucket.low = value
    if bucket.high is None or value > bucket.high:
        bucket.high = value
