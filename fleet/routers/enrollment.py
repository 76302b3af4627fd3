"""Enrollment: gateways redeem tokens (no API token needed); admins manage the tokens."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, status

from fleet.dependencies import (
    TOKEN_REFUSALS,
    Admin,
    EnrollmentService,
    Repo,
    RowIdPath,
    refusals,
    require,
)
from fleet.enrollment import BUNDLE_TTL_S, InvalidProofError
from fleet.repository import ConflictError, EnrollmentRefusedError, NotFoundError, Role
from fleet.schemas import EnrollmentTokenCreated, EnrollmentTokenIn, EnrollmentTokenOut
from protocol import EnrollmentRefusal, EnrollmentRequest, EnrollmentResponse, OfflineBundle

enroll_router = APIRouter(prefix="/api/v1", tags=["enrollment"])
router = APIRouter(
    prefix="/api/v1/enrollment-tokens",
    tags=["enrollment"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=TOKEN_REFUSALS,
)


@enroll_router.post(
    "/enroll",
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"model": EnrollmentRefusal, "description": "unknown token or bad signature"},
        410: {"model": EnrollmentRefusal, "description": "token expired, used or revoked"},
    },
)
def enroll(request: EnrollmentRequest, enrollment: EnrollmentService) -> EnrollmentResponse:
    """Redeem a one-time token: register the gateway's key, issue its MQTT credentials."""
    try:
        return enrollment.enroll(request, time.time())
    except InvalidProofError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except EnrollmentRefusedError as exc:
        code = status.HTTP_410_GONE if exc.gone else status.HTTP_403_FORBIDDEN
        raise HTTPException(code, exc.reason) from exc


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(
    body: EnrollmentTokenIn, principal: Admin, enrollment: EnrollmentService
) -> EnrollmentTokenCreated:
    """A one-time token for a site; its secret is in this answer only."""
    now = time.time()
    token, secret = enrollment.create_token(
        body.site_id, body.ttl_s, principal.name, body.note, now
    )
    return EnrollmentTokenCreated(**EnrollmentTokenOut.of(token, now).model_dump(), token=secret)


@router.post("/bundles", status_code=status.HTTP_201_CREATED)
def create_bundle(
    body: EnrollmentTokenIn, principal: Admin, enrollment: EnrollmentService
) -> OfflineBundle:
    """A token packed as an offline bundle file for a USB stick (default validity 30 days)."""
    ttl_s = body.ttl_s if "ttl_s" in body.model_fields_set else BUNDLE_TTL_S
    return enrollment.bundle(body.site_id, ttl_s, principal.name, body.note, time.time())


@router.get("")
def list_tokens(repository: Repo) -> list[EnrollmentTokenOut]:
    """Every enrollment token, newest first, with its status."""
    now = time.time()
    return [EnrollmentTokenOut.of(t, now) for t in repository.list_enrollment_tokens()]


@router.delete("/{token_id}", responses=refusals(404, 409))
def revoke_token(token_id: RowIdPath, repository: Repo) -> EnrollmentTokenOut:
    """Revoke an unused token (409 if it was already used)."""
    now = time.time()
    try:
        return EnrollmentTokenOut.of(repository.revoke_enrollment_token(token_id, now), now)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
