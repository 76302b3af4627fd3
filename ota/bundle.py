"""Release bundles: the project's wheel at a chosen version plus every dependency's wheel.

``build_release`` builds from a copy of the source tree with ``[project] version`` set in
the copy (the real tree is never touched) and writes ``out_dir/wheels/*.whl`` and
``out_dir/manifest.json``. It runs where releases are made, with pip and a package index
or a warm wheel cache; never on a gateway.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ota.download import sha256_file
from ota.manifest import DIST_NAME, MANIFEST_FILE, ReleaseFile, ReleaseManifest
from ota.supervisor import write_durably

WHEELS_DIR = "wheels"
#: Every slot gets pip, so the agent running in it can install the next release offline.
INSTALLER = "pip"

_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    ".cache",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "node_modules",
    "fleet-data",
)
_PROJECT_TABLE = re.compile(r"(?ms)^\[project\][ \t]*$(.*?)(?=^\[|\Z)")
_STATIC_VERSION = re.compile(r'(?m)^version\s*=\s*"[^"\n]*"')


class BundleError(Exception):
    """A release could not be built; the message says which step failed and how."""


def build_release(
    source: Path,
    out_dir: Path,
    version: str,
    min_upgrade_from: str,
    wheel_cache: Path | None = None,
) -> ReleaseManifest:
    """Build the release ``version`` of the project at ``source`` into ``out_dir``.

    Dependency wheels are resolved from the built wheel's own requirements, the same way
    the gateway's offline install will resolve them. With ``wheel_cache`` they (and the
    build backend) are looked up there first and only fetched from the index when
    missing, so repeated builds are offline.
    """
    try:
        version = str(Version(version))
    except InvalidVersion:
        msg = f"{version!r} is not a PEP 440 version"
        raise BundleError(msg) from None
    with tempfile.TemporaryDirectory(prefix="hw-release-") as scratch:
        work = Path(scratch)
        cache = wheel_cache if wheel_cache is not None else work / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        tree = work / "src"
        shutil.copytree(source, tree, ignore=_NOT_SOURCE, symlinks=True)
        project = _set_version(tree / "pyproject.toml", version)
        dist = work / "dist"
        build: list[str | Path] = ["wheel", "--no-deps", "-w", dist, tree]
        _offline_or_fill(cache, build, project.get("build-system", {}).get("requires", []))
        own = _own_wheel(dist, version)
        wheels = out_dir / WHEELS_DIR
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        requirements = [str(own), INSTALLER]
        resolve: list[str | Path] = ["download", "--only-binary=:all:", "--find-links", dist]
        _offline_or_fill(cache, [*resolve, "-d", wheels, *requirements], requirements, dist)
        for stray in cache.glob(f"{own.name.split('-')[0]}-*.whl"):
            stray.unlink()  # the project's own wheels do not belong in the dependency cache
    manifest = ReleaseManifest(
        version=version,
        min_upgrade_from=min_upgrade_from,
        python_requires=project["project"].get("requires-python", ">=3.11"),
        created_at=time.time(),
        files=tuple(
            ReleaseFile(name=p.name, sha256=sha256_file(p), size=p.stat().st_size)
            for p in sorted(wheels.glob("*.whl"))
        ),
    )
    write_durably(out_dir / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode())
    return manifest


def _set_version(pyproject: Path, version: str) -> dict[str, Any]:
    text = pyproject.read_text()
    table = _PROJECT_TABLE.search(text)
    if table is None:
        msg = f"{pyproject} has no [project] table"
        raise BundleError(msg)
    body, count = _STATIC_VERSION.subn(f'version = "{version}"', table.group(1), count=1)
    if count != 1:
        msg = f'{pyproject}: [project] has no static version = "..." line to set'
        raise BundleError(msg)
    text = text[: table.start(1)] + body + text[table.end(1) :]
    project = tomllib.loads(text)
    if project["project"].get("version") != version:
        msg = f"{pyproject}: setting the version to {version} did not take"
        raise BundleError(msg)
    pyproject.write_text(text)
    return project


def _own_wheel(dist: Path, version: str) -> Path:
    built = sorted(dist.glob("*.whl"))
    prefix = f"{canonicalize_name(DIST_NAME).replace('-', '_')}-{version}-"
    if len(built) != 1 or not built[0].name.startswith(prefix):
        msg = f"expected one {prefix}*.whl from the build, got {[p.name for p in built]}"
        raise BundleError(msg)
    return built[0]


def _offline_or_fill(
    cache: Path, pip_args: list[str | Path], needs: list[str], links: Path | None = None
) -> None:
    """Run pip offline against ``cache``; when that fails, fetch ``needs`` into it and retry."""
    offline = [pip_args[0], "--no-index", "--find-links", cache, *pip_args[1:]]
    try:
        _pip(*offline, quiet_failure=True)
    except BundleError:
        extra: list[str | Path] = ["--find-links", links] if links is not None else []
        _pip("download", "--only-binary=:all:", *extra, "-d", cache, *needs)
        _pip(*offline)


def _pip(*args: str | Path, quiet_failure: bool = False) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    command = [sys.executable, "-m", "pip", "-q", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        detail = "" if quiet_failure else done.stderr.strip()[-2000:]
        msg = f"pip {args[0]} failed (exit {done.returncode}): {detail}"
        raise BundleError(msg)
