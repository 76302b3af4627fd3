"""What the later shares' overruling costs a gateway without numba, replaying its record.

A gateway on Pi OS 32-bit has no numba, so at every start it rebuilds its failure
forecasts' state by replaying the stored record through the plain-Python reference
(README, "Running the agent"). Each hourly evaluation fits the whole window, and while
that forecast passes, the window's eighth as well (and its quarter when the eighth's
forecast fails the evidence test), to see whether it overrules a fit that lags an abrupt
onset (``reference_forecast.overruled``). This bench times the reference
replay of corpus records (16 days, up to 6 h before failure, the shipped rule) with the
overruling as shipped and with it switched off, in one run, and reports the ratio:

    .venv/bin/python bench/forecast_replay_cost.py [--seeds 4,6,3] [--days 16] [--abrupt]

The default seeds are two hourly records and one read every 10 minutes, all gradual
failures (the whole window's forecast passes for days, so the later shares are fitted
most). ``--abrupt`` replays the same seeds' abrupt-onset records instead, where a later
share does overrule in the last hours, and the quarter is then fitted beside the eighth
for the interval stated (``reference_forecast.stated_forecast``).
Its last line is a JSON object. It must never change the engine for anything but its
own timing: the switch is undone before it returns.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import alarm_engine.reference_forecast as rf
from alarm_engine import AlarmEngine
from edge_agent.site_file import load_site
from hardware_sim.slope_corpus import failure_record
from site_schema.rule_specs import FailureForecastRule

EXAMPLE = Path(__file__).resolve().parents[1] / "edge_agent" / "examples" / "slope_road.toml"
HOUR = 3600.0
DAY = 86400.0
BEFORE_H = 6.0


def shipped_rule() -> FailureForecastRule:
    """The shipped forecast rule, on a channel of its own."""
    site = load_site(EXAMPLE)
    rule = next(r for r in site.rules if isinstance(r, FailureForecastRule))
    return dataclasses.replace(rule, channel="slope.x")


def replay_seconds(rule: FailureForecastRule, t: np.ndarray, x: np.ndarray) -> float:
    """Wall time of one reference replay of the record."""
    engine = AlarmEngine([rule], "reference")
    started = time.perf_counter()
    engine.replay({rule.channel: (t, x, np.ones(t.shape[0], dtype=bool))})
    return time.perf_counter() - started


def measure(
    seed: int, rule: FailureForecastRule, days: float, onset: str = "gradual"
) -> dict[str, Any]:
    """Seconds to replay ``days`` of record ``seed`` with the overruling and without."""
    record = failure_record(seed, onset=onset)
    end = record.failure_t - BEFORE_H * HOUR
    keep = (record.t <= end) & (record.t > end - days * DAY)
    t, x = record.t[keep], record.x[keep]
    shipped: Callable[..., Any] = rf.overruled
    checks = overrulings = 0

    def counted(*args: Any) -> Any:
        nonlocal checks, overrulings
        checks += 1
        trial, overrules = shipped(*args)
        overrulings += bool(overrules)
        return trial, overrules

    seconds = {}
    try:
        rf.overruled = counted
        seconds["with"] = replay_seconds(rule, t, x)
        rf.overruled = lambda *args: (None, False)  # never overrules: the rule before it
        seconds["without"] = replay_seconds(rule, t, x)
    finally:
        rf.overruled = shipped
    return {
        "seed": seed,
        "interval_s": record.interval_s,
        "abrupt_onset": onset == "abrupt",
        "readings": int(t.shape[0]),
        "overruling_checks": checks,
        "overrulings": overrulings,
        "with_s": round(seconds["with"], 1),
        "without_s": round(seconds["without"], 1),
        "ratio": round(seconds["with"] / seconds["without"], 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="4,6,3", help="comma-separated corpus failure seeds")
    parser.add_argument("--days", type=float, default=16.0, help="days of record replayed")
    parser.add_argument("--abrupt", action="store_true", help="the seeds' abrupt-onset records")
    args = parser.parse_args(argv)
    onset = "abrupt" if args.abrupt else "gradual"
    rule = shipped_rule()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(measure(seed, rule, args.days, onset))
        print(json.dumps(rows[-1]), flush=True)
    ratios = [r["ratio"] for r in rows]
    print(json.dumps({"records": rows, "ratio_min": min(ratios), "ratio_max": max(ratios)}))


if __name__ == "__main__":
    main()
