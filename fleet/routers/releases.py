"""Agent releases: register a built bundle's manifest, upload its wheels, serve downloads.

An uploaded file is kept only when its size and sha256 match the manifest (admin only).
Gateways fetch ``GET /api/v1/releases/{version}/files/{name}`` with HTTP Range requests
(Starlette's ``FileResponse`` answers 206), so a download cut on a cellular link resumes
where it stopped. They authenticate with HTTP Basic using their MQTT user name and
password; console users and scripts with an API token (viewer or above).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials
from pydantic import Field
from starlette.requests import ClientDisconnect

from fleet.console_session import COOKIE
from fleet.credentials import mosquitto_verify
from fleet.dependencies import TOKEN_REFUSALS, Admin, Repo, bearer, http_error, refusals, require
from fleet.repository import ConflictError, NotFoundError, ReleaseRecord, Role
from fleet.schemas import Out
from ota.manifest import ReleaseManifest

router = APIRouter(prefix="/api/v1/releases", tags=["releases"], responses=TOKEN_REFUSALS)
gateway_basic = HTTPBasic(
    auto_error=False,
    description="Gateways: their MQTT user name (the gateway id) and password.",
)
_viewer = require(Role.VIEWER)


class ReleaseFileOut(Out):
    """One file of a release and whether it has been uploaded and verified."""

    name: str
    sha256: str
    size: int
    uploaded: bool


class ReleaseOut(Out):
    """A registered release; ``complete`` once every file is uploaded (it can roll out)."""

    version: str
    min_upgrade_from: str
    created_at: float
    created_by: str | None
    total_size: int = Field(description="bytes of all files")
    complete: bool
    files: list[ReleaseFileOut]
    manifest: ReleaseManifest

    @classmethod
    def of(cls, release: ReleaseRecord) -> ReleaseOut:
        """The REST view of a release."""
        manifest = release.manifest
        return cls(
            version=manifest.version,
            min_upgrade_from=manifest.min_upgrade_from,
            created_at=release.created_at,
            created_by=release.created_by,
            total_size=manifest.total_size,
            complete=not release.missing,
            files=[
                ReleaseFileOut(
                    name=f.name, sha256=f.sha256, size=f.size, uploaded=f.name in release.uploaded
                )
                for f in manifest.files
            ],
            manifest=manifest,
        )


def downloader(
    request: Request,
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(gateway_basic)],
    repository: Repo,
) -> str:
    """Admit an enrolled gateway (HTTP Basic) or an API token of any role; return who."""
    if basic is not None:
        stored = repository.ota.gateway_password_hash(basic.username)
        if stored is None or not mosquitto_verify(basic.password, stored):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown gateway or wrong password (use the gateway's MQTT credentials)",
                headers={"WWW-Authenticate": "Basic"},
            )
        return basic.username
    if token is None and COOKIE not in request.cookies:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API token: send the header 'Authorization: Bearer <token>' "
            "(gateways: HTTP Basic with their MQTT user name and password)",
            headers={"WWW-Authenticate": "Bearer, Basic"},
        )
    return _viewer(request, token, repository).name


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "already registered with this manifest"}, **refusals(409)},
)
def register_release(
    manifest: ReleaseManifest, principal: Admin, repository: Repo, response: Response
) -> ReleaseOut:
    """Register a release from its bundle's ``manifest.json``; then upload its files.

    Registering the same manifest again is harmless (200), so an interrupted publish can
    simply run again; another manifest under a registered version is refused (409).
    """
    now = time.time()
    try:
        release = repository.ota.add_release(manifest, principal.name, now)
    except ConflictError as exc:
        raise http_error(exc) from exc
    if release.created_at != now:
        response.status_code = status.HTTP_200_OK
    return ReleaseOut.of(release)


@router.get("", dependencies=[Depends(_viewer)])
def list_releases(repository: Repo) -> list[ReleaseOut]:
    """Every release, newest first."""
    return [ReleaseOut.of(r) for r in repository.ota.list_releases()]


@router.get("/{version}", dependencies=[Depends(_viewer)], responses=refusals(404))
def get_release(version: str, repository: Repo) -> ReleaseOut:
    """One release with its files."""
    try:
        return ReleaseOut.of(repository.ota.get_release(version))
    except NotFoundError as exc:
        raise http_error(exc) from exc


@router.put(
    "/{version}/files/{name}",
    responses=refusals(400, 404),
    openapi_extra={
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
    },
)
async def upload_file(
    version: str, name: str, request: Request, _principal: Admin, repository: Repo
) -> ReleaseOut:
    """Upload one file of the release as the raw body; 422 if it differs from the manifest."""
    ota = repository.ota
    try:
        upload, expected = await asyncio.to_thread(ota.release_upload_path, version, name)
    except NotFoundError as exc:
        raise http_error(exc) from exc
    try:
        received = 0
        file = await asyncio.to_thread(upload.open, "wb")
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > expected:
                    msg = f"{name}: more than the {expected} bytes the manifest says"
                    raise ValueError(msg)
                await asyncio.to_thread(file.write, chunk)
        finally:
            await asyncio.to_thread(file.close)
        release = await asyncio.to_thread(
            ota.store_release_file, version, name, upload, time.time()
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except ClientDisconnect as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{name}: upload interrupted") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(upload.unlink)
    return ReleaseOut.of(release)


@router.get(
    "/{version}/files/{name}",
    response_class=FileResponse,
    responses={
        206: {"description": "the byte range asked for with a Range header"},
        416: {"description": "the range lies outside the file"},
        **refusals(404),
    },
)
def download_file(
    version: str, name: str, repository: Repo, _who: Annotated[str, Depends(downloader)]
) -> FileResponse:
    """Download a verified release file; honours ``Range`` (206) so downloads resume."""
    try:
        path = repository.ota.release_file(version, name)
    except NotFoundError as exc:
        raise http_error(exc) from exc
    return FileResponse(path, media_type="application/octet-stream", filename=name)
