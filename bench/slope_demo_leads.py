"""How far ahead the shipped forecast rule warns of the demo's slope, over draws of its noise.

The demo's slope (``hardware_sim/stations/slope.toml``: 4 mm/day for a day, then 72 h of
tertiary creep, 0.1 mm of noise, seen by the extensometer at 80 %) is read every
``--poll-s`` seconds from its origin to its failure, with no poll missed, and replayed
through the shipped ``slope_forecast`` rule of ``edge_agent/examples/slope_road.toml``.
The noise is a hash of the station's seed and the time, so each draw moves the origin
(by three days and 1,234 s a draw) and the slope with it. A draw of 0 mm noise is run
first, once.

Prints each draw's first yellow, orange and red, in hours before the failure (a yellow
may come from a forecast not confirmed yet, ``unconfirmed_h``), and as its last line a
JSON object with the leads and their range. Never writes a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alarm_engine import AlarmEngine
from bench.slope_forecast import example_rule
from hardware_sim.scenarios import ExtensometerProjection
from hardware_sim.station import StationSpec, build_scenarios, load_station

STATION = Path(__file__).resolve().parent.parent / "hardware_sim" / "stations" / "slope.toml"
#: 2026-08-01 00:00 UTC, the first draw's origin.
FIRST_ORIGIN = 1_785_542_400.0
YELLOW, ORANGE, RED = 2, 3, 4


@functools.cache
def _station() -> StationSpec:
    """The demo's slope station, read once."""
    return load_station(STATION)


def first_levels(origin: float, poll_s: float, noise_mm: float | None) -> dict[str, float]:
    """Hours before failure of the first yellow, orange and red for the slope from ``origin``."""
    spec = _station()
    params = {k: dict(v) for k, v in spec.scenarios.items()}
    if noise_mm is not None:
        params["slope"]["noise_mm"] = noise_mm
    extensometer = build_scenarios(params, origin, spec.seed)["extensometer"]
    assert isinstance(extensometer, ExtensometerProjection)
    failure = origin + params["slope"]["failure_s"]
    t = np.arange(origin, failure, poll_s)
    x = np.array([extensometer.extension_mm(float(s)) for s in t])
    rule = dataclasses.replace(example_rule(), channel="ext.extension")
    changes = AlarmEngine([rule], "numba").replay({"ext.extension": (t, x, np.ones(len(t), bool))})
    leads: dict[str, float] = {}
    for change in changes:
        for name, level in (("yellow", YELLOW), ("orange", ORANGE), ("red", RED)):
            if change.new >= level and name not in leads:
                leads[name] = round((failure - change.t) / 3600, 1)
    return leads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=12)
    parser.add_argument("--poll-s", type=float, default=300.0)
    args = parser.parse_args()
    clean = first_levels(FIRST_ORIGIN, args.poll_s, 0.0)
    print(f"no noise: {clean}", flush=True)
    draws = []
    for k in range(args.draws):
        leads = first_levels(FIRST_ORIGIN + k * (3 * 86400 + 1234), args.poll_s, None)
        print(f"draw {k}: {leads}", flush=True)
        draws.append(leads)
    reds = [d["red"] for d in draws if "red" in d]
    yellows = [d["yellow"] for d in draws if "yellow" in d]
    print(
        json.dumps(
            {
                "poll_s": args.poll_s,
                "no_noise": clean,
                "draws": draws,
                "red_min_h": min(reds, default=None),
                "red_median_h": statistics.median(reds) if reds else None,
                "red_max_h": max(reds, default=None),
                "no_red": len(draws) - len(reds),
                "orange_first": sum(1 for d in draws if d.get("orange", 0) > d.get("red", 0)),
                "yellow_median_h": statistics.median(yellows) if yellows else None,
                "yellow_first": sum(1 for d in draws if d.get("yellow", 0) > d.get("orange", 0)),
            }
        )
    )


if __name__ == "__main__":
    main()
