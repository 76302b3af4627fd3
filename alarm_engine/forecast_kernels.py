"""Numba kernels of the failure-forecast rule: Voight's law fitted to the displacement.

``forecast_window`` cleans the raw samples of the fit window (isolated outliers dropped,
sensor re-installation steps taken out, the motion across a telemetry gap kept), averages
them into bins, and fits ``x(t) = a + c t + b G(t_f - t; alpha) + d1 cos(wt) + d2 sin(wt)``
(steady creep plus Voight's accelerating creep, integrated: ``G' = (t_f - t) ** -p`` with
``p = 1 / (alpha - 1)``, plus the daily temperature cycle, ``w`` one turn a day) by
weighted least squares over a grid of failure times, with alpha refined continuously. It
reports the failure time, its 95 % profile-likelihood interval (calibrated on the
corpus: ``INTERVAL_CHI2``), alpha, the velocity now
and the evidence (an F statistic) that the fit explains the record better than steady
creep (with its daily cycle).
When that forecast fails the evidence test, ``windowed_forecast`` fits the window's
latest quarter, then its latest eighth (``WINDOW_SHARES``), and takes the first that
passes: a slope whose tertiary creep began abruptly inside the window is no fit for
steady creep plus Voight's law over the whole of it, but is over the part after the onset.
Over the eighth it also fits Voight's law alone (``c = 0``), as the slope moves after an
abrupt onset, and keeps that fit unless the steady creep term improves it by more than
the interval's chi-square point (a likelihood-ratio test): over a day or two, steady creep
and the exponent trade off within the noise, and the fit with both wanders.
A forecast that passed from the whole window or its quarter is overruled by the eighth's
(``overruled``) when that one passes too and its interval ends before the longer one's
begins: hours before the failure of an abrupt onset, a fit reaching back past the onset
passes the test while lagging the slope, the failure late and the truth outside its
interval, where the record since the onset puts it within a few percent. Where a later
part passes beside the forecast without overruling it, the interval stated with the
forecast takes in that part's too (``windowed_forecast``'s ``stated``); the levels judge
the forecast's own.
``forecast_kernel`` runs it over a batch of samples and turns forecasts into levels.
Like ``kernels.py`` it mirrors its reference (``reference_forecast.py``) formula by
formula, never allocates and never raises on data.

How it stands to the published methods:

- Fukuzono (1985) found in flume tests that inverse velocity falls linearly to zero at
  failure; Voight (1989) generalised this as ``d2x/dt2 = A (dx/dt) ** alpha``, the
  materials failure forecast method, with alpha near 2. Both extrapolate the inverse
  velocity, a differentiated and so noise-amplified series, and usually fix alpha = 2.
  Here the integrated law is fitted to the displacement itself, where the noise stays
  white, and alpha is estimated (1.5-2.5 by default): fixing it at 2 puts the failure of
  an alpha = 1.5 slope late, the unsafe side.
- Rose & Hungr (2007) fit the inverse-velocity trend in open-pit mines, smoothing the
  velocities with moving averages and refitting as data arrive. The hourly refit on a
  sliding window plays that part; the least-squares fit is the filter, and nothing is
  stamped at a window's end (the late bias of the older ``inverse_velocity`` rule).
- Carla et al. (2017) give guidelines for filtering inverse velocity (short- and
  long-term moving averages) and for picking the onset of acceleration before fitting.
  The evidence test against steady creep, the alpha range and the agreement of
  consecutive forecasts take the place of a hand-picked onset, and fitting the window's
  later parts when the whole fails finds an abrupt onset inside it (over the latest,
  Voight's law alone when the data allow: Fukuzono's straight 1/v line from the onset);
  hourly bins and the robust cleaning take the place of the filters.
- Intrieri et al. (2019) review slope-scale forecasting: a forecast needs its
  uncertainty, and temporary accelerations cause the false alarms. Each forecast carries
  its 95 % interval; it counts only when the interval is bounded and narrow enough
  (``max_spread``), alpha lies in range and the evidence is strong, and a level needs
  ``confirm`` forecasts in a row that agree (``max_drift``). Seasonal accelerations,
  which slow down again, fit Voight's law for a while, but their forecast failure
  recedes hour by hour (32, 38, 55 h ahead), so they never confirm. A sharp one can
  overshoot instead (alpha above the range, failure hours ahead); when such a forecast's
  interval passes with no failure, no forecast counts for ``REFUTED_HOLD_S`` (``refuted``).
  A forecast not yet confirmed may raise yellow, never more (``unconfirmed_h``,
  ``watched``): on an abrupt onset read hourly, forecasts can disagree until the last
  hours, and a slope must not fail with no level while the rule holds a forecast.
- The SLO method (Mufundirwa et al. 2010) plots ``t * v`` against ``v``, a line whose
  slope is the failure time when alpha = 2: no division by small velocities, but still
  differentiated and still alpha = 2.
- Xu Qiang's improved tangent angle (Xu et al. 2009), used with velocity thresholds in
  the Heifangtai loess-landslide warnings (Xu et al. 2020), normalises displacement by the
  steady creep rate and warns at 45, 80 and 85 degrees. It needs that rate entered by
  hand, and its levels are velocity ratios, not times. Here the steady creep ``c`` is
  fitted, and the levels are horizons on the forecast failure time.
"""

from __future__ import annotations

import math

from alarm_engine.forecast_layout import (
    ALPHA,
    ALPHA_FLOOR,
    ALPHA_MARGIN,
    ALPHA_REFINE,
    COARSE,
    CONFIRMED_H,
    CYCLE_MIN_SPAN_H,
    EVIDENCE,
    FAILURE_HI,
    FAILURE_LO,
    FAILURE_T,
    FINE,
    GAP_INTERVALS,
    GAP_SPAN_S,
    GATE_EVIDENCE,
    INTERVAL_CHI2,
    LAG_MISFIT,
    LEAD_H,
    MIN_LEAD_H,
    NEWEST_H,
    OUT_SIZE,
    REFINE,
    REFUTED_HOLD_S,
    STEP_SCALES,
    TRIED,
    VELOCITY,
    WINDOW_SHARES,
    YELLOW,
)
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
from alarm_engine.slope_kernels import expire

#: A window's sums (see ``_fit_sums``).
FitSums = tuple[float, float, float, float, float, float, float, float, float, float, float]

# Layout of the rule's cfg.
(
    WINDOW_S,
    EVAL_EVERY_S,
    BIN_S,
    MIN_BINS,
    MIN_SPAN_S,
    ALPHA_MIN,
    ALPHA_MAX,
    N_ALPHA,
    MIN_EVIDENCE,
    CONFIRM,
    OUTLIER_K,
    MAX_LEAD_H,
    MAX_SPREAD,
    HYSTERESIS,
    HOLD_S,
    LATCH_FROM,
    MAX_DRIFT,
    CAUTION,
    UNCONFIRMED_H,
) = range(19)
CFG_SIZE = 19
# Columns of the scratch array: raw (t, x, keep), bins (u, x, w), profile (lead, rss),
# the daily cycle's two basis functions at the bins.
S_T, S_X, S_KEEP, S_U, S_BX, S_W, S_G, S_LEAD, S_RSS, S_C1, S_C2 = range(11)
SCRATCH_COLS = 11
#: Extra cells ``work`` needs beyond one per raw sample: the profile over the grid.
WORK_EXTRA = 2 * TRIED
# ks layout: next evaluation time; the earliest upper end of the strong forecasts' intervals
# still pending, and when the last one was refuted (``refuted``); the interval the newest
# forecast states (``windowed_forecast``'s ``stated``, two cells); then the last CONFIRM
# failure times (newest first).
KS_NEXT = 0
KS_PENDING = 1
KS_REFUTED = 2
KS_STATED = 3
KS_HISTORY = 5
MAX_CONFIRM = 6


@jit
def bin_count(window_s: float, bin_s: float) -> int:
    """Bins a window of ``window_s`` is averaged into (the oldest may be partial)."""
    return math.ceil(window_s / bin_s) + 1


@jit
def median_of(a: FloatArray, n: int) -> float:
    """Median of ``a[:n]``, sorting it in place."""
    a[:n].sort()
    half = n // 2
    if n % 2 == 1:
        return float(a[half])
    return float(0.5 * (a[half - 1] + a[half]))


@jit
def _side_rate(s: FloatArray, lo: int, hi: int, work: FloatArray) -> float:
    """Robust rate of the raw rows ``lo..hi`` (inclusive); NaN for fewer than three.

    The median of the rates between each row and the row half the span later: the pairs
    share no row, so one outlier spoils at most one of them, where it would tilt a
    least-squares line. ``work`` holds the pairs' rates.
    """
    count = hi - lo + 1
    if count < 3:
        return math.nan
    half = (count + 1) // 2
    pairs = count - half
    for i in range(pairs):
        a = lo + i
        work[i] = (s[a + half, S_X] - s[a, S_X]) / (s[a + half, S_T] - s[a, S_T])
    return median_of(work, pairs)


@jit
def expected_motion(s: FloatArray, n: int, rate: float, gap_s: float, work: FloatArray) -> None:
    """Put the motion expected over each increment ``j -> j + 1`` in ``s[j, S_G]``.

    A regular increment is expected to move at the window's median ``rate``. One that
    spans a telemetry gap (longer than ``gap_s``) is expected to move at the local rate:
    the mean of the robust rates (``_side_rate``) over ``GAP_SPAN_S`` (or the gap, if
    longer) on either side of it, so a slope that accelerated while the gateway was
    silent keeps that motion instead of having it taken out as a re-installation step,
    and an outlier beside the gap does not tilt it. ``work`` is scratch, one cell per row.
    """
    for j in range(n - 1):
        dt = s[j + 1, S_T] - s[j, S_T]
        s[j, S_G] = rate * dt
        if not dt > gap_s:
            continue
        span = max(dt, GAP_SPAN_S)
        lo_row = j
        while lo_row > 0 and s[j, S_T] - s[lo_row - 1, S_T] <= span:
            lo_row -= 1
        hi_row = j + 1
        while hi_row < n - 1 and s[hi_row + 1, S_T] - s[j + 1, S_T] <= span:
            hi_row += 1
        before = _side_rate(s, lo_row, j, work)
        after = _side_rate(s, j + 1, hi_row, work)
        if math.isfinite(before) and math.isfinite(after):
            s[j, S_G] = 0.5 * (before + after) * dt
        elif math.isfinite(before):
            s[j, S_G] = before * dt
        elif math.isfinite(after):
            s[j, S_G] = after * dt


@jit
def _isolated(r: float, r_next: float, threshold: float) -> bool:
    """Whether increments ``r`` then ``r_next`` are one sample's jump that comes back.

    Each increment is less its expected motion. The jump is half their difference; half
    their sum is motion the two share that the expected rate missed: on an accelerating
    slope the local rate is far above the window's median, and a return judged against
    the median would never come back, so the outlier would stay in the fit. The jump
    must pass the threshold and be at least twice the shared motion; a step (the first
    increment jumps, the next is quiet) shares as much as it jumps and is not one.
    """
    jump = 0.5 * abs(r - r_next)
    return jump > threshold and abs(r + r_next) <= jump


@jit
def clean_window(
    buf: FloatArray, start: int, end: int, k_sigma: float, s: FloatArray, work: FloatArray
) -> int:
    """Copy rows ``start:end`` of ``buf`` to ``s`` as (t, x, keep), cleaned; return the count.

    An isolated outlier (a jump that comes straight back) gets keep = 0; a step of more
    than ``STEP_SCALES`` robust scales with quiet increments on both sides (a sensor
    re-installed) is taken out of every later sample, and every sample up to it gets
    keep = 0: the step is measured on one increment, so its size is off by that
    increment's noise, and that error left in the record passes for acceleration (a fit
    days later put a quiet slope's failure hours ahead), so the fit starts after it;
    a last sample that jumps after a quiet increment waits for the next one to confirm it.
    Increments are judged against the motion expected over them (``expected_motion``)
    and a robust (MAD) scale.
    """
    n = end - start
    for j in range(n):
        s[j, S_T] = buf[start + j, 0]
        s[j, S_X] = buf[start + j, 1]
        s[j, S_KEEP] = 1.0
    if n < 4:
        return n
    m = n - 1
    for j in range(m):
        work[j] = (s[j + 1, S_X] - s[j, S_X]) / (s[j + 1, S_T] - s[j, S_T])
    rate = median_of(work, m)
    for j in range(m):
        work[j] = s[j + 1, S_T] - s[j, S_T]
    expected_motion(s, n, rate, GAP_INTERVALS * median_of(work, m), work)
    for j in range(m):
        work[j] = abs(s[j + 1, S_X] - s[j, S_X] - s[j, S_G])
    scale = 1.4826 * median_of(work, m)
    threshold = k_sigma * scale
    step = STEP_SCALES * scale
    if not threshold > 0.0:
        return n
    offset = 0.0
    previous = 0.0
    last_step = -1
    for j in range(m):
        r = s[j + 1, S_X] - s[j, S_X] - s[j, S_G]
        s[j, S_X] -= offset
        if abs(r) <= threshold:
            previous = r
            continue
        if j + 2 <= m:
            r_next = s[j + 2, S_X] - s[j + 1, S_X] - s[j + 1, S_G]
            if _isolated(r, r_next, threshold):
                s[j + 1, S_KEEP] = 0.0
            elif abs(r) > step and abs(r_next) <= threshold and abs(previous) <= threshold:
                offset += r
                last_step = j
        elif abs(previous) <= threshold:
            s[j + 1, S_KEEP] = 0.0
        previous = r
    s[m, S_X] -= offset
    for j in range(last_step + 1):
        s[j, S_KEEP] = 0.0
    return n


@jit
def bin_window(s: FloatArray, n: int, t_now: float, bin_s: float, n_bins: int) -> int:
    """Average the kept rows of ``s`` into bins of ``bin_s`` ending at ``t_now``.

    Fills columns (u hours before now, mean x, sample count) of ``s`` oldest first and
    returns the number of non-empty bins.
    """
    for k in range(n_bins):
        s[k, S_G] = 0.0
        s[k, S_LEAD] = 0.0
        s[k, S_RSS] = 0.0
    for j in range(n):
        if s[j, S_KEEP] == 0.0:
            continue
        k = int((t_now - s[j, S_T]) / bin_s)
        if k >= n_bins:
            k = n_bins - 1
        s[k, S_G] += 1.0
        s[k, S_LEAD] += (s[j, S_T] - t_now) / 3600.0
        s[k, S_RSS] += s[j, S_X]
    nb = 0
    for k in range(n_bins - 1, -1, -1):
        w = s[k, S_G]
        if w == 0.0:
            continue
        s[nb, S_U] = s[k, S_LEAD] / w
        s[nb, S_BX] = s[k, S_RSS] / w
        s[nb, S_W] = w
        nb += 1
    return nb


@jit
def _log_taus(s: FloatArray, nb: int, lead_h: float) -> None:
    """Put ln(hours from each bin to a failure ``lead_h`` ahead) in the S_LEAD column."""
    for i in range(nb):
        s[i, S_LEAD] = math.log(lead_h - s[i, S_U])


@jit
def _regressor_sums(
    s: FloatArray, nb: int, fit: FitSums
) -> tuple[float, float, float, float, float, float]:
    """The regressor in column S_G against time, itself and the record: (sug, sgg, sgx, ...).

    The regressor is centred and the daily cycle taken out of it, as ``_fit_sums`` does
    for time; ``fit`` holds the window's sums. The last three are its weighted mean and
    its projections on the cycle's two basis functions, which a fitted curve needs.
    """
    sw, mu, mx, _, _, _, ue1, ue2, xe1, xe2, _ = fit
    sg = 0.0
    for i in range(nb):
        sg += s[i, S_W] * s[i, S_G]
    mg = sg / sw
    sug = 0.0
    sgg = 0.0
    sgx = 0.0
    ge1 = 0.0
    ge2 = 0.0
    for i in range(nb):
        w = s[i, S_W]
        dg = s[i, S_G] - mg
        sug += w * (s[i, S_U] - mu) * dg
        sgg += w * dg * dg
        sgx += w * dg * (s[i, S_BX] - mx)
        ge1 += w * dg * s[i, S_C1]
        ge2 += w * dg * s[i, S_C2]
    sug -= ge1 * ue1 + ge2 * ue2
    sgg -= ge1 * ge1 + ge2 * ge2
    sgx -= ge1 * xe1 + ge2 * xe2
    return sug, sgg, sgx, mg, ge1, ge2


@jit
def _two_term_fit(s: FloatArray, nb: int, fit: FitSums) -> tuple[float, float, float]:
    """Fit the bins to time and the regressor in column S_G, beside the mean and the cycle.

    ``fit`` holds the window's sums (see ``_fit_sums``; the regressor's, see
    ``_regressor_sums``). Returns (rss, the rate on time, the coefficient on S_G); (inf,
    nan, nan) when the two are collinear. The rss is not clamped: callers clamp it as
    their test needs.
    """
    sug, sgg, sgx, _, _, _ = _regressor_sums(s, nb, fit)
    return _two_term_solve(fit, sug, sgg, sgx)


@jit
def _two_term_solve(fit: FitSums, sug: float, sgg: float, sgx: float) -> tuple[float, float, float]:
    """``_two_term_fit`` from the regressor's sums, for a caller that needs them too."""
    suu, sux, sxx = fit[3], fit[4], fit[5]
    det = suu * sgg - sug * sug
    if not det > 1e-12 * suu * sgg:
        return math.inf, math.nan, math.nan
    c = (sgg * sux - sug * sgx) / det
    b = (suu * sgx - sug * sux) / det
    return sxx - c * sux - b * sgx, c, b


@jit
def _one_term_fit(s: FloatArray, nb: int, fit: FitSums) -> tuple[float, float]:
    """Fit the bins to the regressor in column S_G alone, beside the mean and the cycle.

    As ``_two_term_fit`` with no rate on time: (rss, the coefficient on S_G); (inf, nan)
    when the regressor is constant once the cycle is out of it.
    """
    _, sgg, sgx, _, _, _ = _regressor_sums(s, nb, fit)
    if not sgg > 0.0:
        return math.inf, math.nan
    b = sgx / sgg
    return fit[5] - b * sgx, b


@jit
def _voight_regressor(s: FloatArray, nb: int, p: float) -> None:
    """Put Voight's integrated law ``G`` for ``p`` at the S_LEAD column's ln(tau) in S_G."""
    for i in range(nb):
        s[i, S_G] = -s[i, S_LEAD] if p == 1.0 else math.exp((1.0 - p) * s[i, S_LEAD]) / (p - 1.0)


@jit
def _voight_rss(
    s: FloatArray, nb: int, p: float, fit: FitSums, alone: bool
) -> tuple[float, float, float]:
    """Weighted residual sum of squares of the Voight fit over the bins.

    The S_LEAD column holds ln(tau) for the failure time tried (see ``_log_taus``);
    ``fit`` holds the window's sums (see ``_fit_sums``): the mean level and the daily
    cycle are fitted alongside, and the steady creep too unless ``alone`` (Voight's law
    alone, c = 0). Returns (rss, steady rate c, accelerating coefficient b); rss is inf
    when the fit is degenerate or does not accelerate (b <= 0).
    """
    _voight_regressor(s, nb, p)
    if alone:
        rss, b = _one_term_fit(s, nb, fit)
        c = 0.0
    else:
        rss, c, b = _two_term_fit(s, nb, fit)
    if not b > 0.0:
        return math.inf, c, b
    return max(rss, 0.0), c, b


@jit
def _rss_at(s: FloatArray, nb: int, alpha: float, fit: FitSums, alone: bool) -> float:
    """The Voight fit's rss at exponent ``alpha`` (inf at or below ``ALPHA_FLOOR``)."""
    if not alpha > ALPHA_FLOOR:
        return math.inf
    rss, _, _ = _voight_rss(s, nb, 1.0 / (alpha - 1.0), fit, alone)
    return float(rss)


@jit
def _profile(
    s: FloatArray, nb: int, lead: float, cfg: FloatArray, fit: FitSums, alone: bool
) -> tuple[float, float]:
    """Best rss over alpha for a failure ``lead`` hours ahead, and its p = 1 / (alpha - 1).

    A grid of alphas, then ``ALPHA_REFINE`` parabolic steps around the best, each on a
    bracket a quarter as wide: alpha is searched continuously, not only on the grid.
    """
    _log_taus(s, nb, lead)
    h = (cfg[ALPHA_MAX] - cfg[ALPHA_MIN]) / (int(cfg[N_ALPHA]) - 1 - 2 * ALPHA_MARGIN)
    best = math.inf
    best_alpha = math.nan
    for a in range(int(cfg[N_ALPHA])):
        alpha = max(cfg[ALPHA_MIN] + (a - ALPHA_MARGIN) * h, ALPHA_FLOOR + h / 8.0)
        rss = _rss_at(s, nb, alpha, fit, alone)
        if rss < best:
            best, best_alpha = rss, alpha
    if not best < math.inf:
        return best, math.nan
    for _ in range(ALPHA_REFINE):
        left = _rss_at(s, nb, best_alpha - h, fit, alone)
        right = _rss_at(s, nb, best_alpha + h, fit, alone)
        curvature = left - 2.0 * best + right
        if not (left < math.inf and right < math.inf and curvature > 0.0):
            break
        alpha = best_alpha + 0.5 * h * (left - right) / curvature
        rss = _rss_at(s, nb, alpha, fit, alone)
        if rss < best:
            best, best_alpha = rss, alpha
        h = h / 4.0
    return best, 1.0 / (best_alpha - 1.0)


@jit
def upward_curvature(s: FloatArray, nb: int, fit: FitSums) -> float:
    """F statistic of a parabola against a line through the bins, 0 if it curves down.

    The cheap first look: a record that does not curve upward is not accelerating, and
    the costly Voight fit is skipped. The daily cycle is fitted out of both, as in the
    Voight fit (``fit`` from ``_fit_sums``).
    """
    _, mu, _, suu, sux, sxx, _, _, _, _, terms = fit
    for i in range(nb):
        du = s[i, S_U] - mu
        s[i, S_G] = du * du
    rss_quad, _, q = _two_term_fit(s, nb, fit)
    if not q > 0.0 or nb < 4 + terms:
        return 0.0
    rss_quad = max(rss_quad, 1e-12 * sxx)
    rss_line = max(sxx - sux * sux / suu, 0.0)
    return (rss_line - rss_quad) / (rss_quad / (nb - 3.0 - terms))


@jit
def _cycle_basis(s: FloatArray, nb: int, sw: float) -> float:
    """Put the daily cycle's basis at the bins in columns S_C1 and S_C2; return its terms.

    The cosine and sine of the hour of day, centred and orthonormal under the bin
    weights: 2 terms. A window spanning less than ``CYCLE_MIN_SPAN_H`` gets zeros and 0
    terms: over a day or so a cosine and a sine look like a curve and a slope, and would
    take the acceleration for a cycle.
    """
    if not (s[nb - 1, S_U] - s[0, S_U]) >= CYCLE_MIN_SPAN_H:
        for i in range(nb):
            s[i, S_C1] = 0.0
            s[i, S_C2] = 0.0
        return 0.0
    mc = 0.0
    ms = 0.0
    for i in range(nb):
        angle = 2.0 * math.pi * s[i, S_U] / 24.0
        s[i, S_C1] = math.cos(angle)
        s[i, S_C2] = math.sin(angle)
        mc += s[i, S_W] * s[i, S_C1]
        ms += s[i, S_W] * s[i, S_C2]
    n1 = 0.0
    for i in range(nb):
        s[i, S_C1] -= mc / sw
        s[i, S_C2] -= ms / sw
        n1 += s[i, S_W] * s[i, S_C1] * s[i, S_C1]
    proj = 0.0
    for i in range(nb):
        s[i, S_C1] /= math.sqrt(n1)
        proj += s[i, S_W] * s[i, S_C1] * s[i, S_C2]
    n2 = 0.0
    for i in range(nb):
        s[i, S_C2] -= proj * s[i, S_C1]
        n2 += s[i, S_W] * s[i, S_C2] * s[i, S_C2]
    for i in range(nb):
        s[i, S_C2] /= math.sqrt(n2)
    return 2.0


@jit
def _fit_sums(s: FloatArray, nb: int) -> FitSums:
    """The window's weighted sums, with the mean level and the daily cycle fitted out.

    Fills the cycle's basis (``_cycle_basis``). Returns (sw, mean u, mean x, then suu,
    sux, sxx of the residuals from level and cycle, the projections u.e1, u.e2, x.e1,
    x.e2, and the number of cycle terms fitted).
    """
    sw = 0.0
    su = 0.0
    sx = 0.0
    for i in range(nb):
        sw += s[i, S_W]
        su += s[i, S_W] * s[i, S_U]
        sx += s[i, S_W] * s[i, S_BX]
    mu = su / sw
    mx = sx / sw
    terms = _cycle_basis(s, nb, sw)
    suu = 0.0
    sux = 0.0
    sxx = 0.0
    ue1 = 0.0
    ue2 = 0.0
    xe1 = 0.0
    xe2 = 0.0
    for i in range(nb):
        w = s[i, S_W]
        du = s[i, S_U] - mu
        dx = s[i, S_BX] - mx
        suu += w * du * du
        sux += w * du * dx
        sxx += w * dx * dx
        ue1 += w * du * s[i, S_C1]
        ue2 += w * du * s[i, S_C2]
        xe1 += w * dx * s[i, S_C1]
        xe2 += w * dx * s[i, S_C2]
    suu -= ue1 * ue1 + ue2 * ue2
    sux -= ue1 * xe1 + ue2 * xe2
    sxx -= xe1 * xe1 + xe2 * xe2
    return sw, mu, mx, suu, sux, sxx, ue1, ue2, xe1, xe2, terms


@jit
def _search(
    s: FloatArray, nb: int, cfg: FloatArray, fit: FitSums, work: FloatArray, alone: bool
) -> tuple[float, float, float]:
    """Best (rss, lead hours, p) over a coarse grid of failure times, then finer ones.

    Each of the ``REFINE`` passes tries ``FINE`` leads between the best lead's neighbours
    on the previous grid. Leaves the leads tried in ``work[:TRIED]`` and their profile rss
    in ``work[TRIED:2 * TRIED]``.
    """
    step = math.log(cfg[MAX_LEAD_H] / MIN_LEAD_H) / (COARSE - 1)
    best = math.inf
    best_lead = MIN_LEAD_H
    best_p = math.nan
    for k in range(COARSE):
        lead = MIN_LEAD_H * math.exp(step * k)
        profile, p = _profile(s, nb, lead, cfg, fit, alone)
        work[k] = lead
        work[TRIED + k] = profile
        if profile < best:
            best, best_lead, best_p = profile, lead, p
    n = COARSE
    for _ in range(REFINE):
        lo = best_lead * math.exp(-step)
        step = 2.0 * step / (FINE + 1)
        for f in range(FINE):
            lead = lo * math.exp(step * (f + 1))
            profile, p = _profile(s, nb, lead, cfg, fit, alone)
            work[n] = lead
            work[TRIED + n] = profile
            n += 1
            if profile < best:
                best, best_lead, best_p = profile, lead, p
    return best, best_lead, best_p


@jit
def crossing(inside: float, rss_in: float, outside: float, rss_out: float, limit: float) -> float:
    """Where the profile crosses ``limit`` between two leads tried, linear in log lead.

    ``inside`` is within the limit, ``outside`` beyond it; with no finite rss outside
    (no lead tried there, or no accelerating fit), the crossing is taken at ``inside``.
    """
    if not rss_out < math.inf or not rss_out > rss_in:
        return inside
    share = (limit - rss_in) / (rss_out - rss_in)
    return math.exp(math.log(inside) + share * (math.log(outside) - math.log(inside)))


@jit
def _interval(work: FloatArray, limit: float, max_lead: float) -> tuple[float, float]:
    """The leads where the profile rss crosses ``limit`` (inf: unbounded).

    The lowest and highest leads tried within the limit, each moved out to where the
    profile crosses it on the way to the next lead tried: the coarse grid is 19 % a step,
    and stopping at the last lead tried would state a narrower interval than the data give.
    """
    lead_lo = math.inf
    lead_hi = 0.0
    rss_lo = math.inf
    rss_hi = math.inf
    for k in range(TRIED):
        if work[TRIED + k] <= limit:
            if work[k] < lead_lo:
                lead_lo, rss_lo = work[k], work[TRIED + k]
            if work[k] > lead_hi:
                lead_hi, rss_hi = work[k], work[TRIED + k]
    below = 0.0
    below_rss = math.inf
    above = math.inf
    above_rss = math.inf
    for k in range(TRIED):
        if below < work[k] < lead_lo:
            below, below_rss = work[k], work[TRIED + k]
        if lead_hi < work[k] < above:
            above, above_rss = work[k], work[TRIED + k]
    lead_lo = crossing(lead_lo, rss_lo, below, below_rss, limit)
    if lead_hi >= max_lead:
        return lead_lo, math.inf
    return lead_lo, crossing(lead_hi, rss_hi, above, above_rss, limit)


@jit
def cleaned_bins(
    buf: FloatArray,
    start: int,
    end: int,
    t_now: float,
    cfg: FloatArray,
    s: FloatArray,
    work: FloatArray,
) -> int:
    """Clean ``buf[start:end]`` (``clean_window``) and bin it into ``s``; the bins filled."""
    n = clean_window(buf, start, end, cfg[OUTLIER_K], s, work)
    return bin_window(s, n, t_now, cfg[BIN_S], bin_count(cfg[WINDOW_S], cfg[BIN_S]))


@jit
def forecast_window(
    buf: FloatArray,
    start: int,
    end: int,
    t_now: float,
    cfg: FloatArray,
    s: FloatArray,
    work: FloatArray,
    out: FloatArray,
    try_alone: bool,
) -> bool:
    """Fit Voight's law to the window ``buf[start:end]``; fill ``out``; False if too little data.

    ``out`` = [lead hours, failure time, its 95 % low and high, alpha, velocity now in
    mm/day, evidence]. With no accelerating fit the lead and times are inf and the
    evidence is that of a parabola (see ``upward_curvature``); otherwise it is the F
    statistic of the Voight fit against steady creep (a straight line). With
    ``try_alone``, Voight's law alone (no steady creep beside it) is fitted too, and its
    forecast stands when the steady creep term does not improve the fit by more than the
    interval's chi-square point (a likelihood-ratio test): the record is all tertiary creep.
    """
    for k in range(OUT_SIZE):
        out[k] = math.nan
    nb = cleaned_bins(buf, start, end, t_now, cfg, s, work)
    if nb < cfg[MIN_BINS] or (s[nb - 1, S_U] - s[0, S_U]) * 3600.0 < cfg[MIN_SPAN_S]:
        return False
    fit = _fit_sums(s, nb)
    suu, sux, sxx, terms = fit[3], fit[4], fit[5], fit[10]
    out[VELOCITY] = sux / suu * 24.0
    out[LEAD_H] = math.inf
    out[FAILURE_T] = math.inf
    out[FAILURE_LO] = math.inf
    out[FAILURE_HI] = math.inf
    out[EVIDENCE] = upward_curvature(s, nb, fit)
    if not out[EVIDENCE] >= GATE_EVIDENCE or nb < 6 + terms:
        return True
    best, lead, p = _search(s, nb, cfg, fit, work, False)
    if not best < math.inf:
        return True
    sigma2 = max(best, 1e-12 * sxx) / (nb - 5.0 - terms)
    lead_lo, lead_hi = _interval(work, best + INTERVAL_CHI2 * sigma2, cfg[MAX_LEAD_H])
    alone = False
    if try_alone:
        best_alone, lead_alone, p_alone = _search(s, nb, cfg, fit, work, True)
        if best_alone - best <= INTERVAL_CHI2 * sigma2:
            alone = True
            best, lead, p = best_alone, lead_alone, p_alone
            sigma2 = max(best, 1e-12 * sxx) / (nb - 4.0 - terms)
            lead_lo, lead_hi = _interval(work, best + INTERVAL_CHI2 * sigma2, cfg[MAX_LEAD_H])
    _log_taus(s, nb, lead)
    _, c, b = _voight_rss(s, nb, p, fit, alone)
    out[EVIDENCE] = max(sxx - sux * sux / suu - best, 0.0) / sigma2
    out[ALPHA] = 1.0 + 1.0 / p
    out[VELOCITY] = (c + b * math.exp(-p * math.log(lead))) * 24.0
    out[LEAD_H] = lead
    out[FAILURE_T] = t_now + lead * 3600.0
    out[FAILURE_LO] = t_now + lead_lo * 3600.0
    out[FAILURE_HI] = t_now + lead_hi * 3600.0
    return True


@jit
def accepted_failure_t(fout: FloatArray, cfg: FloatArray) -> float:
    """The forecast's failure time if it passed the evidence test, else inf.

    It passes when the Voight fit beats steady creep by ``MIN_EVIDENCE``, its exponent
    lies inside the rule's alpha range, and its 95 % interval is bounded and no wider than
    ``MAX_SPREAD`` times the lead time.
    """
    lead = fout[LEAD_H]
    if not fout[EVIDENCE] >= cfg[MIN_EVIDENCE] or not lead < math.inf:
        return math.inf
    if not cfg[ALPHA_MIN] - 1e-9 <= fout[ALPHA] <= cfg[ALPHA_MAX] + 1e-9:
        return math.inf
    if not (fout[FAILURE_HI] - fout[FAILURE_LO]) / 3600.0 <= cfg[MAX_SPREAD] * lead:
        return math.inf
    return float(fout[FAILURE_T])


@jit
def refuted(ks: FloatArray, fout: FloatArray, ok: bool, t_now: float, cfg: FloatArray) -> bool:
    """Whether a forecast was refuted within ``REFUTED_HOLD_S`` of ``t_now``; notes this one.

    A forecast is refuted when the upper end of its interval passes with no failure. The
    forecasts that accelerate faster than the rule accepts (alpha above its range, F of
    ``MIN_EVIDENCE``, a bounded interval) made since the last refutation are held to the
    earliest of their upper ends (``KS_PENDING``).
    """
    if ks[KS_PENDING] < t_now:
        ks[KS_REFUTED] = ks[KS_PENDING]
        ks[KS_PENDING] = math.inf
    strong = ok and fout[EVIDENCE] >= cfg[MIN_EVIDENCE] and fout[LEAD_H] < math.inf
    if strong and fout[ALPHA] > cfg[ALPHA_MAX] + 1e-9 and math.isfinite(fout[FAILURE_HI]):
        ks[KS_PENDING] = min(ks[KS_PENDING], fout[FAILURE_HI])
    return bool(t_now - ks[KS_REFUTED] < REFUTED_HOLD_S)


@jit
def confirmed_lead(ks: FloatArray, confirm: int, t_now: float, max_drift: float) -> float:
    """Hours to the latest of the last ``confirm`` accepted failure times; inf if unconfirmed.

    They confirm each other when every one passed and they agree to within half of
    ``max_drift`` times that lead: a forecast that keeps receding is no forecast.
    """
    latest = ks[KS_HISTORY]
    earliest = ks[KS_HISTORY]
    for k in range(1, confirm):
        latest = max(latest, ks[KS_HISTORY + k])
        earliest = min(earliest, ks[KS_HISTORY + k])
    if not latest < math.inf:
        return math.inf
    lead = (latest - t_now) / 3600.0
    if (latest - earliest) / 3600.0 > max_drift * lead:
        return math.inf
    return float(lead)


@jit
def judged_lead(lead: float, fout: FloatArray, cfg: FloatArray) -> float:
    """The confirmed ``lead`` shortened by ``CAUTION`` times the newest forecast's early half.

    The early half-interval is the forecast failure time less the early end of its 95 %
    interval: 0 judges the most likely time, 1 the earliest the newest forecast allows. The
    confirmation itself is untouched, so caution only ever raises a level sooner.
    """
    if not lead < math.inf:
        return lead
    return float(lead - cfg[CAUTION] * (fout[FAILURE_T] - fout[FAILURE_LO]) / 3600.0)


@jit
def watched(metric: float, newest_h: float, cfg: FloatArray, yellow: float) -> float:
    """The metric, raised to the yellow threshold by an unconfirmed forecast close ahead.

    ``newest_h`` is the newest forecast's lead shortened for caution (``NEWEST_H``; inf if
    it failed the evidence test), ``yellow`` the negated yellow horizon. A forecast that
    passed but is not confirmed yet counts when that lead is at most ``UNCONFIRMED_H``
    hours (NaN: never): it then supports yellow, and never more, so a single forecast
    cannot raise orange or red.
    """
    if not newest_h < math.inf or math.isnan(yellow):
        return metric
    if newest_h <= cfg[UNCONFIRMED_H] and not metric >= yellow:
        return yellow
    return metric


@jit
def tail_rss(
    buf: FloatArray,
    start: int,
    end: int,
    t_now: float,
    cfg: FloatArray,
    s: FloatArray,
    work: FloatArray,
    lead_h: float,
    alpha: float,
    tail_h: float,
) -> float:
    """Weighted rss, over the bins of the last ``tail_h`` hours, of a fit to ``buf[start:end]``.

    The fit is a forecast's: its failure ``lead_h`` ahead and ``alpha`` are kept, and
    steady creep beside Voight's law, the mean and the daily cycle are fitted to the
    bins by least squares, as ``forecast_window`` does; inf when degenerate.
    """
    nb = cleaned_bins(buf, start, end, t_now, cfg, s, work)
    fit = _fit_sums(s, nb)
    _, mu, mx, _, _, _, ue1, ue2, xe1, xe2, _ = fit
    _log_taus(s, nb, lead_h)
    _voight_regressor(s, nb, 1.0 / (alpha - 1.0))
    sug, sgg, sgx, mg, ge1, ge2 = _regressor_sums(s, nb, fit)
    rss, c, b = _two_term_solve(fit, sug, sgg, sgx)
    if not rss < math.inf:
        return math.inf
    d1 = xe1 - c * ue1 - b * ge1
    d2 = xe2 - c * ue2 - b * ge2
    rss = 0.0
    for i in range(nb):
        if not s[i, S_U] > -tail_h:
            continue
        r = s[i, S_BX] - mx - c * (s[i, S_U] - mu) - b * (s[i, S_G] - mg)
        r -= d1 * s[i, S_C1] + d2 * s[i, S_C2]
        rss += s[i, S_W] * r * r
    return rss


@jit
def part_start(
    buf: FloatArray, first: int, end: int, t_now: float, cfg: FloatArray, share: int
) -> int:
    """Index of the first sample of ``buf[first:end]`` inside the window's later part ``share``."""
    edge = t_now - cfg[WINDOW_S] * WINDOW_SHARES[share]
    while first < end and buf[first, 0] <= edge:
        first += 1
    return first


@jit
def overruled(
    buf: FloatArray,
    first: int,
    end: int,
    t_now: float,
    cfg: FloatArray,
    s: FloatArray,
    work: FloatArray,
    out: FloatArray,
    longer: tuple[float, float, float],
    share: int,
) -> bool:
    """Whether the window's later part ``share`` overrules a longer part's accepted forecast.

    ``longer`` is (lead hours, alpha, early end of the interval) of the forecast made from
    ``buf[first:end]``, a longer part of the window. The later part's own forecast
    (Voight's law alone if it stands there, over the last part) is left in ``out``. It
    overrules when it passed the evidence test, the late end of its interval comes before
    the early end of the longer one's (the two cannot both be right, and the later part
    puts the failure sooner), and the longer fit leaves ``LAG_MISFIT`` times the
    residuals over the later part that the later part's own curve (steady creep beside
    it) does: the longer fit lags the slope there. A gradual failure's longer fit follows
    its later parts (at most 1.2 times on the corpus's tuning records); one across an
    abrupt onset does not (2.3-43 times where the later part was the nearer).
    """
    edge = t_now - cfg[WINDOW_S] * WINDOW_SHARES[share]
    last = part_start(buf, first, end, t_now, cfg, share)
    alone = share == len(WINDOW_SHARES) - 1
    fitted = forecast_window(buf, last, end, t_now, cfg, s, work, out, alone)
    if not (fitted and accepted_failure_t(out, cfg) < math.inf):
        return False
    if not out[FAILURE_HI] < longer[2]:
        return False
    tail_h = (t_now - edge) / 3600.0
    own = tail_rss(buf, last, end, t_now, cfg, s, work, out[LEAD_H], out[ALPHA], math.inf)
    if not own < math.inf:
        return False
    lagging = tail_rss(buf, first, end, t_now, cfg, s, work, longer[0], longer[1], tail_h)
    return bool(lagging >= LAG_MISFIT * own)


@jit
def disagree(
    failure_t: float, low: float, high: float, other_t: float, other_low: float, other_high: float
) -> bool:
    """Whether either of two forecasts' failure times lies outside the other's interval."""
    return not (low <= other_t <= high and other_low <= failure_t <= other_high)


@jit
def take_in(
    stated: FloatArray, failure_t: float, low: float, high: float, out: FloatArray, cfg: FloatArray
) -> bool:
    """Whether ``out``'s forecast passed the test; if so, and it disagrees, widen ``stated``.

    ``stated`` takes in ``out``'s interval where either failure time lies outside the
    other's interval, ``out``'s and the forecast's (``failure_t``, ``low``, ``high``) whose
    interval is to be stated (``disagree``).
    """
    if not accepted_failure_t(out, cfg) < math.inf:
        return False
    if disagree(failure_t, low, high, out[FAILURE_T], out[FAILURE_LO], out[FAILURE_HI]):
        stated[0] = min(stated[0], out[FAILURE_LO])
        stated[1] = max(stated[1], out[FAILURE_HI])
    return True


@jit
def beside_overruling(
    buf: FloatArray,
    first: int,
    end: int,
    t_now: float,
    cfg: FloatArray,
    s: FloatArray,
    work: FloatArray,
    out: FloatArray,
    stated: FloatArray,
    share: int,
) -> None:
    """Widen ``stated`` to take in the part ``share``'s interval beside ``out``'s forecast.

    ``out`` holds a later part's forecast that overruled the one made from
    ``buf[first:end]``; ``share`` is the next longer part between the two, taken in as
    ``take_in`` says. ``out`` is left as it was.
    """
    taken = (out[0], out[1], out[2], out[3], out[4], out[5], out[6])
    inner = part_start(buf, first, end, t_now, cfg, share)
    if forecast_window(buf, inner, end, t_now, cfg, s, work, out, False):
        take_in(stated, taken[FAILURE_T], taken[FAILURE_LO], taken[FAILURE_HI], out, cfg)
    for k in range(OUT_SIZE):
        out[k] = taken[k]


@jit
def windowed_forecast(
    buf: FloatArray,
    start: int,
    end: int,
    t_now: float,
    cfg: FloatArray,
    s: FloatArray,
    work: FloatArray,
    out: FloatArray,
    stated: FloatArray,
) -> bool:
    """The forecast over the whole window or, when that one is set aside, over its latest part.

    The window's later parts (``WINDOW_SHARES``), longest first, are fitted in turn; the
    first whose forecast is accepted (``accepted_failure_t``) stands, else the whole
    window's does. Over the last (shortest) part, Voight's law alone is tried too
    (``forecast_window``'s ``try_alone``): only there, since over a longer part a
    seasonal acceleration's rising limb passes for it (measured: 5 false oranges and reds
    in 50 quiet site-years when the quarter tried it too). False when the whole window
    holds too little data.

    An accepted forecast from a longer part is overruled by a later part's (the last
    part's, else, when the last part's fails its evidence test, the quarter's) when their
    intervals do not meet, the later part's comes first and the longer fit lags the later
    part's record (``overruled``):
    after an abrupt onset a fit across the onset can pass the evidence test and still lag
    the slope, putting the failure late, while the record since the onset says it is near.

    ``stated`` gets the interval to state with the forecast: its own 95 % interval, widened
    to take in the interval of a later part fitted beside it whose forecast passed the test
    without overruling it, when the two disagree (``disagree``: either failure time lies
    outside the other's interval). After an abrupt onset the whole window's interval can
    lie wholly after the truth while a later part's holds it: the fit's own interval then
    claims more than the record knows. A later part that agrees adds nothing but its own,
    usually wider, spread. Beside a later part's forecast that overrules, the next longer
    part between the two (the quarter, beside the eighth overruling the whole window) is
    fitted too and taken in the same way (``beside_overruling``): the eighth's narrow
    interval, over a few hours of record, can lie just beside the truth where the
    quarter's holds it. ``out`` keeps the forecast's own interval, which the
    acceptance, the caution and the refutation judge, so the levels are those of the
    forecast alone. No other part is fitted for this, and that one only where a later
    part overrules.
    """
    ok = forecast_window(buf, start, end, t_now, cfg, s, work, out, False)
    if not ok:
        stated[0] = math.nan
        stated[1] = math.nan
        return ok
    whole = (out[0], out[1], out[2], out[3], out[4], out[5], out[6])
    first = start
    last = len(WINDOW_SHARES) - 1
    j = 0
    while not accepted_failure_t(out, cfg) < math.inf and j < last:
        j += 1
        first = part_start(buf, first, end, t_now, cfg, j)
        forecast_window(buf, first, end, t_now, cfg, s, work, out, j == last)
    passed = accepted_failure_t(out, cfg) < math.inf
    if passed and j == last:
        stated[0] = out[FAILURE_LO]
        stated[1] = out[FAILURE_HI]
        return True
    kept = whole
    if passed:
        kept = (out[0], out[1], out[2], out[3], out[4], out[5], out[6])
    stated[0] = kept[FAILURE_LO]
    stated[1] = kept[FAILURE_HI]
    if passed:
        longer = (kept[LEAD_H], kept[ALPHA], kept[FAILURE_LO])
        for later in range(last, j, -1):
            if overruled(buf, first, end, t_now, cfg, s, work, out, longer, later):
                stated[0] = out[FAILURE_LO]
                stated[1] = out[FAILURE_HI]
                if later - 1 > j:
                    beside_overruling(buf, first, end, t_now, cfg, s, work, out, stated, later - 1)
                return True
            ft, lo, hi = kept[FAILURE_T], kept[FAILURE_LO], kept[FAILURE_HI]
            if take_in(stated, ft, lo, hi, out, cfg):
                break  # it passed and follows the longer fit: a longer later part would too
    for k in range(OUT_SIZE):
        out[k] = kept[k]
    return True


@jit
def forecast_kernel(
    t: FloatArray,
    v: FloatArray,
    good: BoolArray,
    i0: int,
    n_ev: int,
    thresholds: FloatArray,
    cfg: FloatArray,
    sm: FloatArray,
    ks: FloatArray,
    ip: IntArray,
    buf: FloatArray,
    s: FloatArray,
    work: FloatArray,
    snap: FloatArray,
    acc: FloatArray,
    ev_idx: IntArray,
    ev_old: IntArray,
    ev_new: IntArray,
    ev_vals: FloatArray,
) -> tuple[int, int, int]:
    """Failure forecasts over a batch of samples, and the rule's level from them.

    ks = [next evaluation time, the pending upper end and the last refutation (``refuted``),
    failure times of the last ``CONFIRM`` forecasts, newest first, inf where a forecast
    failed its evidence test or came too soon after a refutation]; ip = [start, end of buf],
    the raw samples inside the fit window; s and work are scratch with at least as many rows
    as buf and as the window has bins. The metric is minus the lead time of the latest of
    the last ``CONFIRM`` failure times, so a level rises only when that many forecasts in a
    row put the failure within its horizon (thresholds arrive negated). snap is the forecast
    (see ``OUT_SIZE``), the lead its horizons judged (``CONFIRMED_H``) and the newest
    forecast's own cautious lead (``NEWEST_H``: it may raise yellow, ``watched``); acc =
    [time, forecast] of the newest forecast that passed its evidence test, left as it was
    while none does. Returns (next sample, event count, code): 1 when buf and the scratch
    must grow before resuming at that sample, ``EVENTS_FULL`` when the events must be
    flushed, else 0.
    """
    confirm = int(cfg[CONFIRM])
    for i in range(i0, t.shape[0]):
        x = v[i]
        if not good[i] or not math.isfinite(x):
            sm[CHAIN] = 0.0
            continue
        ti = t[i]
        if not expire(buf, ip, 0, ti - cfg[WINDOW_S]):
            return i, n_ev, 1
        buf[ip[1], 0] = ti
        buf[ip[1], 1] = x
        ip[1] += 1
        if ti < ks[KS_NEXT]:
            continue
        ks[KS_NEXT] = ti + cfg[EVAL_EVERY_S]
        ok = windowed_forecast(
            buf, ip[0], ip[1], ti, cfg, s, work, snap, ks[KS_STATED : KS_STATED + 2]
        )
        held = refuted(ks, snap, ok, ti, cfg)
        for k in range(confirm - 1, 0, -1):
            ks[KS_HISTORY + k] = ks[KS_HISTORY + k - 1]
        ks[KS_HISTORY] = accepted_failure_t(snap, cfg) if ok and not held else math.inf
        if not ok:
            snap[CONFIRMED_H] = math.nan
            snap[NEWEST_H] = math.nan
            sm[CHAIN] = 0.0
            continue
        snap[CONFIRMED_H] = judged_lead(confirmed_lead(ks, confirm, ti, cfg[MAX_DRIFT]), snap, cfg)
        snap[NEWEST_H] = judged_lead((ks[KS_HISTORY] - ti) / 3600.0, snap, cfg)
        metric = watched(-snap[CONFIRMED_H], snap[NEWEST_H], cfg, thresholds[YELLOW])
        # judged on the forecast's own interval; stated, and kept, with the window's parts'
        snap[FAILURE_LO] = ks[KS_STATED]
        snap[FAILURE_HI] = ks[KS_STATED + 1]
        if ks[KS_HISTORY] < math.inf:
            acc[0] = ti
            for j in range(OUT_SIZE):
                acc[1 + j] = snap[j]
        up, hold = threshold_levels(metric, thresholds, cfg[HYSTERESIS])
        old = sm_evaluate(sm, ti, up, hold, cfg[HOLD_S], cfg[LATCH_FROM])
        if old >= 0:
            n_ev = record(i, old, sm, snap, ev_idx, ev_old, ev_new, ev_vals, n_ev)
            if n_ev == ev_idx.shape[0]:
                return i + 1, n_ev, EVENTS_FULL
    return t.shape[0], n_ev, 0
