"""Secrets and their stored forms: API and enrollment tokens, mosquitto password hashes.

Tokens and broker passwords are 256-bit random strings, so a plain SHA-256 is enough to
store them (nothing to brute-force); the broker needs its own PBKDF2 format, which is
what ``mosquitto_passwd`` writes. Plain secrets are shown once and never stored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

#: mosquitto_passwd's iteration count; raising it buys nothing for 256-bit random passwords.
PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12


def new_secret(prefix: str = "") -> str:
    """A fresh URL-safe random secret with 256 bits of entropy, e.g. ``hwt_Q2x...``."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of an API or enrollment token (hex SHA-256)."""
    return hashlib.sha256(token.encode()).hexdigest()


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """Hash ``password`` in mosquitto 2's ``$7$`` format (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def create_private_file(path: Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` and mode 0600 unless it exists; True if created.

    The content is written to a temporary file first and then hard-linked into place, so
    a second process starting at the same moment sees either no file or the whole one,
    and never replaces a key or password another process already handed out.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def mosquitto_verify(password: str, stored: str) -> bool:
    """Check ``password`` against a ``$7$`` hash as mosquitto does."""
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
