"""Durable file replacement: a power cut leaves the old content or the new, never half.

The writing itself is ``ota.supervisor.write_durably`` (the supervisor runs stdlib-only,
so the one implementation lives there); used for credentials, the OTA state and the site
file itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from ota.supervisor import fsync_dir
from ota.supervisor import write_durably as write_atomic

__all__ = ["fsync_dir", "replace_durably", "write_atomic"]


def replace_durably(source: Path, target: Path) -> None:
    """Rename ``source`` over ``target`` (same directory) and make the rename durable."""
    os.replace(source, target)
    fsync_dir(target.parent)
