"""A release registered over REST, as ``fleet release publish`` does, and its manifest.

Light on purpose (httpx and ``ota.manifest`` only): unit tests of the rollout logic use it.
Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import hashlib

import httpx

from ota.manifest import ReleaseFile, ReleaseManifest


def manifest_of(
    files: dict[str, bytes], version: str = "1.4.0", created_at: float = 1_790_000_000.0
) -> ReleaseManifest:
    """A release manifest listing ``files`` (name -> content) with their sizes and hashes."""
    return ReleaseManifest(
        version=version,
        min_upgrade_from="1.0",
        created_at=created_at,
        files=tuple(
            ReleaseFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
            for name, data in files.items()
        ),
    )


async def register_release(
    http: httpx.AsyncClient, headers: dict[str, str], files: dict[str, bytes]
) -> ReleaseManifest:
    """Register ``manifest_of(files)`` over REST and upload every file.

    As `fleet release publish` does; a release registered before answers 200, not 201.
    """
    manifest = manifest_of(files)
    answer = await http.post(
        "/api/v1/releases", json=manifest.model_dump(mode="json"), headers=headers
    )
    assert answer.status_code in (200, 201), answer.text
    for name, data in files.items():
        put = await http.put(
            f"/api/v1/releases/{manifest.version}/files/{name}", content=data, headers=headers
        )
        assert put.status_code == 200, put.text
    return manifest
