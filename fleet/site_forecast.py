"""A slope rule's failure forecast as its gateway last reported it, for the console.

A gateway evaluates its forecast every hour but reports it only with the rule's alarm
events (each level change), so the newest of those is the fleet's forecast, as of the
sample that decided it. Gateways from 0.14 on send the numbers (``AlarmEvent.forecast``);
from older ones only the lead time (the event's ``metric``) and the words are known, and
the failure time is the lead time after the sample.

This module must never make a forecast of its own, nor present an old one as current:
it says when the forecast is from, and says plainly when there is none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from fleet.repository import StoredEvent
from protocol.events import AlarmEvent

#: Rule kinds whose alarms carry a failure time (``SiteRule.kind``).
SLOPE_FORECAST_KINDS = frozenset({"failure_forecast", "inverse_velocity"})

ForecastState = Literal["forecast", "not_accelerating", "no_forecast_yet", "not_reported"]


@dataclass(frozen=True, slots=True)
class SiteForecast:
    """What the console shows of one rule's forecast.

    ``state``: ``forecast`` (a failure time is predicted), ``not_accelerating`` (the
    gateway found no failure in sight), ``no_forecast_yet`` (too little record to fit),
    ``not_reported`` (no alarm event of the rule has reached the fleet).
    """

    state: ForecastState
    gateway_id: str | None = None
    as_of: float | None = None
    level: int = 0
    lead_h: float | None = None
    failure_t: float | None = None
    failure_t_low: float | None = None
    failure_t_high: float | None = None
    alpha: float | None = None
    velocity_mm_day: float | None = None
    evidence: float | None = None
    words: str | None = None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def site_forecast(newest: StoredEvent | None) -> SiteForecast:
    """The forecast reported with ``newest``, the rule's newest alarm event (or none)."""
    if newest is None:
        return SiteForecast("not_reported")
    event = AlarmEvent.tolerant(newest.detail)
    numbers = event.forecast
    as_of = _finite(event.at) or newest.ts
    reported = SiteForecast(
        "not_reported",
        gateway_id=newest.gateway_id,
        as_of=as_of,
        level=newest.level or 0,
        velocity_mm_day=numbers.velocity_mm_day if numbers else None,
        words=event.detail,
    )
    lead_h = event.metric
    if lead_h is None or math.isnan(lead_h):
        return replace(reported, state="no_forecast_yet")
    if math.isinf(lead_h):
        return replace(reported, state="not_accelerating")
    failure_t = _finite(numbers.failure_t) if numbers else None
    return replace(
        reported,
        state="forecast",
        lead_h=lead_h,
        failure_t=failure_t if failure_t is not None else as_of + lead_h * 3600.0,
        failure_t_low=numbers.failure_t_low if numbers else None,
        failure_t_high=numbers.failure_t_high if numbers else None,
        alpha=numbers.alpha if numbers else None,
        evidence=numbers.evidence if numbers else None,
    )
