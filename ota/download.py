"""Resumable download of a release's wheels into a content-addressed wheel cache.

Each file is fetched over plain HTTP(S) with the standard library into ``NAME.part`` and
resumed with ``Range`` after a dropped link; only a file whose size and sha256 match the
signed manifest is renamed into the cache as ``<sha256>.whl``, so a file the gateway
already holds is never fetched again and a mismatching file is deleted, never installed.
Blocking: call it from a worker thread.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ota.manifest import ReleaseFile, ReleaseManifest
from ota.supervisor import fsync_dir

CHUNK = 64 * 1024
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

Checkpoint = Callable[[str], None]
logger = logging.getLogger(__name__)


def no_checkpoint(_step: str) -> None:
    """The default checkpoint: carry on."""


class DownloadError(Exception):
    """A release file could not be downloaded."""


class HttpStatusError(DownloadError):
    """The server answered with an unexpected HTTP status."""

    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason} for {url}")
        self.url = url
        self.status = status


class LinkDroppedError(DownloadError):
    """The connection failed or dropped on every attempt; the partial file is kept."""


class FileRejectedError(DownloadError):
    """The downloaded bytes are not the file the signed manifest names; they were deleted."""


class HashMismatchError(FileRejectedError):
    """The file's sha256 differs from the manifest's."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        super().__init__(f"{name}: sha256 is {actual}, the signed manifest says {expected}")
        self.name = name
        self.expected = expected
        self.actual = actual


class SizeMismatchError(FileRejectedError):
    """The server sent more bytes than the manifest's size for the file."""


@dataclass
class DownloadSummary:
    """What a download cost: bytes over the link, bytes the cache already had, time."""

    bytes_downloaded: int = 0
    bytes_reused: int = 0
    bytes_resumed: int = 0
    files_downloaded: int = 0
    files_reused: int = 0
    seconds: float = 0.0
    #: Files the server sent whole although a range was asked for (restarted from zero).
    restarted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The summary as plain JSON-able values, for reports."""
        return {
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_reused": self.bytes_reused,
            "bytes_resumed": self.bytes_resumed,
            "files_downloaded": self.files_downloaded,
            "files_reused": self.files_reused,
            "seconds": round(self.seconds, 3),
            "restarted": list(self.restarted),
        }


class WheelCache:
    """Wheels by content: ``<dir>/<sha256>.whl``, partial downloads under ``incoming/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.incoming = directory / "incoming"

    def path(self, sha256: str) -> Path:
        """Where the file with this hash lives once verified."""
        return self.directory / f"{sha256}.whl"

    def has(self, file: ReleaseFile) -> bool:
        """Whether the cache holds ``file`` (by hash; the size is checked too)."""
        try:
            return self.path(file.sha256).stat().st_size == file.size
        except FileNotFoundError:
            return False

    def missing(self, manifest: ReleaseManifest) -> list[ReleaseFile]:
        """The files of ``manifest`` the cache lacks."""
        return [f for f in manifest.files if not self.has(f)]

    def part(self, file: ReleaseFile) -> Path:
        """The partial download of ``file`` (its hash in the name: resume only the same file)."""
        return self.incoming / f"{file.name}.{file.sha256[:12]}.part"


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The header a gateway downloads with: HTTP Basic with its own MQTT account."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def file_url(fleet_url: str, version: str, name: str) -> str:
    """``{fleet_url}/api/v1/releases/{version}/files/{name}``."""
    quoted = urllib.parse.quote
    return f"{fleet_url.rstrip('/')}/api/v1/releases/{quoted(version)}/files/{quoted(name)}"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_release(
    manifest: ReleaseManifest,
    fleet_url: str,
    cache: WheelCache,
    *,
    timeout_s: float = 30.0,
    attempts: int = 3,
    checkpoint: Checkpoint = no_checkpoint,
    headers: Mapping[str, str] | None = None,
) -> DownloadSummary:
    """Bring every file of ``manifest`` into ``cache``, downloading only what it lacks.

    A dropped link is retried ``attempts`` times in all, each time resuming where the
    partial file ends. Raises ``HttpStatusError``, ``LinkDroppedError`` (partial file
    kept for the next call) or a ``FileRejectedError`` (partial file deleted).
    """
    started = time.monotonic()
    summary = DownloadSummary()
    cache.incoming.mkdir(parents=True, exist_ok=True)
    for file in manifest.files:
        if cache.has(file):
            summary.bytes_reused += file.size
            summary.files_reused += 1
            continue
        url = file_url(fleet_url, manifest.version, file.name)
        _fetch_file(file, url, cache, summary, timeout_s, attempts, checkpoint, headers or {})
        summary.files_downloaded += 1
    summary.seconds = time.monotonic() - started
    return summary


def _fetch_file(
    file: ReleaseFile,
    url: str,
    cache: WheelCache,
    summary: DownloadSummary,
    timeout_s: float,
    attempts: int,
    checkpoint: Checkpoint,
    headers: Mapping[str, str],
) -> None:
    part = cache.part(file)
    retried_whole = False
    failures: list[str] = []
    while True:
        try:
            have = part.stat().st_size if part.exists() else 0
            if have > file.size:
                part.unlink()
                have = 0
            if have:
                summary.bytes_resumed += have
            if have < file.size:
                _transfer(file, url, part, have, summary, timeout_s, checkpoint, headers)
        except (http.client.HTTPException, OSError) as exc:
            # URLError is an OSError: refused connections, resets, timeouts, cut bodies.
            failures.append(str(getattr(exc, "reason", None) or exc or type(exc).__name__))
            if len(failures) >= attempts:
                msg = (
                    f"{file.name}: link failed {len(failures)} times "
                    f"(last: {failures[-1]}); {part.stat().st_size if part.exists() else 0} "
                    f"of {file.size} bytes kept to resume"
                )
                raise LinkDroppedError(msg) from None
            continue
        checkpoint("verify")
        try:
            _verify_into_cache(file, part, cache)
        except HashMismatchError:
            # A resumed file may carry a bad tail from a power cut: one fresh try first.
            if have == 0 or retried_whole:
                raise
            retried_whole = True
            continue
        return


def _transfer(
    file: ReleaseFile,
    url: str,
    part: Path,
    have: int,
    summary: DownloadSummary,
    timeout_s: float,
    checkpoint: Checkpoint,
    headers: Mapping[str, str],
) -> None:
    request = urllib.request.Request(url, headers={"Accept": "application/octet-stream", **headers})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # The server cannot serve the rest of what we hold: start this file again.
            exc.close()
            part.unlink(missing_ok=True)
            raise http.client.HTTPException(f"HTTP 416 for {url}; starting over") from None
        exc.close()
        raise HttpStatusError(url, exc.code, str(exc.reason)) from None
    with response:
        offset = _start_offset(file, part, response, have, summary)
        mode = "ab" if offset else "wb"
        with part.open(mode) as out:
            written = offset
            first = True
            while chunk := response.read(CHUNK):
                written += len(chunk)
                if written > file.size:
                    out.close()
                    part.unlink()
                    msg = f"{file.name}: the server sent more than the signed size {file.size}"
                    raise SizeMismatchError(msg)
                out.write(chunk)
                summary.bytes_downloaded += len(chunk)
                if first:
                    out.flush()
                    checkpoint("download")
                    first = False
            out.flush()
            os.fsync(out.fileno())
        if written < file.size:
            msg = f"{file.name}: the body ended after {written} of {file.size} bytes"
            raise ConnectionError(msg)


def _start_offset(
    file: ReleaseFile,
    part: Path,
    response: http.client.HTTPResponse,
    have: int,
    summary: DownloadSummary,
) -> int:
    """Where the response's bytes go in the file: ``have`` for a matching 206, 0 for a 200."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(content_range)
        if match and int(match.group(1)) == have:
            return have
        part.unlink(missing_ok=True)
        msg = f"{file.name}: asked for bytes {have}-, got {content_range!r}; starting over"
        raise http.client.HTTPException(msg)
    if response.status != 200:
        raise HttpStatusError(response.url or "", response.status, response.reason)
    if have:
        logger.warning(
            "%s: the server ignored the range request; downloading it again from zero", file.name
        )
        summary.bytes_resumed -= have
        summary.restarted.append(file.name)
    return 0


def _verify_into_cache(file: ReleaseFile, part: Path, cache: WheelCache) -> None:
    size = part.stat().st_size
    if size != file.size:
        part.unlink()
        msg = f"{file.name}: {size} bytes, the signed manifest says {file.size}"
        raise SizeMismatchError(msg)
    actual = sha256_file(part)
    if actual != file.sha256:
        part.unlink()
        raise HashMismatchError(file.name, file.sha256, actual)
    os.replace(part, cache.path(file.sha256))
    fsync_dir(cache.directory)
