"""The separability bench's test statistic: what it tells apart, and what it cannot.

``bench/slope_forecast_separable.py`` asks whether a failure shows itself, hours ahead, as
acceleration faster than exponential. These check the statistic on windows of known form,
including the compound seasonal rise docs/slope-forecast.md names as the one that fools it.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from slope_forecast_separable import (  # noqa: E402
    WINDOW_H,
    Window,
    quiet_job,
    super_exponential,
)

ALPHA_RANGE = (1.5, 2.75)
U = -np.arange(WINDOW_H, 0, -1.0) + 0.5


def _window(x: np.ndarray, noise: float, seed: int) -> Window:
    y = x + np.random.default_rng(seed).normal(0.0, noise, x.shape[0])
    return Window(U, y, np.ones(U.shape[0]), 1_767_225_600.0 + 500 * 3600.0)


def test_a_failure_a_day_ahead_is_told_apart_from_exponential_growth() -> None:
    # steady creep 0.5 mm/day plus Voight's law with alpha = 2 (1/v straight), failure in 24 h
    lead, tertiary = 24.0, 100.0
    x = 0.5 / 24.0 * U - 0.5 / 24.0 * tertiary * np.log((lead - U) / tertiary)
    assert super_exponential(_window(x, 0.02, 1), ALPHA_RANGE) > 100.0


def test_exponential_growth_and_steady_creep_are_not_taken_for_a_failure() -> None:
    creep = 0.5 / 24.0
    growth = creep * 40.0 * np.exp(U / 40.0)  # velocity doubling every 28 h, never failing
    for seed in range(5):
        assert super_exponential(_window(creep * U + growth, 0.02, seed), ALPHA_RANGE) < 6.0
        assert super_exponential(_window(creep * U, 0.02, seed), ALPHA_RANGE) < 6.0


def test_a_compound_seasonal_rise_passes_for_a_failure_before_its_peak() -> None:
    # The tuning set's quiet year 48: a 6-day rise of 4.4 times the creep rate on top of a
    # 24-day rise of 5.8 times, never failing. Looked at every 12 h, the rule's own bins
    # give it a statistic far above any of the check set's quiet years (at most 3.8).
    worst = quiet_job(("rule", 48, 12.0))
    assert worst["max_d"] > 50.0
    assert 6500.0 < worst["at_h"] < 6700.0  # on the short rise, before its peak (6,692 h)
    assert not math.isinf(worst["max_d"])
