"""Release bundles: the project's wheel at a chosen version plus every dependency's wheel.

``build_release`` builds from a copy of the source tree with ``[project] version`` set in
the copy (the real tree is never touched) and writes ``out_dir/wheels/*.whl`` and
``out_dir/manifest.json``. It runs where releases are made, with pip and a package index
or a warm wheel cache; never on a gateway.

A bundle is for one machine and Python: by default this host's; with ``target`` (a
``Target``, e.g. ``TARGETS["aarch64"]`` for Raspberry Pi OS 64-bit) pip picks the
dependency wheels of that platform instead. pip evaluates environment markers for the
machine it runs on, so a target whose markers give other dependencies (armv7l, where
numba is left out) cannot be built here and is refused: build it on such a machine.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Target:
    """The gateway a bundle is for: its machine, its glibc and its Python (``X.Y``)."""

    machine: str
    glibc: tuple[int, int]
    python: str

    def pip_options(self) -> list[str]:
        """The pip options choosing this target's binary wheels (pure ones always fit).

        pip takes each platform tag literally, so every manylinux tag this glibc satisfies
        is named, down to manylinux2014 (glibc 2.17).
        """
        major, newest = self.glibc
        abi = "cp" + self.python.replace(".", "")
        platforms = [f"manylinux_{major}_{minor}_{self.machine}" for minor in range(newest, 16, -1)]
        platforms += [f"manylinux2014_{self.machine}", f"linux_{self.machine}"]
        return [
            *(option for tag in platforms for option in ("--platform", tag)),
            *("--python-version", self.python, "--implementation", "cp"),
            *("--abi", abi, "--abi", "abi3", "--abi", "none"),
        ]


#: Debian bookworm (Raspberry Pi OS 12): glibc 2.36, Python 3.11.
TARGETS = {
    "aarch64": Target("aarch64", (2, 36), "3.11"),
    "x86_64": Target("x86_64", (2, 36), "3.11"),
}
#: Machines where the project's environment markers differ from an x86_64/aarch64 host's.
_OTHER_MARKERS = frozenset({"armv7l", "armv6l"})


class BundleError(Exception):
    """A release could not be built; the message says which step failed and how."""


def build_release(
    source: Path,
    out_dir: Path,
    version: str,
    min_upgrade_from: str,
    wheel_cache: Path | None = None,
    target: Target | None = None,
) -> ReleaseManifest:
    """Build the release ``version`` of the project at ``source`` into ``out_dir``.

    Dependency wheels are resolved from the built wheel's own requirements, the same way
    the gateway's offline install will resolve them. With ``wheel_cache`` they (and the
    build backend) are looked up there first and only fetched from the index when
    missing, so repeated builds are offline. ``target``: the gateway's platform, when it
    is not this host's.
    """
    host = platform.machine()
    if target is not None and target.machine == host:
        target = None  # this host's own platform
    elif target is not None and {target.machine, host} & _OTHER_MARKERS:
        msg = (
            f"a bundle for {target.machine} cannot be resolved on {host}: its dependencies "
            "differ by environment marker (numba is left out on armv7l and armv6l); build "
            "it on a machine of that kind"
        )
        raise BundleError(msg)
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
        resolve += target.pip_options() if target is not None else []
        _offline_or_fill(cache, [*resolve, "-d", wheels, *requirements], requirements, dist, target)
        for stray in cache.glob(f"{own.name.split('-')[0]}-*.whl"):
            stray.unlink()  # the project's own wheels do not belong in the dependency cache
    python_requires = project["project"].get("requires-python", ">=3.11")
    return write_manifest(out_dir, version, min_upgrade_from, python_requires)


def write_manifest(
    out_dir: Path, version: str, min_upgrade_from: str, python_requires: str
) -> ReleaseManifest:
    """Write ``out_dir/manifest.json`` listing every wheel in ``out_dir/wheels``.

    ``build_release`` ends with it; a bundle whose wheels were gathered on the gateway's
    own kind of machine (armv7l) is finished with it too.
    """
    manifest = ReleaseManifest(
        version=version,
        min_upgrade_from=min_upgrade_from,
        python_requires=python_requires,
        created_at=time.time(),
        files=tuple(
            ReleaseFile(name=p.name, sha256=sha256_file(p), size=p.stat().st_size)
            for p in sorted((out_dir / WHEELS_DIR).glob("*.whl"))
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
    cache: Path,
    pip_args: list[str | Path],
    needs: list[str],
    links: Path | None = None,
    target: Target | None = None,
) -> None:
    """Run pip offline against ``cache``; when that fails, fetch ``needs`` into it and retry."""
    offline = [pip_args[0], "--no-index", "--find-links", cache, *pip_args[1:]]
    try:
        _pip(*offline, quiet_failure=True)
    except BundleError:
        extra: list[str | Path] = ["--find-links", links] if links is not None else []
        extra += target.pip_options() if target is not None else []
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
