"""NumPy-vectorised replay of rain-window and water-level rules, for benchmark comparison.

Batch only, for those two kinds only, and not an engine backend: it shows what array
programming achieves without numba. Metrics are whole-array operations; the level state
machine (inherently sequential) jumps from event to event, each step a vectorised search
over a growing chunk of the remaining samples. It matches the reference exactly when sample
times are whole seconds; otherwise the hold sum may round differently (the kernels add
intervals one by one, this adds them as a cumulative sum). Never used for live alarms.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from alarm_engine.model import BoolArray, FloatArray, RawChange
from site_schema.rule_specs import (
    MAX_RAIN_RATE_MM_S,
    LevelThresholds,
    RainWindowRule,
    WaterLevelRule,
)

IntArray = npt.NDArray[np.int64]
_FIRST_CHUNK = 1024


def counter_increments(t: FloatArray, v: FloatArray, modulus: float | None) -> FloatArray:
    """Rain increments between consecutive good counter readings (0 for the first)."""
    prev, cur = v[:-1], v[1:]
    diff = cur - prev
    limit = MAX_RAIN_RATE_MM_S * (t[1:] - t[:-1])
    falling = diff < 0.0
    inc = np.where(falling, 0.0, diff)
    wrap = np.zeros_like(falling)
    if modulus is not None:
        wrapped = cur + modulus - prev
        wrap = falling & (prev > 0.5 * modulus) & (cur < 0.5 * modulus) & (wrapped <= limit)
        inc = np.where(wrap, wrapped, inc)
    reset = falling & ~wrap & (cur >= 0.0) & (cur <= limit)
    inc = np.where(reset, cur, inc)
    return np.concatenate(([0.0], inc))


def rain_window_sums(t: FloatArray, v: FloatArray, rule: RainWindowRule) -> FloatArray:
    """Window sums at every good sample, one column per window of ``rule``."""
    total = np.cumsum(counter_increments(t, v, rule.counter_modulus))
    sums = np.empty((len(t), len(rule.windows)), dtype=np.float64)
    for w, window in enumerate(rule.windows):
        last_out = np.searchsorted(t, t - window.seconds, side="right") - 1
        before = np.where(last_out >= 0, total[np.maximum(last_out, 0)], 0.0)
        sums[:, w] = total - before
    return sums


def threshold_levels(
    metric: FloatArray, thresholds: LevelThresholds, hysteresis: float
) -> tuple[IntArray, IntArray]:
    """Per sample: (highest level met, highest level supported with hysteresis)."""
    up = np.zeros(len(metric), dtype=np.int64)
    hold = np.zeros(len(metric), dtype=np.int64)
    for level, threshold in enumerate(thresholds, start=1):
        if threshold is not None:
            up = np.where(metric >= threshold, level, up)
            hold = np.where(metric >= threshold - hysteresis, level, hold)
    return up, hold


def scan_levels(
    t: FloatArray,
    up: IntArray,
    hold: IntArray,
    chain: BoolArray,
    hold_s: float,
    latch_from: int,
) -> list[tuple[int, int, int]]:
    """Run the level state machine over good evaluations; return (index, old, new) changes.

    ``chain[k]`` is False when a bad sample came between evaluations k-1 and k.
    """
    changes: list[tuple[int, int, int]] = []
    level, latched, below_s, prev_below = 0, False, 0.0, False
    i, chunk, n = 0, _FIRST_CHUNK, len(t)
    while i < n:
        j = min(n, i + chunk)
        rises = np.flatnonzero(up[i:j] > level)
        first_rise = int(rises[0]) if len(rises) else j - i
        below = hold[i:j] < level
        prev = np.concatenate(([prev_below], below[:-1]))
        gaps = np.diff(t[i - 1 : j]) if i > 0 else np.concatenate(([0.0], np.diff(t[:j])))
        credit = np.where(below & prev & chain[i:j], gaps, 0.0)
        summed = np.cumsum(credit)
        # The hold restarts at each evaluation that is not below; before the first such
        # evaluation of the chunk it continues from the carried sum.
        resets = np.maximum.accumulate(np.where(~below, np.arange(j - i), -1))
        acc = np.where(resets >= 0, summed - summed[np.maximum(resets, 0)], below_s + summed)
        falls = np.flatnonzero(below & (acc >= hold_s)) if not latched else np.array([], int)
        first_fall = int(falls[0]) if len(falls) else j - i
        m = min(first_rise, first_fall)
        if m == j - i:
            below_s, prev_below = float(acc[-1]) if below[-1] else 0.0, bool(below[-1])
            i, chunk = j, 2 * chunk
            continue
        new = int(up[i + m]) if m == first_rise else int(hold[i + m])
        changes.append((i + m, level, new))
        if m == first_rise and latch_from and new >= latch_from:
            latched = True
        level, below_s, prev_below = new, 0.0, False
        i, chunk = i + m + 1, _FIRST_CHUNK
    return changes


def _good(t: FloatArray, v: FloatArray, good: BoolArray) -> tuple[IntArray, BoolArray]:
    index = np.flatnonzero(good & np.isfinite(v))
    chain = np.ones(len(index), dtype=np.bool_)
    if len(index):
        chain[0] = index[0] == 0
        chain[1:] = np.diff(index) == 1
    return index, chain


def replay_rain_windows(
    rule: RainWindowRule, t: FloatArray, v: FloatArray, good: BoolArray
) -> list[RawChange]:
    """Level changes of a rain-window rule over a whole history (from a fresh state)."""
    index, chain = _good(t, v, good)
    tg = t[index]
    sums = rain_window_sums(tg, v[index], rule)
    up = np.zeros(len(tg), dtype=np.int64)
    hold = np.zeros(len(tg), dtype=np.int64)
    for w, window in enumerate(rule.windows):
        u, h = threshold_levels(sums[:, w], window.thresholds, rule.hysteresis)
        up, hold = np.maximum(up, u), np.maximum(hold, h)
    return [
        RawChange(int(index[k]), old, new, tuple(float(x) for x in sums[k]))
        for k, old, new in scan_levels(tg, up, hold, chain, rule.hold_s, rule.latch_from)
    ]


def replay_water_level(
    rule: WaterLevelRule, t: FloatArray, v: FloatArray, good: BoolArray
) -> list[RawChange]:
    """Level changes of a water-level rule over a whole history (from a fresh state)."""
    index, chain = _good(t, v, good)
    vg = v[index]
    up, hold = threshold_levels(vg, rule.thresholds, rule.hysteresis)
    return [
        RawChange(int(index[k]), old, new, (float(vg[k]),))
        for k, old, new in scan_levels(t[index], up, hold, chain, rule.hold_s, rule.latch_from)
    ]
