"""The PostgreSQL storage backend of the fleet's core stores, through psycopg 3 and its pool.

``PostgresRepository`` is a ``CoreStore`` (API tokens, gateways and enrollment, readings
and events with the exactly-once ingest commit of ``fleet.postgres_ingest``, alarms) and
an ``IngestStore`` (its ``ota`` is the document outbox, ``fleet.postgres_ota``). It passes
the same contract as SQLite (``tests/test_storage_contract.py``). Any number of fleet
processes may share one database: nothing here is process-local but caches of ids that
never change once committed.

Charts read the per-minute and per-hour rollups (``reading_buckets``): a bucket is summed
from the hours and minutes wholly inside it, and only its ragged edges (under a minute on
each side) from raw rows, so a 30-day chart reads a few hundred rollup rows, not millions
of readings.

This module must never hold a secret in clear (tokens are stored as their hashes) and
never log one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from fleet import store_rows
from fleet.alarm_tables import AlarmTables
from fleet.gateway_tables import CLAIMABLE
from fleet.postgres_alarm_watch import PostgresAlarmWatch
from fleet.postgres_escalation import PostgresEscalation
from fleet.postgres_ingest import PostgresIngestWriter
from fleet.postgres_leases import PostgresLeases
from fleet.postgres_ota import PostgresOta
from fleet.postgres_schema import create_schema, drop_partitions_before
from fleet.postgres_statements import PostgresStatements
from fleet.repository import (
    CommitResult,
    Gateway,
    ReadingBucket,
    Received,
)
from fleet.roster import Person
from fleet.token_tables import TokenTables
from protocol import BAD_QUALITY_MASK

log = logging.getLogger(__name__)

Row = dict[str, Any]


class PostgresRepository(TokenTables, AlarmTables):
    """``CoreStore`` on a PostgreSQL database (``url``: ``postgresql://…``).

    ``pool_size`` connections at most; each call borrows one for its transaction. The
    schema is created on first use.
    """

    #: Each pending command to one ingest worker: rows another is claiming are skipped.
    command_claim_statement = (
        "UPDATE commands c SET status = 'publishing', sent_at = ? FROM gateways g "
        f"WHERE g.num = c.gw AND c.id IN (SELECT id FROM commands WHERE {CLAIMABLE} "
        "FOR UPDATE SKIP LOCKED) "
        "RETURNING c.id, g.id AS gateway_id, c.name, c.args, c.issued_at, c.issued_by"
    )

    def __init__(self, url: str, *, pool_size: int = 8, files_dir: Path | None = None) -> None:
        self.url = url
        self._pool: ConnectionPool[psycopg.Connection[Row]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=True,
            name="hazardwatch-fleet",
        )
        self._ingest = PostgresIngestWriter()
        self._sql = PostgresStatements(self._pool)
        with self._pool.connection() as conn:
            create_schema(conn)
        # Release files need a directory (fleet serve's data directory); ingest workers
        # publish documents and apply OTA reports, which need the tables only.
        self.ota = PostgresOta(self._pool, files_dir)
        self.escalation = PostgresEscalation(self._pool)
        self.leases = PostgresLeases(self._pool)

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    def roster(self, site_id: str) -> list[Person]:
        """The responsible persons of ``site_id`` (叫应), every tier."""
        return self.escalation.roster(site_id)

    def open_alarm_watch(self) -> PostgresAlarmWatch:
        """A LISTEN/NOTIFY watch on the active alarms (``fleet.postgres_alarm_watch``)."""
        return PostgresAlarmWatch(self.url)

    def drop_readings_before(self, cutoff: float) -> list[str]:
        """Retention: drop the day partitions of readings all older than ``cutoff``."""
        with self._pool.connection() as conn:
            return drop_partitions_before(conn, cutoff)

    # --- gateways ---------------------------------------------------------------------------

    def _gateways(self, where: str, params: Sequence[Any] = ()) -> list[Gateway]:
        rows = self._sql.rows(
            "SELECT g.*, (SELECT max(a.level) FROM alarms a WHERE a.gw = g.num "
            "AND a.cleared_at IS NULL) AS alarm_level, "
            "(SELECT json_object_agg(m.stream, m.contiguous) FROM stream_marks m "
            f"WHERE m.gw = g.num) AS marks FROM gateways g {where} ORDER BY g.id",
            list(params),
        )
        return [store_rows.gateway(r, (r["marks"] or {})) for r in rows]

    def _gateway_num(self, gateway_id: str) -> int | None:
        row = self._sql.row("SELECT num FROM gateways WHERE id = ?", [gateway_id])
        return None if row is None else int(row["num"])

    # --- ingest and readings ----------------------------------------------------------------

    def commit(self, received: Sequence[Received]) -> CommitResult:
        """Store messages; each batch all-or-nothing, rows already held ignored."""
        # Gateway order: every lock a group takes is in the same order in every worker.
        ordered = sorted(received, key=lambda item: item.gateway_id)
        with self._pool.connection() as conn:
            return self._ingest.commit(conn, ordered)

    def reading_buckets(
        self, gateway_id: str, channel: str, since: float, until: float, step: float
    ) -> list[ReadingBucket]:
        """Min/avg/max of good readings per ``step`` seconds; empty buckets are left out.

        Read from the hour and minute rollups wholly inside each bucket, and raw rows for
        the rest (see ``cover``).
        """
        cid = self._channel_id(gateway_id, channel)
        plan = cover(since, until, step)
        sums: dict[int, list[Any]] = {}
        with self._pool.connection() as conn, conn.transaction():
            for table, ranges in (("readings_hour", plan.hours), ("readings_minute", plan.minutes)):
                if not ranges:
                    continue
                rows = conn.execute(
                    f"SELECT r.start AS at, r.good, r.bad, r.total, r.low, r.high "
                    f"FROM unnest(%s::float8[], %s::float8[]) AS w(lo, hi) "
                    f"JOIN {table} r ON r.channel = %s AND r.start >= w.lo AND r.start < w.hi",
                    [[lo for lo, _ in ranges], [hi for _, hi in ranges], cid],
                ).fetchall()
                for r in rows:
                    _add(sums, int((r["at"] - since) // step), r)
            if plan.raw:
                rows = conn.execute(
                    "SELECT r.ts AS at, CASE WHEN r.value IS NOT NULL "
                    "AND (r.quality & %s) = 0 THEN 1 ELSE 0 END AS good, "
                    "CASE WHEN r.value IS NOT NULL AND (r.quality & %s) = 0 THEN 0 ELSE 1 END "
                    "AS bad, r.value AS total, r.value AS low, r.value AS high "
                    "FROM unnest(%s::float8[], %s::float8[]) AS w(lo, hi) "
                    "JOIN readings r ON r.channel = %s AND r.ts >= w.lo AND r.ts < w.hi",
                    [
                        BAD_QUALITY_MASK,
                        BAD_QUALITY_MASK,
                        [lo for lo, _ in plan.raw],
                        [hi for _, hi in plan.raw],
                        cid,
                    ],
                ).fetchall()
                for r in rows:
                    _add(sums, int((r["at"] - since) // step), r)
        return [
            ReadingBucket(since + b * step, good, bad, low, (total / good) if good else None, high)
            for b, (good, bad, total, low, high) in sorted(sums.items())
        ]


class BucketPlan:
    """How to read a chart's buckets: hour rollups, minute rollups and raw rows.

    Each list holds ``[lo, hi)`` ranges of bucket starts (rollups) or of times (raw).
    """

    def __init__(self) -> None:
        self.hours: list[tuple[float, float]] = []
        self.minutes: list[tuple[float, float]] = []
        self.raw: list[tuple[float, float]] = []


def cover(since: float, until: float, step: float) -> BucketPlan:
    """Cover each bucket ``[since + k*step, ...)`` of ``[since, until)`` exactly once.

    Inside a bucket, whole hours come from the hour rollup, whole minutes left at its
    edges from the minute rollup, and the ragged rest (under a minute each side) from raw
    rows. No rollup row ever straddles two buckets, so every sum is exact.
    """
    plan = BucketPlan()
    count = max(0, math.ceil((until - since) / step))
    for k in range(count):
        left = since + k * step
        right = min(left + step, until)
        _split(plan, left, right)
    return plan


def _split(plan: BucketPlan, left: float, right: float) -> None:
    hour_lo, hour_hi = math.ceil(left / 3600) * 3600.0, math.floor(right / 3600) * 3600.0
    if hour_lo < hour_hi:
        plan.hours.append((hour_lo, hour_hi))
        _minutes(plan, left, hour_lo)
        _minutes(plan, hour_hi, right)
    else:
        _minutes(plan, left, right)


def _minutes(plan: BucketPlan, left: float, right: float) -> None:
    if left >= right:
        return
    minute_lo, minute_hi = math.ceil(left / 60) * 60.0, math.floor(right / 60) * 60.0
    if minute_lo < minute_hi:
        plan.minutes.append((minute_lo, minute_hi))
        _raw(plan, left, minute_lo)
        _raw(plan, minute_hi, right)
    else:
        _raw(plan, left, right)


def _raw(plan: BucketPlan, left: float, right: float) -> None:
    if left < right:
        plan.raw.append((left, right))


def _add(sums: dict[int, list[Any]], bucket: int, row: Row) -> None:
    """Add a rollup row (or one raw reading) to its bucket: good, bad, total, low, high."""
    entry = sums.setdefault(bucket, [0, 0, 0.0, None, None])
    entry[0] += row["good"]
    entry[1] += row["bad"]
    if row["good"]:
        entry[2] += row["total"]
        entry[3] = row["low"] if entry[3] is None else min(entry[3], row["low"])
        entry[4] = row["high"] if entry[4] is None else max(entry[4], row["high"])
