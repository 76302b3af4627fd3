"""Which mounted file system holds a path, from the kernel's mount table.

It only reads ``/proc/mounts`` (or the text a caller passes); it must never mount,
unmount or write anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: File systems whose pages live in RAM and never reach a disk.
RAM_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of the mount table."""

    device: str
    point: str
    kind: str
    options: str

    @property
    def in_ram(self) -> bool:
        """Whether what is written here stays in RAM (tmpfs, ramfs)."""
        return self.kind in RAM_FILE_SYSTEMS


def mount_of(path: Path, mounts: str) -> Mount | None:
    """The mount holding ``path`` (the longest mount point above it) in ``mounts``' text."""
    best: Mount | None = None
    resolved = str(path.resolve())
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        device, point, kind, options = parts[:4]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(best.point)):
            best = Mount(device, point, kind, options)
    return best


def system_mount_of(path: Path) -> Mount | None:
    """``mount_of`` on this machine's mount table; None when it cannot be read."""
    try:
        return mount_of(path, Path("/proc/mounts").read_text())
    except OSError:
        return None
