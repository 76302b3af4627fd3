"""Release downloads: resumed after a dropped link, never fetched twice, never unverified."""

from __future__ import annotations

import hashlib
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ota.download import (
    HashMismatchError,
    HttpStatusError,
    LinkDroppedError,
    SizeMismatchError,
    WheelCache,
    fetch_release,
)
from ota.manifest import ReleaseFile, ReleaseManifest
from tests.http_files import ReleaseFileServer

OWN_V1 = "hazardwatch-0.1.1-py3-none-any.whl"
OWN_V2 = "hazardwatch-0.1.2-py3-none-any.whl"
DEP_A = "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl"
DEP_B = "pydantic-2.14.4-py3-none-any.whl"


def _write(directory: Path, name: str, size: int, seed: int) -> ReleaseFile:
    data = random.Random(seed).randbytes(size)
    (directory / name).write_bytes(data)
    return ReleaseFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=size)


def _release(root: Path, version: str, own: str, own_seed: int) -> ReleaseManifest:
    """A release of three files; the two dependencies are the same in every version."""
    wheels = root / version
    wheels.mkdir(parents=True)
    files = (
        _write(wheels, own, 700_000, own_seed),
        _write(wheels, DEP_A, 1_200_000, 1),
        _write(wheels, DEP_B, 300_000, 2),
    )
    return ReleaseManifest(version=version, min_upgrade_from="0.1.0", created_at=0.0, files=files)


@pytest.fixture
def releases(tmp_path: Path) -> dict[str, ReleaseManifest]:
    return {
        "0.1.1": _release(tmp_path / "bundles", "0.1.1", OWN_V1, 11),
        "0.1.2": _release(tmp_path / "bundles", "0.1.2", OWN_V2, 12),
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ReleaseFileServer]:
    bundles = tmp_path / "bundles"
    with ReleaseFileServer({"0.1.1": bundles / "0.1.1", "0.1.2": bundles / "0.1.2"}) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> WheelCache:
    return WheelCache(tmp_path / "gateway" / "cache")


def _file(manifest: ReleaseManifest, name: str) -> ReleaseFile:
    return next(f for f in manifest.files if f.name == name)


def test_a_release_lands_in_the_cache_under_its_hashes(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    summary = fetch_release(manifest, server.url, cache)
    assert summary.bytes_downloaded == manifest.total_size
    assert (summary.files_downloaded, summary.bytes_reused, summary.bytes_resumed) == (3, 0, 0)
    for file in manifest.files:
        assert hashlib.sha256(cache.path(file.sha256).read_bytes()).hexdigest() == file.sha256
    assert list(cache.incoming.iterdir()) == []


def test_a_new_release_costs_only_the_files_that_changed(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    fetch_release(releases["0.1.1"], server.url, cache)
    server.log.clear()
    new = releases["0.1.2"]
    summary = fetch_release(new, server.url, cache)
    own = _file(new, OWN_V2)
    assert [s.name for s in server.responses()] == [OWN_V2]
    assert summary.bytes_downloaded == own.size
    assert summary.bytes_reused == new.total_size - own.size
    assert (summary.files_downloaded, summary.files_reused) == (1, 2)


def test_a_dropped_link_resumes_where_it_stopped(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    dep = _file(manifest, DEP_A)
    server.cut_after[DEP_A] = 400_000
    with pytest.raises(LinkDroppedError, match=DEP_A) as dropped:
        fetch_release(manifest, server.url, cache, attempts=1)
    assert "400000 of 1200000 bytes kept" in str(dropped.value)
    assert not cache.has(dep)
    server.log.clear()
    summary = fetch_release(manifest, server.url, cache)
    [resumed] = server.responses(DEP_A)
    assert (resumed.range, resumed.status) == ("bytes=400000-", 206)
    assert resumed.bytes_sent == dep.size - 400_000 < dep.size
    assert summary.bytes_resumed == 400_000
    assert cache.has(dep)
    assert hashlib.sha256(cache.path(dep.sha256).read_bytes()).hexdigest() == dep.sha256


def test_a_dropped_link_is_retried_within_one_download(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    server.cut_after[OWN_V1] = 100_000
    summary = fetch_release(manifest, server.url, cache, attempts=2)
    assert [(s.status, s.bytes_sent) for s in server.responses(OWN_V1)] == [
        (200, 100_000),
        (206, 600_000),
    ]
    assert summary.bytes_downloaded == manifest.total_size
    assert summary.bytes_resumed == 100_000
    assert all(cache.has(f) for f in manifest.files)


def test_a_server_ignoring_the_range_restarts_from_zero_and_says_so(
    releases: dict[str, ReleaseManifest],
    server: ReleaseFileServer,
    cache: WheelCache,
    caplog: pytest.LogCaptureFixture,
) -> None:
    manifest = releases["0.1.1"]
    server.cut_after[OWN_V1] = 100_000
    with pytest.raises(LinkDroppedError):
        fetch_release(manifest, server.url, cache, attempts=1)
    server.ignore_range = True
    summary = fetch_release(manifest, server.url, cache)
    last = server.responses(OWN_V1)[-1]
    assert (last.range, last.status, last.bytes_sent) == ("bytes=100000-", 200, 700_000)
    assert summary.restarted == [OWN_V1]
    assert summary.bytes_resumed == 0
    assert "ignored the range request" in caplog.text
    assert cache.has(_file(manifest, OWN_V1))


def test_a_tampered_file_is_refused_deleted_and_never_cached(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    own = _file(manifest, OWN_V1)
    tampered = bytearray((server.releases["0.1.1"] / OWN_V1).read_bytes())
    tampered[1000] ^= 0xFF
    server.replaced[OWN_V1] = bytes(tampered)
    with pytest.raises(HashMismatchError) as refused:
        fetch_release(manifest, server.url, cache)
    actual = hashlib.sha256(tampered).hexdigest()
    assert (
        str(refused.value) == f"{OWN_V1}: sha256 is {actual}, the signed manifest says {own.sha256}"
    )
    assert not cache.path(actual).exists()
    assert not cache.has(own)
    assert list(cache.incoming.iterdir()) == []


def test_a_file_longer_than_signed_is_refused(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    server.replaced[DEP_B] = (server.releases["0.1.1"] / DEP_B).read_bytes() + b"extra"
    with pytest.raises(SizeMismatchError, match="more than the signed size 300000"):
        fetch_release(manifest, server.url, cache)
    assert not cache.has(_file(manifest, DEP_B))
    assert list(cache.incoming.iterdir()) == []


def test_a_resumed_file_with_a_bad_head_is_fetched_whole_once_more(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    good = (server.releases["0.1.1"] / OWN_V1).read_bytes()
    server.replaced[OWN_V1] = b"\0" * 50_000 + good[50_000:]  # what a power cut can leave
    server.cut_after[OWN_V1] = 50_000
    with pytest.raises(LinkDroppedError):
        fetch_release(manifest, server.url, cache, attempts=1)
    del server.replaced[OWN_V1]
    fetch_release(manifest, server.url, cache)
    assert [s.status for s in server.responses(OWN_V1)] == [200, 206, 200]
    assert cache.path(_file(manifest, OWN_V1).sha256).read_bytes() == good


def test_a_complete_partial_file_is_verified_without_a_request(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"]
    own = _file(manifest, OWN_V1)
    cache.incoming.mkdir(parents=True)
    cache.part(own).write_bytes((server.releases["0.1.1"] / OWN_V1).read_bytes())
    summary = fetch_release(manifest, server.url, cache)
    assert server.responses(OWN_V1) == []
    assert summary.bytes_resumed == own.size
    assert cache.has(own)


def test_a_missing_file_names_the_status_and_the_url(
    releases: dict[str, ReleaseManifest], server: ReleaseFileServer, cache: WheelCache
) -> None:
    manifest = releases["0.1.1"].model_copy(update={"version": "0.9.9"})
    with pytest.raises(HttpStatusError) as failed:
        fetch_release(manifest, server.url, cache)
    assert failed.value.status == 404
    assert f"{server.url}/api/v1/releases/0.9.9/files/{OWN_V1}" in str(failed.value)


def test_an_unreachable_fleet_fails_after_the_allowed_attempts(
    releases: dict[str, ReleaseManifest], cache: WheelCache
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LinkDroppedError, match="link failed 2 times"):
        fetch_release(releases["0.1.1"], f"http://127.0.0.1:{port}", cache, attempts=2)
