"""Timestamps as people read them in messages and the CLI's output.

Must never be used for stored values: storage keeps seconds since the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """A timestamp as ISO 8601 UTC to the second, for messages people read."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
