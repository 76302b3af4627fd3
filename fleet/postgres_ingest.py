"""The PostgreSQL write path of ingest: one transaction per group of messages, exact marks.

The same exactly-once rule as SQLite: each stream keeps its highest contiguous seq
(``stream_marks``) and the committed ranges above it (``stream_ranges``), changed in the
transaction that stores the rows, so an ack computed here is true after any crash; rows a
mark or a range already covers are left out before they are written, so a resent batch
stores nothing. Readings go straight into their day partitions by one binary ``COPY``
(``fleet.binary_copy``, numpy columns, no Python call per row); the per-minute and
per-hour rollups are summed from the same new rows (``fleet.reading_rollups``) in the same
transaction: the minute sums are copied as new rows (a commit's share of a minute; readers
add the rows of a minute up), the hour sums upserted.

Several ingest workers may commit batches of one gateway at once (shared subscriptions):
a transaction takes a transaction-scoped advisory lock per gateway, in gateway order, so
one gateway's streams move one commit at a time and two groups never deadlock. Readings
are copied before the locks are taken, against the marks as last committed, so that
commits sharing gateways overlap their heavy part and queue only for the marks; under
the locks the marks are read again, and if another commit stored any of the copied rows
meanwhile (a resend racing its original), the transaction is rolled back and done again
with the locks taken first.

This module must never acknowledge a row it has not committed, and never decide what an
event does to an alarm (``fleet.alarm_episodes`` does).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import tuple_row

from fleet import binary_copy
from fleet.alarm_episodes import (
    AcknowledgeAtGateway,
    MoveAlarm,
    OpenAlarm,
    OpenEpisode,
    VillageAnswer,
    episode_change,
)
from fleet.binary_copy import Column, UnencodableError
from fleet.gateway_tables import health_update
from fleet.postgres_ota import OTA_LOCK, record_ota_report
from fleet.postgres_ota import Conn as OtaConn
from fleet.postgres_schema import DAY_S, day_of, days_needed, ensure_partitions, partition_due
from fleet.postgres_statements import postgres_sql
from fleet.reading_rollups import HOUR_S, MINUTE_S, ReadingColumns, Rollup, or_null, rollups
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


class _Overtaken(Exception):  # noqa: N818 (a signal, not an error)
    """Another commit stored rows this transaction copied before it took the locks."""


#: Advisory lock key of one gateway's streams: this in the high 32 bits, its number below.
GATEWAY_LOCK = 0x4857_0002

#: Rollup tables and their bucket, in seconds.
ROLLUPS = (("readings_minute", MINUTE_S), ("readings_hour", HOUR_S))

Conn = psycopg.Connection[Any]


@dataclass
class _Transaction:
    """What one transaction made: channel ids; valid only if it commits."""

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
        disk full, a deadlock but for the one a copy before the locks may meet, which is
        done again with the locks first) propagate: nothing is acked, and the gateways
        resend.
        Late readings of a day that another process's retention dropped are stored all the
        same (in the day's partition, made again, or in the default one), never a reason
        to refuse a batch; readings stamped days ahead of the fleet's clock wait in the
        default partition (``fleet.postgres_schema``).
        """
        result = CommitResult()
        tx = _Transaction()
        try:
            self._ensure_days(conn, received)  # a time no partition can hold costs its batch
            try:
                with conn.transaction():
                    self._write(conn, received, result, tx, copy_first=True)
            except (_Overtaken, psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                # A resend raced its original: again, the locks taken before the copy.
                result, tx = CommitResult(), _Transaction()
                with conn.transaction():
                    self._write(conn, received, result, tx, copy_first=False)
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
                stamps = item.payload.flat_rows()[1::READING_FIELDS]
                if not stamps:
                    continue  # every row of its range thinned on the gateway: no day
                first, last = min(stamps), max(stamps)
                if 0 <= last - first <= DAY_S:  # finite, and one day or two: no row by row
                    days |= {day_of(first), day_of(last)}
                else:
                    days |= days_needed(stamps)
        if not (missing := days - self._days):
            return
        # The fleet's clock, as the group's receipt stamped it: a day further ahead waits in
        # readings_default, and is looked for again by the next batch needing it. Only then:
        # a gateway whose clock runs fast costs no turn at the schema lock for its batches.
        now = max(item.received_at for item in received)
        if due := {day for day in missing if partition_due(day, now)}:
            self._days |= ensure_partitions(conn, due, now)

    def _write(
        self,
        conn: Conn,
        received: Sequence[Received],
        result: CommitResult,
        tx: _Transaction,
        *,
        copy_first: bool,
    ) -> None:
        """One round trip per kind of work for the whole group, not per batch.

        Locks, marks and ranges are read once; the group's new readings go in by one
        COPY, its rollups and moved marks by one statement each, in one round trip.
        With ``copy_first``, the readings are copied before the locks; ``_Overtaken``
        if the marks read under the locks hold a row copied. The channels the group names
        are found or made before any lock, in one statement in (gateway, name) order, so
        a commit waits on another's uncommitted channel only while it holds no lock, and
        two commits making the same channels take them in the same order.
        """
        nums = self._gateway_nums_of(conn, received)
        locked = sorted({n for n in nums.values() if n is not None})
        readings = _NewReadings()
        copied: dict[int, int] | None = None  # item index -> rows copied before the locks
        hours: Rollup | None = None  # the copied rows' hour sums, upserted under the locks
        # Events and status alone (an alarm's path) have nothing to copy: locks first.
        if any(isinstance(item.payload, DataBatch) for item in received):
            self._resolve_channels(conn, received, nums, tx)
            if copy_first:
                hours, copied = self._copy_unlocked(conn, received, nums, locked, tx)
        _lock_gateways(conn, locked)
        held = _load_held(conn, locked)
        moved: set[tuple[int, Stream]] = set()
        last_seen: dict[int, float] = {}
        for index, item in enumerate(received):
            gw = nums[item.gateway_id]
            if gw is None:
                result.rejected.append((item.gateway_id, "unknown_gateway", "not enrolled"))
                continue
            if _seen_now(item):
                last_seen[gw] = max(last_seen.get(gw, 0.0), item.received_at)
            payload = item.payload
            if isinstance(payload, DataBatch):
                stream = held.setdefault((gw, Stream.READINGS), _Held(0, []))
                flat = stream.new_rows(payload)
                count = len(flat) // READING_FIELDS
                if copied is not None:
                    if count != copied[index]:  # fewer: another commit stored some
                        raise _Overtaken
                elif flat:
                    readings.add(gw, flat, tx.channel_ids)
                if _advance(conn, gw, Stream.READINGS, payload, stream):
                    moved.add((gw, Stream.READINGS))
                result.acks[(item.gateway_id, Stream.READINGS)] = stream.mark
                result.rows_stored += count
                result.rows_duplicate += len(payload.rows) - count
            elif isinstance(payload, EventBatch):
                stream = held.setdefault((gw, Stream.EVENTS), _Held(0, []))
                if self._store_events(conn, gw, item, payload, stream, result):
                    moved.add((gw, Stream.EVENTS))
            else:
                _apply_status(conn, gw, item)
        if readings:  # gathered under the locks (not ``copy_first``)
            hours = _copy_readings(conn, readings.columns())
        # The rest needs no answer: one round trip (COPY cannot be in a pipeline).
        with conn.pipeline():
            if hours is not None:
                _upsert_hours(conn, hours)
            self._finish(conn, held, moved, last_seen)

    def _store_events(
        self,
        conn: Conn,
        gw: int,
        item: Received,
        payload: EventBatch,
        stream: _Held,
        result: CommitResult,
    ) -> bool:
        """Store an event batch's new events and count them; True if the mark moved."""
        new = [e for e in payload.rows if not stream.covers(e.seq)]
        stored = self._insert_events(conn, gw, new, item.received_at)
        moved = _advance(conn, gw, Stream.EVENTS, payload, stream)
        result.acks[(item.gateway_id, Stream.EVENTS)] = stream.mark
        result.rows_stored += stored
        result.rows_duplicate += len(payload.rows) - stored
        return moved

    @staticmethod
    def _copy_unlocked(
        conn: Conn,
        received: Sequence[Received],
        nums: dict[str, int | None],
        locked: list[int],
        tx: _Transaction,
    ) -> tuple[Rollup | None, dict[int, int]]:
        """COPY the rows the committed marks do not hold yet, before taking any lock.

        Returns the copied rows' hour sums (None if none), still to be upserted, and how many
        of each batch (by its index in ``received``), for ``_write`` to check under the
        locks.
        """
        held = _load_held(conn, locked)
        readings = _NewReadings()
        copied: dict[int, int] = {}
        for index, item in enumerate(received):
            gw = nums[item.gateway_id]
            payload = item.payload
            if gw is None or not isinstance(payload, DataBatch):
                continue
            stream = held.setdefault((gw, Stream.READINGS), _Held(0, []))
            flat = stream.new_rows(payload)
            copied[index] = len(flat) // READING_FIELDS
            if flat:
                readings.add(gw, flat, tx.channel_ids)
            stream.take(payload.first_seq, payload.last_seq)  # a later batch sees these
        return (_copy_readings(conn, readings.columns()) if readings else None), copied

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

    def _gateway_nums_of(self, conn: Conn, received: Sequence[Received]) -> dict[str, int | None]:
        """Each sender's gateway number (None: not enrolled); the unknown in one query."""
        unknown = sorted({item.gateway_id for item in received} - self._gateway_nums.keys())
        if unknown:
            found = _execute(
                conn, "SELECT id, num FROM gateways WHERE id = ANY(%s)", (unknown,)
            ).fetchall()
            self._gateway_nums.update((str(gid), int(num)) for gid, num in found)
        return {item.gateway_id: self._gateway_nums.get(item.gateway_id) for item in received}

    def _resolve_channels(
        self,
        conn: Conn,
        received: Sequence[Received],
        nums: dict[str, int | None],
        tx: _Transaction,
    ) -> None:
        """Put the id of every channel the group's batches name in ``tx.channel_ids``.

        Known ids come from the cache; the others are looked up, and the ones that do not
        exist yet are created, each in one statement for the whole group, in (gateway,
        name) order.
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
        if missing:
            raise RuntimeError(f"channels not created: {missing[:3]}")

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

    def take(self, first: int, last: int) -> tuple[bool, bool, list[int]]:
        """Record ``first..last`` as committed.

        Returns whether the contiguous mark moved, whether ``first..last`` is a range to
        store (not joined to the mark), and the first seqs of the stored ranges it joined.
        """
        if last <= self.mark:
            return False, False, []
        if first > self.mark + 1:
            # Committed, but not joined to the contiguous part yet: remember the range.
            last = max([last, *(b for a, b in self.ranges if a == first)])
            self.ranges = [r for r in self.ranges if r[0] != first]
            self.ranges.append((first, last))
            return False, True, []
        mark = last
        joined = []
        for a, b in sorted(self.ranges):
            if a > mark + 1:
                break
            mark = max(mark, b)
            joined.append(a)
        self.ranges = [r for r in self.ranges if r[0] not in joined]
        self.mark = mark
        return True, False, joined

    def new_rows(self, batch: DataBatch) -> list[Any]:
        """The batch's rows this stream does not hold, flat (``DataBatch.flat_rows``).

        All of them, mostly: the batch's own flat list then, no loop and no copy.
        """
        if batch.first_seq > self.mark and not any(
            a <= batch.last_seq and batch.first_seq <= b for a, b in self.ranges
        ):
            return batch.flat_rows()
        return list(chain.from_iterable(r for r in batch.rows if not self.covers(r[0])))


def _lock_gateways(conn: Conn, gateways: list[int]) -> None:
    """Take the gateways' advisory locks (ascending, so two commits never deadlock)."""
    if gateways:
        _execute(
            conn,
            "SELECT pg_advisory_xact_lock((%s::bigint << 32) | n) FROM unnest(%s::bigint[]) AS n",
            (GATEWAY_LOCK, gateways),
        )


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
    moved, apart, joined = held.take(batch.first_seq, batch.last_seq)
    if apart:
        _execute(
            conn,
            "INSERT INTO stream_ranges (gw, stream, first_seq, last_seq) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (gw, stream, first_seq) DO UPDATE "
            "SET last_seq = greatest(stream_ranges.last_seq, excluded.last_seq)",
            (gw, stream.value, batch.first_seq, batch.last_seq),
        )
    if joined:
        _execute(
            conn,
            "DELETE FROM stream_ranges WHERE gw = %s AND stream = %s AND first_seq = ANY(%s)",
            (gw, stream.value, joined),
        )
    return moved


#: The readings' COPY; ``readings_copy`` encodes its stream (the benches' ceilings use both).
COPY_READINGS = "COPY readings (gw, seq, ts, channel, value, quality) FROM STDIN (FORMAT BINARY)"
_COPY_MINUTES = (
    "COPY readings_minute (channel, start, good, bad, total, low, high) FROM STDIN (FORMAT BINARY)"
)
_FIND_CHANNELS = (
    "SELECT c.gw, c.name, c.id FROM channels c "
    "JOIN unnest(%s::bigint[], %s::text[]) AS u(gw, name) ON c.gw = u.gw AND c.name = u.name"
)
_CREATE_CHANNELS = (
    "INSERT INTO channels (gw, name) SELECT * FROM unnest(%s::bigint[], %s::text[]) "
    "ON CONFLICT DO NOTHING RETURNING gw, name, id"
)


class _NewReadings:
    """A group's new readings, gathered batch by batch into column lists."""

    def __init__(self) -> None:
        self.gw: list[int] = []
        self.flat: list[Any] = []
        self.channel: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.flat)

    def add(self, gw: int, flat: list[Any], channel_ids: dict[tuple[int, str], int]) -> None:
        """Add one batch's new rows (flat: seq, ts, channel, value, quality, seq, ...)."""
        self.gw += [gw] * (len(flat) // READING_FIELDS)
        self.flat += flat
        names = flat[2::READING_FIELDS]
        ids = {name: channel_ids[(gw, name)] for name in set(names)}  # a batch names few
        self.channel += map(ids.__getitem__, names)

    def columns(self) -> ReadingColumns:
        """The rows as numpy columns (a missing value as NaN)."""
        flat, step = self.flat, READING_FIELDS
        return ReadingColumns(
            gw=np.array(self.gw, dtype=np.int64),
            seq=np.array(flat[0::step], dtype=np.int64),
            ts=np.array(flat[1::step], dtype=np.float64),
            channel=np.array(self.channel, dtype=np.int64),
            value=np.array(flat[3::step], dtype=np.float64),
            quality=np.array(flat[4::step], dtype=np.int32),
        )


def _copy_readings(conn: Conn, rows: ReadingColumns) -> Rollup:
    """COPY the group's new rows into ``readings`` and their minute sums; the hour sums.

    Binary, built by numpy: no text to parse, no Python call per row. PostgreSQL routes
    each row to its day partition. The minute sums go in as rows of their own (a minute
    another commit summed too has a row from each; readers add them up), so no minute is
    looked up; the hour sums, a small fraction, are returned for ``_upsert_hours``.
    Rows copied before the gateways' locks may collide with a racing commit's (a
    ``UniqueViolation``, or ``_Overtaken`` once the marks are read under the locks):
    ``commit`` then does it all again with the locks first, and rows checked new under
    the locks cannot collide.
    """
    _copy(conn, COPY_READINGS, readings_copy(rows))
    minutes, hours = rollups(rows, BAD_QUALITY_MASK)
    _copy(
        conn,
        _COPY_MINUTES,
        binary_copy.encode(
            [
                Column(minutes.channel, "int8"),
                Column(minutes.start, "float8"),
                Column(minutes.good, "int8"),
                Column(minutes.bad, "int8"),
                Column(minutes.total, "float8"),
                Column(minutes.low, "float8", nullable=True),
                Column(minutes.high, "float8", nullable=True),
            ]
        ),
    )
    return hours


def readings_copy(rows: ReadingColumns) -> bytes:
    """The binary stream ``COPY_READINGS`` takes for ``rows`` (a missing value as NULL)."""
    return binary_copy.encode(
        [
            Column(rows.gw, "int8"),
            Column(rows.seq, "int8"),
            Column(rows.ts, "float8"),
            Column(rows.channel, "int8"),
            Column(rows.value, "float8", nullable=True),
            Column(rows.quality, "int4"),
        ]
    )


def _copy(conn: Conn, statement: str, stream: bytes) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(stream)


def _upsert_hours(conn: Conn, hours: Rollup) -> None:
    """Add ``hours`` to ``readings_hour``'s rows, in one statement (bad readings apart)."""
    _execute(
        conn,
        "INSERT INTO readings_hour AS r (channel, start, good, bad, total, low, high) "
        "SELECT * FROM unnest(%b::bigint[], %b::float8[], %b::bigint[], %b::bigint[], "
        "%b::float8[], %b::float8[], %b::float8[]) ON CONFLICT (channel, start) DO UPDATE SET "
        "good = r.good + excluded.good, bad = r.bad + excluded.bad, "
        "total = r.total + excluded.total, low = least(r.low, excluded.low), "
        "high = greatest(r.high, excluded.high)",
        (
            hours.channel.tolist(),
            hours.start.tolist(),
            hours.good.tolist(),
            hours.bad.tolist(),
            hours.total.tolist(),
            or_null(hours.low),
            or_null(hours.high),
        ),
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
        statement, values = health_update(gw, item, payload)
        conn.cursor(row_factory=tuple_row).execute(postgres_sql(statement), values)
    elif isinstance(payload, GatewayState):
        site = payload.site.model_dump_json() if payload.site is not None else None
        _execute(
            conn,
            "UPDATE gateways SET state = %s, state_at = %s, "
            "agent_version = coalesce(%s, agent_version), "
            "site_summary = coalesce(%s, site_summary) "
            "WHERE num = %s AND coalesce(state_at, 0) <= %s",
            (payload.state, item.received_at, payload.agent_version, site, gw, item.received_at),
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
    """Why ``item`` was not stored: ``storage_error`` if its data cannot be stored."""
    what = type(item.payload).__name__
    if isinstance(exc, psycopg.Error | UnencodableError):
        return (item.gateway_id, "storage_error", f"{what}: {exc}")
    log.error("could not store a %s from %s", what, item.gateway_id, exc_info=exc)
    return (item.gateway_id, "internal_error", f"{what}: {type(exc).__name__}: {exc}")


def _seen_now(item: Received) -> bool:
    """Whether a message shows the gateway alive now: not a broker replay, not its Last Will."""
    if item.retained:
        return False
    return not (isinstance(item.payload, GatewayState) and item.payload.state == "offline")
