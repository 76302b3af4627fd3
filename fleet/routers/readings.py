"""Readings of a gateway's channel over a time range, raw or downsampled (min/avg/max)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from fleet.dependencies import TOKEN_REFUSALS, FiniteQuery, Repo, refusals, require
from fleet.repository import NotFoundError, Role
from fleet.schemas import BucketOut, ReadingOut, ReadingsOut

router = APIRouter(
    prefix="/api/v1/gateways/{gateway_id}",
    tags=["readings"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)

#: Most buckets one downsampled answer may have; a smaller step needs a shorter range.
MAX_BUCKETS = 10_000
MAX_LIMIT = 100_000


@router.get("/channels", responses=refusals(404))
def list_channels(gateway_id: str, repository: Repo) -> list[str]:
    """Channel names the gateway has uploaded readings of."""
    try:
        repository.get_gateway(gateway_id)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return repository.channels(gateway_id)


@router.get("/readings", responses=refusals(400, 404))
def get_readings(
    gateway_id: str,
    repository: Repo,
    channel: Annotated[str, Query(min_length=1, description="channel name, e.g. rain_total")],
    since: Annotated[
        float | None, FiniteQuery(description="epoch seconds; default until - 24 h")
    ] = None,
    until: Annotated[
        float | None, FiniteQuery(description="epoch s, exclusive; default now")
    ] = None,
    step: Annotated[
        float | None,
        FiniteQuery(gt=0, description="downsample: min/avg/max per this many seconds"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10_000,
) -> ReadingsOut:
    """Readings with ``since <= ts < until``; with ``step``, one bucket per step instead."""
    until = time.time() if until is None else until
    since = until - 24 * 3600 if since is None else since
    if since >= until:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"since ({since}) must be before until ({until})"
        )
    try:
        if step is not None:
            buckets = (until - since) / step
            if buckets > MAX_BUCKETS:
                msg = (
                    f"step {step} s over {until - since:.0f} s gives {buckets:.0f} buckets; "
                    f"at most {MAX_BUCKETS}: use a larger step or a shorter range"
                )
                raise HTTPException(status.HTTP_400_BAD_REQUEST, msg)
            rows = repository.reading_buckets(gateway_id, channel, since, until, step)
            return ReadingsOut(
                gateway_id=gateway_id,
                channel=channel,
                since=since,
                until=until,
                step=step,
                buckets=[BucketOut(**asdict(b)) for b in rows],
            )
        points = repository.readings(gateway_id, channel, since, until, limit + 1)
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return ReadingsOut(
        gateway_id=gateway_id,
        channel=channel,
        since=since,
        until=until,
        readings=[
            ReadingOut(seq=p.seq, ts=p.ts, value=p.value, quality=p.quality) for p in points[:limit]
        ],
        truncated=len(points) > limit,
    )
