"""Sign-in for the browser console: an API token opens a session cookie.

``POST /console/session`` takes a token's secret once and sets ``hw_session`` (HttpOnly,
SameSite=Strict); the answer carries the CSRF token that state-changing requests must
send. The session never outlives its API token. Never logs the secret, the cookie or the
CSRF token.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from fleet.console_session import COOKIE, SESSION_TTL_S
from fleet.dependencies import (
    Principal,
    Repo,
    console_session,
    get_sessions,
    refusals,
    require,
)
from fleet.repository import Role
from fleet.schemas import Out

router = APIRouter(prefix="/console/session", tags=["console"])


class SignIn(BaseModel):
    """An API token's secret, as `fleet apitoken create` printed it."""

    token: str = Field(min_length=1, max_length=200)


class SessionOut(Out):
    """Who is signed in, until when, and the CSRF token for requests that change things."""

    name: str
    role: Role
    csrf: str | None = Field(description="null when the request came with a bearer token")
    expires_at: float | None


@router.post("", responses=refusals(401))
def sign_in(body: SignIn, request: Request, response: Response, repository: Repo) -> SessionOut:
    """Check the token once and open a session cookie (12 h, or the token's end if sooner)."""
    now = time.time()
    token = repository.api_token_for_secret(body.token, now)
    if token is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown, revoked or expired API token")
    expires = now + SESSION_TTL_S
    if token.expires_at is not None:
        expires = min(expires, token.expires_at)
    cookie, session = get_sessions(request).open(token.id, expires)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=max(1, int(expires - now)),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return SessionOut(name=token.name, role=token.role, csrf=session.csrf, expires_at=expires)


@router.get("", responses=refusals(401, 403))
def whoami(
    request: Request, principal: Annotated[Principal, Depends(require(Role.VIEWER))]
) -> SessionOut:
    """The signed-in user and the session's CSRF token (401 when not signed in)."""
    session = console_session(request)
    return SessionOut(
        name=principal.name,
        role=principal.role,
        csrf=session.csrf if session else None,
        expires_at=session.expires_at if session else None,
    )


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, responses=refusals(401, 403))
def sign_out(
    response: Response, _principal: Annotated[Principal, Depends(require(Role.VIEWER))]
) -> None:
    """Clear the session cookie (needs the CSRF token, as every change does)."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
