"""The first-red estimate bench scores the forecast the engine states, and the others beside it.

``bench/slope_first_red.py`` replays stored forecasts to the first red and compares other
failure times the gateway could state there; its ``newest`` must be the engine's own.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from slope_first_red import errors, first_red, score  # noqa: E402
from slope_forecast import _rule_for, evaluate  # noqa: E402
from slope_forecast_grid import collect  # noqa: E402


@pytest.mark.parametrize("seed", [0, 4], ids=["10-minute", "hourly"])
def test_the_newest_estimate_is_the_red_the_engine_states(seed: int) -> None:
    stored = collect(("failure", seed, {}))
    engine = evaluate(("failure", seed, {}))
    rule = _rule_for({})
    red = first_red(stored, rule)
    assert red is not None
    t, _, confirming, accepted = red
    # The red came when the engine's did, confirmed by the rule's count of forecasts.
    assert (stored[1] - t) / 3600.0 == pytest.approx(engine["lead_h"]["red"])
    assert len(confirming) == rule.confirm
    assert all(math.isfinite(f) for f in confirming)
    assert accepted[-1] == (t, confirming[0])
    found = errors(stored, rule)
    assert found is not None
    assert abs(found["newest"]) == pytest.approx(engine["red_error"])
    assert set(found) == {
        "newest",
        "mean_confirming",
        "median_confirming",
        "median_accepted_6h",
        "median_accepted_24h",
        "interval_middle",
    }
    scored = score([stored], rule)
    in_scope = stored[0]["noise_mm"] <= 0.05
    assert scored["failures"] == int(in_scope)
    if in_scope:
        assert scored["newest"]["within_10pct"] == int(engine["red_error"] <= 0.1)


def test_an_unknown_set_is_refused_before_any_fit() -> None:
    command = [sys.executable, str(REPO / "bench" / "slope_first_red.py"), "--sets", "check,fersh"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1
    assert "unknown set(s) fersh" in refused.stderr
