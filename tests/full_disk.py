"""A really full disk for tests: a tiny tmpfs mounted in the test's directory, then filled.

This is the condition a gateway meets (ENOSPC from the kernel, which SQLite reports as
"database or disk is full"), not a mock. Mounting needs root, as in CI; where the mount is
refused the test skips and says why. The mount is detached lazily on the way out, so a
file a test still holds open cannot leave it behind.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


class SmallDisk:
    """A mounted tmpfs at ``path``; ``fill`` takes every free byte, ``free`` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write the filler until the kernel refuses even one more byte (ENOSPC)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
                data = b"\0" * chunk
                while True:
                    try:
                        os.write(fd, data)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        """Delete the filler: the space is back."""
        self.filler.unlink()

    def free_bytes(self) -> int:
        """What the file system says is free."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize


@contextmanager
def small_disk(path: Path, size: str = "2m") -> Iterator[SmallDisk]:
    """Mount a tmpfs of ``size`` at ``path`` for the duration; skip where mounting is refused."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("a real full disk needs mount(8) for a tiny tmpfs, and it is not installed")
    if mounted.returncode != 0:
        reason = mounted.stderr.strip()
        pytest.skip(f"a real full disk needs a tiny tmpfs; mount was refused (root?): {reason}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
