"""API tokens for console users and scripts (admin only); secrets are stored hashed.

Every token expires (default 90 days); rotating gives it a new secret and expiry and
ends the old secret at once. A secret appears in the answer that creates it only.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, status

from fleet.dependencies import TOKEN_REFUSALS, Repo, RowIdPath, http_error, refusals, require
from fleet.repository import ConflictError, NotFoundError, Role
from fleet.schemas import ApiTokenCreated, ApiTokenIn, ApiTokenOut, ApiTokenRotateIn

router = APIRouter(
    prefix="/api/v1/api-tokens",
    tags=["api-tokens"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=TOKEN_REFUSALS,
)


@router.get("")
def list_tokens(repository: Repo) -> list[ApiTokenOut]:
    """Every API token, revoked and expired ones included."""
    return [ApiTokenOut.of(t) for t in repository.list_api_tokens()]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(body: ApiTokenIn, repository: Repo) -> ApiTokenCreated:
    """A new token with a role and a lifetime; its secret is in this answer only."""
    token, secret = repository.create_api_token(body.name, body.role, time.time(), body.ttl_s)
    return ApiTokenCreated(**ApiTokenOut.of(token).model_dump(), token=secret)


@router.post("/{token_id}/rotate", responses=refusals(404, 409))
def rotate_token(
    token_id: RowIdPath, repository: Repo, body: ApiTokenRotateIn | None = None
) -> ApiTokenCreated:
    """A new secret and expiry for a token (also an expired one); the old secret stops now.

    409 for a revoked token: create a new one instead.
    """
    ttl_s = (body or ApiTokenRotateIn()).ttl_s
    try:
        token, secret = repository.rotate_api_token(token_id, time.time(), ttl_s)
    except (NotFoundError, ConflictError) as exc:
        raise http_error(exc) from exc
    return ApiTokenCreated(**ApiTokenOut.of(token).model_dump(), token=secret)


@router.delete("/{token_id}", responses=refusals(404))
def revoke_token(token_id: RowIdPath, repository: Repo) -> ApiTokenOut:
    """Revoke a token; it stops working at once."""
    try:
        return ApiTokenOut.of(repository.revoke_api_token(token_id, time.time()))
    except NotFoundError as exc:
        raise http_error(exc) from exc
