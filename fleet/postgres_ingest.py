"""The PostgreSQL write path of ingest: one transaction per group of messages, exact marks.

The same exactly-once rule as SQLite: each stream keeps its highest contiguous seq
(``stream_marks``) and the committed ranges above it (``stream_ranges``), changed in the
transaction that stores the rows, so an ack computed here is true after any crash; rows a
mark or a range already covers are left out before they are written, so a resent batch
stores nothing. Readings go in by ``COPY``; the per-minute and per-hour rollups are
updated from the same new rows in the same transaction.

Several ingest workers may commit batches of one gateway at once (shared subscriptions):
a transaction takes a transaction-scoped advisory lock per gateway, in gateway order, so
one gateway's streams move one commit at a time and two groups never deadlock.

This module must never acknowledge a row it has not committed, and never decide what an
event does to an alarm (``fleet.alarm_episodes`` does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from fleet.alarm_episodes import (
    AcknowledgeAtGateway,
    MoveAlarm,
    OpenAlarm,
    OpenEpisode,
    VillageAnswer,
    episode_change,
)
from fleet.postgres_schema import days_needed, ensure_partitions
from fleet.repository import CommitResult, Received
from protocol import (
    BAD_QUALITY_MASK,
    CommandResult,
    DataBatch,
    EventBatch,
    EventRow,
    GatewayState,
    Health,
    Stream,
)

log = logging.getLogger(__name__)

#: Advisory lock key (first half) of one gateway's streams; the second half is its number.
GATEWAY_LOCK = 0x4857_0002

#: Rollup tables and their bucket, in seconds.
ROLLUPS = (("readings_minute", 60), ("readings_hour", 3600))

Conn = psycopg.Connection[Any]


@dataclass
class _Rollup:
    """One channel's rollup bucket as the new rows of a commit add to it."""

    good: int = 0
    bad: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None


@dataclass
class _Transaction:
    """What one transaction handed out: channel ids, valid only if it commits."""

    channel_ids: dict[tuple[int, str], int] = field(default_factory=dict)


class PostgresIngestWriter:
    """Commits groups of received messages on connections from the repository's pool."""

    def __init__(self) -> None:
        self._gateway_nums: dict[str, int] = {}
        #: Channel ids known committed: (gateway number, name) -> id.
        self._channel_ids: dict[tuple[int, str], int] = {}
        self._days: set[int] = set()

    def commit(
        self, conn: Conn, received: Sequence[Received], *, days_checked: bool = False
    ) -> CommitResult:
        """Store ``received`` in one transaction and return the acks to publish.

        If one message cannot be stored (PostgreSQL refuses its data, or anything else
        raises while it is written), the group is retried one message at a time, so only
        that message is rejected and not acked. Operational errors (connection lost,
        deadlock, disk full) propagate: nothing is acked, and the gateways resend.
        A day partition that another process's retention dropped is made again (late
        readings), never a reason to refuse a batch.
        """
        self._ensure_days(conn, received)
        result = CommitResult()
        tx = _Transaction()
        try:
            with conn.transaction():
                self._write(conn, received, result, tx)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            if _no_partition(exc) and not days_checked:
                self._days.clear()  # another process dropped one: look again
                return self.commit(conn, received, days_checked=True)
            if len(received) == 1:
                return CommitResult(rejected=[_rejection(received[0], exc)])
            return self._one_by_one(conn, received)
        self._channel_ids.update(tx.channel_ids)
        return result

    def _one_by_one(self, conn: Conn, received: Sequence[Received]) -> CommitResult:
        merged = CommitResult()
        for item in received:
            single = self.commit(conn, [item])
            merged.acks.update(single.acks)
            merged.rows_stored += single.rows_stored
            merged.rows_duplicate += single.rows_duplicate
            merged.rejected += single.rejected
        return merged

    def _ensure_days(self, conn: Conn, received: Sequence[Received]) -> None:
        """Make the day partitions the group's readings need, before its transaction."""
        days: set[int] = set()
        for item in received:
            if isinstance(item.payload, DataBatch):
                days |= days_needed(item.payload.flat_rows()[1::5])
        if missing := days - self._days:
            ensure_partitions(conn, missing)
            self._days |= missing

    def _write(
        self, conn: Conn, received: Sequence[Received], result: CommitResult, tx: _Transaction
    ) -> None:
        nums = {item.gateway_id: self._gateway_num(conn, item.gateway_id) for item in received}
        for num in sorted({n for n in nums.values() if n is not None}):
            _execute(conn, "SELECT pg_advisory_xact_lock(%s, %s)", (GATEWAY_LOCK, num))
        last_seen: dict[int, float] = {}
        for item in received:
            gw = nums[item.gateway_id]
            if gw is None:
                result.rejected.append((item.gateway_id, "unknown_gateway", "not enrolled"))
                continue
            if _seen_now(item):
                last_seen[gw] = max(last_seen.get(gw, 0.0), item.received_at)
            payload = item.payload
            if isinstance(payload, DataBatch):
                held = self._held(conn, gw, Stream.READINGS)
                rows = [r for r in payload.rows if not held.covers(r[0])]
                stored = self._insert_readings(conn, gw, rows, tx) if rows else 0
                mark = self._advance(conn, gw, Stream.READINGS, payload, held)
                result.acks[(item.gateway_id, Stream.READINGS)] = mark
                result.rows_stored += stored
                result.rows_duplicate += len(payload.rows) - stored
            elif isinstance(payload, EventBatch):
                held = self._held(conn, gw, Stream.EVENTS)
                new = [e for e in payload.rows if not held.covers(e.seq)]
                stored = self._insert_events(conn, gw, new, item.received_at)
                mark = self._advance(conn, gw, Stream.EVENTS, payload, held)
                result.acks[(item.gateway_id, Stream.EVENTS)] = mark
                result.rows_stored += stored
                result.rows_duplicate += len(payload.rows) - stored
            else:
                _apply_status(conn, gw, item)
        for gw, ts in sorted(last_seen.items()):
            _execute(
                conn,
                "UPDATE gateways SET last_seen = greatest(coalesce(last_seen, 0), %s) "
                "WHERE num = %s",
                (ts, gw),
            )

    def _gateway_num(self, conn: Conn, gateway_id: str) -> int | None:
        num = self._gateway_nums.get(gateway_id)
        if num is None:
            row = _execute(conn, "SELECT num FROM gateways WHERE id = %s", (gateway_id,)).fetchone()
            if row is None:
                return None
            num = self._gateway_nums[gateway_id] = int(row[0])
        return num

    @staticmethod
    def _held(conn: Conn, gw: int, stream: Stream) -> _Held:
        row = _execute(
            conn,
            "SELECT contiguous FROM stream_marks WHERE gw = %s AND stream = %s",
            (gw, stream.value),
        ).fetchone()
        ranges = _execute(
            conn,
            "SELECT first_seq, last_seq FROM stream_ranges WHERE gw = %s AND stream = %s",
            (gw, stream.value),
        ).fetchall()
        return _Held(int(row[0]) if row else 0, [(int(a), int(b)) for a, b in ranges])

    @staticmethod
    def _advance(
        conn: Conn, gw: int, stream: Stream, batch: DataBatch | EventBatch, held: _Held
    ) -> int:
        """Record that ``batch``'s range is committed; return the mark after it."""
        if batch.last_seq <= held.mark:
            return held.mark
        if batch.first_seq > held.mark + 1:
            # Committed, but not joined to the contiguous part yet: remember the range.
            _execute(
                conn,
                "INSERT INTO stream_ranges (gw, stream, first_seq, last_seq) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (gw, stream, first_seq) DO UPDATE "
                "SET last_seq = greatest(stream_ranges.last_seq, excluded.last_seq)",
                (gw, stream.value, batch.first_seq, batch.last_seq),
            )
            return held.mark
        mark = batch.last_seq
        joined = []
        for first, last in sorted(held.ranges):
            if first > mark + 1:
                break
            mark = max(mark, last)
            joined.append(first)
        if joined:
            _execute(
                conn,
                "DELETE FROM stream_ranges WHERE gw = %s AND stream = %s AND first_seq = ANY(%s)",
                (gw, stream.value, joined),
            )
        _execute(
            conn,
            "INSERT INTO stream_marks (gw, stream, contiguous) VALUES (%s, %s, %s) "
            "ON CONFLICT (gw, stream) DO UPDATE SET contiguous = excluded.contiguous",
            (gw, stream.value, mark),
        )
        return mark

    def _insert_readings(
        self, conn: Conn, gw: int, rows: list[tuple[Any, ...]], tx: _Transaction
    ) -> int:
        """COPY the new rows of one gateway and add them to the rollups."""
        ids = self._channels(conn, gw, {r[2] for r in rows}, tx)
        with (
            conn.cursor() as cur,
            cur.copy("COPY readings (gw, seq, ts, channel, value, quality) FROM STDIN") as copy,
        ):
            for seq, ts, name, value, quality in rows:
                copy.write_row((gw, seq, ts, ids[name], value, quality))
        for table, step in ROLLUPS:
            _add_to_rollup(conn, table, step, [(ids[r[2]], r[1], r[3], r[4]) for r in rows])
        return len(rows)

    def _channels(self, conn: Conn, gw: int, names: set[str], tx: _Transaction) -> dict[str, int]:
        ids = {}
        for name in sorted(names):
            key = (gw, name)
            found = self._channel_ids.get(key) or tx.channel_ids.get(key)
            if found is None:
                _execute(
                    conn,
                    "INSERT INTO channels (gw, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (gw, name),
                )
                row = _execute(
                    conn, "SELECT id FROM channels WHERE gw = %s AND name = %s", (gw, name)
                ).fetchone()
                assert row is not None  # inserted above, or by a commit before ours
                found = tx.channel_ids[key] = int(row[0])
            ids[name] = found
        return ids

    @staticmethod
    def _insert_events(conn: Conn, gw: int, events: Sequence[EventRow], received_at: float) -> int:
        stored = 0
        for event in events:
            cur = _execute(
                conn,
                "INSERT INTO events (gw, seq, ts, kind, subject, level, detail, received_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (gw, seq) DO NOTHING",
                (
                    gw,
                    event.seq,
                    event.ts,
                    event.kind,
                    event.subject,
                    event.level,
                    json.dumps(event.detail, default=str),
                    received_at,
                ),
            )
            if cur.rowcount == 1:
                stored += 1
                if event.subject:
                    _track_alarm(conn, gw, event)
        return stored


@dataclass(frozen=True, slots=True)
class _Held:
    """What a stream already holds: every seq up to ``mark``, and each range above it."""

    mark: int
    ranges: list[tuple[int, int]]

    def covers(self, seq: int) -> bool:
        return seq <= self.mark or any(a <= seq <= b for a, b in self.ranges)


def _add_to_rollup(
    conn: Conn, table: str, step: int, rows: list[tuple[int, float, float | None, int]]
) -> None:
    """Add new readings (channel, ts, value, quality) to a rollup table's buckets."""
    buckets: dict[tuple[int, float], _Rollup] = {}
    for channel, ts, value, quality in rows:
        bucket = buckets.setdefault((channel, float(int(ts // step) * step)), _Rollup())
        if value is None or quality & BAD_QUALITY_MASK:
            bucket.bad += 1
            continue
        bucket.good += 1
        bucket.total += value
        bucket.low = value if bucket.low is None else min(bucket.low, value)
        bucket.high = value if bucket.high is None else max(bucket.high, value)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} AS r (channel, start, good, bad, total, low, high) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (channel, start) DO UPDATE SET "
            "good = r.good + excluded.good, bad = r.bad + excluded.bad, "
            "total = r.total + excluded.total, low = least(r.low, excluded.low), "
            "high = greatest(r.high, excluded.high)",
            [
                (c, s, b.good, b.bad, b.total, b.low, b.high)
                for (c, s), b in sorted(buckets.items())
            ],
        )


def _track_alarm(conn: Conn, gw: int, event: EventRow) -> None:
    """Apply what ``event`` does to its rule's alarm episode (``fleet.alarm_episodes``)."""
    row = _execute(
        conn,
        "SELECT id, last_seq FROM alarms WHERE gw = %s AND rule = %s AND cleared_at IS NULL",
        (gw, event.subject),
    ).fetchone()
    change = episode_change(None if row is None else OpenEpisode(row[0], row[1]), event)
    if isinstance(change, OpenAlarm):
        _execute(
            conn,
            "INSERT INTO alarms (gw, rule, level, peak_level, raised_at, last_seq, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                gw,
                change.rule,
                change.level,
                change.level,
                change.raised_at,
                change.seq,
                change.detail,
            ),
        )
    elif isinstance(change, MoveAlarm):
        _execute(
            conn,
            "UPDATE alarms SET level = %s, peak_level = greatest(peak_level, %s), "
            "last_seq = %s, detail = coalesce(%s, detail), cleared_at = %s WHERE id = %s",
            (
                change.level,
                change.level,
                change.seq,
                change.detail,
                change.cleared_at,
                change.alarm_id,
            ),
        )
    elif isinstance(change, AcknowledgeAtGateway):
        _execute(
            conn,
            "UPDATE alarms SET acknowledged_at = coalesce(acknowledged_at, %s), "
            "acknowledged_by = coalesce(acknowledged_by, %s) WHERE id = %s",
            (change.at, change.by, change.alarm_id),
        )
    elif isinstance(change, VillageAnswer):
        _execute(
            conn,
            "INSERT INTO alarm_receipts (alarm_id, person, via, note, confirmed_at, "
            "recorded_by) VALUES (%s, %s, %s, NULL, %s, 'gateway')",
            (change.alarm_id, change.person, change.via, change.confirmed_at),
        )
        _execute(
            conn,
            "INSERT INTO gateway_answers (alarm_id, level, person, via, at) "
            "VALUES (%s, %s, %s, %s, %s)",
            (change.alarm_id, change.level, change.person, change.via, change.confirmed_at),
        )


def _apply_status(conn: Conn, gw: int, item: Received) -> None:
    payload = item.payload
    if isinstance(payload, Health):
        _execute(
            conn,
            "UPDATE gateways SET health = %s, health_at = %s, agent_version = %s "
            "WHERE num = %s AND coalesce(health_at, 0) <= %s",
            (payload.model_dump_json(), payload.ts, payload.agent_version, gw, payload.ts),
        )
    elif isinstance(payload, GatewayState):
        site = payload.site.model_dump_json() if payload.site is not None else None
        _execute(
            conn,
            "UPDATE gateways SET state = %s, state_at = %s, "
            "agent_version = coalesce(%s, agent_version), "
            "site_summary = coalesce(%s, site_summary) WHERE num = %s",
            (payload.state, item.received_at, payload.agent_version, site, gw),
        )
    elif isinstance(payload, CommandResult):
        _execute(
            conn,
            "UPDATE commands SET status = %s, result_at = %s, result_detail = %s "
            "WHERE id = %s AND gw = %s",
            ("ok" if payload.ok else "failed", item.received_at, payload.detail, payload.id, gw),
        )


def _execute(conn: Conn, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
    """Run a statement on a cursor that gives rows as tuples (the pool's give dicts)."""
    return conn.cursor(row_factory=tuple_row).execute(query.encode(), params)


def _no_partition(exc: Exception) -> bool:
    """Whether a row found no readings partition for its time (23514 from the router)."""
    return isinstance(exc, psycopg.errors.CheckViolation) and "no partition" in str(exc)


def _rejection(item: Received, exc: Exception) -> tuple[str, str, str]:
    """Why ``item`` was not stored: ``storage_error`` if PostgreSQL refused its data."""
    what = type(item.payload).__name__
    if isinstance(exc, psycopg.Error):
        return (item.gateway_id, "storage_error", f"{what}: {exc}")
    log.error("could not store a %s from %s", what, item.gateway_id, exc_info=exc)
    return (item.gateway_id, "internal_error", f"{what}: {type(exc).__name__}: {exc}")


def _seen_now(item: Received) -> bool:
    """Whether a message shows the gateway alive now: not a broker replay, not its Last Will."""
    if item.retained:
        return False
    return not (isinstance(item.payload, GatewayState) and item.payload.state == "offline")
