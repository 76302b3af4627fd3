"""The tuning bench's replay of stored forecasts raises the levels the real engine raises.

``bench/slope_forecast_grid.py`` fits each record once and replays the level settings
over the stored forecasts through ``ForecastMetric.judge`` and ``LevelState``; if it
drifted from the engine, a grid would rank settings on levels the agent never raises.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from slope_forecast import _rule_for, evaluate  # noqa: E402
from slope_forecast_grid import (  # noqa: E402
    _read_cache,
    _stored,
    _write_cache,
    changes,
    collect,
    forecasts,
    levels,
)

from alarm_engine.engine import AlarmEngine  # noqa: E402
from hardware_sim.slope_corpus import failure_record  # noqa: E402


@pytest.mark.parametrize(
    "overrides",
    [{}, {"confirm": 2, "max_drift": 0.5, "min_evidence": 300.0}, {"hold_s": 3600.0}],
    ids=["shipped", "looser", "short-hold"],
)
@pytest.mark.parametrize("seed", [0, 4], ids=["10-minute", "hourly"])
def test_replaying_stored_forecasts_gives_the_engines_levels(seed, overrides):
    stored = collect(("failure", seed, {}))
    engine = evaluate(("failure", seed, overrides))
    replayed = levels(stored, _rule_for(overrides))
    # The grid replays levels only; the forecast shown after a red is scored by the engine
    # run alone (``shown_after_red``), from its standing forecasts.
    shown = engine.pop("shown")
    assert replayed == engine
    assert "red" in engine["lead_h"]  # the records reach red: the comparison covers it
    assert "6h" in shown


def _grid(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "bench" / "slope_forecast_grid.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_setting_a_site_file_could_not_hold_stops_the_grid_before_any_fit():
    refused = _grid("--grid", '{"confirm": [2, 10]}')
    assert refused.returncode == 1
    assert "--grid or --fit refused" in refused.stderr
    assert "rule 'slope_forecast': 'confirm' = 10 must be at most 6" in refused.stderr
    unknown = _grid("--fit", "alpha_ragne=[1.5, 3]")
    assert unknown.returncode == 1
    assert "unknown key(s): alpha_ragne" in unknown.stderr


def test_the_forecast_cache_gives_back_the_forecasts_and_never_unpickles(tmp_path):
    stored = [collect(("failure", 4, {})), collect(("quiet", 4, {}))]
    path = tmp_path / "forecasts.npz"
    older = {"fit": {}, "failures": 1, "quiet": 1, "sources": "an older engine"}
    _write_cache(path, older, stored)
    made_with, kept = _read_cache(path)
    assert made_with == older
    for (about, failure_t, made), (kept_about, kept_t, kept_made) in zip(stored, kept, strict=True):
        assert kept_about == about
        assert kept_t == failure_t or (np.isnan(kept_t) and np.isnan(failure_t))
        assert np.array_equal(kept_made, made, equal_nan=True)
    assert levels(kept[0], _rule_for({})) == levels(stored[0], _rule_for({}))
    # forecasts kept by another version of the engine or the corpus are not reused
    args = argparse.Namespace(cache=path, failures=1, quiet=1, workers=1)
    with pytest.raises(SystemExit, match=r"holds forecasts made with .*an older engine"):
        _stored(args, {})
    path.write_bytes(pickle.dumps({"made_with": made_with, "stored": stored}))
    with pytest.raises(SystemExit, match="not a forecast cache this bench wrote"):
        _read_cache(path)


def test_a_silent_gateway_holds_a_level_in_the_replay_as_in_the_engine():
    # An orange that does not latch, then the gateway falls silent for 15 days (more than
    # the 14-day window). Back, its window holds too little data for a day: no evidence,
    # so the engine counts the 48 h hold from the first forecast after that. A replay that
    # forgot it (``LevelState.pause``) would count the silent days and drop the level at
    # once, 47 h early on this record. Without caution: with it, this record goes red
    # before the silence, and red latches.
    rule = _rule_for({"latch_from": "red", "caution": 0})
    record = failure_record(4)
    every = np.ones(record.t.shape[0], dtype=bool)
    risen = AlarmEngine([rule], "numba").replay({"slope.x": (record.t, record.x, every)})
    before = record.t <= risen[0].t + 6 * 3600.0
    t1, x1 = record.t[before], record.x[before]
    rng = np.random.default_rng(4)
    t2 = t1[-1] + 15 * 86400.0 + np.arange(0.0, 5 * 86400.0, record.interval_s)
    creep = record.params["creep_mm_day"] / 86400.0
    x2 = x1[-1] + creep * (t2 - t1[-1]) + rng.normal(0.0, record.noise_mm, t2.shape[0])
    t, x = np.concatenate([t1, t2]), np.concatenate([x1, x2])
    good = np.ones(t.shape[0], dtype=bool)
    engine = AlarmEngine([rule], "numba").replay({"slope.x": (t, x, good)})
    made = forecasts(SimpleNamespace(t=t, x=x), rule)
    replayed = [(t, old, new) for t, old, new, _ in changes(made, rule)]
    assert replayed == [(c.t, c.old, c.new) for c in engine]
    (rise, fall) = replayed
    assert rise[2] >= 2  # it rose before the silence
    assert fall[2] == 0  # and fell after it, about two days after the first forecast back
    back = made[(made[:, 0] > t2[0]) & (made[:, 1] == 1.0), 0][0]
    assert fall[0] - back > 0.9 * rule.hold_s
