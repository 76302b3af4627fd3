"""The standing forecast: once a level rose, the newest accepted forecast, not the first.

A latched red carries the forecast of the hour it rose; the rule goes on forecasting every
hour. ``AlarmEngine.standing_forecasts`` is what the gateway reports of it with its health.
"""

import math

import numpy as np
import pytest

from alarm_engine import AlarmEngine
from alarm_engine.details import FORECAST_VALUES
from alarm_engine.standing_forecast import StandingForecasts
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


def test_after_a_latched_red_the_standing_forecast_is_the_newest_hours_and_exact():
    """Noise-free alpha = 2, hourly: red latches a day or more ahead.

    6 h before the failure the forecast standing is the latest hour's, within 1 % of the
    failure, while the red's is a day old.
    """
    failure_t = ORIGIN + 20 * DAY + 0.5
    t = np.arange(ORIGIN, failure_t - 6 * HOUR, HOUR)
    x = (
        100.0
        + 0.5 / DAY * (t - ORIGIN)
        + tertiary_displacement(failure_t - t, 0.5, 100 * HOUR, 2.0)
    )
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


def test_a_forecast_that_fails_its_evidence_test_leaves_the_last_accepted_one_standing():
    rule = forecast_rule()
    standing = StandingForecasts([rule])
    at = ORIGIN + 10 * DAY
    passed = (30.0, at + 30 * HOUR, at + 26 * HOUR, at + 35 * HOUR, 2.0, 12.0, 400.0)
    standing.observe("forecast", passed)
    first = standing.latest("forecast")
    assert first is not None
    assert first.at == pytest.approx(at)
    assert first.values == passed

    later = at + HOUR
    for failed in (
        (29.0, later + 29 * HOUR, later + 25 * HOUR, later + 33 * HOUR, 2.0, 12.0, 1.0),  # evidence
        (29.0, later + 29 * HOUR, later + 25 * HOUR, later + 33 * HOUR, 9.0, 12.0, 400.0),  # alpha
        (29.0, later + 29 * HOUR, later, math.inf, 2.0, 12.0, 400.0),  # unbounded interval
        (math.inf, math.inf, math.inf, math.inf, math.nan, 3.0, 0.5),  # no acceleration
        tuple([math.nan] * 7),  # too little record
    ):
        standing.observe("forecast", failed)
        assert standing.latest("forecast") == first

    newer = tuple(v + HOUR if k in (1, 2, 3) else v for k, v in enumerate(passed))
    newer = (newer[0] - 1.0, *newer[1:])  # an hour later, an hour less to go
    standing.observe("forecast", newer)
    latest = standing.latest("forecast")
    assert latest is not None
    assert latest.at == pytest.approx(at + 2 * HOUR)
    standing.observe("another rule", passed)  # not a forecast rule: ignored
    assert standing.latest("another rule") is None
