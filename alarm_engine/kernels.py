"""Numba kernels: level state machine, rain counters and windows, EAR, I-D, water level.

Each kernel advances one rule over a batch of its channel's samples from carried state
arrays, so live evaluation (a batch of one) and replay (the whole history) run the same
code. Kernels never allocate, never raise on data and never touch Python objects; when a
buffer is full they stop and return the index to resume from, so the caller can grow it.
Every formula mirrors the reference (``reference*.py``) in the same order, so results
match bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from alarm_engine.kernel_cache import engine_cache_dir
from alarm_engine.model import BoolArray, FloatArray

IntArray: TypeAlias = npt.NDArray[np.int64]
_F = TypeVar("_F", bound=Callable[..., Any])


# Before any kernel below is decorated: numba picks each kernel's cache place then. With
# no NUMBA_CACHE_DIR numba would cache beside the sources; the same place, keyed.
# (numba's stubs do not declare its config's attributes.)
_HERE = Path(__file__).resolve().parent
_BASE = getattr(numba.config, "CACHE_DIR", "") or str(_HERE / "__pycache__" / "numba")
#: This engine's kernel directory.
CACHE_DIR = engine_cache_dir(_BASE)
setattr(numba.config, "CACHE_DIR", CACHE_DIR)  # noqa: B010


def jit(fn: _F) -> _F:
    """Compile ``fn`` with numba, cached on disk, releasing the GIL.

    numba's own annotations type the compiled dispatcher loosely; the cast keeps the Python
    function's signature for mypy, since the dispatcher is called exactly like it.
    """
    return cast(_F, numba.njit(cache=True, nogil=True)(fn))


# Layout of the state-machine array ``sm`` every kernel carries.
LEVEL, LATCHED, BELOW_S, PREV_BELOW, CHAIN, LAST_T, HOLD_LEVEL = range(7)
SM_SIZE = 7
#: Third value a kernel returns when the event arrays are full: flush and resume.
EVENTS_FULL = 3


@jit
def sm_evaluate(
    sm: FloatArray, t: float, up: int, hold: int, hold_s: float, latch_from: float
) -> int:
    """Apply one good evaluation; return the old level if the level changed, else -1."""
    credit = sm[PREV_BELOW] != 0.0 and sm[CHAIN] != 0.0
    prev_t = sm[LAST_T]
    sm[LAST_T] = t
    sm[CHAIN] = 1.0
    sm[HOLD_LEVEL] = hold
    old = int(sm[LEVEL])
    if up > old:
        sm[LEVEL] = up
        sm[BELOW_S] = 0.0
        sm[PREV_BELOW] = 0.0
        if latch_from > 0 and up >= latch_from:
            sm[LATCHED] = 1.0
        return old
    if hold < old:
        if credit:
            sm[BELOW_S] += t - prev_t
        sm[PREV_BELOW] = 1.0
        if sm[LATCHED] == 0.0 and sm[BELOW_S] >= hold_s:
            sm[LEVEL] = hold
            sm[BELOW_S] = 0.0
            sm[PREV_BELOW] = 0.0
            return old
        return -1
    sm[BELOW_S] = 0.0
    sm[PREV_BELOW] = 0.0
    return -1


@jit
def sm_acknowledge(sm: FloatArray) -> int:
    """Release the latch; return the old level, or -1 when nothing was latched."""
    if sm[LATCHED] == 0.0:
        return -1
    sm[LATCHED] = 0.0
    old = int(sm[LEVEL])
    if sm[PREV_BELOW] != 0.0:
        sm[LEVEL] = sm[HOLD_LEVEL]
        sm[BELOW_S] = 0.0
        sm[PREV_BELOW] = 0.0
    return old


@jit
def sm_restore_latch(sm: FloatArray, level: int) -> None:
    """Latch at ``level`` (or the current level if higher); restart the hold evidence."""
    sm[LEVEL] = max(sm[LEVEL], level)
    sm[LATCHED] = 1.0
    sm[BELOW_S] = 0.0
    below = not math.isnan(sm[LAST_T]) and sm[HOLD_LEVEL] < sm[LEVEL]
    sm[PREV_BELOW] = 1.0 if below else 0.0


@jit
def sm_restore_level(sm: FloatArray, level: int) -> None:
    """Raise to ``level`` recorded before a restart; hold evidence starts at the next sample."""
    sm[LEVEL] = max(sm[LEVEL], level)
    sm[BELOW_S] = 0.0
    sm[PREV_BELOW] = 0.0


@jit
def threshold_levels(metric: float, thresholds: FloatArray, hysteresis: float) -> tuple[int, int]:
    """Return (highest level met, highest level still supported with hysteresis).

    ``thresholds`` holds blue..red; NaN marks a level the rule does not set (every
    comparison with NaN is false, so it is skipped).
    """
    up = 0
    hold = 0
    for j in range(4):
        if metric >= thresholds[j]:
            up = j + 1
        if metric >= thresholds[j] - hysteresis:
            hold = j + 1
    return up, hold


@jit
def counter_increment(prev: float, cur: float, dt: float, modulus: float, max_rate: float) -> float:
    """Rain between two good counter readings, never negative (see reference.py).

    ``modulus`` is NaN when the counter's wrap value is unknown.
    """
    diff = cur - prev
    if diff >= 0.0:
        return diff
    limit = max_rate * dt
    if modulus > 0.0 and prev > 0.5 * modulus and cur < 0.5 * modulus:
        wrapped = cur + modulus - prev
        if wrapped <= limit:
            return wrapped
    if 0.0 <= cur <= limit:
        return cur
    return 0.0


@jit
def record(
    i: int,
    old: int,
    sm: FloatArray,
    snap: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
    n_ev: int,
) -> int:
    """Append a level change at sample ``i`` with the current snapshot; return the count."""
    ev_idx[n_ev] = i
    ev_old[n_ev] = old
    ev_new[n_ev] = int(sm[LEVEL])
    for k in range(snap.shape[0]):
        ev_vals[n_ev, k] = snap[k]
    return n_ev + 1


@jit
def _compact_rain(ip: IntArray, buf: FloatArray) -> None:
    """Move the entries some window still needs to the front of ``buf``.

    Leaves ``buf`` full (so the caller grows it) when at least half of it is still
    needed: compacting then would copy too often.
    """
    start = ip[1]
    for w in range(2, ip.shape[0]):
        start = min(start, ip[w])
    end = ip[0]
    if 2 * (end - start) > buf.shape[0]:
        return
    for j in range(start, end):
        buf[j - start, 0] = buf[j, 0]
        buf[j - start, 1] = buf[j, 1]
    ip[0] = end - start
    for w in range(1, ip.shape[0]):
        ip[w] -= start


@jit
def rain_windows_kernel(
    t: FloatArray,
    v: FloatArray,
    good: BoolArray,
    i0: int,
    n_ev: int,
    windows_s: FloatArray,
    thresholds: FloatArray,
    cfg: FloatArray,
    sm: FloatArray,
    ks: FloatArray,
    ip: IntArray,
    buf: FloatArray,
    snap: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
) -> tuple[int, int, int]:
    """Rain over sliding windows from a cumulative counter; any window may raise a level.

    cfg = [modulus, max_rate, hysteresis, hold_s, latch_from];
    ks = [prev value, prev time, running total, running total before window w ...];
    ip = [end of buf, first entry inside window w ...]; buf rows = (time, total after).
    Returns (next sample, event count, code): code 1 when buf must grow before resuming
    at that sample, ``EVENTS_FULL`` when the events must be flushed, else 0.
    """
    n_win = windows_s.shape[0]
    for i in range(i0, t.shape[0]):
        x = v[i]
        if not good[i] or not math.isfinite(x):
            sm[CHAIN] = 0.0
            continue
        ti = t[i]
        inc = 0.0
        if not math.isnan(ks[1]):
            inc = counter_increment(ks[0], x, ti - ks[1], cfg[0], cfg[1])
        if inc > 0.0:
            if ip[0] == buf.shape[0]:
                _compact_rain(ip, buf)
                if ip[0] == buf.shape[0]:
                    return i, n_ev, 1
            ks[2] += inc
            buf[ip[0], 0] = ti
            buf[ip[0], 1] = ks[2]
            ip[0] += 1
        ks[0] = x
        ks[1] = ti
        up = 0
        hold = 0
        for w in range(n_win):
            edge = ti - windows_s[w]
            p = ip[1 + w]
            while p < ip[0] and buf[p, 0] <= edge:
                ks[3 + w] = buf[p, 1]
                p += 1
            ip[1 + w] = p
            window_sum = ks[2] - ks[3 + w]
            snap[w] = window_sum
            u, h = threshold_levels(window_sum, thresholds[w], cfg[2])
            up = max(up, u)
            hold = max(hold, h)
        old = sm_evaluate(sm, ti, up, hold, cfg[3], cfg[4])
        if old >= 0:
            n_ev = record(i, old, sm, snap, ev_idx, ev_old, ev_new, ev_vals, n_ev)
            if n_ev == ev_idx.shape[0]:
                return i + 1, n_ev, EVENTS_FULL
    return t.shape[0], n_ev, 0


@jit
def antecedent_kernel(
    t: FloatArray,
    v: FloatArray,
    good: BoolArray,
    i0: int,
    n_ev: int,
    thresholds: FloatArray,
    cfg: FloatArray,
    sm: FloatArray,
    ks: FloatArray,
    snap: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
) -> tuple[int, int, int]:
    """Effective antecedent rainfall, decayed by ``k ** age_days``.

    cfg = [modulus, max_rate, k, hysteresis, hold_s, latch_from]; ks = [prev value,
    prev time, EAR at prev time].
    """
    for i in range(i0, t.shape[0]):
        x = v[i]
        if not good[i] or not math.isfinite(x):
            sm[CHAIN] = 0.0
            continue
        ti = t[i]
        prev_t = ks[1]
        inc = 0.0
        if not math.isnan(prev_t):
            inc = counter_increment(ks[0], x, ti - prev_t, cfg[0], cfg[1])
        ks[0] = x
        ks[1] = ti
        if not math.isnan(prev_t):
            ks[2] = ks[2] * cfg[2] ** ((ti - prev_t) / 86400.0) + inc
        snap[0] = ks[2]
        up, hold = threshold_levels(ks[2], thresholds, cfg[3])
        old = sm_evaluate(sm, ti, up, hold, cfg[4], cfg[5])
        if old >= 0:
            n_ev = record(i, old, sm, snap, ev_idx, ev_old, ev_new, ev_vals, n_ev)
            if n_ev == ev_idx.shape[0]:
                return i + 1, n_ev, EVENTS_FULL
    return t.shape[0], n_ev, 0


@jit
def intensity_duration_kernel(
    t: FloatArray,
    v: FloatArray,
    good: BoolArray,
    i0: int,
    n_ev: int,
    curves: FloatArray,
    cfg: FloatArray,
    sm: FloatArray,
    ks: FloatArray,
    snap: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
) -> tuple[int, int, int]:
    """Event intensity against ``I = a * D ** b`` curves (rows blue..red, NaN if unset).

    cfg = [modulus, max_rate, dry_gap_s, min_duration_s, hysteresis, hold_s, latch_from];
    ks = [prev value, prev time, event active, event start, last rain time, event mm].
    """
    for i in range(i0, t.shape[0]):
        x = v[i]
        if not good[i] or not math.isfinite(x):
            sm[CHAIN] = 0.0
            continue
        ti = t[i]
        prev_t = ks[1]
        inc = 0.0
        if not math.isnan(prev_t):
            inc = counter_increment(ks[0], x, ti - prev_t, cfg[0], cfg[1])
        ks[0] = x
        ks[1] = ti
        if ks[2] != 0.0 and ti - ks[4] >= cfg[2]:
            ks[2] = 0.0
            ks[5] = 0.0
        if inc > 0.0:
            if ks[2] == 0.0:
                ks[2] = 1.0
                ks[3] = prev_t
                ks[5] = 0.0
            ks[5] += inc
            ks[4] = ti
        up = 0
        hold = 0
        if ks[2] == 0.0:
            snap[0] = 0.0
            snap[1] = 0.0
            snap[2] = 0.0
        else:
            duration_s = ks[4] - ks[3]
            duration_h = duration_s / 3600.0
            intensity = ks[5] / duration_h if duration_s > 0.0 else 0.0
            if duration_s >= cfg[3]:
                for j in range(4):
                    threshold = curves[j, 0] * duration_h ** curves[j, 1]
                    if intensity >= threshold:
                        up = j + 1
                    if intensity >= threshold - cfg[4]:
                        hold = j + 1
            snap[0] = intensity
            snap[1] = duration_h
            snap[2] = ks[5]
        old = sm_evaluate(sm, ti, up, hold, cfg[5], cfg[6])
        if old >= 0:
            n_ev = record(i, old, sm, snap, ev_idx, ev_old, ev_new, ev_vals, n_ev)
            if n_ev == ev_idx.shape[0]:
                return i + 1, n_ev, EVENTS_FULL
    return t.shape[0], n_ev, 0


@jit
def level_kernel(
    t: FloatArray,
    v: FloatArray,
    good: BoolArray,
    i0: int,
    n_ev: int,
    thresholds: FloatArray,
    cfg: FloatArray,
    sm: FloatArray,
    snap: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
) -> tuple[int, int, int]:
    """Thresholds on the value itself; cfg = [hysteresis, hold_s, latch_from]."""
    for i in range(i0, t.shape[0]):
        x = v[i]
        if not good[i] or not math.isfinite(x):
            sm[CHAIN] = 0.0
            continue
        snap[0] = x
        up, hold = threshold_levels(x, thresholds, cfg[0])
        old = sm_evaluate(sm, t[i], up, hold, cfg[1], cfg[2])
        if old >= 0:
            n_ev = record(i, old, sm, snap, ev_idx, ev_old, ev_new, ev_vals, n_ev)
            if n_ev == ev_idx.shape[0]:
                return i + 1, n_ev, EVENTS_FULL
    return t.shape[0], n_ev, 0
