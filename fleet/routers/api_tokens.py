"""API tokens for console users and scripts (admin only); secrets are stored hashed."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, status

from fleet.dependencies import Repo, require
from fleet.repository import NotFoundError, Role
from fleet.schemas import ApiTokenCreated, ApiTokenIn, ApiTokenOut

router = APIRouter(
    prefix="/api/v1/api-tokens", tags=["api-tokens"], dependencies=[Depends(require(Role.ADMIN))]
)


@router.get("")
def list_tokens(repository: Repo) -> list[ApiTokenOut]:
    """Every API token, revoked ones included."""
    return [ApiTokenOut.of(t) for t in repository.list_api_tokens()]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(body: ApiTokenIn, repository: Repo) -> ApiTokenCreated:
    """A new token with a role; its secret is in this answer only."""
    token, secret = repository.create_api_token(body.name, body.role, time.time())
    return ApiTokenCreated(**ApiTokenOut.of(token).model_dump(), token=secret)


@router.delete("/{token_id}")
def revoke_token(token_id: int, repository: Repo) -> ApiTokenOut:
    """Revoke a token; it stops working at once."""
    try:
        return ApiTokenOut.of(repository.revoke_api_token(token_id, time.time()))
    except NotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
