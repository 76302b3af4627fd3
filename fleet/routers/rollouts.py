"""Rollouts: send a release or a config to gateways in waves, and steer them.

Creating a rollout starts its first wave at once; the scheduler (``fleet.rollouts``) takes
it on from there. Rolling out a release needs the admin role, a config the operator role;
pausing, resuming and aborting the operator role. Status shows every wave and device.
"""

from __future__ import annotations

import time
from typing import Annotated, Self

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, field_validator, model_validator

from fleet.dependencies import (
    TOKEN_REFUSALS,
    Operator,
    Repo,
    RowIdPath,
    http_error,
    refusals,
    require,
)
from fleet.repository import (
    ConflictError,
    DeviceState,
    NewRollout,
    NotFoundError,
    Role,
    Rollout,
    RolloutDevice,
    RolloutState,
)
from fleet.rollouts import RolloutScheduler, WaveSpec, plan_waves, verdict, wave_tallies
from fleet.routers.configs import GroupName
from fleet.schemas import Out
from fleet.site_validation import checked_for_signing
from fleet.station_ids import is_station
from ota.document import DocumentKind
from protocol import MAX_WIRE_INT

router = APIRouter(
    prefix="/api/v1/rollouts",
    tags=["rollouts"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)


def get_scheduler(request: Request) -> RolloutScheduler:
    """The rollout scheduler running in this process."""
    scheduler: RolloutScheduler = request.app.state.rollouts
    return scheduler


Scheduler = Annotated[RolloutScheduler, Depends(get_scheduler)]


class RolloutIn(BaseModel):
    """What to roll out (a release or a config), to whom, in which waves, with which bounds."""

    release: str | None = Field(default=None, examples=["1.4.0"])
    config_id: Annotated[int, Field(ge=1, le=MAX_WIRE_INT)] | None = None
    gateways: Annotated[list[str], Field(min_length=1, max_length=100_000)] | None = None
    group: GroupName | None = None
    waves: Annotated[list[str | int], Field(min_length=1, max_length=20)] = Field(
        default=["1", "25%", "100%"],
        description="cumulative: a count (the canary) or a percentage of all targeted gateways",
    )
    success_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.9, description="a finished wave starts the next at this success rate or above"
    )
    error_threshold: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.1, description="the rollout halts when a wave's failure rate passes this"
    )
    device_timeout_s: Annotated[float, Field(gt=0, le=30 * 86400)] = Field(
        default=3600.0, description="a gateway without a final report by then has failed"
    )

    @field_validator("waves")
    @classmethod
    def _parse_waves(cls, waves: list[str | int]) -> list[str | int]:
        for wave in waves:
            WaveSpec.parse(wave)
        return waves

    @model_validator(mode="after")
    def _what_and_whom(self) -> Self:
        if (self.release is None) == (self.config_id is None):
            msg = "give either release or config_id"
            raise ValueError(msg)
        if self.gateways is not None and self.group is not None:
            msg = "give gateways or group, not both"
            raise ValueError(msg)
        if self.release is not None and self.gateways is None and self.group is None:
            msg = "a release rollout needs gateways or a group"
            raise ValueError(msg)
        return self


class DeviceOut(Out):
    """One gateway in a rollout; ``reported`` is its last report for the rollout's document."""

    gateway_id: str
    wave: int
    state: DeviceState
    doc_version: int | None
    sent_at: float | None
    deadline: float | None
    reported: str | None
    reason: str | None
    updated_at: float

    @classmethod
    def of(cls, device: RolloutDevice) -> DeviceOut:
        """The REST view of a device (waves counted from 1)."""
        return cls(
            gateway_id=device.gateway_id,
            wave=device.wave + 1,
            state=device.state,
            doc_version=device.doc_version,
            sent_at=device.sent_at,
            deadline=device.deadline,
            reported=device.reported,
            reason=device.reason,
            updated_at=device.updated_at,
        )


class WaveOut(Out):
    """One wave: its spec, its document and how its gateways fared."""

    number: int
    spec: str
    size: int
    status: str = Field(description="waiting, in_progress, succeeded or failed")
    doc_version: int | None
    started_at: float | None
    succeeded: int
    failed: int
    timed_out: int
    in_progress: int
    waiting: int
    cancelled: int
    success_rate: float
    failure_rate: float


class RolloutOut(Out):
    """A rollout, its waves and (in the detail view) its devices."""

    id: int
    kind: DocumentKind
    release: str | None
    config_id: int | None
    group: str | None
    state: RolloutState
    reason: str | None
    current_wave: int | None = Field(description="number of the wave sent last (from 1)")
    success_threshold: float
    error_threshold: float
    device_timeout_s: float
    created_at: float
    created_by: str | None
    updated_at: float
    waves: list[WaveOut]
    devices: list[DeviceOut] | None = None
    skipped: list[str] = Field(
        default_factory=list,
        description=(
            "targets left out when the rollout was created: SL 651 stations, which run no "
            "agent and take no signed document (only in the answer that creates it)"
        ),
    )

    @classmethod
    def of(cls, rollout: Rollout, *, devices: bool = True) -> RolloutOut:
        """The REST view; ``devices=False`` leaves the device list out (for lists)."""
        waves = []
        for wave, counts in zip(rollout.waves, wave_tallies(rollout), strict=True):
            waves.append(
                WaveOut(
                    number=wave.index + 1,
                    spec=wave.spec,
                    size=counts.size,
                    status="waiting" if wave.started_at is None else verdict(rollout, counts),
                    doc_version=wave.doc_version,
                    started_at=wave.started_at,
                    succeeded=counts.succeeded,
                    failed=counts.failed,
                    timed_out=counts.timed_out,
                    in_progress=counts.in_progress,
                    waiting=counts.waiting,
                    cancelled=counts.cancelled,
                    success_rate=counts.success_rate,
                    failure_rate=counts.failure_rate,
                )
            )
        return cls(
            id=rollout.id,
            kind=rollout.kind,
            release=rollout.release_version,
            config_id=rollout.config_id,
            group=rollout.group,
            state=rollout.state,
            reason=rollout.reason,
            current_wave=rollout.current_wave + 1 if rollout.current_wave >= 0 else None,
            success_threshold=rollout.success_threshold,
            error_threshold=rollout.error_threshold,
            device_timeout_s=rollout.device_timeout_s,
            created_at=rollout.created_at,
            created_by=rollout.created_by,
            updated_at=rollout.updated_at,
            waves=waves,
            devices=[DeviceOut.of(d) for d in rollout.devices] if devices else None,
        )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=refusals(404, 409),
)
def create_rollout(
    body: RolloutIn, principal: Operator, repository: Repo, scheduler: Scheduler
) -> RolloutOut:
    """Plan the waves and send the first one now.

    403 unless an admin rolls out a release or a configurator a config; 409 when the
    release still lacks files or a gateway is in another active rollout of the same kind;
    422 when the waves do not fit the gateways or the stored site file is invalid. SL 651
    stations among the targets are left out (``skipped``): they take no OTA.
    """
    kind = DocumentKind.RELEASE if body.release is not None else DocumentKind.CONFIG
    # Each wave is signed by the fleet: a release is the admin's to send, a site
    # configuration the configurator's, never the operator's who acknowledges alarms.
    needed = Role.ADMIN if kind is DocumentKind.RELEASE else Role.CONFIGURATOR
    if principal.role.rank < needed.rank:
        detail = (
            f"rolling out a {kind.value} needs the {needed.value} role; API token "
            f"'{principal.name}' has the {principal.role.value} role"
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail)
    ota = repository.ota
    group = body.group
    try:
        if body.group is not None:
            gateways = list(ota.get_group(body.group).gateways)
        elif body.gateways is not None:
            gateways = body.gateways
        else:
            assert body.config_id is not None
            config = ota.get_config(body.config_id)
            gateways = list(config.gateways)
            group = config.target if config.scope == "group" else None
        if body.config_id is not None:
            # Stored by an older fleet, it may predate the check at the door.
            checked_for_signing(ota.get_config(body.config_id).site_toml, repository.roster)
    except NotFoundError as exc:
        raise http_error(exc) from exc
    # A group or a config may name SL 651 stations beside gateways: they take no OTA.
    skipped = [g for g in gateways if is_station(g)]
    gateways = [g for g in gateways if not is_station(g)]
    if skipped and not gateways:
        detail = f"only SL 651 stations are targeted ({', '.join(skipped)}): they take no OTA"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)
    try:
        waves = plan_waves(gateways, [WaveSpec.parse(w) for w in body.waves])
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    new = NewRollout(
        kind=kind,
        release_version=body.release,
        config_id=body.config_id,
        group=group,
        waves=waves,
        success_threshold=body.success_threshold,
        error_threshold=body.error_threshold,
        device_timeout_s=body.device_timeout_s,
        created_by=principal.name,
    )
    try:
        rollout = ota.create_rollout(new, time.time())
    except (NotFoundError, ConflictError) as exc:
        raise http_error(exc) from exc
    created = RolloutOut.of(scheduler.advance(rollout.id))
    return created.model_copy(update={"skipped": skipped}) if skipped else created


@router.get("")
def list_rollouts(
    repository: Repo, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[RolloutOut]:
    """Rollouts, newest first, with their waves (devices: see the detail)."""
    return [RolloutOut.of(r, devices=False) for r in repository.ota.list_rollouts(limit)]


@router.get("/{rollout_id}", responses=refusals(404))
def get_rollout(rollout_id: RowIdPath, repository: Repo) -> RolloutOut:
    """One rollout with every wave and device."""
    try:
        return RolloutOut.of(repository.ota.get_rollout(rollout_id))
    except NotFoundError as exc:
        raise http_error(exc) from exc


def _control(
    rollout_id: RowIdPath, state: RolloutState, principal: Operator, repository: Repo
) -> Rollout:
    try:
        return repository.ota.control_rollout(rollout_id, state, principal.name, time.time())
    except (NotFoundError, ConflictError) as exc:
        raise http_error(exc) from exc


@router.post("/{rollout_id}/pause", responses=refusals(404, 409))
def pause_rollout(rollout_id: RowIdPath, principal: Operator, repository: Repo) -> RolloutOut:
    """Start no further wave; devices already sent keep reporting and timing out."""
    return RolloutOut.of(_control(rollout_id, RolloutState.PAUSED, principal, repository))


@router.post("/{rollout_id}/resume", responses=refusals(404, 409))
def resume_rollout(
    rollout_id: RowIdPath, principal: Operator, repository: Repo, scheduler: Scheduler
) -> RolloutOut:
    """Continue a paused rollout (a halted one can only be aborted)."""
    _control(rollout_id, RolloutState.RUNNING, principal, repository)
    return RolloutOut.of(scheduler.advance(rollout_id))


@router.post("/{rollout_id}/abort", responses=refusals(404, 409))
def abort_rollout(rollout_id: RowIdPath, principal: Operator, repository: Repo) -> RolloutOut:
    """Stop for good: gateways not yet sent the document never get it."""
    rollout = _control(rollout_id, RolloutState.ABORTED, principal, repository)
    return RolloutOut.of(rollout)
