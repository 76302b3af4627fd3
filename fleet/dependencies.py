"""Dependencies shared by the routers: the repository, enrollment, API-token roles, limits.

``require(role)`` authenticates the bearer token (or the console's session cookie, which
stands for one) on every request and refuses a token whose role is below ``role`` with
403 and a message naming both roles; with the cookie, a request that changes something
must also carry the session's CSRF token. ``RowIdPath``
bounds ids in paths to what SQLite holds, and ``refusals`` documents the 4xx answers a
route gives in the OpenAPI schema. Nothing here may log or echo a token's secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from fleet.console_session import (
    COOKIE,
    CSRF_HEADER,
    ConsoleSessions,
    Session,
    SessionError,
)
from fleet.enrollment import Enrollment
from fleet.escalation import EscalationEngine
from fleet.ingest import IngestWorker
from fleet.repository import ApiToken, ConflictError, NotFoundError, Repository, Role
from protocol import MAX_WIRE_INT

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `fleet apitoken create` or POST /api/v1/api-tokens.",
)


#: A record id in a path: a SQLite INTEGER (signed 64 bits). A larger one is refused with
#: 422 here instead of overflowing in the query with a 500.
RowIdPath = Annotated[int, Path(ge=1, le=MAX_WIRE_INT)]


def FiniteQuery(**kwargs: Any) -> Any:  # noqa: N802 - used like fastapi.Query
    """A float query parameter that refuses NaN and infinities (they cannot go back as JSON)."""
    return Query(allow_inf_nan=False, **kwargs)


class ErrorOut(BaseModel):
    """A refusal: ``detail`` says in words what is wrong."""

    detail: str


_REFUSALS = {
    400: "the request contradicts itself (e.g. a range that ends before it starts)",
    401: "missing API token, or one that is unknown, revoked or expired",
    403: "the API token's role is too low for this",
    404: "no such record",
    409: "the request contradicts the record's state",
    410: "the record no longer works (expired, used or revoked)",
}


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses=`` entries for these 4xx codes, all shaped as ``ErrorOut``."""
    return {code: {"model": ErrorOut, "description": _REFUSALS[code]} for code in codes}


#: What every route behind an API token may answer.
TOKEN_REFUSALS = refusals(401, 403)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API token's name and role."""

    token_id: int
    name: str
    role: Role


def get_repository(request: Request) -> Repository:
    """The fleet's repository."""
    repository: Repository = request.app.state.repository
    return repository


def get_enrollment(request: Request) -> Enrollment:
    """The enrollment service."""
    enrollment: Enrollment = request.app.state.enrollment
    return enrollment


def get_ingest(request: Request) -> IngestWorker | None:
    """The in-process ingest worker, or None when ingest runs elsewhere."""
    worker: IngestWorker | None = request.app.state.ingest
    return worker


def get_escalation(request: Request) -> EscalationEngine:
    """The 叫应 engine (roster, policies, answers)."""
    engine: EscalationEngine = request.app.state.escalation
    return engine


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits API tokens with at least ``role``."""

    def check_token(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        repository: Annotated[Repository, Depends(get_repository)],
    ) -> Principal:
        now = time.time()
        if credentials is not None:
            token = repository.api_token_for_secret(credentials.credentials, now)
        elif (cookie := request.cookies.get(COOKIE)) is not None:
            token = _session_token(request, cookie, repository, now)
        else:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API token: send the header 'Authorization: Bearer <token>' "
                "(or sign in to the console)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown, revoked or expired API token "
                "(an admin gives an expired one a new secret: fleet apitoken rotate ID)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if token.role.rank < role.rank:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this needs the {role.value} role; API token '{token.name}' "
                f"has the {token.role.value} role",
            )
        return Principal(token.id, token.name, token.role)

    return check_token


#: Methods that change nothing: a console session needs no CSRF token for them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_sessions(request: Request) -> ConsoleSessions:
    """The console's session signer."""
    sessions: ConsoleSessions = request.app.state.sessions
    return sessions


def console_session(request: Request) -> Session | None:
    """The request's console session if its cookie is good (checked again by ``require``)."""
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        return None
    try:
        return get_sessions(request).check(cookie, time.time())
    except SessionError:
        return None


def _session_token(
    request: Request, cookie: str, repository: Repository, now: float
) -> ApiToken | None:
    """The API token behind a session cookie, held to the CSRF rule; None if it is gone."""
    try:
        session = get_sessions(request).check(cookie, now)
    except SessionError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None
    if request.method not in SAFE_METHODS and not ConsoleSessions.csrf_matches(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"missing or wrong CSRF token: a console request that changes something "
            f"sends the header {CSRF_HEADER}",
        )
    token = repository.api_token(session.token_id)
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and now >= token.expires_at:
        return None
    return token


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Configurator = Annotated[Principal, Depends(require(Role.CONFIGURATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Repo = Annotated[Repository, Depends(get_repository)]
EnrollmentService = Annotated[Enrollment, Depends(get_enrollment)]
Ingest = Annotated[IngestWorker | None, Depends(get_ingest)]
Calls = Annotated[EscalationEngine, Depends(get_escalation)]


def http_error(exc: NotFoundError | ConflictError) -> HTTPException:
    """404 for something unknown, 409 for a conflict, with the storage's message."""
    code = status.HTTP_404_NOT_FOUND if isinstance(exc, NotFoundError) else status.HTTP_409_CONFLICT
    return HTTPException(code, str(exc))
