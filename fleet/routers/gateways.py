"""Gateways: the list with status, last seen, alarm level and backlog; detail with health."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from fleet.dependencies import TOKEN_REFUSALS, Repo, refusals, require
from fleet.repository import NotFoundError, Role
from fleet.schemas import GatewayDetail, GatewaySummary

router = APIRouter(
    prefix="/api/v1/gateways",
    tags=["gateways"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)

GatewayIdPath = Annotated[str, Path(description="e.g. gw-3f2a9c01d4")]


@router.get("")
def list_gateways(repository: Repo) -> list[GatewaySummary]:
    """Every enrolled gateway with its status (online, offline, never_seen)."""
    now = time.time()
    return [GatewaySummary.of(g, now) for g in repository.list_gateways()]


@router.get("/{gateway_id}", responses=refusals(404))
def get_gateway(gateway_id: GatewayIdPath, repository: Repo) -> GatewayDetail:
    """One gateway with its last health message and upload progress."""
    try:
        gateway = repository.get_gateway(gateway_id)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return GatewayDetail.build(gateway, repository.channels(gateway_id), time.time())
