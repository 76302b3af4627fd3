"""Where the engine's compiled kernels are kept: a directory named by its sources' digest.

numba keys a cached kernel by its own source file alone, but a kernel freezes in the
constants it reads from other modules (``forecast_layout``, ``kernels``): a constant
changed there, with the kernel's file untouched, would go on running the kernel compiled
with the old value. Keyed by every source file of the engine, a changed engine compiles
afresh, and the previous version's kernels stay for a rollback.

This module never imports numba, so ``edge doctor`` can ask where this version's kernels
belong without paying for the compiler, and it never removes this version's kernels.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

#: The engine's package: the sources whose digest names the cache.
ENGINE = Path(__file__).resolve().parent


def source_digest(sources: Iterable[Path]) -> str:
    """A short digest of the files' names and contents: any change to any of them changes it."""
    digest = hashlib.sha256()
    for source in sorted(sources):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def engine_cache_dir(base: str, package: Path = ENGINE) -> str:
    """The kernel directory of the engine in ``package`` under ``base``, numba's cache."""
    return os.path.join(base, f"engine-{source_digest(package.glob('*.py'))}")


#: Other versions' kernel directories kept beside this one's: the version a rollback
#: returns to, and one before it.
KEEP_OTHER_VERSIONS = 2


def prune_other_versions(current: str, keep: int = KEEP_OTHER_VERSIONS) -> list[Path]:
    """Remove all but the ``keep`` most recently used other versions' kernel directories.

    Each agent update adds a directory (about 2 MB); on a gateway left for years they
    would pile up on the SD card. ``current`` (this version's, marked used now) is never
    removed, nor anything not named like a version's directory. Never raises: a cache it
    cannot tidy stays as it is. Returns what was removed.
    """
    here = Path(current)
    try:
        os.utime(here)  # used now: the version running is the most recent
        others = sorted(
            (d for d in version_dirs(here.parent) if d != here),
            key=lambda d: d.stat().st_mtime,
            reverse=True,
        )
    except OSError:  # no cache yet, or one this user may not change: nothing to tidy
        return []
    removed = others[keep:]
    for directory in removed:
        shutil.rmtree(directory, ignore_errors=True)
    return removed


def version_dirs(base: Path) -> list[Path]:
    """The engine versions' kernel directories under ``base``: those named like one.

    Anything else there (a note, a directory an operator made) is not a version's.
    """
    if not base.is_dir():
        return []
    return [d for d in base.glob("engine-*") if d.is_dir() and _named(d)]


def _named(directory: Path) -> bool:
    digest = directory.name.removeprefix("engine-")
    return len(digest) == 16 and all(c in "0123456789abcdef" for c in digest)
