"""Where the engine's compiled kernels are kept: a directory named by its sources' digest.

numba keys a cached kernel by its own source file alone, but a kernel freezes in the
constants it reads from other modules (``forecast_layout``, ``kernels``): a constant
changed there, with the kernel's file untouched, would go on running the kernel compiled
with the old value. Keyed by every source file of the engine, a changed engine compiles
afresh, and the previous version's kernels stay for a rollback.

This module only names paths; it never imports numba, so ``edge doctor`` can ask where
this version's kernels belong without paying for the compiler.
"""

from __future__ import annotations

import hashlib
import os
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
