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
from fleet.postgres_ota import OTA_LOCK, record_ota_report
from fleet.postgres_ota import Conn as OtaConn
from fleet.postgres_schema import days_needed, ensure_partitions
from fleet.repository import CommitResult, Received
from ota.report import OTA_EVENT_KIND
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
from protocol.payloads import READING_FIELDS

log = logging.getLogger(__name__)

#: Advisory lock key of one gateway's streams: this in the high 32 bits, its number below.
GATEWAY_LOCK = 0x4857_0002

#: Rollup tables and their bucket, in seconds.
ROLLUPS = (("readings_minute", 60), ("readings_hour", 3600))

Conn = psycopg.Connection[Any]


@dataclass
class _Transaction:
    """What one transaction made: channel ids, a staging table; valid only if it commits."""

    channel_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    staging: int | None = None  # the session whose staging table this transaction made


class PostgresIngestWriter:
    """Commits groups of received messages on connections from the repository's pool."""

    def __init__(self) -> None:
        self._gateway_nums: dict[str, int] = {}
        #: Channel ids known committed: (gateway number, name) -> id.
        self._channel_ids: dict[tuple[int, str], int] = {}
        self._days: set[int] = set()
        #: Sessions (backend pids) that have the staging table.
        self._staging: set[int] = set()

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
        result = CommitResult()
        tx = _Transaction()
        try:
            self._ensure_days(conn, received)  # a time no partition can hold costs its batch
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
        if tx.staging is not None:
            self._staging.add(tx.staging)
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
                days |= days_needed(item.payload.flat_rows()[1::READING_FIELDS])
        if missing := days - self._days:
            ensure_partitions(conn, missing)
            self._days |= missing

    def _write(
        self, conn: Conn, received: Sequence[Received], result: CommitResult, tx: _Transaction
    ) -> None:
        """One round trip per kind of work for the whole group, not per batch.

        Locks, marks and ranges are read once; the group's new readings go in by one
        COPY, its rollups and moved marks by one statement each.
        """
        nums = {item.gateway_id: self._gateway_num(conn, item.gateway_id) for item in received}
        locked = sorted({n for n in nums.values() if n is not None})
        if locked:
            _execute(
                conn,
                "SELECT pg_advisory_xact_lock((%s::bigint << 32) | n) "
                "FROM unnest(%s::bigint[]) AS n",
                (GATEWAY_LOCK, locked),
            )
        held = _load_held(conn, locked)
        self._resolve_channels(conn, received, nums, tx)
        moved: set[tuple[int, Stream]] = set()
        readings: list[tuple[Any, ...]] = []
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
                stream = held.setdefault((gw, Stream.READINGS), _Held(0, []))
                rows = stream.new_rows(payload)
                if rows:
                    ids = tx.channel_ids
                    readings += [(gw, r[0], r[1], ids[(gw, r[2])], r[3], r[4]) for r in rows]
                if _advance(conn, gw, Stream.READINGS, payload, stream):
                    moved.add((gw, Stream.READINGS))
                result.acks[(item.gateway_id, Stream.READINGS)] = stream.mark
                result.rows_stored += len(rows)
                result.rows_duplicate += len(payload.rows) - len(rows)
            elif isinstance(payload, EventBatch):
                stream = held.setdefault((gw, Stream.EVENTS), _Held(0, []))
                new = [e for e in payload.rows if not stream.covers(e.seq)]
                stored = self._insert_events(conn, gw, new, item.received_at)
                if _advance(conn, gw, Stream.EVENTS, payload, stream):
                    moved.add((gw, Stream.EVENTS))
                result.acks[(item.gateway_id, Stream.EVENTS)] = stream.mark
                result.rows_stored += stored
                result.rows_duplicate += len(payload.rows) - stored
            else:
                _apply_status(conn, gw, item)
        if readings:
            self._stage_readings(conn, readings, tx)
        # The rest needs no answer: one round trip (COPY cannot be in a pipeline).
        with conn.pipeline():
            if readings:
                self._move_staged(conn)
            self._finish(conn, held, moved, last_seen)

    @staticmethod
    def _finish(
        conn: Conn,
        held: dict[tuple[int, Stream], _Held],
        moved: set[tuple[int, Stream]],
        last_seen: dict[int, float],
    ) -> None:
        """Write the moved marks and the gateways' last-seen times (one statement each)."""
        if moved:
            keys = sorted(moved)
            _execute(
                conn,
                "INSERT INTO stream_marks (gw, stream, contiguous) "
                "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[]) "
                "ON CONFLICT (gw, stream) DO UPDATE SET contiguous = excluded.contiguous",
                (
                    [gw for gw, _ in keys],
                    [stream.value for _, stream in keys],
                    [held[key].mark for key in keys],
                ),
            )
        if last_seen:
            seen = sorted(last_seen.items())
            _execute(
                conn,
                "UPDATE gateways g SET last_seen = greatest(coalesce(g.last_seen, 0), v.ts) "
                "FROM unnest(%s::bigint[], %s::float8[]) AS v(num, ts) WHERE g.num = v.num",
                ([gw for gw, _ in seen], [ts for _, ts in seen]),
            )

    def _gateway_num(self, conn: Conn, gateway_id: str) -> int | None:
        num = self._gateway_nums.get(gateway_id)
        if num is None:
            row = _execute(conn, "SELECT num FROM gateways WHERE id = %s", (gateway_id,)).fetchone()
            if row is None:
                return None
            num = self._gateway_nums[gateway_id] = int(row[0])
        return num

    def _resolve_channels(
        self,
        conn: Conn,
        received: Sequence[Received],
        nums: dict[str, int | None],
        tx: _Transaction,
    ) -> None:
        """Put the id of every channel the group's batches name in ``tx.channel_ids``.

        Known ids come from the cache; the others are looked up, and the ones that do not
        exist yet are created, each in one statement for the whole group.
        """
        needed: set[tuple[int, str]] = set()
        for item in received:
            gw = nums[item.gateway_id]
            if gw is not None and isinstance(item.payload, DataBatch):
                names = set(item.payload.flat_rows()[2::READING_FIELDS])
                needed.update((gw, name) for name in names)
        tx.channel_ids.update((k, self._channel_ids[k]) for k in needed & self._channel_ids.keys())
        missing = sorted(needed - tx.channel_ids.keys())
        for query in (_FIND_CHANNELS, _CREATE_CHANNELS, _FIND_CHANNELS):
            if not missing:
                return
            arrays = ([gw for gw, _ in missing], [name for _, name in missing])
            for gw, name, cid in _execute(conn, query, arrays):
                tx.channel_ids[(int(gw), str(name))] = int(cid)
            missing = [k for k in missing if k not in tx.channel_ids]
        raise RuntimeError(f"channels not created: {missing[:3]}")

    def _stage_readings(self, conn: Conn, rows: list[tuple[Any, ...]], tx: _Transaction) -> None:
        """COPY the group's new rows to the session's staging table (``_move_staged``).

        PostgreSQL then aggregates the staged rows into the per-minute and per-hour
        rollups, so no row is handled twice in Python.
        """
        if conn.info.backend_pid not in self._staging:
            _execute(conn, _STAGING)  # known to exist once this transaction commits
            tx.staging = conn.info.backend_pid
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY incoming_readings (gw, seq, ts, channel, value, quality) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)

    @staticmethod
    def _move_staged(conn: Conn) -> None:
        """Staged rows into their day partitions and the rollups; the stage emptied."""
        _execute(conn, "INSERT INTO readings SELECT * FROM incoming_readings")
        for table, step in ROLLUPS:
            _execute(conn, _rollup_sql(table, step), (BAD_QUALITY_MASK,))
        _execute(conn, "DELETE FROM incoming_readings")

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
                if event.kind == OTA_EVENT_KIND:
                    # OTA writes take turns on one lock (fleet.postgres_ota); counted once,
                    # in the transaction that stores the report.
                    _execute(conn, "SELECT pg_advisory_xact_lock(%s)", (OTA_LOCK,))
                    record_ota_report(OtaConn(conn), gw, event, received_at)
        return stored


@dataclass(slots=True)
class _Held:
    """What a stream holds: every seq up to ``mark``, and each committed range above it.

    Read once per commit and kept current as the group's batches are applied, so a batch
    sees what an earlier batch of the same group stored.
    """

    mark: int
    ranges: list[tuple[int, int]]

    def covers(self, seq: int) -> bool:
        return seq <= self.mark or any(a <= seq <= b for a, b in self.ranges)

    def new_rows(self, batch: DataBatch) -> list[Any]:
        """The batch's rows this stream does not hold (all of them, mostly: no loop then)."""
        if batch.first_seq > self.mark and not any(
            a <= batch.last_seq and batch.first_seq <= b for a, b in self.ranges
        ):
            return list(batch.rows)
        return [r for r in batch.rows if not self.covers(r[0])]


def _load_held(conn: Conn, gateways: list[int]) -> dict[tuple[int, Stream], _Held]:
    """The marks and ranges of these gateways' streams (their locks are held)."""
    held: dict[tuple[int, Stream], _Held] = {}
    if not gateways:
        return held
    for gw, stream, mark in _execute(
        conn, "SELECT gw, stream, contiguous FROM stream_marks WHERE gw = ANY(%s)", (gateways,)
    ):
        held[(int(gw), Stream(stream))] = _Held(int(mark), [])
    for gw, stream, first, last in _execute(
        conn,
        "SELECT gw, stream, first_seq, last_seq FROM stream_ranges WHERE gw = ANY(%s)",
        (gateways,),
    ):
        key = (int(gw), Stream(stream))
        held.setdefault(key, _Held(0, [])).ranges.append((int(first), int(last)))
    return held


def _advance(
    conn: Conn, gw: int, stream: Stream, batch: DataBatch | EventBatch, held: _Held
) -> bool:
    """Record that ``batch``'s range is committed; True if the contiguous mark moved.

    A range not joined to the mark is stored at once (rare); a moved mark is left to the
    caller, which writes every moved mark of the group in one statement.
    """
    if batch.last_seq <= held.mark:
        return False
    if batch.first_seq > held.mark + 1:
        # Committed, but not joined to the contiguous part yet: remember the range.
        _execute(
            conn,
            "INSERT INTO stream_ranges (gw, stream, first_seq, last_seq) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (gw, stream, first_seq) DO UPDATE "
            "SET last_seq = greatest(stream_ranges.last_seq, excluded.last_seq)",
            (gw, stream.value, batch.first_seq, batch.last_seq),
        )
        last = max([batch.last_seq, *(b for a, b in held.ranges if a == batch.first_seq)])
        held.ranges = [r for r in held.ranges if r[0] != batch.first_seq]
        held.ranges.append((batch.first_seq, last))
        return False
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
        held.ranges = [r for r in held.ranges if r[0] not in joined]
    held.mark = mark
    return True


#: A session's staging table for one commit's new readings (emptied before it commits).
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS incoming_readings (gw BIGINT, seq BIGINT, "
    "ts DOUBLE PRECISION, channel BIGINT, value DOUBLE PRECISION, quality INTEGER)"
)
_FIND_CHANNELS = (
    "SELECT c.gw, c.name, c.id FROM channels c "
    "JOIN unnest(%s::bigint[], %s::text[]) AS u(gw, name) ON c.gw = u.gw AND c.name = u.name"
)
_CREATE_CHANNELS = (
    "INSERT INTO channels (gw, name) SELECT * FROM unnest(%s::bigint[], %s::text[]) "
    "ON CONFLICT DO NOTHING RETURNING gw, name, id"
)


def _rollup_sql(table: str, step: int) -> str:
    """Add the staged readings to ``table``'s ``step``-second buckets (bad counted apart)."""
    return (
        f"INSERT INTO {table} AS r (channel, start, good, bad, total, low, high) "
        f"SELECT channel, floor(ts / {step}) * {step}, count(*) FILTER (WHERE ok), "
        "count(*) FILTER (WHERE NOT ok), coalesce(sum(value) FILTER (WHERE ok), 0), "
        "min(value) FILTER (WHERE ok), max(value) FILTER (WHERE ok) FROM ("
        "  SELECT channel, ts, value, value IS NOT NULL AND (quality & %s) = 0 AS ok "
        "  FROM incoming_readings"
        ") AS i GROUP BY 1, 2 ON CONFLICT (channel, start) DO UPDATE SET "
        "good = r.good + excluded.good, bad = r.bad + excluded.bad, "
        "total = r.total + excluded.total, low = least(r.low, excluded.low), "
        "high = greatest(r.high, excluded.high)"
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
            "acknowledged_by = coalesce(acknowledged_by, %s), ack_origin = CASE WHEN "
            "acknowledged_at IS NULL THEN 'gateway' ELSE ack_origin END WHERE id = %s",
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
