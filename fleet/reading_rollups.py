"""Per-minute and per-hour rollups of readings, summed in memory before they are stored.

A bucket holds, for one channel and one bucket start, the count of good readings, the
count of bad ones, and the sum, least and greatest of the good values. A reading is good
when it has a value and none of ``bad_mask``'s quality bits. A bucket starts at
``floor(ts / step) * step``, the same float arithmetic as PostgreSQL's
``floor(ts / step) * step``, so a bucket summed here lands on the row SQL would make.

The sums run over numpy columns (``ReadingColumns``): a commit's readings are sorted by
channel and minute once and each bucket reduced in C, not looked at one by one in Python.

This module must never touch a database or decide which readings are new: it sums what
it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import isnan
from typing import Any

import numpy as np
import numpy.typing as npt

MINUTE_S = 60
HOUR_S = 3600

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One channel's readings in one bucket: good and bad counts, sum/min/max of the good."""

    good: int = 0
    bad: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """A commit's readings as columns: ``value`` is NaN where the reading has none."""

    gw: Ints
    seq: Ints
    ts: Floats
    channel: Ints
    value: Floats
    quality: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def of_rows(cls, rows: Sequence[tuple[Any, ...]]) -> ReadingColumns:
        """Columns of ``(gw, seq, ts, channel id, value, quality)`` rows (``value`` None: NaN)."""
        gw, seq, ts, channel, value, quality = zip(*rows, strict=True) if rows else ((),) * 6
        return cls(
            gw=np.array(gw, dtype=np.int64),
            seq=np.array(seq, dtype=np.int64),
            ts=np.array(ts, dtype=np.float64),
            channel=np.array(channel, dtype=np.int64),
            value=np.array(value, dtype=np.float64),
            quality=np.array(quality, dtype=np.int32),
        )


@dataclass(frozen=True, slots=True)
class Rollup:
    """Buckets as columns, sorted by channel and start; ``low``/``high`` NaN with no good."""

    channel: Ints
    start: Floats
    good: Ints
    bad: Ints
    total: Floats
    low: Floats
    high: Floats

    def __len__(self) -> int:
        return len(self.channel)

    def buckets(self) -> dict[tuple[int, float], Bucket]:
        """The buckets by (channel, start), for reading them one at a time."""
        return {
            (c, s): Bucket(g, b, t, lo, hi)
            for c, s, g, b, t, lo, hi in zip(
                self.channel.tolist(),
                self.start.tolist(),
                self.good.tolist(),
                self.bad.tolist(),
                self.total.tolist(),
                or_null(self.low),
                or_null(self.high),
                strict=True,
            )
        }


def or_null(values: Floats) -> list[float | None]:
    """``values`` as a list, NaN (no good reading) as None, the NULL of SQL."""
    return [None if isnan(v) else v for v in values.tolist()]


def rollups(readings: ReadingColumns, bad_mask: int) -> tuple[Rollup, Rollup]:
    """The per-minute and per-hour buckets of ``readings``.

    Each reading counts in its minute; an hour is the sum of its minutes, the hour of a
    minute's start being the hour of each of its readings (a minute never straddles an
    hour, and ``floor(ts / 3600)`` equals ``floor(floor(ts / 60) * 60 / 3600)``).
    """
    good = ~np.isnan(readings.value) & ((readings.quality & bad_mask) == 0)
    start = np.floor(readings.ts / float(MINUTE_S)) * float(MINUTE_S)
    minutes = _reduce(
        readings.channel,
        start,
        good.astype(np.int64),
        (~good).astype(np.int64),
        np.where(good, readings.value, 0.0),
        np.where(good, readings.value, np.nan),
        np.where(good, readings.value, np.nan),
    )
    hour_start = np.floor(minutes.start / float(HOUR_S)) * float(HOUR_S)
    hours = _reduce(
        minutes.channel,
        hour_start,
        minutes.good,
        minutes.bad,
        minutes.total,
        minutes.low,
        minutes.high,
    )
    return minutes, hours


def _reduce(
    channel: Ints, start: Floats, good: Ints, bad: Ints, total: Floats, low: Floats, high: Floats
) -> Rollup:
    """Sum the rows of each (channel, start): counts and totals added, NaN-aware min/max."""
    if len(channel) == 0:
        return Rollup(channel, start, good, bad, total, low, high)
    order = np.lexsort((start, channel))  # stable: a bucket's rows keep their order
    channel, start = channel[order], start[order]
    first = np.flatnonzero(
        np.concatenate(([True], (channel[1:] != channel[:-1]) | (start[1:] != start[:-1])))
    )
    return Rollup(
        channel[first],
        start[first],
        np.add.reduceat(good[order], first),
        np.add.reduceat(bad[order], first),
        np.add.reduceat(total[order], first),
        np.fmin.reduceat(low[order], first),  # fmin/fmax skip NaN: a bucket with no good
        np.fmax.reduceat(high[order], first),  # reading stays NaN, its NULL
    )
