"""Notices, soon and cheaply, that alarms the 叫应 engine acts on changed in PostgreSQL.

The PostgreSQL counterpart of ``fleet.alarm_watch``: triggers on ``alarms`` (raised, raised
again, cleared) and ``gateway_answers`` (a village answer taken at a gateway) send a
``NOTIFY`` on ``ALARM_CHANNEL`` in the transaction that commits the change, so whichever
ingest worker committed it, the watch's own connection (``LISTEN``) hears of it once the
transaction commits, and never of one that rolled back.

It only reads, and it decides nothing: a notification wakes the engine, whose tick
decides. It must never be what an alarm depends on: the engine's regular tick stays the
guarantee, for a lost connection here and for anything a notification does not cover.
"""

from __future__ import annotations

import psycopg

#: The notification channel the triggers (``fleet.postgres_schema``) send on.
ALARM_CHANNEL = "hazardwatch_alarms"


class PostgresAlarmWatch:
    """Says whether the active alarms changed since its last look (any process's commits).

    Used from one thread at a time (the engine's looks are sequential); ``close`` ends it.
    """

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(url, autocommit=True)
        self._heard = 0
        self._conn.add_notify_handler(self._hear)
        self._conn.execute(f"LISTEN {ALARM_CHANNEL}")
        self._first = True

    def _hear(self, _notify: psycopg.Notify) -> None:
        self._heard += 1

    def changed(self) -> bool:
        """Whether an alarm changed since the last call (False on the first: nothing known)."""
        self._conn.execute("SELECT 1")  # delivers the notifications that arrived meanwhile
        heard, self._heard = self._heard, 0
        first, self._first = self._first, False
        return heard > 0 and not first

    def close(self) -> None:
        """Close its connection."""
        self._conn.close()
