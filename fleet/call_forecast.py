"""The failure forecast in a 叫应 call's words, for the persons who must act on it.

A slope rule's red tells a village head that the slope may fail; what he must decide is
how soon to move people. So a call for a rule whose alarm carries a failure forecast
says, in the county's time, the earliest time of the forecast's 95 % interval and the
most likely time, from the forecast the console shows (``fleet.site_forecast``): the
red's own, or the gateway's newer one while the red stands. Earliest first, because
that is the safe side. A rule without a forecast gets no words.

This module only words a forecast; it never makes one, and never words one it was not
given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from fleet.escalation_store import Escalation
from fleet.repository import Repository
from fleet.site_forecast import (
    SiteForecast,
    newest_alarm_event,
    newest_forecast,
    standing_forecasts,
)
from protocol.county_clock import CHINA_STANDARD_TIME_H
from protocol.events import AlarmEvent
from protocol.forecast_words import failure_words


def forecast_words(forecast: SiteForecast, utc_offset_h: float) -> str | None:
    """The forecast as a call says it (``protocol.forecast_words``); None without a time.

    None when there is no failure time to tell (no forecast, or not accelerating).
    """
    likely = forecast.failure_t
    if forecast.state != "forecast" or likely is None or not math.isfinite(likely):
        return None
    return failure_words(likely, forecast.failure_t_low, utc_offset_h)


def alarm_forecast(repository: Repository, site_id: str, rule_id: str) -> SiteForecast | None:
    """The forecast of the site's rule, if the rule's newest alarm event carries one.

    Other rules' events (rain, water level) carry no forecast, so they get None.
    """
    gateways = repository.site_gateways(site_id)
    newest = newest_alarm_event(repository, gateways, rule_id)
    if newest is None or AlarmEvent.tolerant(newest.detail).forecast is None:
        return None
    return newest_forecast(newest, standing_forecasts(gateways, rule_id))


def forecast_reader(
    repository: Repository, utc_offset_h: float = CHINA_STANDARD_TIME_H
) -> Callable[[Escalation], str | None]:
    """What the 叫应 engine calls (on a worker thread) for an escalation's forecast words."""

    def read(escalation: Escalation) -> str | None:
        forecast = alarm_forecast(repository, escalation.site_id, escalation.rule)
        return None if forecast is None else forecast_words(forecast, utc_offset_h)

    return read
