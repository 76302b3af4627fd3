"""Validated alarm rules as typed, immutable data: what one ``[[rule]]`` table becomes.

Pure data shared by the parser, every backend and the engine; nothing here reads files
or evaluates samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from protocol.levels import LEVEL_NAMES

#: Colour name -> level number, for the warning levels a rule may set thresholds for.
LEVEL_BY_NAME = {name: level for level, name in enumerate(LEVEL_NAMES) if level > 0}
MAX_LEVEL = 4

#: A cumulative rain counter moving faster than this (540 mm/h, above any recorded rain rate)
#: after a reset or wrap is not rain: the increment is dropped instead of faking a burst.
MAX_RAIN_RATE_MM_S = 0.15
#: A least-squares slope needs this many good samples ...
FIT_MIN_SAMPLES = 3
#: ... spanning at least this fraction of its window; otherwise (just after a start or a
#: gap) the slope is undefined rather than a noisy guess from a few seconds of data.
FIT_MIN_COVERAGE = 0.5

LevelThresholds: TypeAlias = tuple[float | None, float | None, float | None, float | None]
"""Per-level thresholds for blue, yellow, orange, red; ``None`` where a level is not set."""


def level_name(level: int) -> str:
    """Return the colour name of ``level`` ("normal" for 0)."""
    return LEVEL_NAMES[level]


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What the engine needs to know about a site channel to validate rules against it.

    ``counter_modulus`` is the value at which a cumulative counter wraps to zero (a uint16
    counter of 0.1 mm wraps at 6553.6 mm), or None when the channel is not a wrapping counter.
    """

    quantity: str
    unit: str
    counter_modulus: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRule:
    """Common part of every rule that watches one channel.

    ``latch_from`` is the lowest level that latches until acknowledged; 0 means never.
    """

    id: str
    channel: str
    hysteresis: float = 0.0
    hold_s: float = 1800.0
    latch_from: int = 0
    description: str = ""


@dataclass(frozen=True, slots=True)
class RainWindow:
    """One sliding window of a rain-window rule, e.g. ``1h`` = 3600 s."""

    name: str
    seconds: float
    thresholds: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class RainWindowRule(ChannelRule):
    """Rain accumulated over sliding windows; a level fires when ANY window meets it."""

    kind: ClassVar[str] = "rain_windows"
    windows: tuple[RainWindow, ...]
    counter_modulus: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AntecedentRainRule(ChannelRule):
    """Effective antecedent rainfall ``EAR = sum(inc_i * k ** age_days_i)`` in mm."""

    kind: ClassVar[str] = "antecedent_rain"
    decay_per_day: float
    thresholds: LevelThresholds
    counter_modulus: float | None = None


@dataclass(frozen=True, slots=True)
class PowerLaw:
    """An intensity-duration curve ``I = a * D ** b`` (I in mm/h, D in hours)."""

    a: float
    b: float

    def at(self, duration_h: float) -> float:
        """Return the curve's intensity in mm/h at ``duration_h`` hours."""
        return float(self.a * duration_h**self.b)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntensityDurationRule(ChannelRule):
    """Event-based rainfall intensity-duration threshold (Caine; Guzzetti et al.)."""

    kind: ClassVar[str] = "rain_intensity_duration"
    curves: tuple[PowerLaw | None, PowerLaw | None, PowerLaw | None, PowerLaw | None]
    dry_gap_s: float = 21600.0
    min_duration_s: float = 600.0
    max_duration_s: float = 864000.0
    counter_modulus: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WaterLevelRule(ChannelRule):
    """Thresholds on the water level itself, in the channel's unit."""

    kind: ClassVar[str] = "water_level"
    thresholds: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class SlopeRule(ChannelRule):
    """Common part of the rules built on a least-squares slope over ``window_s``.

    The fit is evaluated on a good sample once ``eval_every_s`` of sample time has passed
    since the previous evaluation (0: on every good sample).
    """

    window_s: float
    eval_every_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RateOfRiseRule(SlopeRule):
    """Rate of rise of the water level, channel units per hour."""

    kind: ClassVar[str] = "rate_of_rise"
    thresholds: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class DisplacementVelocityRule(SlopeRule):
    """Displacement velocity in mm/day."""

    kind: ClassVar[str] = "displacement_velocity"
    thresholds: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class DisplacementAccelerationRule(SlopeRule):
    """Slope of the velocity estimates over ``window_s``, in mm/day per day."""

    kind: ClassVar[str] = "displacement_acceleration"
    thresholds: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class TangentAngleRule(SlopeRule):
    """Improved tangent angle (Xu Qiang): ``atan(v / creep_rate_mm_day)`` in degrees."""

    kind: ClassVar[str] = "tangent_angle"
    creep_rate_mm_day: float
    thresholds: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class InverseVelocityRule(SlopeRule):
    """Inverse-velocity failure prediction; level L when failure is within ``horizons_h[L]``.

    Horizons decrease with level (smaller lead time is worse); ``hysteresis`` is in hours.
    """

    kind: ClassVar[str] = "inverse_velocity"
    fit_window_s: float
    min_r2: float = 0.8
    horizons_h: LevelThresholds


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureForecastRule(ChannelRule):
    """Failure time forecast from Voight's law fitted to the displacement itself.

    Every ``eval_every_s`` the samples of the last ``window_s`` are cleaned, averaged into
    bins of ``bin_s`` and fitted with steady creep plus accelerating creep with exponent
    ``alpha``. A forecast counts only when its evidence (the F statistic against steady
    creep) reaches ``min_evidence`` from at least ``min_bins`` bins spanning ``min_span_s``,
    its alpha lies in ``alpha_range`` and its 95 % interval is at most ``max_spread`` times
    its lead time; level L needs ``confirm`` counting forecasts in a row that agree (their
    failure times no further apart than ``max_drift`` times the lead; by default half of
    ``max_spread``) and put the failure within ``horizons_h[L]`` hours. The lead they are
    judged by is shortened by ``caution`` times the newest forecast's early half-interval
    (its failure time less the early end of its 95 % interval; 0: the most likely time,
    1: the earliest the data allow), so caution only ever warns sooner. With
    ``unconfirmed_h``, a forecast that passed the evidence test but is not confirmed yet
    raises yellow (never more) when its lead, so shortened, is at most ``unconfirmed_h``
    hours. ``hysteresis`` is in hours.
    """

    kind: ClassVar[str] = "failure_forecast"
    window_s: float = 1209600.0
    eval_every_s: float = 3600.0
    bin_s: float = 3600.0
    min_bins: int = 24
    min_span_s: float = 86400.0
    alpha_range: tuple[float, float] = (1.5, 2.5)
    min_evidence: float = 100.0
    max_spread: float = 0.5
    max_drift: float | None = None
    confirm: int = 2
    caution: float = 0.0
    unconfirmed_h: float | None = None
    horizons_h: LevelThresholds

    @property
    def drift(self) -> float:
        """How far apart, as a share of the lead, confirming failure times may lie."""
        return 0.5 * self.max_spread if self.max_drift is None else self.max_drift


@dataclass(frozen=True, slots=True, kw_only=True)
class CombinationRule:
    """Level of other rules combined: ``all_of`` takes the minimum, ``any_of`` the maximum."""

    id: str
    kind: Literal["all_of", "any_of"]
    members: tuple[str, ...]
    latch_from: int = 0
    description: str = ""


RuleSpec: TypeAlias = (
    RainWindowRule
    | AntecedentRainRule
    | IntensityDurationRule
    | WaterLevelRule
    | RateOfRiseRule
    | DisplacementVelocityRule
    | DisplacementAccelerationRule
    | TangentAngleRule
    | InverseVelocityRule
    | FailureForecastRule
    | CombinationRule
)
"""Any validated rule."""

AnySlopeRule: TypeAlias = (
    RateOfRiseRule
    | DisplacementVelocityRule
    | DisplacementAccelerationRule
    | TangentAngleRule
    | InverseVelocityRule
)
"""A rule built on a least-squares slope of its channel."""

SampleRule: TypeAlias = (
    RainWindowRule
    | AntecedentRainRule
    | IntensityDurationRule
    | WaterLevelRule
    | RateOfRiseRule
    | DisplacementVelocityRule
    | DisplacementAccelerationRule
    | TangentAngleRule
    | InverseVelocityRule
    | FailureForecastRule
)
"""A rule evaluated on the samples of one channel (everything but combinations)."""

#: Weight below which an old rain no longer matters to the antecedent-rain replay horizon.
ANTECEDENT_NEGLIGIBLE_WEIGHT = 0.01


def history_needed_s(rule: RuleSpec) -> float:
    """Seconds of past samples a restart must replay to rebuild ``rule``'s metric and hold.

    Antecedent rain has infinite memory; its horizon is the age at which a rain's weight
    falls below ``ANTECEDENT_NEGLIGIBLE_WEIGHT``.
    """
    match rule:
        case CombinationRule():
            return 0.0
        case RainWindowRule():
            memory = max(w.seconds for w in rule.windows)
        case AntecedentRainRule():
            days = math.log(ANTECEDENT_NEGLIGIBLE_WEIGHT) / math.log(rule.decay_per_day)
            memory = days * 86400.0
        case IntensityDurationRule():
            memory = rule.max_duration_s + rule.dry_gap_s
        case WaterLevelRule():
            memory = 0.0
        case DisplacementAccelerationRule():
            memory = 2.0 * rule.window_s
        case InverseVelocityRule():
            memory = rule.window_s + rule.fit_window_s
        case FailureForecastRule():
            memory = rule.window_s + rule.confirm * rule.eval_every_s
        case RateOfRiseRule() | DisplacementVelocityRule() | TangentAngleRule():
            memory = rule.window_s
    return memory + rule.hold_s
