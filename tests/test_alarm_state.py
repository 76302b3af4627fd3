"""The level state machine, the same in both backends.

Rise at once, hysteresis and hold, bad samples, latch, acknowledge, restore after a
restart, and combinations.
"""

import math

import pytest

from alarm_engine import AlarmEngine
from site_schema.rule_specs import CombinationRule, RainWindow, RainWindowRule, WaterLevelRule

T0 = 1_750_000_000.0
BACKENDS = ["numba", "reference"]


def level_rule(**kwargs):
    params = {"hysteresis": 0.2, "hold_s": 600.0, **kwargs}
    return WaterLevelRule(id="creek", channel="c", thresholds=(1.0, 2.0, 3.0, 4.0), **params)


def feed(engine, samples, channel="c"):
    """Push (minute, value[, good]) samples; return the changes as (minute, old, new, kind)."""
    out = []
    for sample in samples:
        minute, value, good = (*sample, True)[:3]
        for c in engine.push(channel, T0 + 60.0 * minute, value, good):
            out.append((c.rule_id, (c.t - T0) / 60.0, c.old, c.new, c.kind))
    return out


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "numba":
        pytest.importorskip("numba")
    return request.param


def test_a_level_rises_at_once_to_the_highest_threshold_met(backend):
    engine = AlarmEngine([level_rule()], backend=backend)
    assert feed(engine, [(0, 0.5), (1, 3.2)]) == [("creek", 1, 0, 3, "rise")]
    assert engine.levels() == {"creek": 3}


def test_a_level_falls_only_after_the_hold_below_threshold_minus_hysteresis(backend):
    engine = AlarmEngine([level_rule()], backend=backend)
    samples = [(0, 3.5), (1, 2.9), (2, 2.7), (12, 2.7), (13, 2.7)]
    # 2.9 is below 3 but within the hysteresis: no evidence; 2.7 at minute 2 starts the hold,
    # which completes at minute 12 (600 s later).
    assert feed(engine, samples) == [
        ("creek", 0, 0, 3, "rise"),
        ("creek", 12, 3, 2, "fall"),
    ]


def test_a_fall_goes_straight_to_the_level_the_metric_supports(backend):
    engine = AlarmEngine([level_rule()], backend=backend)
    # 1.7 supports blue only: yellow would need 2.0 - 0.2 = 1.8.
    changes = feed(engine, [(0, 4.5), (1, 0.2), (5, 1.7), (11, 1.7)])
    assert changes[-1] == ("creek", 11, 4, 1, "fall")


def test_a_sample_at_or_above_the_threshold_restarts_the_hold(backend):
    engine = AlarmEngine([level_rule()], backend=backend)
    changes = feed(
        engine, [(0, 3.5), (1, 2.0), (8, 2.0), (9, 3.0), (10, 2.0), (19, 2.0), (20, 2.0)]
    )
    assert changes == [("creek", 0, 0, 3, "rise"), ("creek", 20, 3, 2, "fall")]


def test_bad_samples_never_raise_or_lower_and_pause_the_hold(backend):
    engine = AlarmEngine([level_rule()], backend=backend)
    assert feed(engine, [(0, 9.0, False), (1, math.nan, True)]) == []
    feed(engine, [(2, 3.5)])
    # Below from minute 3; the bad sample at 6 voids the intervals 5->6->7 (2 minutes),
    # so 600 s of evidence are complete at minute 15 instead of 13.
    samples = [(3, 2.0), (5, 2.0), (6, 0.0, False), (7, 2.0), (13, 2.0), (14, 2.0), (15, 2.0)]
    assert feed(engine, samples) == [("creek", 15, 3, 2, "fall")]


def test_a_gap_without_samples_counts_toward_the_hold(backend):
    engine = AlarmEngine([level_rule()], backend=backend)
    assert feed(engine, [(0, 3.5), (1, 0.0), (30, 0.0)])[-1] == ("creek", 30, 3, 0, "fall")


def test_a_latched_level_waits_for_acknowledgement_then_falls_at_once_if_low(backend):
    engine = AlarmEngine([level_rule(latch_from=3)], backend=backend)
    assert feed(engine, [(0, 4.2), (1, 0.1), (60, 0.1)]) == [("creek", 0, 0, 4, "rise")]
    (ack,) = engine.acknowledge("creek", T0 + 3700.0)
    assert (ack.t, ack.old, ack.new, ack.kind) == (T0 + 3700.0, 4, 0, "ack")
    assert "acknowledged red" in ack.detail
    assert engine.acknowledge("creek", T0 + 3800.0) == []  # nothing latched any more


def test_acknowledging_while_the_metric_is_high_keeps_the_level_and_unlatches(backend):
    engine = AlarmEngine([level_rule(latch_from=3)], backend=backend)
    feed(engine, [(0, 4.2)])
    (ack,) = engine.acknowledge("creek", T0 + 30.0)
    assert (ack.old, ack.new, ack.kind) == (4, 4, "ack")
    # Now it follows the metric with the normal hold; a new rise to orange latches again.
    assert feed(engine, [(1, 1.5), (11, 1.5), (12, 3.3), (13, 0.0), (40, 0.0)]) == [
        ("creek", 11, 4, 1, "fall"),
        ("creek", 12, 1, 3, "rise"),
    ]
    assert engine.acknowledge("creek", T0 + 2500.0)[0].new == 0


def test_levels_below_latch_from_do_not_latch(backend):
    engine = AlarmEngine([level_rule(latch_from=4)], backend=backend)
    assert feed(engine, [(0, 3.5), (1, 0.0), (11, 0.0)])[-1] == ("creek", 11, 3, 0, "fall")


def test_restore_latch_reapplies_a_latched_level_after_a_restart(backend):
    engine = AlarmEngine([level_rule(latch_from=3)], backend=backend)
    feed(engine, [(0, 0.5)])  # the replayed history shows a quiet creek
    engine.restore_latch("creek", 4)
    assert engine.levels() == {"creek": 4}
    assert feed(engine, [(1, 0.5), (60, 0.5)]) == []  # latched: no fall
    (ack,) = engine.acknowledge("creek", T0 + 3700.0)
    assert (ack.old, ack.new) == (4, 0)


def test_restore_level_keeps_the_recorded_level_until_the_hold_runs_out_after_restart(backend):
    # The last readings before a crash were lost; the alarm event they raised was not.
    engine = AlarmEngine([level_rule()], backend=backend)
    feed(engine, [(0, 0.5)])  # the replayed history ends before the rise
    engine.restore_level("creek", 3)
    assert engine.levels() == {"creek": 3}
    # The agent was down 30 minutes: that gap is no evidence, the hold counts from here.
    assert feed(engine, [(30, 0.5), (39, 0.5)]) == []
    assert feed(engine, [(40, 0.5)]) == [("creek", 40, 3, 0, "fall")]  # not latched
    assert engine.acknowledge("creek", T0 + 3000.0) == []
    engine.restore_level("creek", 1)  # never lowers a level
    feed(engine, [(41, 3.5)])
    engine.restore_level("creek", 2)
    assert engine.levels() == {"creek": 3}
    with pytest.raises(ValueError, match=r"level 5 is outside 0\.\.4"):
        engine.restore_level("creek", 5)


def test_restore_latch_ignores_a_level_the_rule_does_not_latch(backend):
    engine = AlarmEngine([level_rule(latch_from=4)], backend=backend)
    engine.restore_latch("creek", 3)  # e.g. latch_from was raised since the event was logged
    AlarmEngine([level_rule()], backend=backend).restore_latch("creek", 4)
    assert engine.levels() == {"creek": 0}
    with pytest.raises(ValueError, match=r"level 7 is outside 0\.\.4"):
        engine.restore_latch("creek", 7)
    with pytest.raises(KeyError, match="unknown rule 'ghost'"):
        engine.acknowledge("ghost", T0)


def rain_rule(**kwargs):
    windows = (
        RainWindow("10m", 600.0, (5.0, None, None, 20.0)),
        RainWindow("1h", 3600.0, (10.0, 20.0, None, None)),
    )
    return RainWindowRule(id="rain", channel="r", windows=windows, hold_s=0.0, **kwargs)


def test_any_window_raises_and_the_detail_names_the_window(backend):
    engine = AlarmEngine([rain_rule()], backend=backend)
    feed(engine, [(0, 0.0)], "r")
    changes = engine.push("r", T0 + 60.0, 6.0, True)
    assert [(c.new, c.detail) for c in changes] == [(1, "10m window 6.0 mm >= 5 (blue)")]
    changes = engine.push("r", T0 + 1200.0, 21.0, True)
    assert [(c.new, c.metric, c.detail) for c in changes] == [
        (2, 21.0, "1h window 21.0 mm >= 20 (yellow)")
    ]
    assert engine.metrics()["rain"] == {"10m_mm": 15.0, "1h_mm": 21.0}


def combination_engine(backend, *, latch_from=0):
    rules = [
        WaterLevelRule(id="a", channel="a", thresholds=(1.0, 2.0, 3.0, 4.0), hold_s=0.0),
        WaterLevelRule(id="b", channel="b", thresholds=(1.0, 2.0, 3.0, 4.0), hold_s=0.0),
        CombinationRule(id="both", kind="all_of", members=("a", "b"), latch_from=latch_from),
        CombinationRule(id="either", kind="any_of", members=("a", "b")),
        CombinationRule(id="nested", kind="all_of", members=("both", "either")),
    ]
    return AlarmEngine(rules, backend=backend)


SCRIPT = [("a", 0, 3.5), ("b", 1, 2.5), ("a", 2, 0.0), ("b", 3, 4.5), ("a", 4, 4.5), ("b", 5, 0)]


def test_all_of_takes_the_minimum_and_any_of_the_maximum(backend):
    engine = combination_engine(backend)
    seen = []
    for channel, minute, value in SCRIPT:
        engine.push(channel, T0 + 60.0 * minute, value, True)
        seen.append((engine.levels()["both"], engine.levels()["either"], engine.levels()["nested"]))
    assert seen == [(0, 3, 0), (2, 3, 2), (0, 2, 0), (0, 4, 0), (4, 4, 4), (0, 4, 0)]


def test_replay_orders_changes_across_channels_so_combinations_are_right(backend):
    live_engine = combination_engine(backend)
    live = []
    for channel, minute, value in SCRIPT:
        live.extend(live_engine.push(channel, T0 + 60.0 * minute, value, True))
    series = {
        ch: (
            [T0 + 60.0 * m for c, m, _ in SCRIPT if c == ch],
            [v for c, _, v in SCRIPT if c == ch],
            [True] * 3,
        )
        for ch in ("a", "b")
    }
    replay_engine = combination_engine(backend)
    assert replay_engine.replay(series) == live
    assert replay_engine.levels() == live_engine.levels()


def test_a_latched_combination_holds_until_acknowledged(backend):
    engine = combination_engine(backend, latch_from=3)
    for channel, minute, value in SCRIPT[:2]:
        engine.push(channel, T0 + 60.0 * minute, value, True)
    engine.push("a", T0 + 1000.0, 3.5, True)
    engine.push("b", T0 + 1000.0, 3.5, True)
    engine.push("a", T0 + 1100.0, 0.0, True)
    assert engine.levels()["both"] == 3
    changes = engine.acknowledge("both", T0 + 1200.0)
    assert [(c.rule_id, c.old, c.new, c.kind) for c in changes] == [
        ("both", 3, 0, "ack"),
        ("nested", 3, 0, "fall"),
    ]
