"""The PostgreSQL outbox of signed documents: what ingest workers publish, retained.

Signed configs and releases are queued per (gateway, kind) in ``ota_outbox``, their bytes
once per version in ``ota_documents``. Any number of ingest workers claim from it at once
(``FOR UPDATE SKIP LOCKED``): each document is handed to one of them, and a claim older
than a minute is taken to be from a worker that died before publishing.

This module must never mark a document published that the broker did not take, and never
leave an older document retained over a newer one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from fleet.repository import OutboxDocument
from ota.document import DocumentKind

#: A claim older than this is taken to be from a worker that died before publishing.
STALE_CLAIM_S = 60.0

_KEY = "gw = (SELECT num FROM gateways WHERE id = %s) AND kind = %s"


class PostgresDocuments:
    """``DocumentOutbox`` on the repository's pool."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool

    def claim_documents(self, now: float) -> list[OutboxDocument]:
        """Take the documents waiting to be published (and claims older than a minute)."""
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            rows = cur.execute(
                "UPDATE ota_outbox o SET status = 'publishing', claimed_at = %s "
                "FROM gateways g WHERE g.num = o.gw AND (o.gw, o.kind) IN ("
                "  SELECT gw, kind FROM ota_outbox WHERE status = 'pending' "
                "  OR (status = 'publishing' AND claimed_at < %s) FOR UPDATE SKIP LOCKED"
                ") RETURNING g.id, o.kind, o.version",
                (now, now - STALE_CLAIM_S),
            ).fetchall()
            # A wave's gateways share one document: read each once, hand out the same bytes.
            documents: dict[tuple[str, int], bytes] = {}
            for kind, version in {(kind, version) for _, kind, version in rows}:
                found = cur.execute(
                    "SELECT document FROM ota_documents WHERE kind = %s AND version = %s",
                    (kind, version),
                ).fetchone()
                assert found is not None  # queued in the transaction that stored it
                documents[(kind, version)] = bytes(found[0])
        claimed = [
            OutboxDocument(gateway_id, DocumentKind(kind), version, documents[(kind, version)])
            for gateway_id, kind, version in rows
        ]
        return sorted(claimed, key=lambda d: (d.kind, d.version, d.gateway_id))

    def finish_documents(
        self, published: Sequence[OutboxDocument], failed: Sequence[OutboxDocument], now: float
    ) -> None:
        """Record what was published; put failed ones back for the next attempt.

        When a newer document for the same topic was claimed meanwhile (by another ingest
        worker), it is queued again: the broker must retain the newest, whichever publish
        finished last.
        """
        if not published and not failed:
            return
        keyed = [(d.gateway_id, d.kind.value, d.version) for d in published]
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            _many(
                cur,
                "UPDATE ota_outbox SET status = 'published', published_at = %s "
                f"WHERE {_KEY} AND version = %s AND status = 'publishing'",
                [(now, *k) for k in keyed],
            )
            _many(
                cur,
                f"UPDATE ota_outbox SET status = 'pending' WHERE {_KEY} AND version > %s "
                "AND status IN ('publishing', 'published')",
                keyed,
            )
            _many(
                cur,
                "UPDATE config_deliveries SET published_at = coalesce(published_at, %s) "
                "WHERE gw = (SELECT num FROM gateways WHERE id = %s) AND version = %s",
                [(now, d.gateway_id, d.version) for d in published if d.kind == "config"],
            )
            _many(
                cur,
                f"UPDATE ota_outbox SET status = 'pending' WHERE {_KEY} AND version = %s "
                "AND status = 'publishing'",
                [(d.gateway_id, d.kind.value, d.version) for d in failed],
            )


def _many(cur: psycopg.Cursor[Any], query: str, params: list[tuple[Any, ...]]) -> None:
    if params:
        cur.executemany(query.encode(), params)
