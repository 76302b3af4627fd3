"""Read a TOML configuration file, turning I/O and syntax errors into the caller's error type.

Profiles, site files and station files all start this way; their validators take over
from the parsed document.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_toml(path: Path, what: str, error: Callable[[Path, str], Exception]) -> dict[str, Any]:
    """Return the parsed document at ``path``.

    Raises:
        Exception: ``error(path, problem)`` when the file cannot be read or is not TOML;
            ``what`` names the kind of file in the message ("profile", "site file").
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(path, f"cannot read {what}: {exc.strerror}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(path, f"not valid TOML: {exc}") from exc
