"""Alarms: active and history, acknowledge (operator), confirm receipt of the warning (operator).

Acknowledging also queues an ``ack_alarm`` command, so a latched siren at the gateway is
released; the alarm stays active until the gateway reports its level back to normal. An
SL 651 station takes no command, so none is queued for a station's alarm.
A receipt is an answer to 叫应 too: it stops the alarm's escalation. One alarm's view
carries its escalation record (persons by name and tier, never their contacts).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from fleet.dependencies import (
    TOKEN_REFUSALS,
    Calls,
    FiniteQuery,
    Ingest,
    Operator,
    Repo,
    RowIdPath,
    refusals,
    require,
)
from fleet.escalation_schemas import AlarmDetailOut
from fleet.repository import ConflictError, NotFoundError, Role
from fleet.schemas import AcknowledgeIn, AlarmOut, ReceiptIn
from fleet.station_ids import is_station
from protocol import ACK_ALARM_COMMAND, AckAlarmArgs

router = APIRouter(
    prefix="/api/v1/alarms",
    tags=["alarms"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)


@router.get("")
def list_alarms(
    repository: Repo,
    active: Annotated[bool | None, Query(description="true: active; false: ended")] = None,
    gateway_id: str | None = None,
    since: Annotated[
        float | None, FiniteQuery(description="still active at or after (epoch s)")
    ] = None,
    until: Annotated[float | None, FiniteQuery(description="raised before (epoch s)")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> list[AlarmOut]:
    """Alarms, newest first."""
    alarms = repository.alarms(
        active=active,
        gateway_ids=None if gateway_id is None else [gateway_id],
        since=since,
        until=until,
        limit=limit,
    )
    return [AlarmOut.of(a) for a in alarms]


#: At most this many alarms in one ``/details`` answer (the overview shows 50 at most).
MAX_DETAILS = 100


@router.get("/details")
def alarm_details(
    repository: Repo,
    calls: Calls,
    ids: Annotated[
        str,
        Query(
            pattern=rf"^[0-9]{{1,18}}(,[0-9]{{1,18}}){{0,{MAX_DETAILS - 1}}}$",
            description=f"alarm ids, comma-separated, at most {MAX_DETAILS}",
            examples=["12,15,31"],
        ),
    ],
) -> list[AlarmDetailOut]:
    """Several alarms, each as ``GET /api/v1/alarms/{id}`` gives it; unknown ids left out.

    One round trip for the overview's active alarms with their 叫应 state, not one each.
    """
    details = []
    for alarm_id in dict.fromkeys(int(text) for text in ids.split(",")):
        try:
            alarm = repository.get_alarm(alarm_id)
        except NotFoundError:
            continue
        details.append(AlarmDetailOut.with_escalation(alarm, calls.store))
    return details


@router.get("/{alarm_id}", responses=refusals(404))
def get_alarm(alarm_id: RowIdPath, repository: Repo, calls: Calls) -> AlarmDetailOut:
    """One alarm with its receipts and its escalation record (calls, answers, times)."""
    try:
        return AlarmDetailOut.with_escalation(repository.get_alarm(alarm_id), calls.store)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post("/{alarm_id}/acknowledge", responses=refusals(404, 409))
def acknowledge_alarm(
    alarm_id: RowIdPath,
    body: AcknowledgeIn,
    principal: Operator,
    repository: Repo,
    ingest: Ingest,
) -> AlarmOut:
    """Record the acknowledgement and tell the gateway (409 if already acknowledged)."""
    now = time.time()
    try:
        alarm = repository.acknowledge_alarm(alarm_id, principal.name, body.note, now)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if is_station(alarm.gateway_id):  # no agent to release a latch: nothing to deliver
        return AlarmOut.of(alarm)
    repository.queue_command(
        alarm.gateway_id,
        ACK_ALARM_COMMAND,
        AckAlarmArgs(rule=alarm.rule, by=principal.name).model_dump(),
        principal.name,
        now,
    )
    if ingest is not None:
        ingest.wake_outbox()
    return AlarmOut.of(alarm)


@router.post("/{alarm_id}/receipts", status_code=status.HTTP_201_CREATED, responses=refusals(404))
def confirm_receipt(
    alarm_id: RowIdPath, body: ReceiptIn, principal: Operator, repository: Repo, calls: Calls
) -> AlarmDetailOut:
    """Record that the responsible person confirmed they received the warning.

    This is the operator's answer to 叫应: it ends the alarm's open escalation.
    """
    try:
        alarm = repository.confirm_receipt(
            alarm_id, body.person, body.via, body.note, principal.name, time.time()
        )
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    calls.answer_operator(alarm_id, body.person, principal.name)
    return AlarmDetailOut.with_escalation(alarm, calls.store)
