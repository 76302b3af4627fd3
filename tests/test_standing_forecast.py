"""The standing forecast: once a level rose, the newest accepted forecast, not the first.

A latched red carries the forecast of the hour it rose; the rule goes on forecasting every
hour. ``AlarmEngine.standing_forecasts`` is what the gateway reports of it with its health.
"""

import numpy as np
import pytest

from alarm_engine import AlarmEngine
from alarm_engine.details import FORECAST_VALUES
from hardware_sim.slope_corpus import ORIGIN, tertiary_displacement
from site_schema.rule_specs import FailureForecastRule

pytest.importorskip("numba")

HOUR = 3600.0
DAY = 86400.0
CHANNEL = "scarp.extension"


def forecast_rule() -> FailureForecastRule:
    return FailureForecastRule(
        id="forecast", channel=CHANNEL, horizons_h=(None, 168.0, 72.0, 36.0), latch_from=4
    )


def failing_record(stops_h: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Hourly, noise-free: 0.5 mm/day creep, alpha = 2 over 100 h; ends ``stops_h`` early."""
    failure_t = ORIGIN + 20 * DAY + 0.5
    t = np.arange(ORIGIN, failure_t - stops_h * HOUR, HOUR)
    x = 100.0 + 0.5 / DAY * (t - ORIGIN)
    return t, x + tertiary_displacement(failure_t - t, 0.5, 100 * HOUR, 2.0), failure_t


def test_after_a_latched_red_the_standing_forecast_is_the_newest_hours_and_exact():
    """Noise-free alpha = 2, hourly: red latches a day or more ahead.

    6 h before the failure the forecast standing is the latest hour's, within 1 % of the
    failure, while the red's is a day old.
    """
    t, x, failure_t = failing_record(stops_h=6)
    engine = AlarmEngine([forecast_rule()], "numba")
    red = None
    for k in range(t.shape[0]):
        changes = engine.push(CHANNEL, float(t[k]), float(x[k]), True)
        rose = [c for c in changes if c.kind == "rise"]
        if not rose and engine.levels()["forecast"] == 0:
            assert engine.standing_forecasts() == {}  # nothing is news while the rule is normal
        red = red or next((c for c in rose if c.new == 4), None)
    assert red is not None
    assert failure_t - red.t >= 24 * HOUR
    assert engine.levels()["forecast"] == 4  # latched: no newer level change will come

    standing = engine.standing_forecasts()["forecast"]
    values = dict(zip(FORECAST_VALUES, standing.values, strict=True))
    assert t[-1] - HOUR < standing.at <= t[-1]  # this hour's evaluation
    assert standing.at - red.t >= 18 * HOUR
    remaining = failure_t - standing.at
    assert abs(values["failure_t"] - failure_t) / remaining < 0.01
    # Noise-free, the interval closes on the point: it holds the failure to within 1 %.
    slack = 0.01 * remaining
    assert values["failure_t_low"] - slack <= failure_t <= values["failure_t_high"] + slack
    # The red's own forecast, as the level change carried it, is the old one.
    assert red.values["failure_t"] != values["failure_t"]


def test_a_restarts_replay_leaves_the_forecast_the_live_samples_left_standing():
    """Red latched; then the extensometer reads back for six hours (a re-tensioned wire).

    The first of those hours still forecasts (the failure further off); from the second on
    the forecasts fail their evidence test, so that first one stands. A gateway restarted
    then replays its stored record in one batch: the same forecast must stand as live,
    not none.
    """
    t, x, failure_t = failing_record(stops_h=12)
    t = np.concatenate([t, t[-1] + HOUR * np.arange(1, 7)])
    x = np.concatenate([x, x[-1] - 0.3 * np.arange(1, 7)])
    live = AlarmEngine([forecast_rule()], "numba")
    for k in range(t.shape[0]):
        live.push(CHANNEL, float(t[k]), float(x[k]), True)
    restarted = AlarmEngine([forecast_rule()], "numba")
    restarted.replay({CHANNEL: (t, x, np.ones(t.shape[0], dtype=bool))})

    assert live.levels()["forecast"] == restarted.levels()["forecast"] == 4
    latest = restarted.metrics()["forecast"]
    assert latest["lead_h"] > 100.0  # the newest forecast recedes: it failed its test
    standing = live.standing_forecasts()
    assert restarted.standing_forecasts() == standing
    made = standing["forecast"]
    assert made.at == t[-6]  # the first hour the readings went back
    values = dict(zip(FORECAST_VALUES, made.values, strict=True))
    assert values["lead_h"] < latest["lead_h"]
    assert made.at < values["failure_t"] < failure_t + DAY
