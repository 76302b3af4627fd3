"""How much acceleration a corpus record carries, and the bench's ranking of late warnings by it.

``tertiary_signal`` says how plainly a failure shows before it happens; the slope bench
ranks its late warnings by it, so that a reader can tell a rule that loses the faint
records from one that loses clear ones.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hardware_sim.slope_corpus import SlopeRecord, failure_record, quiet_site_year, tertiary_signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from slope_forecast import misses_by_signal


def every(record: SlopeRecord, interval_s: float) -> SlopeRecord:
    """The record's slope sampled every ``interval_s``, with none missing, up to failure."""
    t = np.arange(record.failure_t - 30 * 86400.0, record.failure_t, interval_s)
    return dataclasses.replace(record, t=t, x=np.zeros_like(t), interval_s=interval_s)


def test_the_signal_grows_as_failure_nears_and_with_readings_and_falls_with_noise() -> None:
    record = failure_record(3)
    day, two_days, week = (tertiary_signal(record, h) for h in (24.0, 48.0, 168.0))
    assert day > two_days > week > 0.0
    hourly = tertiary_signal(every(record, 3600.0), 24.0)
    ten_minute = tertiary_signal(every(record, 600.0), 24.0)
    assert ten_minute == pytest.approx(6.0 * hourly, rel=0.05)
    noisier = dataclasses.replace(record, noise_mm=2.0 * record.noise_mm)
    assert tertiary_signal(noisier, 24.0) == pytest.approx(day / 4.0)


def test_readings_the_record_does_not_hold_carry_no_signal() -> None:
    whole = every(failure_record(3), 3600.0)
    before = tertiary_signal(whole, 24.0)
    # the last two days before the evaluation lost, as when a battery ran flat
    end = whole.failure_t - 24 * 3600.0
    kept = (whole.t <= end - 48 * 3600.0) | (whole.t > end)
    gap = dataclasses.replace(whole, t=whole.t[kept], x=whole.x[kept])
    assert 0.0 < tertiary_signal(gap, 24.0) < 0.8 * before


def test_steady_creep_and_a_failure_far_off_carry_nothing_to_tell() -> None:
    assert tertiary_signal(quiet_site_year(3), 24.0) == 0.0
    record = failure_record(3)
    # a year before failure the accelerating part is a straight line within a 14-day
    # window, which steady creep takes out entirely
    assert tertiary_signal(record, 24.0 * 365) < 1e-3 * tertiary_signal(record, 24.0)


def test_late_warnings_are_ranked_from_the_weakest_record() -> None:
    def failure(signal: float, red: float, orange: float, noise: float = 0.03) -> dict[str, Any]:
        return {
            "family": "failure",
            "noise_mm": noise,
            "signal_24h": signal,
            "lead_h": {"red": red, "orange": orange},
        }

    results = [
        failure(900.0, red=30.0, orange=60.0),
        failure(100.0, red=5.0, orange=20.0),  # the weakest: rank 1
        failure(500.0, red=25.0, orange=40.0),  # rank 2: red in time, orange late
        failure(50.0, red=1.0, orange=1.0, noise=0.08),  # noisier than the targets' scope
        {"family": "quiet", "noise_mm": 0.03},
    ]
    results[0]["lead_h"].pop("red")  # no red at all is a miss too: rank 3
    assert misses_by_signal(results) == {
        "failure_series": 3,
        "red_24h_missed_ranks": [1, 3],
        "orange_48h_missed_ranks": [1, 2],
    }
