"""A slope rule's failure forecast as its gateway last reported it, for the console.

A gateway evaluates its forecast every hour. Each alarm event (a level change) carries the
forecast of that hour: gateways from 0.14 on send the numbers (``AlarmEvent.forecast``);
from older ones only the lead time (the event's ``metric``) and the words are known, and
the failure time is the lead time after the sample. While a rule is raised, newer
gateways also send, with every health report, the rule's newest forecast that passed its
evidence test (``Health.forecasts``): a latched red's event grows old, that one does not.
The newer of the two is the fleet's forecast, and it says which it is. The console's slope
page and the 叫应 calls (``fleet.call_forecast``) read it the same way (``rule_forecast``).

This module must never make a forecast of its own, nor present an old one as current:
it says when the forecast is from, and says plainly when there is none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from fleet.repository import Gateway, Repository, StoredEvent
from protocol.events import ALARM_EVENT_KIND, AlarmEvent, StandingForecast
from protocol.limits import MIN_TIMESTAMP

#: Rule kinds whose alarms carry a failure time (``SiteRule.kind``).
SLOPE_FORECAST_KINDS = frozenset({"failure_forecast", "inverse_velocity"})

ForecastState = Literal["forecast", "not_accelerating", "no_forecast_yet", "not_reported"]
#: Where the forecast shown comes from: the rule's newest alarm event, or the newest
#: accepted forecast its gateway reported with its health since.
ForecastSource = Literal["level_change", "latest"]


@dataclass(frozen=True, slots=True)
class SiteForecast:
    """What the console shows of one rule's forecast.

    ``state``: ``forecast`` (a failure time is predicted), ``not_accelerating`` (the
    gateway found no failure in sight), ``no_forecast_yet`` (too little record to fit),
    ``not_reported`` (no alarm event of the rule has reached the fleet). ``source``: see
    ``ForecastSource``; ``level`` is always the rule's level from its newest alarm event.
    """

    state: ForecastState
    source: ForecastSource = "level_change"
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


def standing_of(health: Mapping[str, Any] | None, rule_id: str) -> StandingForecast | None:
    """The rule's standing forecast in a stored health report; None if it has none."""
    forecasts = (health or {}).get("forecasts")
    found = forecasts.get(rule_id) if isinstance(forecasts, Mapping) else None
    if not isinstance(found, Mapping):
        return None
    standing = StandingForecast.tolerant(found)
    if standing.at is None or standing.failure_t is None or standing.lead_h is None:
        return None
    # Made before the report that carries it, on the same clock: a time ahead of that is
    # no forecast, and would outrank every later level change.
    sent = health.get("ts") if health else None
    if not isinstance(sent, int | float) or not MIN_TIMESTAMP <= standing.at <= sent:
        return None
    return standing


def newest_forecast(
    newest: StoredEvent | None, standing: Iterable[tuple[str, StandingForecast]]
) -> SiteForecast:
    """``site_forecast`` of the newest event, or a gateway's standing forecast if newer.

    ``standing`` pairs a gateway id with the forecast in its last health report. One counts
    only while the event has the rule raised, and only when made after the event's sample.
    """
    reported = site_forecast(newest)
    if reported.level <= 0:
        return reported
    candidates = [(f.at, g, f) for g, f in standing if f.at is not None]
    if not candidates:
        return reported
    at, gateway_id, latest = max(candidates, key=lambda item: item[0])
    if reported.as_of is not None and at <= reported.as_of:
        return reported
    return replace(
        reported,
        state="forecast",
        source="latest",
        gateway_id=gateway_id,
        as_of=at,
        lead_h=latest.lead_h,
        failure_t=latest.failure_t,
        failure_t_low=latest.failure_t_low,
        failure_t_high=latest.failure_t_high,
        alpha=latest.alpha,
        velocity_mm_day=latest.velocity_mm_day,
        evidence=latest.evidence,
        words=None,
    )


def newest_alarm_event(
    repository: Repository, gateways: Sequence[Gateway], rule_id: str
) -> StoredEvent | None:
    """The rule's newest alarm event from any of ``gateways``, or None."""
    gateway_ids = [g.id for g in gateways]
    newest = repository.events(gateway_ids, kinds=[ALARM_EVENT_KIND], subject=rule_id, limit=1)
    return newest[0] if newest else None


def standing_forecasts(
    gateways: Sequence[Gateway], rule_id: str
) -> list[tuple[str, StandingForecast]]:
    """Each gateway's standing forecast of the rule in its last health report, if any."""
    return [(g.id, f) for g in gateways if (f := standing_of(g.health, rule_id))]


def rule_forecast(
    repository: Repository, gateways: Sequence[Gateway], rule_id: str
) -> SiteForecast:
    """The rule's forecast as the fleet shows it, from the store (``newest_forecast``)."""
    newest = newest_alarm_event(repository, gateways, rule_id)
    return newest_forecast(newest, standing_forecasts(gateways, rule_id))
