"""Plausibility checks flag out-of-range, spiking and stuck values, and accept real steps."""

import math

from drivers.model import Quality
from drivers.plausibility import SPIKE_CONFIRM_SAMPLES, PlausibilityCheck
from drivers.profiles import ChannelSpec, Table


def channel(**kw):
    base = {
        "name": "lvl",
        "quantity": "water_level",
        "unit": "mm",
        "table": Table.HOLDING,
        "address": 0,
        "dtype": "uint16",
        "valid_min": 0.0,
        "valid_max": 10_000.0,
    }
    base.update(kw)
    return ChannelSpec(**base)


def test_out_of_range_and_nan_are_flagged():
    check = PlausibilityCheck(channel())
    assert check.assess(0, 20_000) == Quality.OUT_OF_RANGE
    assert check.assess(1, math.nan) == Quality.OUT_OF_RANGE
    assert check.assess(2, 500) == Quality.OK


def test_single_spike_is_flagged_and_the_next_normal_sample_is_good():
    check = PlausibilityCheck(channel(max_rate=10.0))
    assert check.assess(0, 1000) == Quality.OK
    assert check.assess(10, 1050) == Quality.OK
    assert check.assess(20, 4000) == Quality.SPIKE
    assert check.assess(30, 1060) == Quality.OK


def test_a_real_step_is_believed_after_consistent_samples():
    check = PlausibilityCheck(channel(max_rate=10.0))
    check.assess(0, 1000)
    flags = [check.assess(10 * (i + 1), 3000 + i) for i in range(SPIKE_CONFIRM_SAMPLES + 1)]
    assert flags[: SPIKE_CONFIRM_SAMPLES - 1] == [Quality.SPIKE] * (SPIKE_CONFIRM_SAMPLES - 1)
    assert flags[SPIKE_CONFIRM_SAMPLES - 1 :] == [Quality.OK, Quality.OK]


def test_fast_change_allowed_after_a_long_gap():
    check = PlausibilityCheck(channel(max_rate=1.0))
    check.assess(0, 100)
    assert check.assess(3600, 3000) == Quality.OK


def test_unchanging_value_becomes_stuck_after_the_profile_limit():
    check = PlausibilityCheck(channel(stuck_after_s=60.0))
    assert [check.assess(t, 500) for t in (0, 30, 59)] == [Quality.OK] * 3
    assert check.assess(60, 500) == Quality.STUCK
    assert check.assess(70, 501) == Quality.OK


def test_channels_without_limits_never_flag_spike_or_stuck():
    check = PlausibilityCheck(channel())
    assert {check.assess(t, v) for t, v in [(0, 1), (1, 9000), (2, 9000), (10_000, 9000)]} == {
        Quality.OK
    }
