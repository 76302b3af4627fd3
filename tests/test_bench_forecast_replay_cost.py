"""The replay-cost bench times both variants and leaves the engine as it found it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import alarm_engine.reference_forecast as rf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from forecast_replay_cost import main


def test_two_days_of_one_record_are_timed_both_ways(capsys: pytest.CaptureFixture[str]) -> None:
    shipped = rf.overruled
    main(["--seeds", "4", "--days", "2"])
    *rows, total = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rf.overruled is shipped  # the switch is undone
    (row,) = rows
    assert row["seed"] == 4
    assert row["interval_s"] == 3600.0
    assert 40 <= row["readings"] <= 48  # two days read hourly, up to 6 h before failure
    # the timed replay went through the overruling, so switching it off measured something
    assert row["overruling_checks"] > 0
    assert 0 <= row["overrulings"] <= row["overruling_checks"]
    assert row["abrupt_onset"] is False
    assert row["with_s"] > 0
    assert row["without_s"] > 0
    assert total["ratio_min"] == total["ratio_max"] == row["ratio"]
