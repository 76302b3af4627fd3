"""Sites as the county's map sees them: where, how alarmed, and their gateways' health.

A site is known by its gateways; its name, coordinates, channels and rules are what its
newest gateway said of its site file (``SiteSummary`` with the ``online`` state). Read
only: nothing here changes a site or reaches a gateway.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import Field

from fleet.dependencies import TOKEN_REFUSALS, Repo, refusals, require
from fleet.repository import Gateway, Role
from fleet.schemas import SITE_ID_PATTERN, GatewayStatus, Out, gateway_status
from fleet.station_ids import DeviceKind, device_kind
from protocol import SiteChannel, SiteRule, SiteSummary
from protocol.levels import LEVEL_NAMES

router = APIRouter(
    prefix="/api/v1/sites",
    tags=["sites"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)

SiteIdPath = Annotated[str, Path(pattern=SITE_ID_PATTERN, examples=["creek-village"])]


class SiteGatewayOut(Out):
    """One gateway of a site, as the health strip shows it."""

    gateway_id: str
    kind: DeviceKind = Field(description="gateway, or sl651_station (reports only; no OTA)")
    state: GatewayStatus
    last_seen: float | None
    backlog_readings: int | None
    backlog_events: int | None
    battery_v: float | None
    supply_v: float | None
    faults: int = Field(description="sensor fault events since the agent started")
    agent_version: str | None
    config_version: str | None
    health_at: float | None = Field(description="the gateway's own clock in its last health")
    clock_offset_s: float | None = Field(
        description=(
            "health_at - last_seen: how far the gateway's clock is ahead (+) or behind (-) "
            "the fleet's, give or take a health interval (the last message seen may have "
            "come after the health); null without health"
        )
    )

    @classmethod
    def of(cls, gateway: Gateway, now: float) -> SiteGatewayOut:
        """The strip's view of ``gateway`` as of ``now``."""
        health: dict[str, Any] = gateway.health or {}
        return cls(
            gateway_id=gateway.id,
            kind=device_kind(gateway.id),
            state=gateway_status(gateway, now),
            last_seen=gateway.last_seen,
            backlog_readings=health.get("backlog_readings"),
            backlog_events=health.get("backlog_events"),
            battery_v=health.get("battery_v"),
            supply_v=health.get("supply_v"),
            faults=sum(int(n) for n in (health.get("sensor_faults") or {}).values()),
            agent_version=gateway.agent_version,
            config_version=health.get("config_version"),
            health_at=gateway.health_at,
            clock_offset_s=clock_offset(gateway),
        )


def clock_offset(gateway: Gateway) -> float | None:
    """The gateway's clock against the fleet's: its last health's time minus when last seen.

    Both are stamped as the health is stored, the first by the gateway and the second by
    the fleet, so a clock off by hours shows as hours. Later messages move ``last_seen``
    on by up to a health interval (60 s), so the figure is coarse: the console calls a
    clock in step within five minutes.
    """
    if gateway.health_at is None or gateway.last_seen is None:
        return None
    return round(gateway.health_at - gateway.last_seen, 1)


class SiteOut(Out):
    """A site on the map: where (null when its site file gives no ``lat``/``lon``), how alarmed."""

    site_id: str
    name: str
    lat: float | None
    lon: float | None
    level: int = Field(description="highest level among its gateways' active alarms, 0..4")
    level_name: str
    gateways: list[SiteGatewayOut]


class SiteDetail(SiteOut):
    """A site with what its site file says it measures and how it alarms."""

    channels: list[SiteChannel]
    rules: list[SiteRule]


def _summary(gateways: list[Gateway]) -> SiteSummary | None:
    """The newest site summary among ``gateways`` (the last to come online tells)."""
    told = [g for g in gateways if g.site is not None]
    if not told:
        return None
    newest = max(told, key=lambda g: g.state_at or 0.0)
    return SiteSummary.model_validate(newest.site)


def _site(site_id: str, gateways: list[Gateway], now: float) -> tuple[SiteOut, SiteSummary | None]:
    summary = _summary(gateways)
    level = max((g.alarm_level for g in gateways), default=0)
    out = SiteOut(
        site_id=site_id,
        name=summary.name if summary else site_id,
        lat=summary.lat if summary else None,
        lon=summary.lon if summary else None,
        level=level,
        level_name=LEVEL_NAMES[level],
        gateways=[SiteGatewayOut.of(g, now) for g in gateways],
    )
    return out, summary


def _by_site(repository: Repo) -> dict[str, list[Gateway]]:
    sites: dict[str, list[Gateway]] = {}
    for gateway in repository.list_gateways():
        sites.setdefault(gateway.site_id, []).append(gateway)
    return sites


@router.get("")
def list_sites(repository: Repo) -> list[SiteOut]:
    """Every site with a gateway, most alarmed first, then by id."""
    now = time.time()
    sites = [_site(site_id, gws, now)[0] for site_id, gws in _by_site(repository).items()]
    return sorted(sites, key=lambda s: (-s.level, s.site_id))


@router.get("/{site_id}", responses=refusals(404))
def get_site(site_id: SiteIdPath, repository: Repo) -> SiteDetail:
    """One site with its channels and rules (empty until a gateway has told them)."""
    gateways = repository.site_gateways(site_id)
    if not gateways:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway of site {site_id!r}")
    out, summary = _site(site_id, gateways, time.time())
    return SiteDetail(
        **out.model_dump(),
        channels=list(summary.channels) if summary else [],
        rules=list(summary.rules) if summary else [],
    )
