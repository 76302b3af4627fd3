"""Plain-Python reference of the failure-forecast rule (see ``forecast_kernels.py``).

Part of the reference oracle: lists and loops, no numpy or numba, every formula in the
same order as the kernels so results match bit for bit; change both together. It never
reads or writes anything outside the rule's own state.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

from alarm_engine.forecast_layout import (
    ALPHA,
    ALPHA_FLOOR,
    ALPHA_MARGIN,
    ALPHA_REFINE,
    COARSE,
    CYCLE_MIN_SPAN_H,
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
    MAX_LEAD_HOURS,
    MIN_LEAD_H,
    N_ALPHA_STEPS,
    OUTLIER_SCALES,
    REFINE,
    REFUTED_HOLD_S,
    SNAP_SIZE,
    STEP_SCALES,
    WINDOW_SHARES,
    YELLOW,
)
from alarm_engine.reference_metrics import NAN, Evaluation, negated, threshold_levels
from site_schema.rule_specs import FailureForecastRule

INF = math.inf


def median_of(values: list[float]) -> float:
    """Median of ``values`` (a sorted copy)."""
    a = sorted(values)
    n = len(a)
    half = n // 2
    if n % 2 == 1:
        return a[half]
    return 0.5 * (a[half - 1] + a[half])


def _side_rate(ts: list[float], xs: list[float], lo: int, hi: int) -> float:
    """Robust rate of samples ``lo..hi`` (see ``forecast_kernels._side_rate``)."""
    count = hi - lo + 1
    if count < 3:
        return NAN
    half = (count + 1) // 2
    return median_of(
        [(xs[a + half] - xs[a]) / (ts[a + half] - ts[a]) for a in range(lo, hi + 1 - half)]
    )


def expected_motion(ts: list[float], xs: list[float], rate: float, gap_s: float) -> list[float]:
    """The motion expected over each increment (see ``forecast_kernels.expected_motion``)."""
    n = len(ts)
    expected = []
    for j in range(n - 1):
        dt = ts[j + 1] - ts[j]
        motion = rate * dt
        if dt > gap_s:
            span = max(dt, GAP_SPAN_S)
            lo_row = j
            while lo_row > 0 and ts[j] - ts[lo_row - 1] <= span:
                lo_row -= 1
            hi_row = j + 1
            while hi_row < n - 1 and ts[hi_row + 1] - ts[j + 1] <= span:
                hi_row += 1
            before = _side_rate(ts, xs, lo_row, j)
            after = _side_rate(ts, xs, j + 1, hi_row)
            if math.isfinite(before) and math.isfinite(after):
                motion = 0.5 * (before + after) * dt
            elif math.isfinite(before):
                motion = before * dt
            elif math.isfinite(after):
                motion = after * dt
        expected.append(motion)
    return expected


def isolated(r: float, r_next: float, threshold: float) -> bool:
    """Whether two increments are one sample's jump that comes straight back (the kernel's)."""
    jump = 0.5 * abs(r - r_next)
    return jump > threshold and abs(r + r_next) <= jump


def clean_window(
    samples: deque[tuple[float, float]], k_sigma: float
) -> tuple[list[float], list[float], list[bool]]:
    """The window's (times, values, keep flags): outliers dropped, steps taken out.

    Every sample up to the last step is dropped too (see ``forecast_kernels.clean_window``).
    """
    ts = [t for t, _ in samples]
    xs = [x for _, x in samples]
    keep = [True] * len(ts)
    n = len(ts)
    if n < 4:
        return ts, xs, keep
    m = n - 1
    rate = median_of([(xs[j + 1] - xs[j]) / (ts[j + 1] - ts[j]) for j in range(m)])
    gap_s = GAP_INTERVALS * median_of([ts[j + 1] - ts[j] for j in range(m)])
    expected = expected_motion(ts, xs, rate, gap_s)
    scale = 1.4826 * median_of([abs(xs[j + 1] - xs[j] - expected[j]) for j in range(m)])
    threshold = k_sigma * scale
    step = STEP_SCALES * scale
    if not threshold > 0.0:
        return ts, xs, keep
    offset = 0.0
    previous = 0.0
    last_step = -1
    for j in range(m):
        r = xs[j + 1] - xs[j] - expected[j]
        xs[j] -= offset
        if abs(r) <= threshold:
            previous = r
            continue
        if j + 2 <= m:
            r_next = xs[j + 2] - xs[j + 1] - expected[j + 1]
            if isolated(r, r_next, threshold):
                keep[j + 1] = False
            elif abs(r) > step and abs(r_next) <= threshold and abs(previous) <= threshold:
                offset += r
                last_step = j
        elif abs(previous) <= threshold:
            keep[j + 1] = False
        previous = r
    xs[m] -= offset
    for j in range(last_step + 1):
        keep[j] = False
    return ts, xs, keep


class Bins:
    """Bin means of the window, oldest first: hours before now, mean value, sample count."""

    def __init__(
        self,
        ts: list[float],
        xs: list[float],
        keep: list[bool],
        t_now: float,
        rule: FailureForecastRule,
    ) -> None:
        bin_s = rule.bin_s
        n_bins = bin_count(rule.window_s, bin_s)
        count = [0.0] * n_bins
        total_u = [0.0] * n_bins
        total_x = [0.0] * n_bins
        for t, x, kept in zip(ts, xs, keep, strict=True):
            if not kept:
                continue
            k = min(int((t_now - t) / bin_s), n_bins - 1)
            count[k] += 1.0
            total_u[k] += (t - t_now) / 3600.0
            total_x[k] += x
        self.u: list[float] = []
        self.x: list[float] = []
        self.w: list[float] = []
        for k in range(n_bins - 1, -1, -1):
            if count[k] == 0.0:
                continue
            self.u.append(total_u[k] / count[k])
            self.x.append(total_x[k] / count[k])
            self.w.append(count[k])
        self.log_tau: list[float] = []
        #: The daily cycle's basis at the bins (see ``fit_sums``).
        self.c1: list[float] = []
        self.c2: list[float] = []

    def __len__(self) -> int:
        return len(self.u)


def bin_count(window_s: float, bin_s: float) -> int:
    """Bins a window of ``window_s`` is averaged into (the oldest may be partial)."""
    return math.ceil(window_s / bin_s) + 1


class FitSums(NamedTuple):
    """The window's weighted sums, with the mean level and the daily cycle fitted out."""

    sw: float
    mu: float
    mx: float
    suu: float
    sux: float
    sxx: float
    ue1: float
    ue2: float
    xe1: float
    xe2: float
    terms: float


def cycle_basis(b: Bins, sw: float) -> float:
    """Set the daily cycle's basis ``b.c1``, ``b.c2``; return its terms (see the kernel's)."""
    if not (b.u[-1] - b.u[0]) >= CYCLE_MIN_SPAN_H:
        b.c1 = [0.0] * len(b.u)
        b.c2 = [0.0] * len(b.u)
        return 0.0
    c1 = [math.cos(2.0 * math.pi * u / 24.0) for u in b.u]
    c2 = [math.sin(2.0 * math.pi * u / 24.0) for u in b.u]
    mc = 0.0
    ms = 0.0
    for w, c, s in zip(b.w, c1, c2, strict=True):
        mc += w * c
        ms += w * s
    c1 = [c - mc / sw for c in c1]
    c2 = [s - ms / sw for s in c2]
    n1 = 0.0
    for w, c in zip(b.w, c1, strict=True):
        n1 += w * c * c
    c1 = [c / math.sqrt(n1) for c in c1]
    proj = 0.0
    for w, c, s in zip(b.w, c1, c2, strict=True):
        proj += w * c * s
    c2 = [s - proj * c for c, s in zip(c1, c2, strict=True)]
    n2 = 0.0
    for w, s in zip(b.w, c2, strict=True):
        n2 += w * s * s
    b.c1 = c1
    b.c2 = [s / math.sqrt(n2) for s in c2]
    return 2.0


def fit_sums(b: Bins) -> FitSums:
    """The window's sums, the cycle fitted out (see ``forecast_kernels._fit_sums``)."""
    sw = 0.0
    su = 0.0
    sx = 0.0
    for u, x, w in zip(b.u, b.x, b.w, strict=True):
        sw += w
        su += w * u
        sx += w * x
    mu = su / sw
    mx = sx / sw
    terms = cycle_basis(b, sw)
    suu = sux = sxx = ue1 = ue2 = xe1 = xe2 = 0.0
    for u, x, w, e1, e2 in zip(b.u, b.x, b.w, b.c1, b.c2, strict=True):
        du = u - mu
        dx = x - mx
        suu += w * du * du
        sux += w * du * dx
        sxx += w * dx * dx
        ue1 += w * du * e1
        ue2 += w * du * e2
        xe1 += w * dx * e1
        xe2 += w * dx * e2
    suu -= ue1 * ue1 + ue2 * ue2
    sux -= ue1 * xe1 + ue2 * xe2
    sxx -= xe1 * xe1 + xe2 * xe2
    return FitSums(sw, mu, mx, suu, sux, sxx, ue1, ue2, xe1, xe2, terms)


def regressor_sums(
    b: Bins, g_values: list[float], fit: FitSums
) -> tuple[float, float, float, float, float, float]:
    """``g_values`` against time, itself and the record, cycle out; its mean and cycle terms.

    (sug, sgg, sgx, mean, projection on cos, on sin): the kernel's ``_regressor_sums``.
    """
    sg = 0.0
    for g, w in zip(g_values, b.w, strict=True):
        sg += w * g
    mg = sg / fit.sw
    sug = sgg = sgx = ge1 = ge2 = 0.0
    for u, x, w, g, e1, e2 in zip(b.u, b.x, b.w, g_values, b.c1, b.c2, strict=True):
        dg = g - mg
        sug += w * (u - fit.mu) * dg
        sgg += w * dg * dg
        sgx += w * dg * (x - fit.mx)
        ge1 += w * dg * e1
        ge2 += w * dg * e2
    sug -= ge1 * fit.ue1 + ge2 * fit.ue2
    sgg -= ge1 * ge1 + ge2 * ge2
    sgx -= ge1 * fit.xe1 + ge2 * fit.xe2
    return sug, sgg, sgx, mg, ge1, ge2


def two_term_fit(b: Bins, g_values: list[float], fit: FitSums) -> tuple[float, float, float]:
    """Fit the bins to time and ``g_values`` beside the mean and the cycle (the kernel's).

    Returns (rss unclamped, rate on time, coefficient on g); (inf, nan, nan) when collinear.
    """
    sug, sgg, sgx, _, _, _ = regressor_sums(b, g_values, fit)
    return two_term_solve(fit, sug, sgg, sgx)


def two_term_solve(fit: FitSums, sug: float, sgg: float, sgx: float) -> tuple[float, float, float]:
    """``two_term_fit`` from the regressor's sums, for a caller that needs them too."""
    suu, sux, sxx = fit.suu, fit.sux, fit.sxx
    det = suu * sgg - sug * sug
    if not det > 1e-12 * suu * sgg:
        return INF, NAN, NAN
    c = (sgg * sux - sug * sgx) / det
    coefficient = (suu * sgx - sug * sux) / det
    return sxx - c * sux - coefficient * sgx, c, coefficient


def one_term_fit(b: Bins, g_values: list[float], fit: FitSums) -> tuple[float, float]:
    """Fit the bins to ``g_values`` alone beside the mean and the cycle (the kernel's).

    Returns (rss unclamped, coefficient on g); (inf, nan) when g is constant.
    """
    _, sgg, sgx, _, _, _ = regressor_sums(b, g_values, fit)
    if not sgg > 0.0:
        return INF, NAN
    coefficient = sgx / sgg
    return fit.sxx - coefficient * sgx, coefficient


def upward_curvature(b: Bins, fit: FitSums) -> float:
    """F statistic of a parabola against a line, 0 if it curves down (the kernel's gate)."""
    squares = [(u - fit.mu) * (u - fit.mu) for u in b.u]
    rss_quad, _, q = two_term_fit(b, squares, fit)
    if not q > 0.0 or len(b) < 4 + fit.terms:
        return 0.0
    rss_quad = max(rss_quad, 1e-12 * fit.sxx)
    rss_line = max(fit.sxx - fit.sux * fit.sux / fit.suu, 0.0)
    return (rss_line - rss_quad) / (rss_quad / (len(b) - 3.0 - fit.terms))


def voight_regressor(b: Bins, p: float) -> list[float]:
    """Voight's integrated law ``G`` for ``p`` at ``b.log_tau`` (the kernel's)."""
    return [-lt if p == 1.0 else math.exp((1.0 - p) * lt) / (p - 1.0) for lt in b.log_tau]


def voight_rss(b: Bins, p: float, fit: FitSums, alone: bool) -> tuple[float, float, float]:
    """Weighted rss of the Voight fit for ``b.log_tau``: (rss, steady c, accelerating b).

    With ``alone``, Voight's law alone: no steady creep beside it (c = 0).
    """
    g_values = voight_regressor(b, p)
    if alone:
        rss, acc = one_term_fit(b, g_values, fit)
        c = 0.0
    else:
        rss, c, acc = two_term_fit(b, g_values, fit)
    if not acc > 0.0:
        return INF, c, acc
    return max(rss, 0.0), c, acc


def rss_at(b: Bins, alpha: float, fit: FitSums, alone: bool) -> float:
    """The Voight fit's rss at exponent ``alpha`` (inf at or below the floor)."""
    if not alpha > ALPHA_FLOOR:
        return INF
    rss, _, _ = voight_rss(b, 1.0 / (alpha - 1.0), fit, alone)
    return rss


def profile(
    b: Bins, lead: float, rule: FailureForecastRule, fit: FitSums, alone: bool
) -> tuple[float, float]:
    """Best rss over alpha for a failure ``lead`` hours ahead, and its p = 1 / (alpha - 1)."""
    b.log_tau = [math.log(lead - u) for u in b.u]
    low, high = rule.alpha_range
    h = (high - low) / (N_ALPHA_STEPS - 1 - 2 * ALPHA_MARGIN)
    best = INF
    best_alpha = NAN
    for a in range(N_ALPHA_STEPS):
        alpha = max(low + (a - ALPHA_MARGIN) * h, ALPHA_FLOOR + h / 8.0)
        rss = rss_at(b, alpha, fit, alone)
        if rss < best:
            best, best_alpha = rss, alpha
    if not best < INF:
        return best, NAN
    for _ in range(ALPHA_REFINE):
        left = rss_at(b, best_alpha - h, fit, alone)
        right = rss_at(b, best_alpha + h, fit, alone)
        curvature = left - 2.0 * best + right
        if not (left < INF and right < INF and curvature > 0.0):
            break
        alpha = best_alpha + 0.5 * h * (left - right) / curvature
        rss = rss_at(b, alpha, fit, alone)
        if rss < best:
            best, best_alpha = rss, alpha
        h = h / 4.0
    return best, 1.0 / (best_alpha - 1.0)


def search(
    b: Bins, rule: FailureForecastRule, fit: FitSums, alone: bool
) -> tuple[float, float, float, list[tuple[float, float]]]:
    """Best (rss, lead, p) over the coarse then the finer grids, and every (lead, rss) tried."""
    step = math.log(MAX_LEAD_HOURS / MIN_LEAD_H) / (COARSE - 1)
    best = INF
    best_lead = MIN_LEAD_H
    best_p = NAN
    tried: list[tuple[float, float]] = []
    for k in range(COARSE):
        lead = MIN_LEAD_H * math.exp(step * k)
        rss, p = profile(b, lead, rule, fit, alone)
        tried.append((lead, rss))
        if rss < best:
            best, best_lead, best_p = rss, lead, p
    for _ in range(REFINE):
        lo = best_lead * math.exp(-step)
        step = 2.0 * step / (FINE + 1)
        for f in range(FINE):
            lead = lo * math.exp(step * (f + 1))
            rss, p = profile(b, lead, rule, fit, alone)
            tried.append((lead, rss))
            if rss < best:
                best, best_lead, best_p = rss, lead, p
    return best, best_lead, best_p, tried


def crossing(inside: float, rss_in: float, outside: float, rss_out: float, limit: float) -> float:
    """Where the profile crosses ``limit`` between two leads tried (see the kernel's)."""
    if not rss_out < INF or not rss_out > rss_in:
        return inside
    share = (limit - rss_in) / (rss_out - rss_in)
    return math.exp(math.log(inside) + share * (math.log(outside) - math.log(inside)))


def interval(tried: list[tuple[float, float]], limit: float) -> tuple[float, float]:
    """The leads where the profile crosses ``limit`` (see ``forecast_kernels._interval``)."""
    lead_lo = INF
    lead_hi = 0.0
    rss_lo = INF
    rss_hi = INF
    for lead, rss in tried:
        if rss <= limit:
            if lead < lead_lo:
                lead_lo, rss_lo = lead, rss
            if lead > lead_hi:
                lead_hi, rss_hi = lead, rss
    below = 0.0
    below_rss = INF
    above = INF
    above_rss = INF
    for lead, rss in tried:
        if below < lead < lead_lo:
            below, below_rss = lead, rss
        if lead_hi < lead < above:
            above, above_rss = lead, rss
    lead_lo = crossing(lead_lo, rss_lo, below, below_rss, limit)
    if lead_hi >= MAX_LEAD_HOURS:
        return lead_lo, INF
    return lead_lo, crossing(lead_hi, rss_hi, above, above_rss, limit)


def forecast_window(
    samples: deque[tuple[float, float]],
    t_now: float,
    rule: FailureForecastRule,
    try_alone: bool = False,
) -> tuple[float, ...] | None:
    """The forecast from the window's samples (see ``forecast_kernels.forecast_window``)."""
    ts, xs, keep = clean_window(samples, OUTLIER_SCALES)
    b = Bins(ts, xs, keep, t_now, rule)
    nb = len(b)
    if nb < rule.min_bins or (b.u[nb - 1] - b.u[0]) * 3600.0 < rule.min_span_s:
        return None
    fit = fit_sums(b)
    suu, sux, sxx = fit.suu, fit.sux, fit.sxx
    curving = upward_curvature(b, fit)
    steady = (INF, INF, INF, INF, NAN, sux / suu * 24.0, curving)
    if not curving >= GATE_EVIDENCE or nb < 6 + fit.terms:
        return steady
    best, lead, p, tried = search(b, rule, fit, False)
    if not best < INF:
        return steady
    sigma2 = max(best, 1e-12 * sxx) / (nb - 5.0 - fit.terms)
    alone = False
    if try_alone:
        best_alone, lead_alone, p_alone, tried_alone = search(b, rule, fit, True)
        if best_alone - best <= INTERVAL_CHI2 * sigma2:
            alone = True
            best, lead, p, tried = best_alone, lead_alone, p_alone, tried_alone
            sigma2 = max(best, 1e-12 * sxx) / (nb - 4.0 - fit.terms)
    # The kernel states the fuller fit's interval before its scratch holds the other
    # profile; here each search keeps its own, so only the fit that stands is bounded.
    lead_lo, lead_hi = interval(tried, best + INTERVAL_CHI2 * sigma2)
    b.log_tau = [math.log(lead - u) for u in b.u]
    _, c, acc = voight_rss(b, p, fit, alone)
    return (
        lead,
        t_now + lead * 3600.0,
        t_now + lead_lo * 3600.0,
        t_now + lead_hi * 3600.0,
        1.0 + 1.0 / p,
        (c + acc * math.exp(-p * math.log(lead))) * 24.0,
        max(sxx - sux * sux / suu - best, 0.0) / sigma2,
    )


def set_aside(forecast: tuple[float, ...], rule: FailureForecastRule) -> str | None:
    """Why the forecast fails the evidence test, in words; None when it passes."""
    lead, _, low_t, high_t, alpha, _, evidence = forecast
    if math.isnan(evidence):  # the window held too little data for any fit
        return "no forecast yet: too few readings"
    if not evidence >= rule.min_evidence:
        return f"evidence {evidence:.0f} < {rule.min_evidence:g}"
    if not lead < INF:
        return "no failure in sight"
    low, high = rule.alpha_range
    if not low - 1e-9 <= alpha <= high + 1e-9:
        return f"alpha {alpha:.2f} outside {low:g}-{high:g}"
    if not (high_t - low_t) / 3600.0 <= rule.max_spread * lead:
        return f"95 % interval wider than {rule.max_spread:g} times the lead"
    return None


def held_aside(rule: FailureForecastRule) -> str:
    """Why a forecast that passes ``set_aside`` did not count: the hold after a refutation.

    Only forecasts accelerating faster than the rule accepts are held to their word
    (``ForecastMetric.held``); for ``REFUTED_HOLD_S`` after one is refuted none counts.
    """
    return (
        f"within {REFUTED_HOLD_S / 3600.0:g} h of a refuted forecast (alpha above "
        f"{rule.alpha_range[1]:g}; its interval passed with no failure)"
    )


def accepted_failure_t(forecast: tuple[float, ...], rule: FailureForecastRule) -> float:
    """The forecast's failure time if it passed the evidence test (``set_aside``), else inf."""
    return INF if set_aside(forecast, rule) is not None else forecast[FAILURE_T]


def tail_rss(
    samples: deque[tuple[float, float]],
    t_now: float,
    rule: FailureForecastRule,
    lead: float,
    alpha: float,
    tail_h: float,
) -> float:
    """Weighted rss over the last ``tail_h`` hours' bins of a fit (``forecast_kernels``)."""
    ts, xs, keep = clean_window(samples, OUTLIER_SCALES)
    b = Bins(ts, xs, keep, t_now, rule)
    fit = fit_sums(b)
    b.log_tau = [math.log(lead - u) for u in b.u]
    g_values = voight_regressor(b, 1.0 / (alpha - 1.0))
    sug, sgg, sgx, mg, ge1, ge2 = regressor_sums(b, g_values, fit)
    rss, c, acc = two_term_solve(fit, sug, sgg, sgx)
    if not rss < INF:
        return INF
    d1 = fit.xe1 - c * fit.ue1 - acc * ge1
    d2 = fit.xe2 - c * fit.ue2 - acc * ge2
    rss = 0.0
    for u, x, w, g, e1, e2 in zip(b.u, b.x, b.w, g_values, b.c1, b.c2, strict=True):
        if not u > -tail_h:
            continue
        r = x - fit.mx - c * (u - fit.mu) - acc * (g - mg)
        r -= d1 * e1 + d2 * e2
        rss += w * r * r
    return rss


def overruled(
    samples: deque[tuple[float, float]],
    t_now: float,
    rule: FailureForecastRule,
    longer: tuple[float, ...],
    share: int,
) -> tuple[tuple[float, ...] | None, bool]:
    """The forecast of the window's part ``share``, and whether it overrules ``longer``.

    ``longer`` was made from ``samples``, a longer part of the window (the kernel's).
    """
    edge = t_now - rule.window_s * WINDOW_SHARES[share]
    later = deque(sample for sample in samples if sample[0] > edge)
    trial = forecast_window(later, t_now, rule, share == len(WINDOW_SHARES) - 1)
    if trial is None or not accepted_failure_t(trial, rule) < INF:
        return trial, False
    if not trial[FAILURE_HI] < longer[FAILURE_LO]:
        return trial, False
    tail_h = (t_now - edge) / 3600.0
    own = tail_rss(later, t_now, rule, trial[LEAD_H], trial[ALPHA], INF)
    if not own < INF:
        return trial, False
    lagging = tail_rss(samples, t_now, rule, longer[LEAD_H], longer[ALPHA], tail_h)
    return trial, lagging >= LAG_MISFIT * own


def windowed_forecast(
    samples: deque[tuple[float, float]], t_now: float, rule: FailureForecastRule
) -> tuple[float, ...] | None:
    """The whole window's forecast, or its latest part's (see ``forecast_kernels``).

    Over the last part Voight's law alone is tried too (``forecast_window``'s ``try_alone``),
    and a later part (the last, else, when the last fails its evidence test, the quarter)
    overrules a longer part's accepted forecast that lags it (``overruled``).
    """
    return stated_forecast(samples, t_now, rule)[0]


def disagree(forecast: tuple[float, ...], other: tuple[float, ...]) -> bool:
    """Whether either forecast's failure time lies outside the other's interval."""
    return not (
        forecast[FAILURE_LO] <= other[FAILURE_T] <= forecast[FAILURE_HI]
        and other[FAILURE_LO] <= forecast[FAILURE_T] <= other[FAILURE_HI]
    )


def _taken_in(
    interval: tuple[float, float],
    forecast: tuple[float, ...],
    other: tuple[float, ...] | None,
    rule: FailureForecastRule,
) -> tuple[float, float]:
    """``interval``, widened to ``other``'s where that passed the test and disagrees.

    ``forecast`` is the one whose ``interval`` is stated (``forecast_kernels.take_in``).
    """
    if other is None or not accepted_failure_t(other, rule) < INF:
        return interval
    if not disagree(forecast, other):
        return interval
    return min(interval[0], other[FAILURE_LO]), max(interval[1], other[FAILURE_HI])


def _beside_overruling(
    samples: deque[tuple[float, float]],
    t_now: float,
    rule: FailureForecastRule,
    overruling: tuple[float, ...],
    share: int | None,
) -> tuple[float, float]:
    """The interval to state with a later part's ``overruling`` forecast.

    Its own, widened to take in the interval of the next longer part ``share`` of
    ``samples`` (None: there is none between) as ``_taken_in`` says
    (``forecast_kernels.beside_overruling``).
    """
    own = (overruling[FAILURE_LO], overruling[FAILURE_HI])
    if share is None:
        return own
    edge = t_now - rule.window_s * WINDOW_SHARES[share]
    beside = forecast_window(deque(x for x in samples if x[0] > edge), t_now, rule)
    return _taken_in(own, overruling, beside, rule)


def stated_forecast(
    samples: deque[tuple[float, float]], t_now: float, rule: FailureForecastRule
) -> tuple[tuple[float, ...] | None, tuple[float, float]]:
    """``windowed_forecast``, and the interval to state with it (NaN with too little data).

    The forecast's own interval, widened to take in a later part's that was fitted beside
    it, passed the test without overruling it and disagrees with it (``disagree``); or,
    for a later part's forecast that overrules, the interval of the next longer part
    between the two, where that one passes and disagrees (``_beside_overruling``;
    ``forecast_kernels.windowed_forecast``).
    """
    forecast = forecast_window(samples, t_now, rule)
    if forecast is None:
        return forecast, (NAN, NAN)
    standing, part, j = forecast, samples, 0
    while not accepted_failure_t(standing, rule) < INF and j < len(WINDOW_SHARES) - 1:
        j += 1
        edge = t_now - rule.window_s * WINDOW_SHARES[j]
        part = deque(sample for sample in samples if sample[0] > edge)
        standing = forecast_window(part, t_now, rule, j == len(WINDOW_SHARES) - 1) or standing
    if not accepted_failure_t(standing, rule) < INF:
        return forecast, (forecast[FAILURE_LO], forecast[FAILURE_HI])
    own = (standing[FAILURE_LO], standing[FAILURE_HI])
    for later in range(len(WINDOW_SHARES) - 1, j, -1):
        trial, overrules = overruled(part, t_now, rule, standing, later)
        if trial is None or not accepted_failure_t(trial, rule) < INF:
            continue  # only a forecast that passed can overrule (``overruled``)
        if overrules:
            between = later - 1 if later - 1 > j else None
            return trial, _beside_overruling(part, t_now, rule, trial, between)
        # it passed and follows the longer fit: a longer later part would too
        return standing, _taken_in(own, standing, trial, rule)
    return standing, own


def confirmed_lead(history: deque[float], t_now: float, max_drift: float) -> float:
    """Hours to the latest of the confirming failure times; inf if they do not confirm."""
    latest = history[0]
    earliest = history[0]
    for failure_t in list(history)[1:]:
        latest = max(latest, failure_t)
        earliest = min(earliest, failure_t)
    if not latest < INF:
        return INF
    lead = (latest - t_now) / 3600.0
    if (latest - earliest) / 3600.0 > max_drift * lead:
        return INF
    return lead


def judged_lead(lead: float, forecast: tuple[float, ...], rule: FailureForecastRule) -> float:
    """The confirmed ``lead`` the horizons judge, shortened for caution (``forecast_kernels``)."""
    if not lead < INF:
        return lead
    return lead - rule.caution * (forecast[FAILURE_T] - forecast[FAILURE_LO]) / 3600.0


def watched(lead: float, newest_h: float, rule: FailureForecastRule) -> float:
    """The judged ``lead``, cut to the yellow horizon by an unconfirmed forecast close ahead.

    See ``forecast_kernels.watched``: ``newest_h`` is the newest forecast's lead shortened
    for caution (inf if it failed the evidence test); it counts when at most
    ``unconfirmed_h``.
    """
    yellow = rule.horizons_h[YELLOW]
    if rule.unconfirmed_h is None or yellow is None or not newest_h < INF:
        return lead
    if newest_h <= rule.unconfirmed_h:
        return min(lead, yellow)
    return lead


class ForecastMetric:
    """The failure-forecast rule's metric, sample by sample (see ``SlopeMetric``)."""

    def __init__(self, rule: FailureForecastRule) -> None:
        self.rule = rule
        self.samples: deque[tuple[float, float]] = deque()
        self.next_eval = -INF
        self.history: deque[float] = deque([INF] * rule.confirm, maxlen=rule.confirm)
        self.thresholds = negated(rule.horizons_h)
        #: (time, forecast) of the newest forecast that passed the evidence test.
        self.accepted: tuple[float, tuple[float, ...]] | None = None
        #: The earliest upper end of the strong forecasts' intervals since the last
        #: refutation, and when that was (``forecast_kernels.refuted``).
        self.pending = INF
        self.refuted = -INF

    def update(self, t: float, x: float) -> Evaluation | None:
        """Take the good sample ``x`` at ``t``; None between evaluations."""
        edge = t - self.rule.window_s
        while self.samples and self.samples[0][0] <= edge:
            self.samples.popleft()
        self.samples.append((t, x))
        if t < self.next_eval:
            return None
        self.next_eval = t + self.rule.eval_every_s
        forecast, stated = stated_forecast(self.samples, t, self.rule)
        return self.judge(t, forecast, stated)

    def judge(
        self,
        t: float,
        forecast: tuple[float, ...] | None,
        stated: tuple[float, float] | None = None,
    ) -> Evaluation:
        """Take the forecast made at ``t`` (None: too little data); its levels, if any.

        The rule's acceptance, confirmation and horizons, apart from the fit: a tuning
        bench replays stored forecasts through it under other settings. They judge the
        forecast's own interval; the snapshot and ``accepted`` carry ``stated`` (the
        interval to state, ``stated_forecast``) in its place when given.
        """
        held = self.held(t, forecast)
        self.history.appendleft(
            INF if forecast is None or held else accepted_failure_t(forecast, self.rule)
        )
        if forecast is None:
            return (NAN,) * SNAP_SIZE, None
        confirmed = judged_lead(
            confirmed_lead(self.history, t, self.rule.drift), forecast, self.rule
        )
        newest = judged_lead((self.history[0] - t) / 3600.0, forecast, self.rule)
        lead = watched(confirmed, newest, self.rule)
        levels = threshold_levels(-lead, self.thresholds, self.rule.hysteresis)
        if stated is not None:
            shown = list(forecast)
            shown[FAILURE_LO], shown[FAILURE_HI] = stated
            forecast = tuple(shown)
        if self.history[0] < INF:
            self.accepted = (t, forecast)
        return (*forecast, confirmed, newest), levels

    def held(self, t: float, forecast: tuple[float, ...] | None) -> bool:
        """Whether a forecast was refuted within ``REFUTED_HOLD_S``; notes this one's word.

        A forecast is refuted when the upper end of its interval passes with no failure;
        only those that accelerate faster than the rule accepts count (alpha above its
        range, F of ``min_evidence``, a bounded interval).
        """
        if self.pending < t:
            self.refuted, self.pending = self.pending, INF
        if forecast is not None:
            lead, _, _, high_t, alpha, _, evidence = forecast
            strong = evidence >= self.rule.min_evidence and lead < INF
            above = alpha > self.rule.alpha_range[1] + 1e-9
            if strong and above and math.isfinite(high_t):
                self.pending = min(self.pending, high_t)
        return t - self.refuted < REFUTED_HOLD_S
