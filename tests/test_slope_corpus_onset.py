"""The corpus's abrupt-onset failures: steady creep, then Voight's law alone, from one seed.

The bench runs every failure of the targets' scope twice, with the accelerating part
superposed on the creep (gradual) and with steady creep that turns into Voight's law at
the onset (abrupt, Fukuzono's picture); the two must be the same record in everything
but that, so that a difference in warnings is the onset's.
"""

from __future__ import annotations

import numpy as np
import pytest

from hardware_sim.slope_corpus import DAY, HOUR, accelerating_part, failure_record


def _velocity(t: np.ndarray, x: np.ndarray, at: float, span_s: float) -> float:
    """mm/day from a straight line through the clean motion around ``at``."""
    near = (t > at - span_s) & (t <= at + span_s)
    slope = np.polyfit(t[near], x[near], 1)[0]
    return float(slope * DAY)


def test_the_abrupt_record_shares_the_gradual_ones_samples_and_parameters() -> None:
    gradual, abrupt = failure_record(1047), failure_record(1047, onset="abrupt")
    assert np.array_equal(gradual.t, abrupt.t)
    assert gradual.failure_t == abrupt.failure_t
    assert gradual.noise_mm == abrupt.noise_mm
    same = {k: v for k, v in gradual.params.items() if k != "abrupt_onset"}
    assert same == {k: v for k, v in abrupt.params.items() if k != "abrupt_onset"}
    assert (gradual.params["abrupt_onset"], abrupt.params["abrupt_onset"]) == (0.0, 1.0)
    # the same noise, cycle and outliers: the records differ by the onset's motion alone
    tau = gradual.failure_t - gradual.t
    onset_motion = accelerating_part(abrupt.params, tau) - accelerating_part(gradual.params, tau)
    rest = abrupt.x - gradual.x - onset_motion
    assert np.ptp(rest) < 1e-9
    assert np.ptp(abrupt.x - gradual.x) > 10 * gradual.noise_mm  # and they do differ
    with pytest.raises(ValueError, match="onset must be 'gradual' or 'abrupt'"):
        failure_record(1, onset="sudden")


def test_abrupt_onset_creeps_steadily_then_follows_voight_from_the_creep_rate() -> None:
    clean = failure_record(12, onset="abrupt")
    p = clean.params
    # the motion the generator adds to the noise, on a fine grid (the record's own
    # samples carry the noise, outliers and gaps)
    t = np.arange(clean.t[0], clean.failure_t - HOUR, 600.0)
    v_s = p["creep_mm_day"] / DAY
    x = v_s * t + accelerating_part(p, clean.failure_t - t)
    onset = clean.failure_t - p["tertiary_h"] * HOUR
    before = _velocity(t, x, onset - 2 * DAY, 6 * HOUR)
    assert before == pytest.approx(p["creep_mm_day"], rel=1e-6)  # steady, no acceleration
    power = 1.0 / (p["alpha"] - 1.0)
    for hours in (24.0, 6.0):
        at = clean.failure_t - hours * HOUR
        expected = p["creep_mm_day"] * (p["tertiary_h"] / hours) ** power
        assert _velocity(t, x, at, 600.0) == pytest.approx(expected, rel=0.02)
    # continuous at the onset: no jump in displacement or velocity
    just = _velocity(t, x, onset + HOUR, 600.0)
    assert just == pytest.approx(p["creep_mm_day"], rel=0.05)
