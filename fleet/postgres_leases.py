"""``LeaseStore`` on the fleet's PostgreSQL database (``fleet.leases``), for replicas anywhere.

One autocommitted statement per call on the repository's pool; the table is created
under an advisory lock, as the other stores' schemas are. It must never keep a
connection or a transaction open between calls.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from fleet import lease_sql
from fleet.leases import Lease
from fleet.postgres_statements import postgres_sql

#: Serialises the ``CREATE TABLE IF NOT EXISTS`` of replicas starting at once.
_SCHEMA_LOCK = 0x4857_0003


class PostgresLeases:
    """Leases in the ``leases`` table of the repository's schema."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(lease_sql.CREATE_LEASES.format(real="DOUBLE PRECISION").encode())

    def take(
        self, name: str, holder: str, now: float, ttl_s: float, replacing: str | None = None
    ) -> Lease:
        """Take or renew ``name`` for ``holder``; the lease as it is now (``LeaseStore``)."""
        with self._pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=tuple_row)
            cursor.execute(
                postgres_sql(lease_sql.TAKE), (name, holder, now + ttl_s, now, replacing)
            )
            row = cursor.execute(postgres_sql(lease_sql.READ), (name,)).fetchone()
        assert row is not None  # the upsert made or kept it
        return _lease(row)

    def give_up(self, name: str, holder: str) -> None:
        """End ``holder``'s lease on ``name`` at once."""
        with self._pool.connection() as conn:
            conn.execute(postgres_sql(lease_sql.GIVE_UP), (name, holder))

    def lease(self, name: str) -> Lease | None:
        """The lease on ``name`` as stored, or None."""
        with self._pool.connection() as conn:
            row = conn.cursor(row_factory=tuple_row).execute(postgres_sql(lease_sql.READ), (name,))
            found = row.fetchone()
        return None if found is None else _lease(found)


def _lease(row: tuple[Any, ...]) -> Lease:
    name, holder, expires_at, term = row
    return Lease(str(name), str(holder), float(expires_at), int(term))
