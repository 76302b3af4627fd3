"""Plain-Python reference metrics of the rain and water-level rules, and shared helpers.

Part of the reference oracle (see ``reference.py``): lists and loops, no numpy or numba,
every formula in the same order as ``kernels.py`` so results match bit for bit.
"""

from __future__ import annotations

import math
from collections import deque

from site_schema.rule_specs import (
    MAX_RAIN_RATE_MM_S,
    AntecedentRainRule,
    IntensityDurationRule,
    LevelThresholds,
    RainWindowRule,
    WaterLevelRule,
)

NAN = math.nan
#: An evaluation: the metric snapshot and (raise level, level supported with hysteresis),
#: or None for the levels when the metric is undefined (too little data for a fit).
Evaluation = tuple[tuple[float, ...], tuple[int, int] | None]


def counter_increment(prev: float, cur: float, dt: float, modulus: float | None) -> float:
    """Rain between two good readings of a cumulative counter, never negative.

    A drop is a wrap when the modulus is known, the counter went from its upper to its
    lower half and the wrapped increment is plausible for ``dt``; otherwise it is a reset
    (reboot, cleared register) and the new reading counts only if plausible for ``dt``.
    """
    diff = cur - prev
    if diff >= 0.0:
        return diff
    limit = MAX_RAIN_RATE_MM_S * dt
    if modulus is not None and prev > 0.5 * modulus and cur < 0.5 * modulus:
        wrapped = cur + modulus - prev
        if wrapped <= limit:
            return wrapped
    if 0.0 <= cur <= limit:
        return cur
    return 0.0


def negated(thresholds: LevelThresholds) -> LevelThresholds:
    """Negate horizon thresholds: smaller lead times are worse, so -lead rises with level."""
    a, b, c, d = (None if x is None else -x for x in thresholds)
    return (a, b, c, d)


def threshold_levels(
    metric: float, thresholds: LevelThresholds, hysteresis: float
) -> tuple[int, int]:
    """Return (highest level met, highest level still supported with hysteresis)."""
    up = 0
    hold = 0
    for level, threshold in enumerate(thresholds, start=1):
        if threshold is None:
            continue
        if metric >= threshold:
            up = level
        if metric >= threshold - hysteresis:
            hold = level
    return up, hold


class _Counter:
    """Turns readings of a cumulative rain counter into increments."""

    def __init__(self, modulus: float | None) -> None:
        self.modulus = modulus
        self.prev_v = NAN
        self.prev_t = NAN

    def increment(self, t: float, x: float) -> float:
        inc = 0.0
        if not math.isnan(self.prev_t):
            inc = counter_increment(self.prev_v, x, t - self.prev_t, self.modulus)
        self.prev_v = x
        self.prev_t = t
        return inc


class _RainWindow:
    def __init__(self, seconds: float, thresholds: LevelThresholds) -> None:
        self.seconds = seconds
        self.thresholds = thresholds
        # (time, running total after the increment) of the increments still inside.
        self.entries: deque[tuple[float, float]] = deque()
        self.total_before = 0.0


class RainWindows:
    """Rain over sliding windows from a cumulative counter."""

    def __init__(self, rule: RainWindowRule) -> None:
        self.hysteresis = rule.hysteresis
        self.counter = _Counter(rule.counter_modulus)
        self.total = 0.0
        self.windows = [_RainWindow(w.seconds, w.thresholds) for w in rule.windows]

    def update(self, t: float, x: float) -> Evaluation:
        """Evaluate the good sample ``x`` at ``t``."""
        inc = self.counter.increment(t, x)
        if inc > 0.0:
            self.total += inc
            for window in self.windows:
                window.entries.append((t, self.total))
        up = 0
        hold = 0
        sums: list[float] = []
        for window in self.windows:
            edge = t - window.seconds
            while window.entries and window.entries[0][0] <= edge:
                window.total_before = window.entries.popleft()[1]
            # A difference of running totals: exactly 0 once every increment has left.
            window_sum = self.total - window.total_before
            sums.append(window_sum)
            u, h = threshold_levels(window_sum, window.thresholds, self.hysteresis)
            up = max(up, u)
            hold = max(hold, h)
        return tuple(sums), (up, hold)


class AntecedentRain:
    """Effective antecedent rainfall, decayed continuously by ``k ** age_days``."""

    def __init__(self, rule: AntecedentRainRule) -> None:
        self.rule = rule
        self.counter = _Counter(rule.counter_modulus)
        self.ear = 0.0

    def update(self, t: float, x: float) -> Evaluation:
        """Evaluate the good sample ``x`` at ``t``."""
        prev_t = self.counter.prev_t
        inc = self.counter.increment(t, x)
        if not math.isnan(prev_t):
            self.ear = self.ear * self.rule.decay_per_day ** ((t - prev_t) / 86400.0) + inc
        levels = threshold_levels(self.ear, self.rule.thresholds, self.rule.hysteresis)
        return (self.ear,), levels


class IntensityDuration:
    """Rain-event intensity and duration against ``I = a * D ** b`` curves."""

    def __init__(self, rule: IntensityDurationRule) -> None:
        self.rule = rule
        self.counter = _Counter(rule.counter_modulus)
        self.active = False
        self.start = NAN
        self.last_rain_t = NAN
        self.event_mm = 0.0

    def update(self, t: float, x: float) -> Evaluation:
        """Evaluate the good sample ``x`` at ``t``."""
        rule = self.rule
        prev_t = self.counter.prev_t
        inc = self.counter.increment(t, x)
        if self.active and t - self.last_rain_t >= rule.dry_gap_s:
            self.active = False
            self.event_mm = 0.0
        if inc > 0.0:
            if not self.active:
                # The rain fell during the interval ending now: the event starts with it.
                self.active = True
                self.start = prev_t
                self.event_mm = 0.0
            self.event_mm += inc
            self.last_rain_t = t
        if not self.active:
            return (0.0, 0.0, 0.0), (0, 0)
        duration_s = self.last_rain_t - self.start
        duration_h = duration_s / 3600.0
        intensity = self.event_mm / duration_h if duration_s > 0.0 else 0.0
        up = 0
        hold = 0
        if duration_s >= rule.min_duration_s:
            for level, curve in enumerate(rule.curves, start=1):
                if curve is None:
                    continue
                threshold = curve.a * duration_h**curve.b
                if intensity >= threshold:
                    up = level
                if intensity >= threshold - rule.hysteresis:
                    hold = level
        return (intensity, duration_h, self.event_mm), (up, hold)


class WaterLevel:
    """The value itself against thresholds."""

    def __init__(self, rule: WaterLevelRule) -> None:
        self.rule = rule

    def update(self, t: float, x: float) -> Evaluation:
        """Evaluate the good sample ``x`` at ``t``."""
        return (x,), threshold_levels(x, self.rule.thresholds, self.rule.hysteresis)
