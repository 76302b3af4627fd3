"""Notices, soon and cheaply, that alarms the 叫应 engine acts on may have been committed.

Alarms reach the fleet's SQLite file from whichever process ingests them (``fleet serve``,
a ``fleet ingest`` worker beside it), so this looks at the store, not at one ingest's
memory. Its own connection asks SQLite whether any connection committed since the last
look (``PRAGMA data_version``: no query, no I/O), and only then reads a small signature of
the active alarms and the village answers (a partial index keeps that to active alarms).

It only reads, and it decides nothing: a changed signature wakes the engine, whose tick
decides. It must never be what an alarm depends on: the engine's regular tick stays the
guarantee, for a fault here and for the changes a signature cannot tell apart.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: What the engine may have to act on at once: an alarm raised, raised again (its level or
#: sequence moved), cleared, and a village answer taken at a gateway.
_SIGNATURE = (
    "SELECT count(*), coalesce(max(id), 0), total(level), total(last_seq), "
    "(SELECT coalesce(max(id), 0) FROM gateway_answers) FROM alarms WHERE cleared_at IS NULL"
)


class AlarmWatch:
    """Says whether the active alarms changed since its last look (any process's commits).

    Used from one thread at a time (the engine's looks are sequential); ``close`` ends it.
    """

    def __init__(self, db_path: Path) -> None:
        self._conn = sqlite3.connect(db_path, timeout=5, check_same_thread=False)
        self._conn.execute("PRAGMA query_only = ON")
        self._version: int | None = None
        self._signature: tuple[object, ...] | None = None

    def changed(self) -> bool:
        """Whether an alarm changed since the last call (False on the first: nothing known)."""
        version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version:
            return False
        self._version = version
        signature = tuple(self._conn.execute(_SIGNATURE).fetchone())
        before, self._signature = self._signature, signature
        return before is not None and signature != before

    def close(self) -> None:
        """Close its connection."""
        self._conn.close()
