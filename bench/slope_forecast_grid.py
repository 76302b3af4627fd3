r"""Tune the slope warning's level settings in seconds: replay stored forecasts, not fits.

The fit is the costly part of ``bench/slope_forecast.py`` (minutes for the corpus); which
level it raises is cheap. This bench fits every record of the corpus once, hourly as the
engine does, with the shipped rule's fit settings (``--fit NAME=VALUE`` to change them),
and keeps every forecast. It then replays the rule's acceptance, confirmation, horizons,
hysteresis and hold over the stored forecasts for each combination of ``--grid``, through
the alarm engine's own code (``ForecastMetric.judge``, ``LevelState``), and scores them
as ``bench/slope_forecast.py`` does.

A combination is clean when it raises no false orange or red and at most two false
yellows a site-year on the tuning set (seeds below 1000). The clean ones are ranked by the
smaller of red >= 24 h and orange >= 48 h, then by the share within 10 % at the first red;
the best is then scored once on the check set. A setting that also shapes the fit
(``alpha_range`` bounds the exponents searched as well as those accepted) is replayed
for acceptance only: change it with ``--fit`` to see its whole effect. So are the
acceptance settings (``min_evidence``, ``alpha_range``, ``max_spread``) in one more way:
they also choose, as the fit runs, whether a later part of the window is fitted instead
of the whole (``forecast_kernels.windowed_forecast``).

    .venv/bin/python bench/slope_forecast_grid.py \\
        --grid '{"max_drift": [0.2, 0.25, 0.3], "confirm": [2, 3]}'

Settings are written as in a site file's rule table (``"horizons_h": [{"yellow": 168,
"orange": 144, "red": 36}]`` tries one table), and every combination goes through the
site file's checks before any fit: one a site file could not hold stops the bench with
the message a site file would get.

It must never be the judge of a rule: ``bench/slope_forecast.py`` runs the real engine
over the samples, and its figures are the ones to quote.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from alarm_engine import forecast_kernels as fk
from alarm_engine import forecast_layout as fl
from alarm_engine.kernel_cache import source_digest
from alarm_engine.numba_backend import forecast_cfg
from alarm_engine.reference import LevelState
from alarm_engine.reference_forecast import ForecastMetric
from hardware_sim import slope_corpus
from hardware_sim.slope_corpus import (
    SlopeRecord,
    failure_record,
    quiet_site_year,
)
from site_schema.rule_specs import FailureForecastRule
from site_schema.site_errors import SiteConfigError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slope_forecast import CHECK_SEED, _rule_for, about_record, outcome, overrides_from, verdict

ENGINE = Path(fk.__file__).resolve().parent
#: A stored record: what ``verdict`` needs of it, and its forecasts, one row per
#: evaluation: time, 1 if there was enough data, the kernel's output, then the interval it
#: states (``windowed_forecast``'s ``stated``).
Stored = tuple[dict[str, Any], float, np.ndarray]


def forecasts(record: SlopeRecord, rule: FailureForecastRule) -> np.ndarray:
    """Every forecast the engine makes over the record, in order (see ``Stored``)."""
    cfg = forecast_cfg(rule)
    t, x = record.t, record.x
    buf = np.ascontiguousarray(np.stack([t, x], 1))
    rows = max(t.shape[0], fk.bin_count(rule.window_s, rule.bin_s))
    scratch = np.zeros((rows, fk.SCRATCH_COLS))
    work = np.zeros(rows + fk.WORK_EXTRA)
    out = np.zeros(fl.OUT_SIZE)
    stated = np.zeros(2)
    made: list[list[float]] = []
    next_eval = -math.inf
    start = 0
    for i in range(t.shape[0]):
        while t[start] <= t[i] - rule.window_s:  # the window holds (t - window_s, t]
            start += 1
        if t[i] < next_eval:
            continue
        next_eval = t[i] + rule.eval_every_s
        enough = fk.windowed_forecast(buf, start, i + 1, t[i], cfg, scratch, work, out, stated)
        made.append([t[i], float(enough), *out, *stated])
    return np.array(made)


def collect(job: tuple[str, int, dict[str, Any]]) -> Stored:
    """Fit one record of the corpus at every evaluation."""
    family, seed, fit = job
    record = failure_record(seed) if family == "failure" else quiet_site_year(seed)
    rule = _rule_for(fit)
    failure_t = record.failure_t if record.fails else math.nan
    return about_record(family, seed, record, rule), failure_t, forecasts(record, rule)


def judged(
    made: np.ndarray, rule: FailureForecastRule
) -> Iterator[tuple[float, int | None, int, tuple[float, ...], ForecastMetric]]:
    """Each stored forecast judged in turn, with the level after it.

    Yields (time, the old level if it changed else None, level, forecast, the metric after
    it). Through the engine's own level code; an evaluation with too little data is no
    evidence for the next interval (``LevelState.pause``), as in the kernel.
    """
    metric = ForecastMetric(rule)
    state = LevelState(rule.hold_s, rule.latch_from)
    for row in made:
        t = float(row[0])
        forecast = tuple(float(v) for v in row[2 : 2 + fl.OUT_SIZE]) if row[1] else None
        stated = (float(row[2 + fl.OUT_SIZE]), float(row[3 + fl.OUT_SIZE]))
        values, up_hold = metric.judge(t, forecast, stated)
        if up_hold is None:
            state.pause()
            old = None
        else:
            old = state.evaluate(t, *up_hold)
        yield t, old, state.level, values, metric


def changes(
    made: np.ndarray, rule: FailureForecastRule
) -> list[tuple[float, int, int, tuple[float, ...]]]:
    """Every level change the rule makes over stored forecasts: (time, old, new, forecast)."""
    return [
        (t, old, level, values)
        for t, old, level, values, _ in judged(made, rule)
        if old is not None
    ]


def levels(stored: Stored, rule: FailureForecastRule) -> dict[str, Any]:
    """Replay the rule's levels over the stored forecasts: ``slope_forecast.evaluate``'s result."""
    about, failure_t, made = stored
    first: dict[int, float] = {}
    rises = dict.fromkeys((2, 3, 4), 0)
    red: tuple[float, float, float] | None = None
    for t, old, new, values in changes(made, rule):
        if new <= old:
            continue
        for level in range(old + 1, new + 1):
            if level in rises:
                rises[level] += 1
            first.setdefault(level, t)
        if new == 4 and red is None:
            red = (values[fl.FAILURE_T], values[fl.FAILURE_LO], values[fl.FAILURE_HI])
    return outcome(about, failure_t, rises, first, red)


def score(stored: list[Stored], rule: FailureForecastRule) -> dict[str, Any]:
    """The targets' figures (``slope_forecast.verdict``) of the rule over stored records."""
    return verdict(json.loads(json.dumps([levels(s, rule) for s in stored])))


def combinations(
    grid: dict[str, list[Any]], fit: dict[str, Any]
) -> list[tuple[dict[str, Any], FailureForecastRule]]:
    """Every combination of the grid and its rule, each checked as a site file's rule is.

    Raises:
        SiteConfigError: for the first combination a site file could not hold.
    """
    made = []
    for values in itertools.product(*grid.values()):
        combo = dict(zip(grid, values, strict=True))
        made.append((combo, _rule_for(fit | combo)))
    return made


def _ranked(
    tuning: list[Stored], rules: list[tuple[dict[str, Any], FailureForecastRule]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every clean combination with its tuning figures, best first."""
    clean = []
    for combo, rule in rules:
        measured = score(tuning, rule)["measured"]
        if measured["false_red_or_orange"] == 0 and measured["false_yellow_per_site_year"] <= 2:
            clean.append((combo, measured))

    def rank(item: tuple[dict[str, Any], dict[str, Any]]) -> tuple[float, float]:
        m = item[1]
        return (min(m["red_24h"] or 0.0, m["orange_48h"] or 0.0), m["red_error_10pct"] or 0.0)

    return sorted(clean, key=rank, reverse=True)


def _write_cache(path: Path, made_with: dict[str, Any], stored: list[Stored]) -> None:
    """Keep the forecasts as JSON and arrays (``.npz``): loading them runs no code."""
    index = {"made_with": made_with, "records": [[about, ft] for about, ft, _ in stored]}
    with path.open("wb") as f:  # arr_0 the index, arr_1... each record's forecasts
        np.savez_compressed(f, np.array(json.dumps(index)), *(made for _, _, made in stored))


def _read_cache(path: Path) -> tuple[dict[str, Any], list[Stored]]:
    """What ``_write_cache`` kept: how the forecasts were made, and the forecasts."""
    try:
        with np.load(path, allow_pickle=False) as kept:
            index = json.loads(str(kept["arr_0"]))
            stored = [
                (about, float(ft), kept[f"arr_{i}"])
                for i, (about, ft) in enumerate(index["records"], 1)
            ]
    except OSError as exc:
        sys.exit(f"{path}: cannot read the forecast cache: {exc.strerror}")
    except (ValueError, KeyError):  # a pickle among them: refused, never loaded
        sys.exit(f"{path} is not a forecast cache this bench wrote: delete it")
    made_with: dict[str, Any] = index["made_with"]
    return made_with, stored


def _stored(args: argparse.Namespace, fit: dict[str, Any]) -> list[Stored]:
    """The corpus's forecasts: fitted now, or read from ``--cache`` if made the same way.

    The same way: the same fit settings and corpus size, and the same alarm engine and
    corpus sources, since forecasts kept from another version would score that version.
    """
    made_with = {
        "fit": fit,
        "failures": args.failures,
        "quiet": args.quiet,
        "sources": source_digest([*ENGINE.glob("*.py"), Path(slope_corpus.__file__)]),
    }
    if args.cache is not None and args.cache.exists():
        cached_with, stored = _read_cache(args.cache)
        if cached_with != made_with:
            sys.exit(
                f"{args.cache} holds forecasts made with {cached_with}, not"
                f" {made_with}: give another --cache file or delete it"
            )
        return stored
    jobs = [
        (family, base + i, fit)
        for base in (0, CHECK_SEED)
        for family, count in (("failure", args.failures), ("quiet", args.quiet))
        for i in range(count)
    ]
    with ProcessPoolExecutor(args.workers) as pool:
        stored = list(pool.map(collect, jobs, chunksize=4))
    if args.cache is not None:
        _write_cache(args.cache, made_with, stored)
    return stored


def _grid_from(text: str) -> dict[str, list[Any]]:
    """``--grid``: a JSON object of rule settings, each with a list of values to try."""
    try:
        grid = json.loads(text)
    except json.JSONDecodeError as exc:
        sys.exit(f"--grid must be a JSON object ({exc})")
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        sys.exit('--grid must map each setting to a list of values, e.g. {"confirm": [2, 3]}')
    return grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", default="{}", help="JSON: rule setting -> values to try")
    parser.add_argument("--fit", action="append", default=[], help="fit setting NAME=VALUE (JSON)")
    parser.add_argument("--failures", type=int, default=200, help="failure records per set")
    parser.add_argument("--quiet", type=int, default=50, help="quiet site-years per set")
    parser.add_argument("--cache", type=Path, help="keep the fitted forecasts here and reuse them")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    grid = _grid_from(args.grid)
    fit = overrides_from(args.fit)
    try:
        rules = combinations(grid, fit)
    except SiteConfigError as exc:
        sys.exit(f"--grid or --fit refused: {exc}")
    stored = _stored(args, fit)
    tuning = [s for s in stored if s[0]["seed"] < CHECK_SEED]
    check = [s for s in stored if s[0]["seed"] >= CHECK_SEED]
    ranked = _ranked(tuning, rules)
    for combo, measured in ranked[:10]:
        print("tuning", json.dumps(combo), json.dumps(measured))
    report: dict[str, Any] = {"combinations": len(rules)}
    report["clean"] = len(ranked)
    if ranked:
        best = ranked[0][0]
        report["best"] = best
        report["tuning"] = ranked[0][1]
        report["check"] = score(check, _rule_for(fit | best))["measured"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
