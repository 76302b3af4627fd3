"""A site's recent events for the console: alarms, acknowledgements, 叫应, actuations.

``GET /api/v1/sites/{site_id}/events``, newest first: what its gateways reported (alarm
rises and falls, acknowledgements at the gateway, village calls and answers, the sirens
and lights switching, broadcasts) and what the county recorded on their alarms
(acknowledgements and answers taken at the fleet). Read only, viewer role.

Each event is told in named fields picked for the page, never the gateway's raw detail:
this module must never pass on a phone number (masked or not) or a player's command line.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import Field

from fleet.dependencies import TOKEN_REFUSALS, FiniteQuery, Repo, refusals, require
from fleet.repository import Alarm, Role, StoredEvent
from fleet.schemas import SITE_ID_PATTERN, Out
from protocol.events import (
    ACK_EVENT_KIND,
    ACTUATION_EVENT_KIND,
    ALARM_EVENT_KIND,
    BROADCAST_EVENT_KIND,
    VILLAGE_ANSWER_EVENT_KIND,
    VILLAGE_CALL_EVENT_KIND,
    AckEvent,
    ActuationEvent,
    AlarmEvent,
)
from protocol.levels import LEVEL_NAMES

router = APIRouter(
    prefix="/api/v1/sites",
    tags=["sites"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)

SiteIdPath = Annotated[str, Path(pattern=SITE_ID_PATTERN, examples=["creek-village"])]
#: Gateway event kinds the panel shows.
SHOWN_KINDS = (
    ALARM_EVENT_KIND,
    ACK_EVENT_KIND,
    VILLAGE_CALL_EVENT_KIND,
    VILLAGE_ANSWER_EVENT_KIND,
    ACTUATION_EVENT_KIND,
    BROADCAST_EVENT_KIND,
)
#: Kinds of what the county recorded on an alarm at the fleet.
FLEET_ACK: Final = "fleet_ack"
FLEET_ANSWER: Final = "fleet_answer"
EventKind = Literal[
    "alarm",
    "ack",
    "village_call",
    "village_answer",
    "actuation",
    "broadcast",
    "fleet_ack",
    "fleet_answer",
]
MAX_EVENTS = 500
_TEXT_MAX = 200


class SiteEventOut(Out):
    """One event of the site, in the fields the panel shows (null when not said)."""

    ts: float
    gateway_id: str
    kind: EventKind
    rule: str | None = Field(None, description="the rule (alarm, ack, 叫应) it is about")
    level: int | None = Field(None, description="level after it, 0..4 (with level_name)")
    level_name: str | None = None
    change: Literal["rise", "fall", "ack"] | None = Field(None, description="alarm events")
    words: str | None = Field(None, description="the gateway's words, or the county's note")
    by: str | None = Field(None, description="who acknowledged, or recorded an answer")
    person: str | None = Field(None, description="who was called, or who answered")
    via: str | None = None
    status: str | None = Field(None, description="a village call's: sending, sent, failed")
    outputs: dict[str, str | None] = Field(
        default_factory=dict, description="actuation: each actuator's pattern, null when off"
    )
    clip: str | None = Field(None, description="broadcast: the clip played")


def _text(value: Any) -> str | None:
    return str(value)[:_TEXT_MAX] if isinstance(value, str | int | float) else None


def _level(level: int | None) -> dict[str, Any]:
    if level is None or not 0 <= level <= 4:
        return {}
    return {"level": level, "level_name": LEVEL_NAMES[level]}


def from_gateway(event: StoredEvent) -> SiteEventOut:
    """The panel's fields of a gateway event of one of ``SHOWN_KINDS``."""
    common: dict[str, Any] = {"ts": event.ts, "gateway_id": event.gateway_id, **_level(event.level)}
    detail = event.detail
    match event.kind:
        case "alarm":
            alarm = AlarmEvent.tolerant(detail)
            return SiteEventOut(
                kind="alarm", rule=event.subject, change=alarm.kind, words=alarm.detail, **common
            )
        case "ack":
            return SiteEventOut(
                kind="ack", rule=event.subject, by=AckEvent.tolerant(detail).by, **common
            )
        case "village_call":
            return SiteEventOut(
                kind="village_call",
                rule=event.subject,
                person=_text(detail.get("person")),
                via=_text(detail.get("via")),
                status=_text(detail.get("status")),
                **common,
            )
        case "village_answer":
            return SiteEventOut(
                kind="village_answer",
                rule=event.subject,
                person=_text(detail.get("person")),
                via=_text(detail.get("via")),
                **common,
            )
        case "actuation":
            actuation = ActuationEvent.tolerant(detail)
            return SiteEventOut(
                kind="actuation", words=actuation.cause, outputs=actuation.patterns, **common
            )
        case _:
            return SiteEventOut(kind="broadcast", clip=_text(event.subject), **common)


def from_fleet(alarm: Alarm, since: float, until: float) -> list[SiteEventOut]:
    """What the county recorded on ``alarm`` within ``since..until``."""
    out: list[SiteEventOut] = []
    common: dict[str, Any] = {"gateway_id": alarm.gateway_id, "rule": alarm.rule}
    at = alarm.acknowledged_at
    # An acknowledgement at the gateway is its own ack event already.
    if at is not None and since <= at < until and alarm.ack_origin != "gateway":
        out.append(
            SiteEventOut(
                ts=at, kind=FLEET_ACK, by=alarm.acknowledged_by, words=alarm.ack_note, **common
            )
        )
    for receipt in alarm.receipts:
        # Answers taken at the gateway are its own village_answer events already.
        if since <= receipt.confirmed_at < until and receipt.recorded_by != "gateway":
            out.append(
                SiteEventOut(
                    ts=receipt.confirmed_at,
                    kind=FLEET_ANSWER,
                    person=receipt.person,
                    via=receipt.via,
                    by=receipt.recorded_by,
                    words=receipt.note,
                    **common,
                )
            )
    return out


@router.get("/{site_id}/events", responses=refusals(400, 404))
def get_site_events(
    site_id: SiteIdPath,
    repository: Repo,
    since: Annotated[
        float | None, FiniteQuery(description="epoch seconds; default until - 7 days")
    ] = None,
    until: Annotated[
        float | None, FiniteQuery(description="epoch s, exclusive; default now")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS)] = 50,
) -> list[SiteEventOut]:
    """The site's events with ``since <= ts < until``, newest first, at most ``limit``."""
    until = time.time() if until is None else until
    since = until - 7 * 86400 if since is None else since
    if since >= until:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"since ({since}) must be before until ({until})"
        )
    gateway_ids = [g.id for g in repository.site_gateways(site_id)]
    if not gateway_ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no gateway of site {site_id!r}")
    stored = repository.events(
        gateway_ids, kinds=SHOWN_KINDS, since=since, until=until, limit=limit
    )
    events = [from_gateway(e) for e in stored]
    alarms = repository.alarms(
        active=None,
        gateway_ids=gateway_ids,
        since=since,
        until=until,
        limit=MAX_EVENTS * len(gateway_ids),
    )
    for alarm in alarms:
        events.extend(from_fleet(alarm, since, until))
    events.sort(key=lambda e: e.ts, reverse=True)
    return events[:limit]
