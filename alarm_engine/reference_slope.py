"""Plain-Python reference metrics of the slope rules.

That is rate of rise, displacement velocity and acceleration, tangent angle and
inverse-velocity failure time. Part of the reference oracle (see ``reference.py``): lists
and loops, no numpy or numba, every formula in the same order as ``slope_kernels.py`` so
results match bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from alarm_engine.reference_metrics import NAN, Evaluation, negated, threshold_levels
from site_schema.rule_specs import (
    FIT_MIN_COVERAGE,
    FIT_MIN_SAMPLES,
    AnySlopeRule,
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    InverseVelocityRule,
    RateOfRiseRule,
    TangentAngleRule,
)


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float, float, float] | None:
    """Least-squares line through ``(t, x)`` points: (slope, mean t, mean x, r^2).

    Sums are taken relative to the last point so that epoch-sized times lose no precision.
    Returns None when the times do not spread.
    """
    n = len(points)
    t_ref, x_ref = points[-1]
    st = 0.0
    sx = 0.0
    stt = 0.0
    stx = 0.0
    sxx = 0.0
    for t, x in points:
        dt = t - t_ref
        dx = x - x_ref
        st += dt
        sx += dx
        stt += dt * dt
        stx += dt * dx
        sxx += dx * dx
    s_tt = stt - st * st / n
    s_tx = stx - st * sx / n
    s_xx = sxx - sx * sx / n
    if not s_tt > 0.0:
        return None
    r2 = s_tx * s_tx / (s_tt * s_xx) if s_xx > 0.0 else 0.0
    return s_tx / s_tt, t_ref + st / n, x_ref + sx / n, r2


def _covered_fit(
    points: deque[tuple[float, float]], window_s: float
) -> tuple[float, float, float, float] | None:
    if len(points) < FIT_MIN_SAMPLES:
        return None
    if points[-1][0] - points[0][0] < FIT_MIN_COVERAGE * window_s:
        return None
    return fit_line(points)


_RATE, _VELOCITY, _ACCELERATION, _TANGENT, _INVERSE = range(5)


class SlopeMetric:
    """Every kind built on a least-squares slope of the channel over ``window_s``."""

    def __init__(self, rule: AnySlopeRule) -> None:
        self.rule = rule
        self.samples: deque[tuple[float, float]] = deque()
        self.derived: deque[tuple[float, float]] = deque()
        self.derived_window_s = rule.window_s
        self.next_eval = -math.inf
        self.scale = 86400.0
        self.creep = NAN
        self.min_r2 = NAN
        match rule:
            case RateOfRiseRule():
                self.mode, self.scale, self.thresholds = _RATE, 3600.0, rule.thresholds
            case DisplacementVelocityRule():
                self.mode, self.thresholds = _VELOCITY, rule.thresholds
            case DisplacementAccelerationRule():
                self.mode, self.thresholds = _ACCELERATION, rule.thresholds
            case TangentAngleRule():
                self.mode, self.thresholds = _TANGENT, rule.thresholds
                self.creep = rule.creep_rate_mm_day
            case InverseVelocityRule():
                self.mode = _INVERSE
                self.derived_window_s = rule.fit_window_s
                self.min_r2 = rule.min_r2
                self.thresholds = negated(rule.horizons_h)

    def update(self, t: float, x: float) -> Evaluation | None:
        """Take the good sample ``x`` at ``t``; None between evaluations."""
        edge = t - self.rule.window_s
        while self.samples and self.samples[0][0] <= edge:
            self.samples.popleft()
        due = not t < self.next_eval
        if due and self.mode in (_ACCELERATION, _INVERSE):
            derived_edge = t - self.derived_window_s
            while self.derived and self.derived[0][0] <= derived_edge:
                self.derived.popleft()
        self.samples.append((t, x))
        if not due:
            return None
        self.next_eval = t + self.rule.eval_every_s
        fit = _covered_fit(self.samples, self.rule.window_s)
        # A slope that overflowed to NaN (absurd values) is as undefined as a missing fit.
        if fit is None or math.isnan(fit[0]):
            return (NAN, NAN, NAN, NAN), None
        velocity = fit[0] * self.scale
        if self.mode in (_RATE, _VELOCITY):
            return self._levels((velocity, NAN, NAN, NAN), velocity)
        if self.mode == _TANGENT:
            angle = math.atan(velocity / self.creep) * 180.0 / math.pi
            return self._levels((angle, velocity, NAN, NAN), angle)
        if self.mode == _ACCELERATION:
            self.derived.append((t, velocity))
            trend = _covered_fit(self.derived, self.derived_window_s)
            if trend is None:
                return (NAN, velocity, NAN, NAN), None
            acceleration = trend[0] * 86400.0
            return self._levels((acceleration, velocity, NAN, NAN), acceleration)
        if velocity > 0.0:
            self.derived.append((t, 1.0 / velocity))
        trend = _covered_fit(self.derived, self.derived_window_s)
        if trend is None:
            return (NAN, NAN, velocity, NAN), None
        slope, mean_t, mean_inverse, r2 = trend
        failure_t = math.inf
        lead_h = math.inf
        if slope < 0.0 and r2 >= self.min_r2:
            failure_t = mean_t - mean_inverse / slope
            lead_h = (failure_t - t) / 3600.0
        return self._levels((lead_h, failure_t, velocity, r2), -lead_h)

    def _levels(self, values: tuple[float, ...], metric: float) -> Evaluation:
        return values, threshold_levels(metric, self.thresholds, self.rule.hysteresis)
