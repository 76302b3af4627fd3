r"""Which failure time to state at the first red: the red's own forecast, or another.

The failure-time target asks for the time stated when red first fires to lie within 10 %
of the time then left. The rule states the forecast that confirmed the red. This bench
asks whether any other estimate the gateway could state at that moment does better:

- ``newest``: the red's own forecast (what the rule states; ``bench/slope_forecast.py``'s
  ``red_error_10pct`` counts it);
- ``mean_confirming`` and ``median_confirming``: of the failure times of the forecasts
  that confirmed the red;
- ``median_accepted_6h``, ``median_accepted_24h``: of every forecast that passed its
  evidence test in the last 6 or 24 hours;
- ``interval_middle``: the geometric middle of the red forecast's 95 % interval (in time
  left).

It fits every record once, as ``bench/slope_forecast_grid.py`` does (``--cache FILE``
keeps the fits), replays the shipped rule's levels over them, and counts, per set, the
failure records in the targets' scope (noise up to 0.05 mm) whose estimate at the first
red is within 10 %, and the median signed error of each (positive: late).

    .venv/bin/python bench/slope_first_red.py --sets tuning,check,fresh --cache fits.npz

It must never be the judge of a rule: it changes no level, and its ``newest`` count must
equal ``bench/slope_forecast.py``'s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slope_forecast import SET_SEEDS, TARGET_NOISE_MM, _rule_for
from slope_forecast_grid import ENGINE, Stored, _read_cache, _write_cache, collect, judged

from alarm_engine import forecast_layout as fl
from alarm_engine.kernel_cache import source_digest
from hardware_sim import slope_corpus
from site_schema.rule_specs import FailureForecastRule

#: At the first red: (time, red forecast, failure times of the confirming forecasts, and
#: (time, failure time) of every forecast that passed its evidence test so far).
FirstRed = tuple[float, tuple[float, ...], list[float], list[tuple[float, float]]]


def first_red(stored: Stored, rule: FailureForecastRule) -> FirstRed | None:
    """The moment the rule first goes red over the stored forecasts, and what it knew."""
    accepted: list[tuple[float, float]] = []
    for t, old, level, values, metric in judged(stored[2], rule):
        if metric.history[0] < math.inf:
            accepted.append((t, metric.history[0]))
        if old is not None and old < 4 <= level:
            return t, values, list(metric.history), accepted
    return None


def _median_since(hours: float) -> Callable[[FirstRed], float]:
    def estimate(red: FirstRed) -> float:
        t, _, _, accepted = red
        return statistics.median(f for at, f in accepted if t - at < hours * 3600.0)

    return estimate


def _interval_middle(red: FirstRed) -> float:
    t, values, _, _ = red
    low, high = values[fl.FAILURE_LO] - t, values[fl.FAILURE_HI] - t
    if not math.isfinite(high):
        return math.nan
    return t + math.sqrt(max(low, 1.0) * high)


ESTIMATES: dict[str, Callable[[FirstRed], float]] = {
    "newest": lambda red: red[1][fl.FAILURE_T],
    "mean_confirming": lambda red: statistics.fmean(red[2]),
    "median_confirming": lambda red: statistics.median(red[2]),
    "median_accepted_6h": _median_since(6.0),
    "median_accepted_24h": _median_since(24.0),
    "interval_middle": _interval_middle,
}


def errors(stored: Stored, rule: FailureForecastRule) -> dict[str, float] | None:
    """Each estimate's signed error at the first red, as a share of the time left."""
    red = first_red(stored, rule)
    if red is None:
        return None
    failure_t = stored[1]
    left = failure_t - red[0]
    return {name: (estimate(red) - failure_t) / left for name, estimate in ESTIMATES.items()}


def score(stored: list[Stored], rule: FailureForecastRule) -> dict[str, Any]:
    """Per estimate: failures in scope within 10 % at the first red, and the median error."""
    scope = [
        s for s in stored if s[0]["family"] == "failure" and s[0]["noise_mm"] <= TARGET_NOISE_MM
    ]
    found = [e for e in (errors(s, rule) for s in scope) if e is not None]
    report: dict[str, Any] = {"failures": len(scope), "red": len(found)}
    for name in ESTIMATES:
        signed = [e[name] for e in found if math.isfinite(e[name])]
        report[name] = {
            "within_10pct": sum(abs(e) <= 0.1 for e in signed),
            "median_signed": round(statistics.median(signed), 4) if signed else None,
        }
    return report


def _stored(sets: list[str], failures: int, quiet: int, cache: Path | None) -> list[Stored]:
    """The sets' forecasts: fitted now, or read from ``cache`` if made the same way."""
    made_with = {
        "sets": sets,
        "failures": failures,
        "quiet": quiet,
        "sources": source_digest([*ENGINE.glob("*.py"), Path(slope_corpus.__file__)]),
    }
    if cache is not None and cache.exists():
        cached_with, stored = _read_cache(cache)
        if cached_with != made_with:
            sys.exit(f"{cache} holds forecasts made with {cached_with}: give another --cache")
        return stored
    jobs = [
        (family, SET_SEEDS[name] + i, {})
        for name in sets
        for family, count in (("failure", failures), ("quiet", quiet))
        for i in range(count)
    ]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        stored = list(pool.map(collect, jobs, chunksize=4))
    if cache is not None:
        _write_cache(cache, made_with, stored)
    return stored


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sets", default="tuning,check", help="comma-separated: tuning, check, fresh"
    )
    parser.add_argument("--failures", type=int, default=200, help="failure records per set")
    parser.add_argument("--quiet", type=int, default=50, help="quiet site-years per set")
    parser.add_argument("--cache", type=Path, help="keep the fitted forecasts here and reuse them")
    args = parser.parse_args(argv)
    sets = args.sets.split(",")
    if unknown := [s for s in sets if s not in SET_SEEDS]:
        sys.exit(f"--sets: unknown set(s) {', '.join(unknown)}; choose from {', '.join(SET_SEEDS)}")
    stored = _stored(sets, args.failures, args.quiet, args.cache)
    rule = _rule_for({})
    report = {}
    for name in sets:
        first = SET_SEEDS[name]
        ours = [s for s in stored if first <= s[0]["seed"] < first + 1000]
        report[name] = score(ours, rule)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
