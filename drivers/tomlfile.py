"""Read a TOML configuration file, turning I/O, encoding and syntax errors into the caller's error.

Profiles, site files, station files and agent settings all start this way; their
validators take over from the parsed document. Never lets a bad file end the program with
a traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_toml(path: Path, what: str, error: Callable[[Path, str], Exception]) -> dict[str, Any]:
    """Return the parsed document at ``path``.

    Raises:
        Exception: ``error(path, problem)`` when the file cannot be read, is not UTF-8 or
            is not TOML; ``what`` names the kind of file in the message ("profile",
            "site file").
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(path, f"cannot read {what}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition; a file saved as GBK or Latin-1 is named, with the
        # line of the first bad byte, so the technician knows what to re-save.
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}): save it as UTF-8"
        raise error(path, problem) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(path, f"not valid TOML: {exc}") from exc
