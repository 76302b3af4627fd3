"""Inverse velocity (1/v) of a displacement channel, for the console's slope picture.

Velocity at each hour is the least-squares slope of the hourly means of the good readings
in a centred window (``HALF_WINDOW_BINS`` means either side: a short window fit, not a
two-point difference, so that one noisy mean does not make a spike of 1/v), given when at
least ``MIN_WINDOW_BINS`` of the window's means exist. 1/v is in days per unit of the
channel (days/mm for an extensometer).

This module must never turn a velocity that is zero or negative (a slope at rest, or an
instrument reading back) into an inverse velocity, nor clamp one into a number: such
hours are left out and counted, so the page can say so. It draws no conclusion either:
the failure forecast is the gateway's (see ``fleet.site_forecast``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fleet.repository import ReadingBucket

#: Hourly means either side of the hour whose velocity is fitted (a 7-hour window).
HALF_WINDOW_BINS = 3
#: Means the window must hold for a fit (of the 7); fewer is a gap, left out.
MIN_WINDOW_BINS = 5
BIN_S = 3600.0
DAY_S = 86400.0
METHOD = (
    "velocity: least-squares slope of the hourly means over a centred 7-hour window "
    "(at least 5 means); 1/v = 1 / velocity"
)


@dataclass(frozen=True, slots=True)
class InversePoint:
    """One hour's velocity (units/day) and its inverse (days/unit), at the hour's middle."""

    t: float
    velocity: float
    inverse: float


@dataclass(frozen=True, slots=True)
class InverseVelocity:
    """1/v over a range: the points, and the hours left out and why."""

    points: tuple[InversePoint, ...]
    hours: int
    not_moving: int
    gaps: int


def _slope(ts: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against ``ts`` (per second)."""
    n = len(ts)
    mean_t = sum(ts) / n
    mean_v = sum(values) / n
    sxx = sum((t - mean_t) ** 2 for t in ts)
    sxy = sum((t - mean_t) * (v - mean_v) for t, v in zip(ts, values, strict=True))
    return sxy / sxx


def inverse_velocity(buckets: Sequence[ReadingBucket], bin_s: float = BIN_S) -> InverseVelocity:
    """1/v at each hour of ``buckets`` (``bin_s`` wide, oldest first, empty ones absent)."""
    means = {round(b.start / bin_s): b.avg for b in buckets if b.avg is not None}
    points: list[InversePoint] = []
    not_moving = gaps = 0
    for index in sorted(means):
        window = [
            (k * bin_s + bin_s / 2, means[k])
            for k in range(index - HALF_WINDOW_BINS, index + HALF_WINDOW_BINS + 1)
            if k in means
        ]
        if len(window) < MIN_WINDOW_BINS:
            gaps += 1
            continue
        ts, values = zip(*window, strict=True)
        velocity = _slope(ts, values) * DAY_S
        if not velocity > 0.0:
            not_moving += 1
            continue
        points.append(InversePoint(index * bin_s + bin_s / 2, velocity, 1.0 / velocity))
    return InverseVelocity(tuple(points), len(means), not_moving, gaps)
