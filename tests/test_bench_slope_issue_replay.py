"""The issue's own experiment runs through the real ``edge replay --csv`` and reads it right."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from slope_issue_replay import about_slope, first_levels, slope  # noqa: E402


def test_a_jump_past_a_level_counts_as_reaching_it() -> None:
    rows = [
        {"forecast": {"t": 1.0, "lead_h": 5.0}},
        {"t": 2.0, "rule": "slope_velocity", "from": "normal", "to": "yellow", "kind": "rise"},
        {"t": 3.0, "rule": "slope_forecast", "from": "normal", "to": "red", "kind": "rise"},
        {"t": 4.0, "rule": "slope_forecast", "from": "red", "to": "normal", "kind": "fall"},
    ]
    first = first_levels(rows, "slope_forecast")
    assert {level: row["t"] for level, row in first.items()} == {
        "yellow": 3.0,
        "orange": 3.0,
        "red": 3.0,
    }
    found = about_slope(rows, failure_t=3.0 + 10 * 3600.0)
    assert found["red_h"] == found["yellow_h"] == pytest.approx(10.0)
    assert found["velocity_first_h"] == pytest.approx(10.0 + 1 / 3600.0)
    # the red stated the forecast made at t = 1: failure at 1 + 5 h, 5 h early of 10 left
    assert found["red_error"] == pytest.approx(-0.5, abs=1e-3)


def test_one_slope_through_the_command_line() -> None:
    t, x, failure_t = slope(0)
    assert t[-1] < failure_t <= t[-1] + 3600.0  # readings hourly up to the failure
    assert x[-1] - x[0] > 20 * 0.2  # 20 days of creep at 0.2 mm/day at least, and more
    command = [sys.executable, str(REPO / "bench" / "slope_issue_replay.py")]
    done = subprocess.run(
        [*command, "--slopes", "1", "--years", "0"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *rows, total = [json.loads(line) for line in done.stdout.splitlines()]
    assert total["slopes"] == 1
    assert total["quiet_years"] == 0
    (row,) = rows
    assert row["seed"] == 0
    # Slope 0 goes red late, within a day of its failure: counted so, and as not in time.
    assert 0.0 < row["red_h"] < 24.0
    assert (total["red_at_least_24h"], total["red_later"], total["no_forecast_level"]) == (0, 1, 0)
    # its forecasts went yellow first, more than a day ahead, while they did not yet agree
    assert row["yellow_h"] > 24.0
    assert total["yellow_lead_h"] == [round(row["yellow_h"], 1)]
    assert total["red_lead_h"] == [round(row["red_h"], 1)]
    assert row["red_error"] is not None
