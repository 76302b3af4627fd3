"""``LeaseStore`` on the fleet's SQLite file (``fleet.leases``), for replicas on one machine.

Every write runs under the repository's write lock (``flock`` across processes). It must
never hold the write lock longer than one statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fleet import lease_sql
from fleet.leases import Lease


class SQLiteLeases:
    """Leases in the ``leases`` table of the repository's file."""

    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        self._db = db
        self._write = write
        db().execute(lease_sql.CREATE_LEASES.format(real="REAL"))

    def take(
        self, name: str, holder: str, now: float, ttl_s: float, replacing: str | None = None
    ) -> Lease:
        """Take or renew ``name`` for ``holder``; the lease as it is now (``LeaseStore``)."""
        with self._write() as db:
            db.execute(lease_sql.TAKE, (name, holder, now + ttl_s, now, replacing))
            row = db.execute(lease_sql.READ, (name,)).fetchone()
        return _lease(tuple(row))

    def give_up(self, name: str, holder: str) -> None:
        """End ``holder``'s lease on ``name`` at once."""
        with self._write() as db:
            db.execute(lease_sql.GIVE_UP, (name, holder))

    def lease(self, name: str) -> Lease | None:
        """The lease on ``name`` as stored, or None."""
        row = self._db().execute(lease_sql.READ, (name,)).fetchone()
        return None if row is None else _lease(tuple(row))


def _lease(row: tuple[Any, ...]) -> Lease:
    name, holder, expires_at, term = row
    return Lease(str(name), str(holder), float(expires_at), int(term))
