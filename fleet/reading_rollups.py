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

    ``rows`` are ``readings`` rows: ``(gw, seq, ts, channel id, value, quality)``. Each
    row is looked at once, for its minute; an hour is the sum of its minutes, the hour
    of a minute's start being the hour of each of its readings (a minute never straddles
    an hour, and ``floor(ts / 3600)`` equals ``floor(floor(ts / 60) * 60 / 3600)``).
    """
    minutes: Buckets = {}
    minute = float(MINUTE_S)
    for row in rows:
        ts, channel, value, quality = row[2], row[3], row[4], row[5]
        key = (channel, floor(ts / minute) * minute)
        bucket = minutes.get(key)
        if bucket is None:
            bucket = minutes[key] = Bucket()
        if value is None or quality & bad_mask:
            bucket.bad += 1
            continue
        bucket.good += 1
        bucket.total += value
        if bucket.low is None or value < bucket.low:
            bucket.low = value
        if bucket.high is None or value > bucket.high:
            bucket.high = value
    return minutes, _hours(minutes)


def _hours(minutes: Buckets) -> Buckets:
    hours: Buckets = {}
    hour = float(HOUR_S)
    for (channel, start), m in minutes.items():
        key = (channel, floor(start / hour) * hour)
        h = hours.get(key)
        if h is None:
            hours[key] = Bucket(m.good, m.bad, m.total, m.low, m.high)
            continue
        h.good += m.good
        h.bad += m.bad
        h.total += m.total
        if m.low is not None and (h.low is None or m.low < h.low):
            h.low = m.low
        if m.high is not None and (h.high is None or m.high > h.high):
            h.high = m.high
    return hours
