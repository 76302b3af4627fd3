"""A forecast rule's replay left for later: live samples wait, and nothing differs after.

A gateway without numba replays a slope forecast's history for minutes; the agent defers
that replay (``AlarmEngine.replay(defer_forecasts=True)``), polls meanwhile, and runs
``catch_up`` on another thread. Here the same history and live samples go through an
engine that replays at once and one that catches up, in both backends.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from alarm_engine import AlarmEngine
from alarm_engine.engine import RuleCatchingUpError
from hardware_sim.slope_corpus import ORIGIN, tertiary_displacement
from site_schema.rule_specs import FailureForecastRule, WaterLevelRule

HOUR = 3600.0
DAY = 86400.0
SLOPE, CREEK = "scarp.extension", "creek.level"


def rules() -> list[FailureForecastRule | WaterLevelRule]:
    return [
        FailureForecastRule(
            id="forecast", channel=SLOPE, horizons_h=(None, 168.0, 72.0, 36.0), latch_from=4
        ),
        WaterLevelRule(id="creek", channel=CREEK, thresholds=(1.0, 2.0, 2.5, 2.9)),
    ]


def slope(start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Hourly, noise-free: 0.5 mm/day creep, alpha = 2 over 100 h, failing at day 8."""
    failure_t = ORIGIN + 8 * DAY + 0.5
    t = np.arange(start, end, HOUR)
    x = (
        100.0
        + 0.5 / DAY * (t - ORIGIN)
        + tertiary_displacement(failure_t - t, 0.5, 100 * HOUR, 2.0)
    )
    return t, x


HISTORY_END = ORIGIN + 5 * DAY
LIVE_END = ORIGIN + 8 * DAY - 6 * HOUR


def history() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    t, x = slope(ORIGIN, HISTORY_END)
    creek_t = np.arange(ORIGIN, HISTORY_END, 600.0)
    return {
        SLOPE: (t, x, np.ones(t.shape[0], dtype=bool)),
        CREEK: (creek_t, np.full(creek_t.shape[0], 0.5), np.ones(creek_t.shape[0], dtype=bool)),
    }


def live_samples() -> list[tuple[str, float, float]]:
    """The slope every hour; the creek rising past its yellow threshold on day 6."""
    t, x = slope(HISTORY_END, LIVE_END)
    out = [(SLOPE, float(a), float(b)) for a, b in zip(t, x, strict=True)]
    for a in np.arange(HISTORY_END, LIVE_END, 1800.0):
        out.append((CREEK, float(a), 2.2 if ORIGIN + 6 * DAY <= a < ORIGIN + 6.5 * DAY else 0.5))
    return sorted(out, key=lambda sample: sample[1])


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_a_deferred_forecast_replay_ends_where_replaying_at_once_does(backend: str) -> None:
    if backend == "numba":
        pytest.importorskip("numba")
    at_once = AlarmEngine(rules(), backend)
    replayed = at_once.replay(history())
    at_once.restore_level("forecast", 1)
    expected = [c for ch, t, v in live_samples() for c in at_once.push(ch, t, v, True)]

    deferred = AlarmEngine(rules(), backend)
    deferred.replay(history(), defer_forecasts=True)
    deferred.restore_level("forecast", 1)
    assert deferred.catching_up("forecast")
    assert not deferred.catching_up("creek")
    assert deferred.levels() == {"forecast": 1, "creek": 0}  # the restored level, meanwhile
    with pytest.raises(RuleCatchingUpError, match="'forecast' is still rebuilding"):
        deferred.acknowledge("forecast", HISTORY_END)
    made: list[int] = []
    worker = threading.Thread(target=lambda: made.append(deferred.catch_up()))
    worker.start()
    during = [c for ch, t, v in live_samples() for c in deferred.push(ch, t, v, True)]
    worker.join()
    assert math.isnan(deferred.metrics()["forecast"]["lead_h"])  # no metrics while rebuilding
    assert deferred.standing_forecasts() == {}
    after = deferred.finish_catch_up()

    assert not deferred.catching_up()
    # The creek rose and fell live, while the forecast waited; the forecast's changes came
    # with the catch-up: together, the same changes in the same order as replaying at once.
    assert [c for c in during if c.rule_id == "forecast"] == []
    assert [c.rule_id for c in during] == ["creek", "creek"]
    assert sorted(during + after, key=lambda c: c.t) == expected
    assert [c.new for c in after] == [3, 4]  # orange, red (yellow came in the history)
    assert deferred.levels() == at_once.levels()
    assert deferred.metrics() == at_once.metrics()
    assert deferred.standing_forecasts() == at_once.standing_forecasts()
    assert made == [len([c for c in replayed if c.rule_id == "forecast"])]
    assert made[0] >= 1


def test_without_a_forecast_rule_nothing_is_deferred() -> None:
    engine = AlarmEngine([rules()[1]], "reference")
    engine.replay({CREEK: history()[CREEK]}, defer_forecasts=True)
    assert not engine.catching_up()
    assert engine.catch_up() == 0
    assert engine.finish_catch_up() == []


def test_finishing_before_the_catch_up_ran_is_refused() -> None:
    engine = AlarmEngine(rules(), "reference")
    engine.replay(history(), defer_forecasts=True)
    with pytest.raises(RuntimeError, match="before catch_up finished"):
        engine.finish_catch_up()
    assert engine.catching_up("forecast")
