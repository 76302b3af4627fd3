"""Differential tests: numba, the reference and NumPy agree exactly; live equals replay.

Covers every rule kind and awkward input (NaN, bad samples, gaps, resets, wraps).
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alarm_engine import AlarmEngine
from alarm_engine.vectorised import replay_rain_windows, replay_water_level
from site_schema.rule_specs import (
    AntecedentRainRule,
    CombinationRule,
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    IntensityDurationRule,
    InverseVelocityRule,
    PowerLaw,
    RainWindow,
    RainWindowRule,
    RateOfRiseRule,
    TangentAngleRule,
    WaterLevelRule,
)

pytest.importorskip("numba")

T0 = 1_750_000_000.0
FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def level_thresholds(draw, lo, hi, *, descending=False):
    chosen = sorted(draw(st.sets(st.integers(0, 3), min_size=1)))
    values = sorted(draw(st.sets(st.floats(lo, hi), min_size=len(chosen), max_size=len(chosen))))
    if descending:
        values.reverse()
    out = [None] * 4
    for level, value in zip(chosen, values, strict=True):
        out[level] = value
    return tuple(out)


@st.composite
def state_machine(draw):
    return {
        "hysteresis": draw(st.sampled_from([0.0, 0.5, 2.0])),
        "hold_s": draw(st.sampled_from([0.0, 60.0, 600.0, 1800.0])),
        "latch_from": draw(st.sampled_from([0, 0, 3, 4])),
    }


@st.composite
def times(draw, n, *, whole_seconds=False):
    choices = [0.0, 1.0, 60.0, 60.0, 60.0, 60.0, 300.0, 5000.0]
    if not whole_seconds:
        choices.append(7.3)
    steps = draw(st.lists(st.sampled_from(choices), min_size=n, max_size=n))
    return T0 + np.cumsum(steps)


@st.composite
def quality(draw, values):
    """Mostly good samples; some flagged bad, some with a non-finite value."""
    n = len(values)
    good = draw(st.lists(st.sampled_from([True] * 9 + [False]), min_size=n, max_size=n))
    broken = draw(
        st.lists(st.sampled_from([None] * 27 + [np.nan, np.inf, -np.inf]), min_size=n, max_size=n)
    )
    values = np.array([x if b is None else b for x, b in zip(values, broken, strict=True)])
    return values, np.array(good, dtype=bool)


@st.composite
def rain_counter(draw, n, modulus):
    value = draw(st.sampled_from([0.0, 0.8 * modulus]))
    out = []
    for _ in range(n):
        op = draw(st.sampled_from(["rain"] * 12 + ["reset", "wrap", "burst"]))
        if op == "rain":
            value += draw(st.sampled_from([0.0, 0.0, 0.0, 0.2, 0.5, 2.0, 8.0]))
        elif op == "reset":
            value = draw(st.sampled_from([0.0, 0.2, 40.0]))
        elif op == "wrap":
            value = (value + draw(st.sampled_from([0.5, 30.0]))) % modulus
        else:
            value += 60.0
        out.append(value % modulus)
    return np.array(out)


@st.composite
def rain_case(draw, whole_seconds=False):
    n = draw(st.integers(1, 150))
    modulus = 100.0
    t = draw(times(n, whole_seconds=whole_seconds))
    v, good = draw(quality(draw(rain_counter(n, modulus))))
    sm = draw(state_machine())
    names = draw(
        st.sets(st.sampled_from([("10m", 600.0), ("1h", 3600.0), ("3h", 10800.0)]), min_size=1)
    )
    windows = tuple(
        RainWindow(name, seconds, draw(level_thresholds(0.5, 40.0)))
        for name, seconds in sorted(names, key=lambda w: w[1])
    )
    curves = [None, None, None, None]
    curves[1] = PowerLaw(2.2, -0.44)
    curves[3] = PowerLaw(14.82, -0.39)
    rules = [
        RainWindowRule(id="rain", channel="c", windows=windows, counter_modulus=modulus, **sm),
        AntecedentRainRule(
            id="ear",
            channel="c",
            decay_per_day=draw(st.sampled_from([0.5, 0.84, 0.95])),
            thresholds=draw(level_thresholds(1.0, 60.0)),
            counter_modulus=modulus,
            **sm,
        ),
        IntensityDurationRule(
            id="id",
            channel="c",
            curves=tuple(curves),
            dry_gap_s=draw(st.sampled_from([600.0, 21600.0])),
            min_duration_s=draw(st.sampled_from([60.0, 600.0])),
            counter_modulus=draw(st.sampled_from([modulus, None])),
            **sm,
        ),
    ]
    return rules, t, v, good


@st.composite
def level_case(draw, whole_seconds=False):
    n = draw(st.integers(1, 150))
    t = draw(times(n, whole_seconds=whole_seconds))
    walk = np.cumsum(
        draw(st.lists(st.sampled_from([-0.3, -0.1, 0.0, 0.1, 0.2, 0.5]), min_size=n, max_size=n))
    )
    v, good = draw(quality(walk))
    sm = draw(state_machine())
    rules = [
        WaterLevelRule(id="level", channel="c", thresholds=draw(level_thresholds(-1.0, 4.0)), **sm),
        RateOfRiseRule(
            id="rise",
            channel="c",
            window_s=draw(st.sampled_from([300.0, 900.0])),
            eval_every_s=draw(st.sampled_from([0.0, 120.0])),
            thresholds=draw(level_thresholds(0.1, 10.0)),
            **sm,
        ),
    ]
    return rules, t, v, good


@st.composite
def slope_case(draw):
    n = draw(st.integers(1, 200))
    t = draw(times(n))
    speed = np.cumsum(
        draw(st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.01, -0.005]), min_size=n, max_size=n))
    )
    noise = np.array(draw(st.lists(st.sampled_from([0.0, 0.01, -0.02]), min_size=n, max_size=n)))
    v, good = draw(quality(np.cumsum(speed) + noise))
    sm = draw(state_machine())
    common = {
        "channel": "c",
        "window_s": draw(st.sampled_from([300.0, 1200.0])),
        "eval_every_s": draw(st.sampled_from([0.0, 60.0, 240.0])),
        **sm,
    }
    rules = [
        DisplacementVelocityRule(id="v", thresholds=draw(level_thresholds(1.0, 500.0)), **common),
        DisplacementAccelerationRule(
            id="a", thresholds=draw(level_thresholds(1.0, 5000.0)), **common
        ),
        TangentAngleRule(
            id="tan",
            creep_rate_mm_day=draw(st.sampled_from([1.0, 20.0])),
            thresholds=draw(level_thresholds(5.0, 89.0)),
            **common,
        ),
        InverseVelocityRule(
            id="inv",
            fit_window_s=draw(st.sampled_from([1800.0, 7200.0])),
            min_r2=draw(st.sampled_from([0.0, 0.5, 0.8])),
            horizons_h=draw(level_thresholds(0.1, 200.0, descending=True)),
            **common,
        ),
    ]
    return rules, t, v, good


def with_combinations(rules):
    ids = tuple(r.id for r in rules)
    if len(ids) < 2:
        return rules
    return [
        *rules,
        CombinationRule(id="all", kind="all_of", members=ids),
        CombinationRule(id="any", kind="any_of", members=ids[:2], latch_from=4),
    ]


def replayed(rules, backend, t, v, good):
    engine = AlarmEngine(rules, backend=backend)
    changes = engine.replay({"c": (t, v, good)})
    return changes, engine


def pushed(rules, backend, t, v, good):
    engine = AlarmEngine(rules, backend=backend)
    changes = []
    for ti, x, ok in zip(t.tolist(), v.tolist(), good.tolist(), strict=True):
        changes.extend(engine.push("c", ti, x, ok))
    return changes, engine


def same_metrics(a, b):
    def canon(metrics):
        return {rule: {k: repr(x) for k, x in m.items()} for rule, m in metrics.items()}

    return canon(a.metrics()) == canon(b.metrics())


def check_backends_agree(rules, t, v, good):
    rules = with_combinations(rules)
    reference, ref_engine = replayed(rules, "reference", t, v, good)
    compiled, numba_engine = replayed(rules, "numba", t, v, good)
    assert compiled == reference
    assert numba_engine.levels() == ref_engine.levels()
    assert same_metrics(numba_engine, ref_engine)
    for backend, replay in (("numba", compiled), ("reference", reference)):
        live, live_engine = pushed(rules, backend, t, v, good)
        assert live == replay, backend
        assert live_engine.levels() == ref_engine.levels()
    return reference


@FAST
@given(rain_case())
def test_rain_kinds_agree_across_backends_and_live_vs_replay(case):
    rules, t, v, good = case
    changes = check_backends_agree(rules, t, v, good)
    assert all(c.metric >= 0 for c in changes if c.rule_id in ("rain", "ear"))


@FAST
@given(level_case())
def test_water_level_kinds_agree_across_backends_and_live_vs_replay(case):
    check_backends_agree(*case)


@FAST
@given(slope_case())
def test_displacement_kinds_agree_across_backends_and_live_vs_replay(case):
    check_backends_agree(*case)


@FAST
@given(rain_case(whole_seconds=True), level_case(whole_seconds=True))
def test_numpy_version_matches_the_reference_for_rain_windows_and_water_level(rain, level):
    for rules, t, v, good in (rain, level):
        rule = rules[0]
        engine = AlarmEngine([rule], backend="reference")
        expected = engine.replay({"c": (t, v, good)})
        if isinstance(rule, RainWindowRule):
            raw = replay_rain_windows(rule, t, v, good)
        else:
            raw = replay_water_level(rule, t, v, good)
        assert [(t[c.sample], c.old, c.new) for c in raw] == [(e.t, e.old, e.new) for e in expected]


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_unsorted_times_are_rejected_naming_channel_and_index(backend):
    rule = WaterLevelRule(id="level", channel="creek.level", thresholds=(1.0, None, None, None))
    engine = AlarmEngine([rule], backend=backend)
    t = np.array([T0, T0 + 60, T0 + 30, T0 + 90])
    v = np.array([0.0, 5.0, 5.0, 5.0])
    with pytest.raises(ValueError, match=r"channel 'creek.level'.*sample 2 at t=1750000030"):
        engine.push_many("creek.level", t, v, np.ones(4, bool))
    assert engine.levels() == {"level": 0}  # nothing was evaluated
    engine.push("creek.level", T0 + 100, 0.0, True)
    with pytest.raises(ValueError, match=r"channel 'creek.level': sample 0 at t=1750000099"):
        engine.push("creek.level", T0 + 99, 9.0, True)
    with pytest.raises(ValueError, match=r"sample 1 has a non-finite time"):
        engine.replay({"creek.level": ([T0 + 200, math.nan], [1.0, 1.0], [True, True])})


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_equal_timestamps_are_processed_in_arrival_order(backend):
    rule = WaterLevelRule(id="level", channel="c", thresholds=(1.0, 2.0, None, None), hold_s=0.0)
    engine = AlarmEngine([rule], backend=backend)
    changes = engine.push_many("c", [T0, T0, T0], [2.5, 0.0, 1.5], [True, True, True])
    assert [(c.t, c.old, c.new) for c in changes] == [(T0, 0, 2), (T0, 2, 0), (T0, 0, 1)]
