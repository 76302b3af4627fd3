"""Rain rules against independent truth.

Design-storm window sums, counter resets and wraps, the Caine / Guzzetti worked
intensity-duration values, antecedent-rain decay.
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from alarm_engine import AlarmEngine
from hardware_sim.scenarios import DesignStorm
from site_schema.rule_specs import (
    AntecedentRainRule,
    IntensityDurationRule,
    PowerLaw,
    RainWindow,
    RainWindowRule,
)

T0 = 1_750_000_000.0
# Published worked values, with their sources in the header lines (tests/data/README.md).
ID_CSV = Path(__file__).resolve().parent / "data" / "id_thresholds_worked.csv"
BACKENDS = ["numba", "reference"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "numba":
        pytest.importorskip("numba")
    return request.param


def storm_series(storm, step_s=60.0, after_s=7200.0):
    t = np.arange(storm.start - 600.0, storm.end + after_s, step_s)
    counter = np.array([storm.cumulative_mm(x) for x in t])
    return t, counter


def test_rain_windows_rise_where_the_scenario_window_sums_cross(backend):
    storm = DesignStorm(T0, 6 * 3600.0, peak_mm_h=60.0, seed=7)
    t, counter = storm_series(storm)
    windows = {"10m": 600.0, "1h": 3600.0, "3h": 10800.0}
    truth = {name: np.array([storm.window_sum_mm(x, w) for x in t]) for name, w in windows.items()}
    # Thresholds at fractions of each window's maximum, so every level is reached.
    fractions = (0.2, 0.45, 0.7, 0.9)
    rule = RainWindowRule(
        id="rain",
        channel="gauge",
        windows=tuple(
            RainWindow(name, w, tuple(f * truth[name].max() for f in fractions))
            for name, w in windows.items()
        ),
    )
    changes = AlarmEngine([rule], backend=backend).replay(
        {"gauge": (t, counter, np.ones(len(t), bool))}
    )
    # The level the scenario's own window sums call for at each sample ...
    truth_level = np.zeros(len(t), dtype=int)
    for name in windows:
        for level, fraction in enumerate(fractions, 1):
            met = truth[name] >= fraction * truth[name].max()
            truth_level = np.where(met, np.maximum(truth_level, level), truth_level)
    # ... and each new highest level must be raised at exactly the sample that first calls for it.
    expected = [
        (t[k], int(truth_level[k]))
        for k in range(len(t))
        if truth_level[k] > truth_level[:k].max(initial=0)
    ]
    new_highs = [
        (c.t, c.new)
        for i, c in enumerate(changes)
        if c.new > max((p.new for p in changes[:i]), default=0)
    ]
    assert [level for _, level in expected] == [1, 2, 3, 4]
    assert new_highs == expected


def test_a_counter_reset_never_makes_negative_rain_or_a_burst(backend):
    storm = DesignStorm(T0, 3 * 3600.0, peak_mm_h=30.0, seed=3)
    t, counter = storm_series(storm)
    reboot = int(np.searchsorted(t, storm.peak_time))
    # The gauge reboots at the peak: its counter restarts from zero.
    rebooted = counter.copy()
    rebooted[reboot:] -= counter[reboot - 1] + 0.05
    rebooted = np.maximum(rebooted, 0.0)
    # A long-running gauge (at 4000 mm) is swapped for one at 3000 mm: the drop is a reset,
    # and 3000 mm in a minute is not plausible rain, so the counter is re-baselined.
    swapped = counter + 4000.0
    swapped[reboot:] = counter[reboot:] - counter[reboot - 1] + 3000.0
    rule = RainWindowRule(
        id="rain", channel="g", windows=(RainWindow("1h", 3600.0, (10.0, 20.0, 30.0, 60.0)),)
    )
    true_peak = max(storm.window_sum_mm(x, 3600.0) for x in t)
    for series in (rebooted, swapped):
        engine = AlarmEngine([rule], backend=backend)
        sums = []
        for ti, x in zip(t, series, strict=True):
            engine.push("g", float(ti), float(x), True)
            sums.append(engine.metrics()["rain"]["1h_mm"])
        assert min(sums) >= 0.0
        assert max(sums) <= true_peak + 1e-9


def test_a_wrapping_counter_gives_the_same_alarms_as_an_unwrapped_one(backend):
    storm = DesignStorm(T0, 6 * 3600.0, peak_mm_h=50.0, seed=11)
    t, counter = storm_series(storm)
    # A uint16 x 0.1 mm register starting near its top wraps during the storm.
    wrapped = np.round((counter + 6530.0) * 10.0) % 65536 / 10.0
    plain = np.round(counter * 10.0) / 10.0
    rule = RainWindowRule(
        id="rain",
        channel="g",
        # Off the 0.1 mm grid, so rounding in the running totals cannot flip a comparison.
        windows=(RainWindow("1h", 3600.0, (10.05, 20.05, 30.05, 40.05)),),
        counter_modulus=6553.6,
    )
    good = np.ones(len(t), bool)
    expected = AlarmEngine([rule], backend=backend).replay({"g": (t, plain, good)})
    got = AlarmEngine([rule], backend=backend).replay({"g": (t, wrapped, good)})
    assert np.any(np.diff(wrapped) < 0)
    assert [(c.t, c.new) for c in got] == [(c.t, c.new) for c in expected]
    assert [c.metric for c in got] == pytest.approx([c.metric for c in expected], abs=1e-6)


def test_a_reset_that_looks_like_a_wrap_is_not_a_burst(backend):
    rule = RainWindowRule(
        id="rain",
        channel="g",
        windows=(RainWindow("1h", 3600.0, (1.0, None, None, None)),),
        counter_modulus=6553.6,
    )
    engine = AlarmEngine([rule], backend=backend)
    # 5000 -> 0 in a minute would be 1553.6 mm if read as a wrap: a reboot, not rain.
    changes = engine.push_many("g", [T0, T0 + 60, T0 + 120], [5000.0, 0.0, 0.2], [True] * 3)
    assert changes == []
    assert engine.metrics()["rain"]["1h_mm"] == pytest.approx(0.2)


def worked_values():
    with ID_CSV.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    return [
        pytest.param(
            author,
            curve,
            float(row["D_h"]),
            float(row[f"{author}_I_mmph"]),
            float(row[f"{author}_E_mm"]),
            id=f"{author}-{row['D_h']}h",
        )
        for row in rows
        for author, curve in (
            ("caine", PowerLaw(14.82, -0.39)),
            ("guzzetti", PowerLaw(2.20, -0.44)),
        )
    ]


@pytest.mark.parametrize(
    ("author", "curve", "duration_h", "intensity", "event_mm"), worked_values()
)
def test_steady_rain_just_above_the_id_curve_fires_and_just_below_does_not(
    author, curve, duration_h, intensity, event_mm
):
    assert curve.at(duration_h) == pytest.approx(intensity, abs=5e-4 * intensity + 1e-3)
    assert intensity * duration_h == pytest.approx(event_mm, abs=0.06)
    rule = IntensityDurationRule(
        id="id", channel="g", curves=(None, None, None, curve), min_duration_s=600.0
    )
    step = 300.0
    t = T0 + np.arange(0.0, (duration_h + 12.0) * 3600.0 + 1.0, step)
    fired = {}
    for factor in (1.01, 0.99):
        rate = factor * curve.at(duration_h) / 3600.0
        counter = rate * np.clip(t - T0, 0.0, duration_h * 3600.0)
        changes = AlarmEngine([rule], backend="numba").replay(
            {"g": (t, counter, np.ones(len(t), bool))}
        )
        fired[factor] = [c for c in changes if c.kind == "rise"]
    (rise,) = fired[1.01]
    assert rise.new == 4
    # Above the curve by 1 %, the event crosses it shortly before reaching its duration.
    assert T0 + 0.9 * duration_h * 3600.0 <= rise.t <= T0 + duration_h * 3600.0
    assert f"{curve.a:g}*D^{curve.b:g}" in rise.detail
    assert fired[0.99] == []


def test_every_worked_value_is_checked():
    assert len(worked_values()) == 14


def test_antecedent_rain_decays_by_k_per_day_and_falls_after_the_hold(backend):
    rule = AntecedentRainRule(
        id="ear",
        channel="g",
        decay_per_day=0.8,
        thresholds=(None, 30.0, None, None),
        hold_s=86400.0,
    )
    engine = AlarmEngine([rule], backend=backend)
    days = np.arange(0, 8) * 86400.0 + T0
    counter = np.array([0.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0])
    changes = engine.replay({"g": (days, counter, np.ones(8, bool))})
    assert engine.metrics()["ear"]["ear_mm"] == pytest.approx(50.0 * 0.8**6)
    # 50 * 0.8^3 = 25.6 < 30 on day 4 starts the hold; day 5 completes it.
    assert [((c.t - T0) / 86400.0, c.new) for c in changes] == [(1.0, 2), (5.0, 0)]
    assert math.isclose(changes[1].metric, 50.0 * 0.8**4)
