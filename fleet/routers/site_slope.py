"""A slope site's failure forecast and inverse-velocity picture, for the console's site page.

``GET /api/v1/sites/{site_id}/slope``: for each failure-forecast (or inverse-velocity)
rule of the site, the forecast its gateway last reported (see ``fleet.site_forecast``) and
1/v of the rule's channel from the stored readings (hourly means, see
``fleet.inverse_velocity``), with the rule's level horizons. Read only, viewer role, like
the rest of ``/api/v1/sites``; it must never compute a forecast of its own nor hide that
there is none.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import Field

from fleet.dependencies import TOKEN_REFUSALS, FiniteQuery, Repo, refusals, require
from fleet.inverse_velocity import BIN_S, METHOD, inverse_velocity
from fleet.repository import Gateway, NotFoundError, Repository, Role
from fleet.schemas import SITE_ID_PATTERN, Out
from fleet.site_forecast import (
    SLOPE_FORECAST_KINDS,
    ForecastSource,
    ForecastState,
    rule_forecast,
)
from protocol import SiteSummary
from protocol.levels import LEVEL_NAMES
from protocol.payloads import LevelValues

router = APIRouter(
    prefix="/api/v1/sites",
    tags=["sites"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)

SiteIdPath = Annotated[str, Path(pattern=SITE_ID_PATTERN, examples=["slope-road"])]
#: The picture's default span: a failure forecast's default window (14 days).
DEFAULT_SPAN_S = 14 * 86400.0
#: Longest span asked for at once: the longest forecast window a rule may have.
MAX_SPAN_S = 60 * 86400.0


class ForecastOut(Out):
    """A rule's failure forecast as its gateway last reported it (see ``fleet.site_forecast``)."""

    state: ForecastState = Field(
        description="forecast | not_accelerating | no_forecast_yet | not_reported"
    )
    source: ForecastSource = Field(
        description="level_change: the rule's newest alarm event; latest: the newest "
        "accepted forecast its gateway reported with its health since (while raised)"
    )
    gateway_id: str | None
    as_of: float | None = Field(description="time of the sample the forecast was made at")
    level: int = Field(description="the rule's level reported with it, 0..4")
    level_name: str
    lead_h: float | None
    failure_t: float | None
    failure_t_low: float | None = Field(description="95 % interval; null when not bounded")
    failure_t_high: float | None
    alpha: float | None
    velocity_mm_day: float | None
    evidence: float | None
    words: str | None = Field(
        description="the gateway's own words for the level change (null for source latest)"
    )


class InversePointOut(Out):
    """One hour: velocity (channel unit per day) and 1/v (days per unit), mid-hour."""

    t: float
    velocity: float
    inverse: float


class InverseVelocityOut(Out):
    """1/v of the rule's channel over ``since..until`` and the hours left out."""

    gateway_id: str | None
    method: str
    bin_s: float
    hours: int = Field(description="hours with a mean of good readings")
    not_moving: int = Field(description="hours left out: velocity zero or negative")
    gaps: int = Field(description="hours left out: too few means around them to fit")
    points: list[InversePointOut]
    problem: str | None = Field(description="why there are no readings to draw, if so")


class SlopeRuleOut(Out):
    """One slope rule: its channel, level horizons, forecast and 1/v picture."""

    rule: str
    kind: str
    channel: str | None
    unit: str | None
    horizons_h: LevelValues
    forecast: ForecastOut
    inverse_velocity: InverseVelocityOut


class SlopeOut(Out):
    """A site's slope rules (empty for a site without one)."""

    site_id: str
    since: float
    until: float
    rules: list[SlopeRuleOut]


def _summary(gateways: list[Gateway]) -> SiteSummary | None:
    told = [g for g in gateways if g.site is not None]
    if not told:
        return None
    return SiteSummary.model_validate(max(told, key=lambda g: g.state_at or 0.0).site)


def _picture(
    repository: Repository,
    gateway_ids: list[str],
    channel: str | None,
    since: float,
    until: float,
) -> InverseVelocityOut:
    """1/v from the first of ``gateway_ids`` that has readings of ``channel``."""
    problem = "the rule names no channel"
    for gateway_id in gateway_ids if channel else []:
        try:
            buckets = repository.reading_buckets(gateway_id, channel or "", since, until, BIN_S)
        except NotFoundError as exc:
            problem = str(exc)
            continue
        iv = inverse_velocity(buckets)
        return InverseVelocityOut(
            gateway_id=gateway_id,
            method=METHOD,
            bin_s=BIN_S,
            hours=iv.hours,
            not_moving=iv.not_moving,
            gaps=iv.gaps,
            points=[
                InversePointOut(t=p.t, velocity=p.velocity, inverse=p.inverse) for p in iv.points
            ],
            problem=None,
        )
    return InverseVelocityOut(
        gateway_id=None,
        method=METHOD,
        bin_s=BIN_S,
        hours=0,
        not_moving=0,
        gaps=0,
        points=[],
        problem=problem if gateway_ids else "the site has no gateway",
    )


@router.get("/{site_id}/slope", responses=refusals(400, 404))
def get_slope(
    site_id: SiteIdPath,
    repository: Repo,
    since: Annotated[
        float | None, FiniteQuery(description="epoch seconds; default until - 14 days")
    ] = None,
    until: Annotated[float | None, FiniteQuery(description="epoch s; default now")] = None,
) -> SlopeOut:
    """The site's failure forecasts and their inverse-velocity pictures."""
    until = time.time() if until is None else until
    since = until - DEFAULT_SPAN_S if since is None else since
    if since >= until:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"since ({since}) must be before until ({until})"
        )
    if until - since > MAX_SPAN_S:
        msg = f"since..until spans {(until - since) / 86400:.1f} days; at most 60: shorten it"
        raise HTTPException(status.HTTP_400_BAD_REQUEST, msg)
    gateways = repository.site_gateways(site_id)
    if not gateways:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway of site {site_id!r}")
    summary = _summary(gateways)
    gateway_ids = [g.id for g in gateways]
    # Hourly means start on the hour, so that every hour is one bin.
    since = math.floor(since / BIN_S) * BIN_S
    units = {c.channel: c.unit for c in summary.channels} if summary else {}
    rules = []
    for rule in summary.rules if summary else []:
        if rule.kind not in SLOPE_FORECAST_KINDS:
            continue
        forecast = rule_forecast(repository, gateways, rule.id)
        # The gateway that reported the forecast first: its readings are the ones it fitted.
        ordered = sorted(gateway_ids, key=lambda g: g != forecast.gateway_id)
        rules.append(
            SlopeRuleOut(
                rule=rule.id,
                kind=rule.kind,
                channel=rule.channel,
                unit=units.get(rule.channel or ""),
                horizons_h=rule.horizons_h,
                forecast=ForecastOut(
                    state=forecast.state,
                    source=forecast.source,
                    gateway_id=forecast.gateway_id,
                    as_of=forecast.as_of,
                    level=forecast.level,
                    level_name=LEVEL_NAMES[forecast.level],
                    lead_h=forecast.lead_h,
                    failure_t=forecast.failure_t,
                    failure_t_low=forecast.failure_t_low,
                    failure_t_high=forecast.failure_t_high,
                    alpha=forecast.alpha,
                    velocity_mm_day=forecast.velocity_mm_day,
                    evidence=forecast.evidence,
                    words=forecast.words,
                ),
                inverse_velocity=_picture(repository, ordered, rule.channel, since, until),
            )
        )
    return SlopeOut(site_id=site_id, since=since, until=until, rules=rules)
