"""Plain-Python reference of the failure-forecast rule (see ``forecast_kernels.py``).

Part of the reference oracle: lists and loops, no numpy or numba, every formula in the
same order as the kernels so results match bit for bit; change both together. It never
reads or writes anything outside the rule's own state.
"""

from __future__ import annotations

import math
from collections import deque

from alarm_engine.forecast_layout import (
    ALPHA_FLOOR,
    ALPHA_MARGIN,
    ALPHA_REFINE,
    CHI2_95,
    COARSE,
    FINE,
    GATE_EVIDENCE,
    MAX_LEAD_HOURS,
    MIN_LEAD_H,
    N_ALPHA_STEPS,
    OUT_SIZE,
    OUTLIER_SCALES,
    REFINE,
    STEP_SCALES,
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


def clean_window(
    samples: deque[tuple[float, float]], k_sigma: float
) -> tuple[list[float], list[float], list[bool]]:
    """The window's (times, values, keep flags): outliers dropped, steps taken out."""
    ts = [t for t, _ in samples]
    xs = [x for _, x in samples]
    keep = [True] * len(ts)
    n = len(ts)
    if n < 4:
        return ts, xs, keep
    m = n - 1
    rate = median_of([(xs[j + 1] - xs[j]) / (ts[j + 1] - ts[j]) for j in range(m)])
    scale = 1.4826 * median_of(
        [abs(xs[j + 1] - xs[j] - rate * (ts[j + 1] - ts[j])) for j in range(m)]
    )
    threshold = k_sigma * scale
    step = STEP_SCALES * scale
    if not threshold > 0.0:
        return ts, xs, keep
    offset = 0.0
    previous = 0.0
    for j in range(m):
        r = xs[j + 1] - xs[j] - rate * (ts[j + 1] - ts[j])
        xs[j] -= offset
        if abs(r) <= threshold:
            previous = r
            continue
        if j + 2 <= m:
            r_next = xs[j + 2] - xs[j + 1] - rate * (ts[j + 2] - ts[j + 1])
            if abs(r_next) > threshold and r * r_next < 0.0 and abs(r + r_next) <= threshold:
                keep[j + 1] = False
            elif abs(r) > step and abs(r_next) <= threshold and abs(previous) <= threshold:
                offset += r
        elif abs(previous) <= threshold:
            keep[j + 1] = False
        previous = r
    xs[m] -= offset
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

    def __len__(self) -> int:
        return len(self.u)


def bin_count(window_s: float, bin_s: float) -> int:
    """Bins a window of ``window_s`` is averaged into (the oldest may be partial)."""
    return math.ceil(window_s / bin_s) + 1


def weighted_line(b: Bins) -> tuple[float, float, float, float, float, float]:
    """Weighted sums about the means: (sw, mean u, mean x, suu, sux, sxx)."""
    sw = 0.0
    su = 0.0
    sx = 0.0
    for u, x, w in zip(b.u, b.x, b.w, strict=True):
        sw += w
        su += w * u
        sx += w * x
    mu = su / sw
    mx = sx / sw
    suu = 0.0
    sux = 0.0
    sxx = 0.0
    for u, x, w in zip(b.u, b.x, b.w, strict=True):
        du = u - mu
        dx = x - mx
        suu += w * du * du
        sux += w * du * dx
        sxx += w * dx * dx
    return sw, mu, mx, suu, sux, sxx


def upward_curvature(b: Bins, mu: float, mx: float, sw: float) -> float:
    """F statistic of a parabola against a line, 0 if it curves down (the kernel's gate)."""
    nb = len(b)
    mq = 0.0
    for u, w in zip(b.u, b.w, strict=True):
        du = u - mu
        mq += w * du * du
    mq /= sw
    suu = sqq = suq = sux = sqx = sxx = 0.0
    for u, x, w in zip(b.u, b.x, b.w, strict=True):
        du = u - mu
        dq = du * du - mq
        dx = x - mx
        suu += w * du * du
        sqq += w * dq * dq
        suq += w * du * dq
        sux += w * du * dx
        sqx += w * dq * dx
        sxx += w * dx * dx
    det = suu * sqq - suq * suq
    if not det > 1e-12 * suu * sqq or nb < 4:
        return 0.0
    c = (sqq * sux - suq * sqx) / det
    q = (suu * sqx - suq * sux) / det
    if not q > 0.0:
        return 0.0
    rss_quad = max(sxx - c * sux - q * sqx, 1e-12 * sxx)
    rss_line = max(sxx - sux * sux / suu, 0.0)
    return (rss_line - rss_quad) / (rss_quad / (nb - 3.0))


def voight_rss(b: Bins, p: float, mu: float, mx: float, sw: float) -> tuple[float, float, float]:
    """Weighted rss of the Voight fit for ``b.log_tau``: (rss, steady c, accelerating b)."""
    g_values = [-lt if p == 1.0 else math.exp((1.0 - p) * lt) / (p - 1.0) for lt in b.log_tau]
    sg = 0.0
    for g, w in zip(g_values, b.w, strict=True):
        sg += w * g
    mg = sg / sw
    suu = sug = sgg = sux = sgx = sxx = 0.0
    for u, x, w, g in zip(b.u, b.x, b.w, g_values, strict=True):
        du = u - mu
        dg = g - mg
        dx = x - mx
        suu += w * du * du
        sug += w * du * dg
        sgg += w * dg * dg
        sux += w * du * dx
        sgx += w * dg * dx
        sxx += w * dx * dx
    det = suu * sgg - sug * sug
    if not det > 1e-12 * suu * sgg:
        return INF, NAN, NAN
    c = (sgg * sux - sug * sgx) / det
    acc = (suu * sgx - sug * sux) / det
    if not acc > 0.0:
        return INF, c, acc
    return max(sxx - c * sux - acc * sgx, 0.0), c, acc


def rss_at(b: Bins, alpha: float, mu: float, mx: float, sw: float) -> float:
    """The Voight fit's rss at exponent ``alpha`` (inf at or below the floor)."""
    if not alpha > ALPHA_FLOOR:
        return INF
    rss, _, _ = voight_rss(b, 1.0 / (alpha - 1.0), mu, mx, sw)
    return rss


def profile(
    b: Bins, lead: float, rule: FailureForecastRule, mu: float, mx: float, sw: float
) -> tuple[float, float]:
    """Best rss over alpha for a failure ``lead`` hours ahead, and its p = 1 / (alpha - 1)."""
    b.log_tau = [math.log(lead - u) for u in b.u]
    low, high = rule.alpha_range
    h = (high - low) / (N_ALPHA_STEPS - 1 - 2 * ALPHA_MARGIN)
    best = INF
    best_alpha = NAN
    for a in range(N_ALPHA_STEPS):
        alpha = max(low + (a - ALPHA_MARGIN) * h, ALPHA_FLOOR + h / 8.0)
        rss = rss_at(b, alpha, mu, mx, sw)
        if rss < best:
            best, best_alpha = rss, alpha
    if not best < INF:
        return best, NAN
    for _ in range(ALPHA_REFINE):
        left = rss_at(b, best_alpha - h, mu, mx, sw)
        right = rss_at(b, best_alpha + h, mu, mx, sw)
        curvature = left - 2.0 * best + right
        if not (left < INF and right < INF and curvature > 0.0):
            break
        alpha = best_alpha + 0.5 * h * (left - right) / curvature
        rss = rss_at(b, alpha, mu, mx, sw)
        if rss < best:
            best, best_alpha = rss, alpha
        h = h / 4.0
    return best, 1.0 / (best_alpha - 1.0)


def search(
    b: Bins, rule: FailureForecastRule, mu: float, mx: float, sw: float
) -> tuple[float, float, float, list[tuple[float, float]]]:
    """Best (rss, lead, p) over the coarse then the finer grids, and every (lead, rss) tried."""
    step = math.log(MAX_LEAD_HOURS / MIN_LEAD_H) / (COARSE - 1)
    best = INF
    best_lead = MIN_LEAD_H
    best_p = NAN
    tried: list[tuple[float, float]] = []
    for k in range(COARSE):
        lead = MIN_LEAD_H * math.exp(step * k)
        rss, p = profile(b, lead, rule, mu, mx, sw)
        tried.append((lead, rss))
        if rss < best:
            best, best_lead, best_p = rss, lead, p
    for _ in range(REFINE):
        lo = best_lead * math.exp(-step)
        step = 2.0 * step / (FINE + 1)
        for f in range(FINE):
            lead = lo * math.exp(step * (f + 1))
            rss, p = profile(b, lead, rule, mu, mx, sw)
            tried.append((lead, rss))
            if rss < best:
                best, best_lead, best_p = rss, lead, p
    return best, best_lead, best_p, tried


def forecast_window(
    samples: deque[tuple[float, float]], t_now: float, rule: FailureForecastRule
) -> tuple[float, ...] | None:
    """The forecast from the window's samples (see ``forecast_kernels.forecast_window``)."""
    ts, xs, keep = clean_window(samples, OUTLIER_SCALES)
    b = Bins(ts, xs, keep, t_now, rule)
    nb = len(b)
    if nb < rule.min_bins or (b.u[nb - 1] - b.u[0]) * 3600.0 < rule.min_span_s:
        return None
    sw, mu, mx, suu, sux, sxx = weighted_line(b)
    curving = upward_curvature(b, mu, mx, sw)
    steady = (INF, INF, INF, INF, NAN, sux / suu * 24.0, curving)
    if not curving >= GATE_EVIDENCE or nb < 6:
        return steady
    best, lead, p, tried = search(b, rule, mu, mx, sw)
    if not best < INF:
        return steady
    sigma2 = max(best, 1e-12 * sxx) / (nb - 5.0)
    limit = best + CHI2_95 * sigma2
    lead_lo = INF
    lead_hi = 0.0
    for tried_lead, rss in tried:
        if rss <= limit:
            lead_lo = min(lead_lo, tried_lead)
            lead_hi = max(lead_hi, tried_lead)
    if lead_hi >= MAX_LEAD_HOURS:
        lead_hi = INF
    b.log_tau = [math.log(lead - u) for u in b.u]
    _, c, acc = voight_rss(b, p, mu, mx, sw)
    return (
        lead,
        t_now + lead * 3600.0,
        t_now + lead_lo * 3600.0,
        t_now + lead_hi * 3600.0,
        1.0 + 1.0 / p,
        (c + acc * math.exp(-p * math.log(lead))) * 24.0,
        max(sxx - sux * sux / suu - best, 0.0) / sigma2,
    )


def accepted_failure_t(forecast: tuple[float, ...], rule: FailureForecastRule) -> float:
    """The forecast's failure time if it passed the evidence test, else inf."""
    lead, failure_t, low_t, high_t, alpha, _, evidence = forecast
    if not evidence >= rule.min_evidence or not lead < INF:
        return INF
    if not rule.alpha_range[0] - 1e-9 <= alpha <= rule.alpha_range[1] + 1e-9:
        return INF
    if not (high_t - low_t) / 3600.0 <= rule.max_spread * lead:
        return INF
    return failure_t


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


class ForecastMetric:
    """The failure-forecast rule's metric, sample by sample (see ``SlopeMetric``)."""

    def __init__(self, rule: FailureForecastRule) -> None:
        self.rule = rule
        self.samples: deque[tuple[float, float]] = deque()
        self.next_eval = -INF
        self.history: deque[float] = deque([INF] * rule.confirm, maxlen=rule.confirm)
        self.thresholds = negated(rule.horizons_h)

    def update(self, t: float, x: float) -> Evaluation | None:
        """Take the good sample ``x`` at ``t``; None between evaluations."""
        edge = t - self.rule.window_s
        while self.samples and self.samples[0][0] <= edge:
            self.samples.popleft()
        self.samples.append((t, x))
        if t < self.next_eval:
            return None
        self.next_eval = t + self.rule.eval_every_s
        forecast = forecast_window(self.samples, t, self.rule)
        self.history.appendleft(
            INF if forecast is None else accepted_failure_t(forecast, self.rule)
        )
        if forecast is None:
            return (NAN,) * OUT_SIZE, None
        lead = confirmed_lead(self.history, t, self.rule.drift)
        return forecast, threshold_levels(-lead, self.thresholds, self.rule.hysteresis)
