"""The numba backend: rules packed into kernel arrays, kernel output into ``RawChange``s.

It grows a kernel's buffers when the kernel asks. Importing this module imports numba (and
fails without it). It never decides a level: the kernels do, for live pushes and replays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from alarm_engine import forecast_kernels as fk
from alarm_engine import forecast_layout as fl
from alarm_engine import kernels as k
from alarm_engine import slope_kernels as sk
from alarm_engine.kernels import IntArray
from alarm_engine.model import BoolArray, FloatArray, RawChange
from site_schema.rule_specs import (
    FIT_MIN_COVERAGE,
    FIT_MIN_SAMPLES,
    MAX_RAIN_RATE_MM_S,
    AntecedentRainRule,
    AnySlopeRule,
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    FailureForecastRule,
    IntensityDurationRule,
    InverseVelocityRule,
    LevelThresholds,
    RainWindowRule,
    RateOfRiseRule,
    SampleRule,
    TangentAngleRule,
    WaterLevelRule,
)

#: Level changes (or velocity records) a kernel may report per call before handing back.
EVENT_CHUNK = 256
RECORD_CHUNK = 4096
#: Initial rows of the window buffers; they double when a kernel asks.
INITIAL_ROWS = 64

_Kernel = Callable[..., tuple[int, int, int]]


def _thresholds(values: LevelThresholds, *, negate: bool = False) -> FloatArray:
    sign = -1.0 if negate else 1.0
    return np.array([math.nan if x is None else sign * x for x in values], dtype=np.float64)


def _nan_if_none(x: float | None) -> float:
    return math.nan if x is None else x


def _grow(buf: FloatArray) -> FloatArray:
    grown = np.zeros((2 * buf.shape[0], 2), dtype=np.float64)
    grown[: buf.shape[0]] = buf
    return grown


class _Events:
    """Event arrays a kernel fills, reused between calls, and their conversion."""

    def __init__(self, size: int) -> None:
        self.idx: IntArray = np.zeros(EVENT_CHUNK, dtype=np.int64)
        self.old: IntArray = np.zeros(EVENT_CHUNK, dtype=np.int64)
        self.new: IntArray = np.zeros(EVENT_CHUNK, dtype=np.int64)
        self.vals = np.zeros((EVENT_CHUNK, size), dtype=np.float64)

    def arrays(self) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        return self.idx, self.old, self.new, self.vals

    def take(self, rule_id: str, count: int) -> list[tuple[str, RawChange]]:
        return [
            (
                rule_id,
                RawChange(
                    int(self.idx[j]),
                    int(self.old[j]),
                    int(self.new[j]),
                    tuple(float(x) for x in self.vals[j]),
                ),
            )
            for j in range(count)
        ]


class _LevelState:
    """The state-machine array of one rule and the rule-state protocol on top of it."""

    def __init__(self, size: int) -> None:
        self._sm = np.zeros(k.SM_SIZE, dtype=np.float64)
        self._sm[k.LAST_T] = math.nan
        self._sm[k.CHAIN] = 1.0
        self._snap = np.full(size, math.nan, dtype=np.float64)

    @property
    def level(self) -> int:
        """Current level."""
        return int(self._sm[k.LEVEL])

    @property
    def latched(self) -> bool:
        """True while a latched level waits for an acknowledgement."""
        return bool(self._sm[k.LATCHED])

    @property
    def values(self) -> tuple[float, ...]:
        """Metric snapshot of the latest evaluation."""
        return tuple(float(x) for x in self._snap)

    @property
    def accepted(self) -> tuple[float, tuple[float, ...]] | None:
        """None: only a failure-forecast rule has forecasts to accept."""
        return None

    def acknowledge(self) -> RawChange | None:
        """Release the latch (see ``kernels.sm_acknowledge``)."""
        old = k.sm_acknowledge(self._sm)
        if old < 0:
            return None
        return RawChange(-1, old, self.level, self.values)

    def restore_latch(self, level: int) -> None:
        """Re-apply a latched level recorded before a restart."""
        k.sm_restore_latch(self._sm, level)

    def restore_level(self, level: int) -> None:
        """Re-apply a level recorded before a restart."""
        k.sm_restore_level(self._sm, level)


class NumbaRule(_LevelState):
    """A rain, antecedent, intensity-duration or water-level rule run by its kernel."""

    def __init__(
        self, rule: RainWindowRule | AntecedentRainRule | IntensityDurationRule | WaterLevelRule
    ) -> None:
        self.rule = rule
        self._buf: FloatArray | None = None
        self._kernel: _Kernel
        self._params: tuple[Any, ...]
        self._state: tuple[Any, ...]
        sm_cfg = [rule.hysteresis, rule.hold_s, float(rule.latch_from)]
        match rule:
            case RainWindowRule():
                size = len(rule.windows)
                super().__init__(size)
                self._kernel = k.rain_windows_kernel
                self._params = (
                    np.array([w.seconds for w in rule.windows], dtype=np.float64),
                    np.stack([_thresholds(w.thresholds) for w in rule.windows]),
                    np.array([_nan_if_none(rule.counter_modulus), MAX_RAIN_RATE_MM_S, *sm_cfg]),
                )
                self._buf = np.zeros((INITIAL_ROWS, 2), dtype=np.float64)
                ks = np.array([math.nan, math.nan] + [0.0] * (1 + size), dtype=np.float64)
                self._state = (self._sm, ks, np.zeros(1 + size, dtype=np.int64))
            case AntecedentRainRule():
                super().__init__(1)
                self._kernel = k.antecedent_kernel
                cfg = [_nan_if_none(rule.counter_modulus), MAX_RAIN_RATE_MM_S, rule.decay_per_day]
                self._params = (_thresholds(rule.thresholds), np.array([*cfg, *sm_cfg]))
                self._state = (self._sm, np.array([math.nan, math.nan, 0.0]))
            case IntensityDurationRule():
                super().__init__(3)
                self._kernel = k.intensity_duration_kernel
                curves = [(math.nan, math.nan) if c is None else (c.a, c.b) for c in rule.curves]
                cfg = [
                    _nan_if_none(rule.counter_modulus),
                    MAX_RAIN_RATE_MM_S,
                    rule.dry_gap_s,
                    rule.min_duration_s,
                ]
                self._params = (np.array(curves, dtype=np.float64), np.array([*cfg, *sm_cfg]))
                ks = np.array([math.nan, math.nan, 0.0, math.nan, math.nan, 0.0])
                self._state = (self._sm, ks)
            case WaterLevelRule():
                super().__init__(1)
                self._kernel = k.level_kernel
                self._params = (_thresholds(rule.thresholds), np.array(sm_cfg))
                self._state = (self._sm,)
        self._events = _Events(len(self._snap))

    @property
    def states(self) -> dict[str, NumbaRule]:
        """The state of the one rule evaluated, by id."""
        return {self.rule.id: self}

    def process(self, t: FloatArray, v: FloatArray, good: BoolArray) -> list[tuple[str, RawChange]]:
        """Run the kernel over a batch (contiguous float64, float64, bool arrays).

        The kernel hands back early when its buffer is full (code 1: grow it and resume at
        the same sample) or when the event arrays are full (code 3: flush and resume).
        """
        changes: list[tuple[str, RawChange]] = []
        i = 0
        while True:
            buffers = () if self._buf is None else (self._buf,)
            i, n_ev, need = self._kernel(
                t,
                v,
                good,
                i,
                0,
                *self._params,
                *self._state,
                *buffers,
                self._snap,
                *self._events.arrays(),
            )
            changes += self._events.take(self.rule.id, n_ev)
            if need == 1 and self._buf is not None:
                self._buf = _grow(self._buf)
            elif need == 0:
                return changes


class NumbaSlopeRule(_LevelState):
    """One slope rule's second stage: velocity records in, metric and level out."""

    def __init__(self, rule: AnySlopeRule) -> None:
        super().__init__(4)
        self.rule = rule
        cfg = np.full(sk.CFG_SIZE, math.nan, dtype=np.float64)
        cfg[sk.DERIVED_WINDOW_S] = rule.window_s
        cfg[sk.SCALE] = 86400.0
        cfg[sk.MIN_SAMPLES] = FIT_MIN_SAMPLES
        cfg[sk.MIN_COVERAGE] = FIT_MIN_COVERAGE
        cfg[sk.HYSTERESIS] = rule.hysteresis
        cfg[sk.HOLD_S] = rule.hold_s
        cfg[sk.LATCH_FROM] = float(rule.latch_from)
        match rule:
            case RateOfRiseRule():
                cfg[sk.MODE], cfg[sk.SCALE] = sk.RATE, 3600.0
                self._thresholds = _thresholds(rule.thresholds)
            case DisplacementVelocityRule():
                cfg[sk.MODE] = sk.VELOCITY
                self._thresholds = _thresholds(rule.thresholds)
            case DisplacementAccelerationRule():
                cfg[sk.MODE] = sk.ACCELERATION
                self._thresholds = _thresholds(rule.thresholds)
            case TangentAngleRule():
                cfg[sk.MODE], cfg[sk.CREEP] = sk.TANGENT, rule.creep_rate_mm_day
                self._thresholds = _thresholds(rule.thresholds)
            case InverseVelocityRule():
                cfg[sk.MODE], cfg[sk.MIN_R2] = sk.INVERSE, rule.min_r2
                cfg[sk.DERIVED_WINDOW_S] = rule.fit_window_s
                self._thresholds = _thresholds(rule.horizons_h, negate=True)
        self._cfg = cfg
        self._ip: IntArray = np.zeros(2, dtype=np.int64)
        self._dbuf = np.zeros((INITIAL_ROWS, 2), dtype=np.float64)
        self._events = _Events(4)

    def consume(
        self, records: tuple[IntArray, FloatArray, FloatArray, FloatArray], count: int
    ) -> list[tuple[str, RawChange]]:
        """Advance over the first ``count`` velocity records."""
        changes: list[tuple[str, RawChange]] = []
        r = 0
        while True:
            r, n_ev, need = sk.slope_rule_kernel(
                *records,
                r,
                count,
                0,
                self._thresholds,
                self._cfg,
                self._sm,
                self._ip,
                self._dbuf,
                self._snap,
                *self._events.arrays(),
            )
            changes += self._events.take(self.rule.id, n_ev)
            if need == 1:
                self._dbuf = _grow(self._dbuf)
            elif need == 0:
                return changes


class NumbaSlopeGroup:
    """Slope rules of one channel with the same window and cadence: one fit serves all."""

    def __init__(self, rules: list[AnySlopeRule]) -> None:
        first = rules[0]
        self._cfg = np.array(
            [first.window_s, first.eval_every_s, FIT_MIN_SAMPLES, FIT_MIN_COVERAGE],
            dtype=np.float64,
        )
        self._ks = np.array([-math.inf, 0.0])
        self._ip: IntArray = np.zeros(2, dtype=np.int64)
        self._buf = np.zeros((INITIAL_ROWS, 2), dtype=np.float64)
        self._records = (
            np.zeros(RECORD_CHUNK, dtype=np.int64),
            np.zeros(RECORD_CHUNK, dtype=np.float64),
            np.zeros(RECORD_CHUNK, dtype=np.float64),
            np.zeros(RECORD_CHUNK, dtype=np.float64),
        )
        self._members = {rule.id: NumbaSlopeRule(rule) for rule in rules}

    @property
    def states(self) -> dict[str, NumbaSlopeRule]:
        """The state of each member rule, by id."""
        return self._members

    def load_kernels(self) -> None:
        """Call each member's kernel once on no records, so its machine code is loaded."""
        for member in self._members.values():
            member.consume(self._records, 0)

    def process(self, t: FloatArray, v: FloatArray, good: BoolArray) -> list[tuple[str, RawChange]]:
        """Fit the batch once, then let every member rule consume the velocity records."""
        changes: list[tuple[str, RawChange]] = []
        i = 0
        while True:
            i, count, need = sk.velocity_kernel(
                t, v, good, i, self._cfg, self._ks, self._ip, self._buf, *self._records
            )
            if count:
                for member in self._members.values():
                    changes += member.consume(self._records, count)
            if need == 1:
                self._buf = _grow(self._buf)
            elif need == 0:
                return changes


def forecast_cfg(rule: FailureForecastRule) -> FloatArray:
    """The forecast kernel's cfg array for ``rule``."""
    cfg = np.zeros(fk.CFG_SIZE, dtype=np.float64)
    cfg[fk.WINDOW_S] = rule.window_s
    cfg[fk.EVAL_EVERY_S] = rule.eval_every_s
    cfg[fk.BIN_S] = rule.bin_s
    cfg[fk.MIN_BINS] = rule.min_bins
    cfg[fk.MIN_SPAN_S] = rule.min_span_s
    cfg[fk.ALPHA_MIN], cfg[fk.ALPHA_MAX] = rule.alpha_range
    cfg[fk.N_ALPHA] = fl.N_ALPHA_STEPS
    cfg[fk.MIN_EVIDENCE] = rule.min_evidence
    cfg[fk.CONFIRM] = rule.confirm
    cfg[fk.OUTLIER_K] = fl.OUTLIER_SCALES
    cfg[fk.MAX_LEAD_H] = fl.MAX_LEAD_HOURS
    cfg[fk.MAX_SPREAD] = rule.max_spread
    cfg[fk.MAX_DRIFT] = rule.drift
    cfg[fk.CAUTION] = rule.caution
    cfg[fk.UNCONFIRMED_H] = math.nan if rule.unconfirmed_h is None else rule.unconfirmed_h
    cfg[fk.HYSTERESIS] = rule.hysteresis
    cfg[fk.HOLD_S] = rule.hold_s
    cfg[fk.LATCH_FROM] = float(rule.latch_from)
    return cfg


class NumbaForecastRule(_LevelState):
    """A failure-forecast rule run by ``forecast_kernel``."""

    def __init__(self, rule: FailureForecastRule) -> None:
        super().__init__(fl.SNAP_SIZE)
        self.rule = rule
        self._cfg = forecast_cfg(rule)
        self._thresholds = _thresholds(rule.horizons_h, negate=True)
        self._ks = np.full(fk.KS_HISTORY + rule.confirm, math.inf, dtype=np.float64)
        self._ks[fk.KS_NEXT] = -math.inf
        self._ks[fk.KS_REFUTED] = -math.inf
        self._ip: IntArray = np.zeros(2, dtype=np.int64)
        self._bins = fk.bin_count(rule.window_s, rule.bin_s)
        self._buf = np.zeros((INITIAL_ROWS, 2), dtype=np.float64)
        self._size_scratch()
        self._events = _Events(fl.SNAP_SIZE)
        # [time, forecast] of the newest forecast that passed its evidence test
        self._acc = np.full(1 + fl.OUT_SIZE, math.nan, dtype=np.float64)

    @property
    def accepted(self) -> tuple[float, tuple[float, ...]] | None:
        """(time, snapshot) of the newest forecast that passed its evidence test, or None."""
        if math.isnan(self._acc[0]):
            return None
        return float(self._acc[0]), tuple(float(x) for x in self._acc[1:])

    def _size_scratch(self) -> None:
        """Scratch for as many rows as the buffer holds and the window has bins."""
        rows = max(self._buf.shape[0], self._bins)
        self._scratch = np.zeros((rows, fk.SCRATCH_COLS), dtype=np.float64)
        self._work = np.zeros(rows + fk.WORK_EXTRA, dtype=np.float64)

    @property
    def states(self) -> dict[str, NumbaForecastRule]:
        """The state of the one rule evaluated, by id."""
        return {self.rule.id: self}

    def process(self, t: FloatArray, v: FloatArray, good: BoolArray) -> list[tuple[str, RawChange]]:
        """Run the kernel over a batch, growing its buffers when it asks."""
        changes: list[tuple[str, RawChange]] = []
        i = 0
        while True:
            i, n_ev, need = fk.forecast_kernel(
                t,
                v,
                good,
                i,
                0,
                self._thresholds,
                self._cfg,
                self._sm,
                self._ks,
                self._ip,
                self._buf,
                self._scratch,
                self._work,
                self._snap,
                self._acc,
                *self._events.arrays(),
            )
            changes += self._events.take(self.rule.id, n_ev)
            if need == 1:
                self._buf = _grow(self._buf)
                self._size_scratch()
            elif need == 0:
                return changes


def evaluators(
    rules: list[SampleRule],
) -> list[NumbaRule | NumbaSlopeGroup | NumbaForecastRule]:
    """Evaluators for the rules of one channel, slope rules grouped by window and cadence."""
    out: list[NumbaRule | NumbaSlopeGroup | NumbaForecastRule] = []
    groups: dict[tuple[float, float], list[AnySlopeRule]] = {}
    for rule in rules:
        if isinstance(rule, FailureForecastRule):
            out.append(NumbaForecastRule(rule))
        elif isinstance(
            rule, RainWindowRule | AntecedentRainRule | IntensityDurationRule | WaterLevelRule
        ):
            out.append(NumbaRule(rule))
        else:
            groups.setdefault((rule.window_s, rule.eval_every_s), []).append(rule)
    out += [NumbaSlopeGroup(group) for group in groups.values()]
    return out


def load_kernels(rules: list[SampleRule]) -> None:
    """Run every kernel ``rules`` need once, on throwaway state and empty input.

    Loading a kernel from numba's cache goes through LLVM; doing it for all of them up
    front means the compiler is never needed again while the agent runs.
    """
    t = np.zeros(0, dtype=np.float64)
    good = np.zeros(0, dtype=np.bool_)
    for evaluator in evaluators(rules):
        evaluator.process(t, t, good)
        if isinstance(evaluator, NumbaSlopeGroup):
            evaluator.load_kernels()
        for state in evaluator.states.values():
            state.restore_latch(1)
            state.acknowledge()
