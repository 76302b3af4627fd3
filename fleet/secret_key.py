"""A fleet secret kept in a file of its data directory, and how tokens signed with one are written.

For keys that never leave the fleet (answer links, console sessions). It must never log or
return a key anywhere but to its caller, and never widen the file's mode.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def load_or_create_key(data_dir: Path, name: str, size: int = 32) -> bytes:
    """The key in ``data_dir/name``, made of ``size`` random bytes (mode 0600) on first use."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes()  # another process made it first
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(size))
    return path.read_bytes()


def b64(data: bytes) -> str:
    """URL-safe base64 without padding: how signed tokens and cookies are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    """The bytes of ``b64`` text; raises ValueError (binascii.Error) for anything else."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
