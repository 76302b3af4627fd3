"""How plainly a failure tells itself from a slope that only speeds up, hours before it fails.

The lead targets ask for a red a day ahead with no false red in any quiet site-year, and a
quiet year's seasonal accelerations speed a slope up too. What tells a failure apart is
the form of the speeding up. Voight's law with alpha above 1 runs to infinite velocity at
a finite time: the velocity grows faster than exponentially. With alpha = 1 it grows
exponentially and never fails (Voight 1989); a rise that levels off, as a wet season's
does, grows slower still. So the test here is the likelihood ratio of the two best fits
to a window of hourly bins:

- a failure: steady creep plus Voight's accelerating creep, alpha in the rule's
  ``alpha_range``, failure from half an hour to 3,000 h ahead;
- no failure: steady creep plus an exponentially growing creep (any rate of growth, the
  steady creep alone being its limit);

both with the daily cycle fitted out once the window spans two days, each accelerating
term only upward. ``d`` is how much worse the exponential fits, in units of the noise
variance estimated from the failure fit's residuals (a chi-square with one degree of
freedom would be the textbook scale).

The bench computes ``d`` two ways, for the failure records in the targets' scope (noise up
to 0.05 mm) of ``hardware_sim.slope_corpus``, and for its quiet site-years in scope:

- ``ideal``: the clean motion in hourly bins plus noise of the record's own deviation
  averaged over the readings an hour holds (no daily cycle, outliers, gaps or sensor
  steps; a quiet year's seasonal accelerations are the corpus's own, drawn in its order);
- ``rule``: the rule's own bins (``reference_forecast.clean_window`` and ``Bins``) of the
  corpus record itself, with everything the corpus puts in it.

A failure counts as told apart ``lead`` hours ahead when its ``d`` then is above the
largest ``d`` any quiet year in scope reaches (looked at every ``--every-h`` hours; in
``rule`` mode a failure counts from the first time its ``d`` is above it, looked at every
``--step-h`` hours from 120 h before failure). That share is what a warning resting on
this test alone could reach with no false level on the quiet years; it says whether the
records carry the information, not when a rule would time its levels: a warning still
needs the failure time, and that is what the fits at 24 h leave uncertain
(``bench/slope_forecast_bound.py``). The seeds told apart last are printed beside it, to
set against the rule's late warnings in ``bench/slope_forecast.py``; ``_own_quiet`` gives
the share against the set's own quiet years alone.

    .venv/bin/python bench/slope_forecast_separable.py                # ideal, about 3 min
    .venv/bin/python bench/slope_forecast_separable.py --mode rule    # about 8 min on 2 cores
    .venv/bin/python bench/slope_forecast_separable.py --failures 40 --quiet 6 --every-h 48

The last line is a JSON object. This module must never be imported by the agent: it is a
study of the corpus, not a rule.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from alarm_engine.forecast_layout import OUTLIER_SCALES
from alarm_engine.reference_forecast import Bins, clean_window
from hardware_sim import slope_corpus
from hardware_sim.slope_corpus import (
    DAY,
    HOUR,
    SlopeRecord,
    accelerating_part,
    failure_record,
    quiet_site_year,
)
from site_schema.rule_specs import FailureForecastRule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slope_forecast import CHECK_SEED, _rule_for

FloatArray = npt.NDArray[np.float64]

WINDOW_H = 336
LEADS_H = np.exp(np.linspace(math.log(0.5), math.log(3000.0), 120))
GROWTH_H = np.exp(np.linspace(math.log(2.0), math.log(30000.0), 150))
N_ALPHA = 11
CYCLE_SPAN_H = 48.0
FIRST_LOOK_H = 120.0


class Window:
    """Hourly bins of a window: hours before now (negative), mean value, readings held."""

    def __init__(self, u: FloatArray, x: FloatArray, w: FloatArray, t_now: float) -> None:
        self.u, self.x, self.w, self.t_now = u, x, w, t_now


def _residual_maker(win: Window) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weighted base (level, creep, daily cycle) and the data, with the base fitted out."""
    u, sw = win.u, np.sqrt(win.w)
    turn = 2.0 * math.pi * (win.t_now / HOUR + u) / 24.0
    columns = [np.ones_like(u), u]
    if u[-1] - u[0] >= CYCLE_SPAN_H:
        columns += [np.cos(turn), np.sin(turn)]
    base = np.stack(columns, 1) * sw[:, None]
    q, _ = np.linalg.qr(base)
    y = win.x * sw
    return q, sw, y - q @ (q.T @ y)


def _best_rss(terms: FloatArray, q: FloatArray, sw: FloatArray, y_left: FloatArray) -> FloatArray:
    """RSS with each row of ``terms`` added to the base, where its coefficient is positive."""
    h = terms * sw[None, :]
    h_left = h - (h @ q) @ q.T
    hh = np.einsum("ij,ij->i", h_left, h_left)
    hy = h_left @ y_left
    with np.errstate(invalid="ignore", divide="ignore"):
        rss = float(y_left @ y_left) - hy * hy / hh
    return np.asarray(np.where((hy > 0.0) & (hh > 0.0), rss, np.inf), dtype=np.float64)


def voight_terms(u: FloatArray, alpha_range: tuple[float, float]) -> FloatArray:
    """Voight's accelerating creep, integrated, over the grid of failure times and alphas."""
    leads, alphas = np.meshgrid(LEADS_H, np.linspace(*alpha_range, N_ALPHA), indexing="ij")
    tau = leads.ravel()[:, None] - u[None, :]
    p = 1.0 / (alphas.ravel()[:, None] - 1.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        power_form = tau ** (1.0 - p) / (p - 1.0)
        terms = np.where(np.abs(p - 1.0) < 1e-9, -np.log(tau), power_form)
    return np.asarray(terms, dtype=np.float64)


def exponential_terms(u: FloatArray) -> FloatArray:
    """Exponentially growing creep over the grid of growth times."""
    return np.asarray(np.exp((u[None, :] - u[-1]) / GROWTH_H[:, None]), dtype=np.float64)


def super_exponential(win: Window, alpha_range: tuple[float, float]) -> float:
    """``d`` of a window: how much worse no failure fits than a failure, over the noise."""
    q, sw, y_left = _residual_maker(win)
    failure = float(_best_rss(voight_terms(win.u, alpha_range), q, sw, y_left).min())
    if not failure < math.inf:
        return -math.inf  # nothing accelerates upward: no evidence of failure at all
    steady = float(y_left @ y_left)
    growing = min(steady, float(_best_rss(exponential_terms(win.u), q, sw, y_left).min()))
    dof = int(win.u.shape[0]) - int(q.shape[1]) - 3
    return float((growing - failure) / max(failure / dof, 1e-300))


def rule_window(record: SlopeRecord, t_now: float, rule: FailureForecastRule) -> Window | None:
    """The rule's own cleaned bins of ``record`` at ``t_now`` (None if too few)."""
    lo = int(np.searchsorted(record.t, t_now - rule.window_s, side="right"))
    hi = int(np.searchsorted(record.t, t_now, side="right"))
    samples = deque(zip(record.t[lo:hi].tolist(), record.x[lo:hi].tolist(), strict=True))
    ts, xs, keep = clean_window(samples, OUTLIER_SCALES)
    b = Bins(ts, xs, keep, t_now, rule)
    if len(b) < rule.min_bins:
        return None
    return Window(np.array(b.u), np.array(b.x), np.array(b.w), t_now)


def ideal_failure_window(seed: int, lead_h: float) -> Window:
    """Failure record ``seed``'s clean motion ``lead_h`` hours ahead, hourly, plus noise."""
    r = failure_record(seed)
    u = -np.arange(WINDOW_H, 0, -1.0) + 0.5
    clean = r.params["creep_mm_day"] / 24.0 * u + accelerating_part(r.params, (lead_h - u) * HOUR)
    per_hour = HOUR / r.interval_s
    sd = r.noise_mm / math.sqrt(per_hour)
    y = clean + np.random.default_rng([5, seed, int(lead_h)]).normal(0.0, sd, u.shape[0])
    return Window(u, y, np.full(u.shape[0], per_hour), r.failure_t - lead_h * HOUR)


def ideal_quiet_bins(seed: int) -> tuple[FloatArray, float]:
    """Quiet year ``seed``'s seasonal motion, hourly, plus noise; the readings an hour holds.

    The seasonal accelerations are the year's own (``slope_corpus.quiet_seasonal_factor``),
    without its daily cycle, sensor step and outliers.
    """
    year = quiet_site_year(seed)
    hours = np.asarray(slope_corpus.ORIGIN + (np.arange(365 * 24) + 0.5) * HOUR, np.float64)
    factor = slope_corpus.quiet_seasonal_factor(seed, hours)
    per_hour = HOUR / year.interval_s
    sd = year.noise_mm / math.sqrt(per_hour)
    drawn = np.random.default_rng([6, seed]).normal(0.0, sd, factor.shape[0])
    motion = np.cumsum(year.params["creep_mm_day"] / 24.0 * factor) + drawn
    return np.asarray(motion, dtype=np.float64), per_hour


def failure_job(job: tuple[str, int, list[float], float]) -> dict[str, Any]:
    """``d`` of failure ``seed`` at each lead (``ideal``) or every step from 120 h (``rule``)."""
    mode, seed, leads, step_h = job
    rule = _rule_for({})
    r = failure_record(seed)
    looks: list[tuple[float, Window | None]]
    if mode == "ideal":
        looks = [(lead, ideal_failure_window(seed, lead)) for lead in leads]
    else:
        hours = np.arange(FIRST_LOOK_H, min(leads) - step_h / 2, -step_h)
        looks = [(float(h), rule_window(r, r.failure_t - h * HOUR, rule)) for h in hours]
    d = [
        (lead, round(super_exponential(win, rule.alpha_range), 2))
        for lead, win in looks
        if win is not None
    ]
    return {"seed": seed, "every_s": r.interval_s, "d": d}


def quiet_job(job: tuple[str, int, float]) -> dict[str, Any]:
    """The largest ``d`` of quiet year ``seed``, looked at every ``every_h`` hours."""
    mode, seed, every_h = job
    rule = _rule_for({})
    worst, at = -math.inf, -1.0
    if mode == "ideal":
        y, per_hour = ideal_quiet_bins(seed)
        u = -np.arange(WINDOW_H, 0, -1.0) + 0.5
        for end in range(WINDOW_H, y.shape[0] + 1, int(every_h)):
            bins = Window(u, y[end - WINDOW_H : end], np.full(WINDOW_H, per_hour), end * HOUR)
            d = super_exponential(bins, rule.alpha_range)
            if d > worst:
                worst, at = d, float(end)
    else:
        r = quiet_site_year(seed)
        for t_now in np.arange(r.t[0] + 2 * DAY, r.t[-1], every_h * HOUR):
            win = rule_window(r, float(t_now), rule)
            d = super_exponential(win, rule.alpha_range) if win is not None else -math.inf
            if d > worst:
                worst, at = d, float((t_now - r.t[0]) / HOUR)
    return {"seed": seed, "max_d": round(worst, 2), "at_h": at}


def _told_apart(row: dict[str, Any], threshold: float, lead: float, mode: str) -> bool:
    if mode == "ideal":
        return any(h == lead and d > threshold for h, d in row["d"])
    return any(h >= lead and d > threshold for h, d in row["d"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("ideal", "rule"), default="ideal")
    parser.add_argument("--failures", type=int, default=200, help="failure seeds per set")
    parser.add_argument("--quiet", type=int, default=50, help="quiet seeds per set")
    parser.add_argument("--sets", default="tuning,check", help="tuning, check or both")
    parser.add_argument("--leads-h", default="24,48", help="hours before failure")
    parser.add_argument("--every-h", type=float, default=6.0, help="quiet years looked at")
    parser.add_argument("--step-h", type=float, default=2.0, help="rule mode: failures looked at")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    leads = [float(v) for v in args.leads_h.split(",")]
    bases = {"tuning": 0, "check": CHECK_SEED}
    sets = {name: bases[name] for name in args.sets.split(",")}
    failures = {
        name: [s for s in range(base, base + args.failures) if failure_record(s).noise_mm <= 0.05]
        for name, base in sets.items()
    }
    quiet = {
        name: [s for s in range(base, base + args.quiet) if quiet_site_year(s).noise_mm <= 0.05]
        for name, base in sets.items()
    }
    with ProcessPoolExecutor(args.workers) as pool:
        quiet_rows = {
            name: list(pool.map(quiet_job, [(args.mode, s, args.every_h) for s in seeds]))
            for name, seeds in quiet.items()
        }
        failure_rows = {
            name: list(pool.map(failure_job, [(args.mode, s, leads, args.step_h) for s in seeds]))
            for name, seeds in failures.items()
        }
    threshold = max(r["max_d"] for rows in quiet_rows.values() for r in rows)
    report: dict[str, Any] = {"mode": args.mode, "threshold_d": threshold}
    for name in sets:
        worst = max(quiet_rows[name], key=lambda r: r["max_d"])
        part: dict[str, Any] = {
            "failures": len(failures[name]),
            "quiet_years": len(quiet[name]),
            "quiet_max_d": worst["max_d"],
            "quiet_max_seed": worst["seed"],
        }
        rows = failure_rows[name]
        for lead in leads:
            key = f"{lead:g}h"
            apart = [r for r in rows if _told_apart(r, threshold, lead, args.mode)]
            part[f"told_apart_{key}"] = round(len(apart) / len(rows), 3)
            for every, label in ((600.0, "10min"), (3600.0, "hourly")):
                some = [r for r in rows if r["every_s"] == every]
                if some:
                    share = sum(_told_apart(r, threshold, lead, args.mode) for r in some)
                    part[f"told_apart_{key}_{label}"] = round(share / len(some), 3)
            part[f"not_told_apart_{key}"] = [r["seed"] for r in rows if r not in apart]
            # were this set's quiet years all there were
            own = sum(_told_apart(r, worst["max_d"], lead, args.mode) for r in rows)
            part[f"told_apart_{key}_own_quiet"] = round(own / len(rows), 3)
        if args.mode == "ideal":
            at_24 = sorted(rows, key=lambda r: dict(r["d"]).get(24.0, math.inf))
            part["least_d_24h"] = [(r["seed"], dict(r["d"]).get(24.0)) for r in at_24[:6]]
        report[name] = part
    print(json.dumps(report))


if __name__ == "__main__":
    main()
