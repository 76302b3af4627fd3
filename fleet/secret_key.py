"""A fleet secret kept in a file of its data directory, and how tokens signed with one are written.

For keys that never leave the fleet (answer links, console sessions). It must never log or
return a key anywhere but to its caller, and never widen the file's mode.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from fleet.credentials import create_private_file


def load_or_create_key(data_dir: Path, name: str, size: int = 32) -> bytes:
    """The key in ``data_dir/name``, made of ``size`` random bytes (mode 0600) on first use.

    Replicas starting at once on a fresh data directory all get the one key that was
    linked into place whole (``create_private_file``), never a file still being written.
    """
    path = data_dir / name
    if not path.exists():
        create_private_file(path, secrets.token_bytes(size))  # a racing process's may win
    key = path.read_bytes()
    if len(key) != size:
        msg = f"{path}: a key of {len(key)} bytes, not {size}: damaged (remove it to make anew)"
        raise ValueError(msg)
    return key


def b64(data: bytes) -> str:
    """URL-safe base64 without padding: how signed tokens and cookies are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """The bytes of ``b64`` text; raises ValueError (binascii.Error) for anything else."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
