"""The tuning bench's replay of stored forecasts raises the levels the real engine raises.

``bench/slope_forecast_grid.py`` fits each record once and replays the level settings
over the stored forecasts through ``ForecastMetric.judge`` and ``LevelState``; if it
drifted from the engine, a grid would rank settings on levels the agent never raises.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from slope_forecast import _rule_for, evaluate  # noqa: E402
from slope_forecast_grid import collect, levels  # noqa: E402


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
    assert replayed == engine
    assert "red" in engine["lead_h"]  # the records reach red: the comparison covers it
