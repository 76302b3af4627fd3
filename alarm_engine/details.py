"""Words and headline numbers for level changes and status displays.

Turns a backend's metric snapshot into ``LevelChange.metric`` / ``detail`` and into the
named values of ``AlarmEngine.metrics()``. Pure formatting: never changes a level.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from alarm_engine.forecast_layout import CONFIRMED_H, NEWEST_H
from alarm_engine.level_change import LevelChange
from alarm_engine.model import RawChange
from site_schema.rule_specs import (
    LEVEL_BY_NAME,
    AntecedentRainRule,
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    FailureForecastRule,
    IntensityDurationRule,
    InverseVelocityRule,
    RainWindowRule,
    RateOfRiseRule,
    SampleRule,
    TangentAngleRule,
    WaterLevelRule,
    level_name,
)

_YEAR_10000 = 253402300800.0
#: A failure forecast, in the kernel's order (``forecast_layout.OUT_SIZE``): what a gateway
#: reports of it to the fleet.
FORECAST_VALUES = (
    "lead_h",
    "failure_t",
    "failure_t_low",
    "failure_t_high",
    "alpha",
    "velocity_mm_day",
    "evidence",
)
#: A failure-forecast rule's snapshot: the newest forecast, then the lead its horizons
#: judged (``forecast_layout.CONFIRMED_H``) and the newest forecast's own cautious lead
#: (``forecast_layout.NEWEST_H``).
FORECAST_SNAPSHOT = (*FORECAST_VALUES, "confirmed_h", "newest_h")


def value_names(rule: SampleRule) -> tuple[str, ...]:
    """Names of the values in a rule's metric snapshot, in snapshot order."""
    match rule:
        case RainWindowRule():
            return tuple(f"{w.name}_mm" for w in rule.windows)
        case AntecedentRainRule():
            return ("ear_mm",)
        case IntensityDurationRule():
            return ("intensity_mm_h", "duration_h", "event_mm")
        case WaterLevelRule():
            return ("level",)
        case RateOfRiseRule():
            return ("rate_per_h",)
        case DisplacementVelocityRule():
            return ("velocity_mm_day",)
        case DisplacementAccelerationRule():
            return ("acceleration_mm_day2", "velocity_mm_day")
        case TangentAngleRule():
            return ("angle_deg", "velocity_mm_day")
        case InverseVelocityRule():
            return ("lead_h", "failure_t", "velocity_mm_day", "r2")
        case FailureForecastRule():
            return FORECAST_SNAPSHOT


def named_values(rule: SampleRule, values: tuple[float, ...]) -> dict[str, float]:
    """The snapshot as a name -> value mapping, for status displays."""
    return dict(zip(value_names(rule), values, strict=False))


def _iso(t: float) -> str:
    if not 0.0 <= t < _YEAR_10000:
        return "(beyond the calendar)"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(x: float | None, unit: str = "") -> str:
    return "-" if x is None else f"{x:g}{unit}"


def _rain_window(rule: RainWindowRule, values: tuple[float, ...], level: int) -> int:
    """Index of the window closest to (or furthest past) its threshold for ``level``."""
    best, best_ratio = 0, -math.inf
    for w, window in enumerate(rule.windows):
        threshold = window.thresholds[level - 1]
        if threshold is not None and values[w] / threshold > best_ratio:
            best, best_ratio = w, values[w] / threshold
    return best


def _judged(
    rule: FailureForecastRule, values: tuple[float, ...], level: int, rising: bool
) -> tuple[str, str, bool]:
    """The time a forecast's ``level`` was judged by, in words, and the horizon it met.

    Confirmed forecasts are judged by the lead in the snapshot's ``confirmed_h`` (the
    latest of the agreeing failure times, shortened for caution), which may be hours more
    than the newest forecast's own: the words give that lead, never another. A yellow with
    no confirmed lead inside the yellow horizon came from the newest forecast alone
    (``unconfirmed_h``), judged by its own cautious time, ``newest_h``: judged on the fit's
    own interval, which the stated interval (the snapshot's) may widen, so it is never
    worked out again from the snapshot. A yellow left while no forecasts confirm was the
    newest forecast's, which stops holding it once its time passes ``unconfirmed_h``, with
    no hysteresis. The last value says whether the rule's hysteresis applies.
    """
    confirmed = values[CONFIRMED_H]
    caution = f"caution {rule.caution:g}" if rule.caution > 0.0 else ""
    horizon = _number(rule.horizons_h[level - 1], " h")
    yellow = LEVEL_BY_NAME["yellow"]
    yellow_h = rule.horizons_h[yellow - 1]
    if rising:
        from_newest = level == yellow and not (yellow_h is not None and confirmed <= yellow_h)
    else:
        from_newest = level == yellow and not math.isfinite(confirmed)
    if math.isfinite(confirmed) and not from_newest:
        kind = "cautious" if caution else "confirmed"
        agree = ", ".join(w for w in (f"{rule.confirm} forecasts in a row agree", caution) if w)
        return f", {kind} time in {confirmed:.1f} h ({agree})", horizon, True
    newest = values[NEWEST_H]
    if not math.isfinite(newest):
        words = ", set aside (outside the rule's alpha range or spread, or refuted)"
    elif caution:
        words = f", cautious time in {newest:.1f} h ({caution})"
    else:
        words = ""
    words += f", not confirmed yet ({rule.confirm} forecasts in a row must agree)"
    watch = rule.unconfirmed_h
    if from_newest and watch is not None and (not rising or newest <= watch):
        return words, _number(watch, " h"), False
    return words, horizon, True


def _headline(
    rule: SampleRule, values: tuple[float, ...], level: int, rising: bool
) -> tuple[float, str, str, bool]:
    """Return (metric, its words, its threshold for ``level`` in words, hysteresis).

    The last says whether the rule's hysteresis applies to that threshold on a fall.
    """
    threshold: float | None
    match rule:
        case RainWindowRule():
            w = _rain_window(rule, values, level)
            window = rule.windows[w]
            what = f"{window.name} window {values[w]:.1f} mm"
            return values[w], what, _number(window.thresholds[level - 1]), True
        case IntensityDurationRule():
            intensity, duration_h, event_mm = values
            what = f"event of {duration_h:.1f} h, {event_mm:.1f} mm, at {intensity:.2f} mm/h"
            curve = rule.curves[level - 1]
            if curve is None:
                return intensity, what, "-", True
            at = curve.at(duration_h) if duration_h > 0 else math.inf
            return intensity, what, f"{at:.2f} mm/h = {curve.a:g}*D^{curve.b:g}", True
        case InverseVelocityRule():
            lead_h, failure_t, _, _ = values
            horizon = rule.horizons_h[level - 1]
            if not math.isfinite(lead_h):
                what = "no velocity trend yet" if math.isnan(lead_h) else "no failure predicted"
                return lead_h, what, _number(horizon, " h"), True
            what = f"predicted failure at {_iso(failure_t)} (t={failure_t:.0f}), in {lead_h:.1f} h"
            return lead_h, what, _number(horizon, " h"), True
        case FailureForecastRule():
            lead_h, failure_t, low_t, high_t, alpha, velocity, evidence, *_ = values
            horizon = rule.horizons_h[level - 1]
            if not math.isfinite(lead_h):
                what = (
                    "no forecast yet"
                    if math.isnan(lead_h)
                    else f"no failure in sight (v {velocity:.2f} mm/day)"
                )
                return lead_h, what, _number(horizon, " h"), True
            if evidence < rule.min_evidence:
                what = (
                    f"no failure in sight (acceleration evidence {evidence:.0f} "
                    f"< {rule.min_evidence:g}, v {velocity:.2f} mm/day)"
                )
                return math.inf, what, _number(horizon, " h"), True
            what = (
                f"predicted failure at {_iso(failure_t)} (t={failure_t:.0f}), in {lead_h:.1f} h "
                f"[95% {_iso(low_t)} .. {_iso(high_t)}], alpha {alpha:.2f}, "
                f"v {velocity:.2f} mm/day, evidence {evidence:.0f}"
            )
            judged, threshold_words, hysteresis = _judged(rule, values, level, rising)
            return lead_h, what + judged, threshold_words, hysteresis
        case AntecedentRainRule():
            what, threshold = f"EAR {values[0]:.1f} mm", rule.thresholds[level - 1]
        case WaterLevelRule():
            what, threshold = f"water level {values[0]:.4g}", rule.thresholds[level - 1]
        case RateOfRiseRule():
            what, threshold = f"rate of rise {values[0]:.4g}/h", rule.thresholds[level - 1]
        case DisplacementVelocityRule():
            what, threshold = f"velocity {values[0]:.2f} mm/day", rule.thresholds[level - 1]
        case DisplacementAccelerationRule():
            what = f"acceleration {values[0]:.2f} mm/day^2 (v {values[1]:.2f} mm/day)"
            threshold = rule.thresholds[level - 1]
        case TangentAngleRule():
            what = f"tangent angle {values[0]:.1f} deg (v {values[1]:.2f} mm/day)"
            threshold = rule.thresholds[level - 1]
    return values[0], what, _number(threshold), True


def describe(
    rule: SampleRule, raw: RawChange, t: float, kind: Literal["rise", "fall", "ack"]
) -> LevelChange:
    """Word a backend's change of ``rule`` at time ``t``."""
    # The threshold that matters is the higher level's: the one met on a rise, the one
    # left (or released) on a fall or acknowledgement.
    level = max(raw.old, raw.new, 1)
    metric, what, threshold, hysteresis = _headline(rule, raw.values, level, kind == "rise")
    colour = level_name(level)
    horizon = isinstance(rule, InverseVelocityRule | FailureForecastRule)
    if kind == "rise":
        detail = f"{what} {'<=' if horizon else '>='} {threshold} ({colour})"
    elif kind == "fall":
        margin = ""
        if rule.hysteresis and hysteresis:
            margin = f" {'+' if horizon else '-'} {rule.hysteresis:g}"
        detail = (
            f"{what} {'>' if horizon else '<'} {threshold}{margin} ({colour}) "
            f"for {rule.hold_s:g} s, now {level_name(raw.new)}"
        )
    else:
        detail = f"acknowledged {level_name(raw.old)}; {what}; now {level_name(raw.new)}"
    values = named_values(rule, raw.values)
    return LevelChange(rule.id, t, raw.old, raw.new, kind, metric, detail, values)
