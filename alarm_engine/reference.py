"""Plain-Python reference evaluation of every rule kind and of the level state machine.

Written for clarity, not speed (lists, deques, loops; no numpy, no numba): it serves hosts
without numba and is the oracle the kernels are tested against. Every formula is evaluated
in the same order as in the kernels so results match bit for bit; change both together.
The metrics live in ``reference_metrics.py`` (rain, water level) and ``reference_slope.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from alarm_engine.details import FORECAST_SNAPSHOT
from alarm_engine.model import RawChange
from alarm_engine.reference_forecast import ForecastMetric
from alarm_engine.reference_metrics import (
    NAN,
    AntecedentRain,
    IntensityDuration,
    RainWindows,
    WaterLevel,
)
from alarm_engine.reference_slope import SlopeMetric
from site_schema.rule_specs import (
    AntecedentRainRule,
    FailureForecastRule,
    IntensityDurationRule,
    RainWindowRule,
    SampleRule,
    WaterLevelRule,
)


class LevelState:
    """The level state machine shared by every rule kind (see ``model.RuleState``)."""

    def __init__(self, hold_s: float, latch_from: int) -> None:
        self.hold_s = hold_s
        self.latch_from = latch_from
        self.level = 0
        self.latched = False
        self.below_s = 0.0
        self.prev_below = False
        self.chain = True
        self.last_t = NAN
        self.hold_level = 0

    def pause(self) -> None:
        """A bad sample or an undefined metric: the next interval is no evidence."""
        self.chain = False

    def evaluate(self, t: float, up: int, hold: int) -> int | None:
        """Apply one good evaluation at ``t``; return the old level if the level changed."""
        credit = self.prev_below and self.chain
        prev_t = self.last_t
        self.last_t = t
        self.chain = True
        self.hold_level = hold
        old = self.level
        if up > old:
            self.level = up
            self.below_s = 0.0
            self.prev_below = False
            if self.latch_from > 0 and up >= self.latch_from:
                self.latched = True
            return old
        if hold < old:
            if credit:
                self.below_s += t - prev_t
            self.prev_below = True
            if not self.latched and self.below_s >= self.hold_s:
                self.level = hold
                self.below_s = 0.0
                self.prev_below = False
                return old
            return None
        self.below_s = 0.0
        self.prev_below = False
        return None

    def acknowledge(self) -> int | None:
        """Release the latch; return the old level, or None when nothing was latched."""
        if not self.latched:
            return None
        self.latched = False
        old = self.level
        if self.prev_below:
            self.level = self.hold_level
            self.below_s = 0.0
            self.prev_below = False
        return old

    def restore_latch(self, level: int) -> None:
        """Latch at ``level`` (or the current level if higher); restart the hold evidence."""
        self.level = max(self.level, level)
        self.latched = True
        self.below_s = 0.0
        self.prev_below = not math.isnan(self.last_t) and self.hold_level < self.level

    def restore_level(self, level: int) -> None:
        """Raise to ``level`` recorded before a restart; hold evidence starts at the next sample."""
        self.level = max(self.level, level)
        self.below_s = 0.0
        self.prev_below = False


_Metric = (
    RainWindows | AntecedentRain | IntensityDuration | WaterLevel | SlopeMetric | ForecastMetric
)


def _metric_for(rule: SampleRule) -> tuple[_Metric, int]:
    """Return the metric computer of ``rule`` and the length of its value snapshot."""
    match rule:
        case RainWindowRule():
            return RainWindows(rule), len(rule.windows)
        case AntecedentRainRule():
            return AntecedentRain(rule), 1
        case IntensityDurationRule():
            return IntensityDuration(rule), 3
        case WaterLevelRule():
            return WaterLevel(rule), 1
        case FailureForecastRule():
            return ForecastMetric(rule), len(FORECAST_SNAPSHOT)
        case _:
            return SlopeMetric(rule), 4


class ReferenceRule:
    """One rule on one channel, evaluated sample by sample in plain Python."""

    def __init__(self, rule: SampleRule) -> None:
        self.rule = rule
        self.state = LevelState(rule.hold_s, rule.latch_from)
        self._metric, size = _metric_for(rule)
        self.values: tuple[float, ...] = (NAN,) * size

    @property
    def level(self) -> int:
        """Current level."""
        return self.state.level

    @property
    def latched(self) -> bool:
        """True while a latched level waits for an acknowledgement."""
        return self.state.latched

    @property
    def accepted(self) -> tuple[float, tuple[float, ...]] | None:
        """A failure-forecast rule's newest accepted forecast (see ``ForecastMetric``)."""
        return self._metric.accepted if isinstance(self._metric, ForecastMetric) else None

    def process(
        self, t: Sequence[float], v: Sequence[float], good: Sequence[bool]
    ) -> list[RawChange]:
        """Advance over samples sorted by time; return the level changes in order."""
        changes: list[RawChange] = []
        for i, (ti, x, ok) in enumerate(zip(t, v, good, strict=True)):
            if not ok or not math.isfinite(x):
                self.state.pause()
                continue
            evaluation = self._metric.update(ti, x)
            if evaluation is None:
                continue
            self.values, levels = evaluation
            if levels is None:
                self.state.pause()
                continue
            old = self.state.evaluate(ti, *levels)
            if old is not None:
                changes.append(RawChange(i, old, self.state.level, self.values))
        return changes

    def acknowledge(self) -> RawChange | None:
        """Release the latch (see ``LevelState.acknowledge``)."""
        old = self.state.acknowledge()
        if old is None:
            return None
        return RawChange(-1, old, self.state.level, self.values)

    def restore_latch(self, level: int) -> None:
        """Re-apply a latched level recorded before a restart."""
        self.state.restore_latch(level)

    def restore_level(self, level: int) -> None:
        """Re-apply a level recorded before a restart."""
        self.state.restore_level(level)
