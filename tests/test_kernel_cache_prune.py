"""Old engine versions' compiled kernels do not pile up on a gateway's SD card.

Real directories: this version's, three older ones used at different times, and a
directory that is not a version's. Only the two most recently used other versions stay.
"""

from __future__ import annotations

import os
from pathlib import Path

from alarm_engine.kernel_cache import engine_cache_dir, prune_other_versions


def _version(base: Path, digest: str, used_at: float) -> Path:
    directory = base / f"engine-{digest}"
    (directory / "kernels").mkdir(parents=True)
    (directory / "kernels" / "k.nbi").write_bytes(b"index")
    os.utime(directory, (used_at, used_at))
    return directory


def test_all_but_the_two_most_recently_used_other_versions_are_removed(tmp_path: Path) -> None:
    base = tmp_path / "numba-cache"
    current = Path(engine_cache_dir(str(base)))
    (current / "kernels").mkdir(parents=True)
    os.utime(current, (1_000.0, 1_000.0))  # installed long ago: still never removed
    oldest = _version(base, "0" * 16, 2_000.0)
    rollback = _version(base, "1" * 16, 4_000.0)
    before = _version(base, "2" * 16, 3_000.0)
    stranger = base / "engine-notes"
    stranger.mkdir()
    removed = prune_other_versions(str(current))
    assert removed == [oldest]
    assert sorted(p.name for p in base.iterdir()) == sorted(
        [current.name, rollback.name, before.name, stranger.name]
    )
    assert current.stat().st_mtime > 4_000.0  # marked used now, so it outranks the others
    assert (rollback / "kernels" / "k.nbi").read_bytes() == b"index"


def test_a_version_whose_directory_is_missing_removes_nothing(tmp_path: Path) -> None:
    base = tmp_path / "numba-cache"
    kept = _version(base, "a" * 16, 2_000.0)
    assert prune_other_versions(str(base / ("engine-" + "b" * 16))) == []
    assert kept.is_dir()
