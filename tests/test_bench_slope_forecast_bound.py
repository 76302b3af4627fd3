"""``bench/slope_forecast_bound.py``: its posterior is fine enough to find the truth.

The bound stands on the Bayes posterior of the lead. On the records that carry the most
signal that posterior is narrow in alpha and the tertiary phase's length; a grid coarser
than it holds no point near the truth and answers confidently wrong. Once it did (41
alphas, 25 lengths): a day ahead of failure it put noise-free records 13-25 % off, and the
bench's "best any rule can do" came out below what the rule's own fit reaches.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from hardware_sim.slope_corpus import failure_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import slope_forecast_bound as bound

#: Records of the corpus with much signal a day before failure: 10-minute or hourly
#: readings, 0.02-0.03 mm of noise, 0.5-2 mm/day of creep, alpha 1.50-1.82.
STRONG_SEEDS = (3, 12, 153, 181)
LEAD_H = 24.0


def _noise_free_bins(seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    record = failure_record(seed)
    u = -np.arange(336.0, 0.0, -1.0) + 0.5
    return u, bound._clean_bins(record, LEAD_H - u), bound._bin_sd(record)


@pytest.mark.parametrize("seed", STRONG_SEEDS)
def test_the_bayes_answer_finds_a_noise_free_failure_within_5_percent(seed: int) -> None:
    u, y, sd = _noise_free_bins(seed)
    answer, mass = bound.best_answer(bound.lead_posterior(u, y, sd))
    assert abs(answer - LEAD_H) <= 0.05 * LEAD_H, answer
    assert mass > 0.9


def test_a_coarse_grid_is_confidently_wrong_where_the_benchs_grid_is_right() -> None:
    """The grid the bench once used, on the same bins: why its size is not a detail."""
    coarse_alphas = np.linspace(1.5, 2.5, 41)
    coarse_lengths = np.linspace(math.log(50.0), math.log(400.0), 25)
    off = []
    for seed in STRONG_SEEDS:
        u, y, sd = _noise_free_bins(seed)
        answer, _ = bound.best_answer(bound.lead_posterior(u, y, sd, coarse_alphas, coarse_lengths))
        off.append(abs(answer - LEAD_H) / LEAD_H)
    assert min(off) > 0.1, off


def test_the_best_answer_of_a_narrow_posterior_is_its_middle() -> None:
    posterior = np.zeros(bound.LEADS_H.shape[0])
    k = int(np.searchsorted(bound.LEADS_H, 40.0))
    posterior[k - 1 : k + 2] = 1.0 / 3.0
    answer, mass = bound.best_answer(posterior)
    assert mass == pytest.approx(1.0)
    assert answer == pytest.approx(float(bound.LEADS_H[k]))


def test_the_rule_fires_at_the_earliest_lead_it_is_sure_enough_of() -> None:
    """Leads run 24, 28, 32 h (columns); the rule reads them from the earliest, 32 h."""
    conf = np.array([[0.95, 0.6, 0.9], [0.95, 0.95, 0.2], [0.4, 0.4, 0.4]])
    hit = np.array([[True, False, False], [False, True, True], [True, True, True]])
    answers = np.array([[30.0, 30.0, 60.0], [26.0, 30.0, 31.0], [20.0, 20.0, 20.0]])
    # confidence 0.5: record 0 fires at 28 h (32 h's answer is beyond 48 h) and misses,
    # record 1 at 28 h and hits, record 2 never
    assert bound._rule_fires(conf, hit, answers, 0.5) == {
        "red_a_day_ahead": round(2 / 3, 3),
        "within_10pct": round(1 / 3, 3),
    }
    # no confidence asked: each fires at its earliest answer within 48 h
    assert bound._rule_fires(conf, hit, answers, 0.0) == {
        "red_a_day_ahead": 1.0,
        "within_10pct": round(2 / 3, 3),
    }
