r"""The slope warning's first complaint, run again as its reporter ran it: ``edge replay --csv``.

Issue 11 was found by feeding synthetic slopes to ``edge replay`` with the shipped
``edge_agent/examples/slope_road.toml`` unchanged: steady creep, then accelerating
(tertiary) creep of the Voight/Fukuzono kind with exponent 2 up to failure (the abrupt
onset: steady creep, then Voight's law alone), hourly readings, Gaussian noise of
0.05 mm; and years of steady creep with no failure. This bench draws such records from
fixed seeds (creep 0.2-1 mm/day, a tertiary phase of 50-400 h after 20 days of creep),
writes each as a CSV (time, value) and runs the real command on it, as an engineer would:

    .venv/bin/python bench/slope_issue_replay.py [--slopes 20] [--years 5]

For each slope it reports when the forecast rule first went yellow, orange and red (hours
before failure; a yellow may come from a forecast not confirmed yet, ``unconfirmed_h``),
the failure time stated at the first red (its error as a share of the time then left;
positive: late), and the velocity rule's first level; for each quiet year, the level
changes. Its last line is a JSON object with the totals.

It must never be the judge of a rule: ``bench/slope_forecast.py`` scores the corpus. This
is one narrow case (abrupt onsets, hourly, noise at the top of the targets' scope) run
through the command line end to end.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hardware_sim.slope_corpus import accelerating_part

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "edge_agent" / "examples" / "slope_road.toml"
CHANNEL = "scarp_extensometer.extension"
HOUR = 3600.0
DAY = 86400.0
ORIGIN = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOISE_MM = 0.05
LEVELS = ["normal", "yellow", "orange", "red"]


def slope(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Slope ``seed``: hourly times, displacements (mm) and its failure time."""
    rng = np.random.default_rng([77, seed])
    creep = math.exp(rng.uniform(math.log(0.2), math.log(1.0)))
    tertiary_s = math.exp(rng.uniform(math.log(50.0), math.log(400.0))) * HOUR
    failure_t = ORIGIN + tertiary_s + 20 * DAY + rng.uniform(0.0, HOUR)
    t = np.arange(ORIGIN, failure_t, HOUR)
    params = {"creep_mm_day": creep, "alpha": 2.0, "tertiary_h": tertiary_s / HOUR}
    params["abrupt_onset"] = 1.0
    x = creep / DAY * (t - ORIGIN) + accelerating_part(params, failure_t - t)
    x = 100.0 + x - x[0] + rng.normal(0.0, NOISE_MM, t.shape[0])
    return t, x, failure_t


def quiet_year(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A year of steady creep (0.2-1 mm/day) with no failure, hourly."""
    rng = np.random.default_rng([78, seed])
    creep = math.exp(rng.uniform(math.log(0.2), math.log(1.0)))
    t = np.arange(ORIGIN, ORIGIN + 365 * DAY, HOUR)
    return t, 100.0 + creep / DAY * (t - ORIGIN) + rng.normal(0.0, NOISE_MM, t.shape[0])


def replay(t: np.ndarray, x: np.ndarray, folder: Path, name: str) -> list[dict[str, Any]]:
    """``edge replay --csv --json`` over the record: its JSON lines."""
    path = folder / f"{name}.csv"
    lines = ["time,value"]
    lines += [
        f"{datetime.fromtimestamp(a, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')},{b:.4f}"
        for a, b in zip(t.tolist(), x.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    edge = Path(sys.executable).with_name("edge")
    command = [str(edge), "replay", "-c", str(SITE), "--csv", str(path)]
    command += ["--channel", CHANNEL, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        sys.exit(f"edge replay failed on {name}: {done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def first_levels(rows: list[dict[str, Any]], rule: str) -> dict[str, dict[str, Any]]:
    """The change that first brought ``rule`` to each level (a jump counts for those passed)."""
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        if "forecast" in row or row.get("rule") != rule or row.get("kind") != "rise":
            continue
        for level in LEVELS[LEVELS.index(row["from"]) + 1 : LEVELS.index(row["to"]) + 1]:
            first.setdefault(level, row)
    return first


def about_slope(rows: list[dict[str, Any]], failure_t: float) -> dict[str, Any]:
    """Leads (hours before failure) of the first orange and red, and the red's error."""
    forecast = first_levels(rows, "slope_forecast")
    velocity = first_levels(rows, "slope_velocity")
    lead = {level: (failure_t - change["t"]) / HOUR for level, change in forecast.items()}
    result: dict[str, Any] = {
        "yellow_h": lead.get("yellow"),
        "orange_h": lead.get("orange"),
        "red_h": lead.get("red"),
        "velocity_first_h": min(
            ((failure_t - c["t"]) / HOUR for c in velocity.values()), default=None
        ),
        "red_error": None,
    }
    if "red" in forecast:
        red_t = forecast["red"]["t"]
        stated = [r["forecast"] for r in rows if "forecast" in r and r["forecast"]["t"] <= red_t]
        stated_t = stated[-1]["t"] + stated[-1]["lead_h"] * HOUR
        result["red_error"] = (stated_t - failure_t) / (failure_t - red_t)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slopes", type=int, default=20, help="failing slopes (seeds 0..)")
    parser.add_argument("--years", type=int, default=5, help="quiet years of steady creep")
    args = parser.parse_args(argv)
    slopes = []
    years = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.slopes):
            t, x, failure_t = slope(seed)
            slopes.append(
                {
                    "seed": seed,
                    **about_slope(replay(t, x, Path(folder), f"slope-{seed}"), failure_t),
                }
            )
            print(json.dumps(slopes[-1]), flush=True)
        for seed in range(args.years):
            t, x = quiet_year(seed)
            rows = replay(t, x, Path(folder), f"year-{seed}")
            changes = [r for r in rows if "forecast" not in r]
            years.append({"seed": seed, "level_changes": len(changes)})
            print(json.dumps(years[-1]), flush=True)
    reds = [s for s in slopes if s["red_h"] is not None]
    print(
        json.dumps(
            {
                "slopes": len(slopes),
                "red_at_least_24h": sum(s["red_h"] >= 24.0 for s in reds),
                "red_later": sum(s["red_h"] < 24.0 for s in reds),
                "no_orange_or_red": sum(
                    s["orange_h"] is None and s["red_h"] is None for s in slopes
                ),
                "no_forecast_level": sum(s["yellow_h"] is None for s in slopes),
                "yellow_lead_h": sorted(
                    round(s["yellow_h"], 1) for s in slopes if s["yellow_h"] is not None
                ),
                "orange_at_least_48h": sum((s["orange_h"] or 0.0) >= 48.0 for s in slopes),
                "red_within_10pct": sum(abs(s["red_error"]) <= 0.1 for s in reds),
                "red_lead_h": sorted(round(s["red_h"], 1) for s in reds),
                "quiet_years": len(years),
                "quiet_years_with_a_level": sum(y["level_changes"] > 0 for y in years),
            }
        )
    )


if __name__ == "__main__":
    main()
