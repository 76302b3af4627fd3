"""Numba kernels of the rules built on a least-squares slope of the channel.

That is rate of rise, displacement velocity and acceleration, tangent angle and
inverse-velocity failure time, in two stages: ``velocity_kernel`` fits the slope of the
samples over the window at each evaluation (every ``eval_every_s`` of sample time) and
emits one record per evaluation; ``slope_rule_kernel`` turns records into one rule's metric
and level. Rules of a channel sharing window and cadence share the first, costly stage.
The fit is recomputed directly over its window, which avoids the precision loss of
sliding power sums on epoch-sized times. Like ``kernels.py`` it mirrors ``reference.py``
exactly and never allocates.
"""

from __future__ import annotations

import math

from alarm_engine.kernels import (
    CHAIN,
    EVENTS_FULL,
    IntArray,
    jit,
    record,
    sm_evaluate,
    threshold_levels,
)
from alarm_engine.model import BoolArray, FloatArray

# Slope modes; reference.py numbers them the same way.
RATE, VELOCITY, ACCELERATION, TANGENT, INVERSE = range(5)
# Layout of the velocity stage's cfg.
V_WINDOW_S, V_EVAL_EVERY_S, V_MIN_SAMPLES, V_MIN_COVERAGE = range(4)
V_CFG_SIZE = 4
# Layout of a rule stage's cfg.
(
    MODE,
    DERIVED_WINDOW_S,
    SCALE,
    CREEP,
    MIN_R2,
    MIN_SAMPLES,
    MIN_COVERAGE,
    HYSTERESIS,
    HOLD_S,
    LATCH_FROM,
) = range(10)
CFG_SIZE = 10


@jit
def fit_line(buf: FloatArray, start: int, end: int) -> tuple[bool, float, float, float, float]:
    """Least-squares line through rows ``start:end`` of ``buf`` (time, value).

    Returns (ok, slope, mean time, mean value, r^2); sums are relative to the last row.
    """
    n = end - start
    t_ref = buf[end - 1, 0]
    x_ref = buf[end - 1, 1]
    st = 0.0
    sx = 0.0
    stt = 0.0
    stx = 0.0
    sxx = 0.0
    for j in range(start, end):
        dt = buf[j, 0] - t_ref
        dx = buf[j, 1] - x_ref
        st += dt
        sx += dx
        stt += dt * dt
        stx += dt * dx
        sxx += dx * dx
    s_tt = stt - st * st / n
    s_tx = stx - st * sx / n
    s_xx = sxx - sx * sx / n
    if not s_tt > 0.0:
        return False, math.nan, math.nan, math.nan, math.nan
    r2 = s_tx * s_tx / (s_tt * s_xx) if s_xx > 0.0 else 0.0
    return True, s_tx / s_tt, t_ref + st / n, x_ref + sx / n, r2


@jit
def fit_slope(buf: FloatArray, start: int, end: int) -> float:
    """The slope of ``fit_line`` alone (NaN if undefined), bit for bit, with fewer sums."""
    n = end - start
    t_ref = buf[end - 1, 0]
    x_ref = buf[end - 1, 1]
    st = 0.0
    sx = 0.0
    stt = 0.0
    stx = 0.0
    for j in range(start, end):
        dt = buf[j, 0] - t_ref
        dx = buf[j, 1] - x_ref
        st += dt
        sx += dx
        stt += dt * dt
        stx += dt * dx
    s_tt = stt - st * st / n
    if not s_tt > 0.0:
        return math.nan
    return (stx - st * sx / n) / s_tt


@jit
def covered(
    buf: FloatArray, start: int, end: int, window_s: float, min_samples: float, coverage: float
) -> bool:
    """True when enough rows span enough of the window for a trustworthy fit."""
    if end - start < min_samples:
        return False
    return bool(buf[end - 1, 0] - buf[start, 0] >= coverage * window_s)


@jit
def expire(buf: FloatArray, ip: IntArray, k: int, edge: float) -> bool:
    """Drop rows at or before ``edge``; compact when full.

    Returns False when the buffer must grow first: it is full and at least half of it is
    still live, so compacting would copy too often.
    """
    start = ip[k]
    end = ip[k + 1]
    while start < end and buf[start, 0] <= edge:
        start += 1
    ip[k] = start
    if end < buf.shape[0]:
        return True
    if 2 * (end - start) > buf.shape[0]:
        return False
    for j in range(start, end):
        buf[j - start, 0] = buf[j, 0]
        buf[j - start, 1] = buf[j, 1]
    ip[k] = 0
    ip[k + 1] = end - start
    return True


@jit
def _append(buf: FloatArray, ip: IntArray, k: int, t: float, x: float) -> None:
    end = ip[k + 1]
    buf[end, 0] = t
    buf[end, 1] = x
    ip[k + 1] = end + 1


@jit
def velocity_kernel(
    t: FloatArray,
    v: FloatArray,
    good: BoolArray,
    i0: int,
    cfg: FloatArray,
    ks: FloatArray,
    ip: IntArray,
    buf: FloatArray,
    rec_idx: IntArray,
    rec_t: FloatArray,
    rec_slope: FloatArray,
    rec_paused: FloatArray,
) -> tuple[int, int, int]:
    """Stage 1: the slope over the window at each evaluation, one record per evaluation.

    ks = [time of the next evaluation, 1 if a bad sample came since the last record];
    ip = [start, end of buf]; buf holds the good samples inside the window. A record is
    (sample index, time, slope per second or NaN when too few samples, paused flag).
    Returns (next sample, record count, code): 1 when buf must grow before resuming at
    that sample, ``EVENTS_FULL`` when the records must be consumed, else 0.
    """
    n_rec = 0
    for i in range(i0, t.shape[0]):
        x = v[i]
        if not good[i] or not math.isfinite(x):
            ks[1] = 1.0
            continue
        ti = t[i]
        if not expire(buf, ip, 0, ti - cfg[V_WINDOW_S]):
            return i, n_rec, 1
        _append(buf, ip, 0, ti, x)
        if ti < ks[0]:
            continue
        ks[0] = ti + cfg[V_EVAL_EVERY_S]
        slope = math.nan
        if covered(buf, ip[0], ip[1], cfg[V_WINDOW_S], cfg[V_MIN_SAMPLES], cfg[V_MIN_COVERAGE]):
            slope = fit_slope(buf, ip[0], ip[1])
        rec_idx[n_rec] = i
        rec_t[n_rec] = ti
        rec_slope[n_rec] = slope
        rec_paused[n_rec] = ks[1]
        ks[1] = 0.0
        n_rec += 1
        if n_rec == rec_idx.shape[0]:
            return i + 1, n_rec, EVENTS_FULL
    return t.shape[0], n_rec, 0


@jit
def _set4(snap: FloatArray, a: float, b: float, c: float, d: float) -> None:
    snap[0] = a
    snap[1] = b
    snap[2] = c
    snap[3] = d


@jit
def _derived_fit(
    dbuf: FloatArray, ip: IntArray, cfg: FloatArray
) -> tuple[bool, float, float, float, float]:
    if not covered(dbuf, ip[0], ip[1], cfg[DERIVED_WINDOW_S], cfg[MIN_SAMPLES], cfg[MIN_COVERAGE]):
        return False, math.nan, math.nan, math.nan, math.nan
    return fit_line(dbuf, ip[0], ip[1])


@jit
def _metric(
    mode: int,
    ti: float,
    velocity: float,
    cfg: FloatArray,
    ip: IntArray,
    dbuf: FloatArray,
    snap: FloatArray,
) -> tuple[bool, float]:
    """Fill ``snap`` from a velocity estimate; return (defined, metric compared to thresholds).

    dbuf has room for one more row (the caller made sure).
    """
    nan = math.nan
    if mode in (RATE, VELOCITY):
        _set4(snap, velocity, nan, nan, nan)
        return True, velocity
    if mode == TANGENT:
        angle = math.atan(velocity / cfg[CREEP]) * 180.0 / math.pi
        _set4(snap, angle, velocity, nan, nan)
        return True, angle
    if mode == ACCELERATION:
        _append(dbuf, ip, 0, ti, velocity)
        ok, trend, _, _, _ = _derived_fit(dbuf, ip, cfg)
        if not ok:
            _set4(snap, nan, velocity, nan, nan)
            return False, nan
        acceleration = trend * 86400.0
        _set4(snap, acceleration, velocity, nan, nan)
        return True, acceleration
    if velocity > 0.0:
        _append(dbuf, ip, 0, ti, 1.0 / velocity)
    ok, trend, mean_t, mean_inverse, r2 = _derived_fit(dbuf, ip, cfg)
    if not ok:
        _set4(snap, nan, nan, velocity, nan)
        return False, nan
    failure_t = math.inf
    lead_h = math.inf
    if trend < 0.0 and r2 >= cfg[MIN_R2]:
        failure_t = mean_t - mean_inverse / trend
        lead_h = (failure_t - ti) / 3600.0
    _set4(snap, lead_h, failure_t, velocity, r2)
    return True, -lead_h


@jit
def slope_rule_kernel(
    rec_idx: IntArray,
    rec_t: FloatArray,
    rec_slope: FloatArray,
    rec_paused: FloatArray,
    r0: int,
    n_rec: int,
    n_ev: int,
    thresholds: FloatArray,
    cfg: FloatArray,
    sm: FloatArray,
    ip: IntArray,
    dbuf: FloatArray,
    snap: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
) -> tuple[int, int, int]:
    """Stage 2: one slope rule's metric and level from the velocity records ``r0:n_rec``.

    ip = [start, end of dbuf], the derived series (velocity for acceleration, inverse
    velocity for the failure-time fit). Inverse-velocity thresholds arrive negated
    (-horizon) and the metric is -lead time, so larger is still worse.
    snap = [metric, velocity, predicted failure time, r^2] (NaN where not applicable).
    Returns (next record, event count, code): 1 when dbuf must grow before resuming at
    that record, ``EVENTS_FULL`` when the events must be flushed, else 0.
    """
    mode = int(cfg[MODE])
    derived = mode in (ACCELERATION, INVERSE)
    for r in range(r0, n_rec):
        if rec_paused[r] != 0.0:
            sm[CHAIN] = 0.0
        ti = rec_t[r]
        if derived and not expire(dbuf, ip, 0, ti - cfg[DERIVED_WINDOW_S]):
            return r, n_ev, 1
        ok = not math.isnan(rec_slope[r])
        metric = math.nan
        if ok:
            ok, metric = _metric(mode, ti, rec_slope[r] * cfg[SCALE], cfg, ip, dbuf, snap)
        else:
            _set4(snap, math.nan, math.nan, math.nan, math.nan)
        if not ok:
            sm[CHAIN] = 0.0
            continue
        up, hold = threshold_levels(metric, thresholds, cfg[HYSTERESIS])
        old = sm_evaluate(sm, ti, up, hold, cfg[HOLD_S], cfg[LATCH_FROM])
        if old >= 0:
            n_ev = record(int(rec_idx[r]), old, sm, snap, ev_idx, ev_old, ev_new, ev_vals, n_ev)
            if n_ev == ev_idx.shape[0]:
                return r + 1, n_ev, EVENTS_FULL
    return n_rec, n_ev, 0
