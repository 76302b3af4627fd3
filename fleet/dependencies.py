"""Dependencies shared by the routers: the repository, enrollment, and API-token roles.

``require(role)`` authenticates the bearer token on every request and refuses a token
whose role is below ``role`` with 403 and a message naming both roles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fleet.enrollment import Enrollment
from fleet.ingest import IngestWorker
from fleet.repository import ConflictError, NotFoundError, Repository, Role

bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `fleet apitoken create` or POST /api/v1/api-tokens.",
)


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


def require(role: Role) -> Callable[..., Principal]:
    """A dependency that admits API tokens with at least ``role``."""

    def check_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        repository: Annotated[Repository, Depends(get_repository)],
    ) -> Principal:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API token: send the header 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token = repository.api_token_for_secret(credentials.credentials)
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked API token",
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


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Configurator = Annotated[Principal, Depends(require(Role.CONFIGURATOR))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Repo = Annotated[Repository, Depends(get_repository)]
EnrollmentService = Annotated[Enrollment, Depends(get_enrollment)]
Ingest = Annotated[IngestWorker | None, Depends(get_ingest)]


def http_error(exc: NotFoundError | ConflictError) -> HTTPException:
    """404 for something unknown, 409 for a conflict, with the storage's message."""
    code = status.HTTP_404_NOT_FOUND if isinstance(exc, NotFoundError) else status.HTTP_409_CONFLICT
    return HTTPException(code, str(exc))
