"""Durable file replacement: a power cut leaves the old content or the new, never half.

Write to a temporary file beside the target, fsync it, rename it over the target, fsync
the directory. Used for credentials, the OTA state and the site file itself.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make renames in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with permission ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        # A temporary file left by an earlier crash keeps its old mode: set it explicitly.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def replace_durably(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` (same directory) and make the rename durable."""
    os.replace(source, target)
    fsync_dir(target.parent)
