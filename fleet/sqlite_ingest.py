"""The SQLite write path of ingest: one transaction per group of messages, exact stream marks.

Each stream keeps its highest contiguous seq (``stream_marks``) plus the committed ranges
above it (``stream_ranges``); both change in the same transaction as the rows, so an ack
computed here is true after any crash. Readings go in as one multi-row INSERT per batch
that binds the gateway once and the batch's flat row list (``DataBatch.flat_rows``) with
the channel names replaced by ids. ``IngestWriter.prepare`` builds those values before
the write lock is taken, from the channel ids already committed, so that little Python
runs while it is held: only a new channel, or rows already held, need work inside.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fleet.alarm_episodes import (
    AcknowledgeAtGateway,
    MoveAlarm,
    OpenAlarm,
    OpenEpisode,
    VillageAnswer,
    episode_change,
)
from fleet.gateway_tables import health_update
from fleet.repository import CommitResult, Received
from fleet.sqlite_ota import record_ota_report
from ota.crash_points import freeze
from ota.report import OTA_EVENT_KIND
from protocol import CommandResult, DataBatch, EventBatch, EventRow, GatewayState, Health, Stream
from protocol.limits import MAX_READING_ROWS
from protocol.payloads import READING_FIELDS

#: Most rows per INSERT statement: a whole batch (5 values a row and the gateway once;
#: SQLite allows 32766 values per statement).
ROWS_PER_STATEMENT = MAX_READING_ROWS

log = logging.getLogger(__name__)


@lru_cache(maxsize=64)  # batches mostly have the same few sizes
def _insert_sql(rows: int) -> str:
    # ?1 is the gateway in every row; each bare ? takes the next number after it.
    values = ",".join(["(?1,?,?,?,?,?)"] * rows)
    # ON CONFLICT names the key: only a row already held is skipped. INSERT OR IGNORE would
    # also skip, without a word, a row that breaks NOT NULL, and the batch would be acked.
    return (
        f"INSERT INTO readings (gw, seq, ts, channel, value, quality) VALUES {values} "
        "ON CONFLICT (gw, seq) DO NOTHING"
    )


def insert_readings(conn: sqlite3.Connection, values: list[Any]) -> int:
    """Insert one gateway's readings: ``[gw, seq, ts, channel, value, quality, seq, ...]``.

    The gateway number comes once, then five values per row. Returns how many rows were
    new; rows already held are ignored.
    """
    before = conn.total_changes
    rows = (len(values) - 1) // READING_FIELDS
    if rows <= ROWS_PER_STATEMENT:
        if rows:
            conn.execute(_insert_sql(rows), values)
        return conn.total_changes - before
    step = ROWS_PER_STATEMENT * READING_FIELDS
    for start in range(1, len(values), step):
        chunk = [values[0], *values[start : start + step]]
        conn.execute(_insert_sql((len(chunk) - 1) // READING_FIELDS), chunk)
    return conn.total_changes - before


@dataclass(frozen=True, slots=True)
class Prepared:
    """A received message with what could be worked out before the write lock.

    ``values`` are a data batch's readings ready to bind (``gw`` first), or None when the
    batch names a channel that has no committed id yet (it gets one inside the lock).
    """

    item: Received
    gw: int | None = None
    values: list[Any] | None = None


class IngestWriter:
    """Commits groups of received messages; used from the repository's writer thread.

    ``hold_before_commit`` is fault injection for the crash test: before committing the
    first group with rows, create that file and wait for SIGKILL.
    """

    def __init__(self, hold_before_commit: Path | None = None) -> None:
        self._hold_before_commit = hold_before_commit
        self._gateway_nums: dict[str, int] = {}
        #: Channel ids per gateway number. Outside a transaction every id here is committed:
        #: a rollback clears it (ids handed out inside a rolled-back transaction are void).
        self._channel_ids: dict[int, dict[str, int]] = {}

    def prepare(self, conn: sqlite3.Connection, received: Sequence[Received]) -> list[Prepared]:
        """Look up gateways and bind readings ahead of the transaction (reads only).

        Call it outside a transaction, on the thread that then commits: committed ids
        never change, so what it binds stays true however long the lock takes to get.
        """
        prepared = []
        for item in received:
            try:
                prepared.append(self._prepare(conn, item))
            except sqlite3.OperationalError:
                raise
            except Exception:  # left to the transaction, where it costs this message only
                prepared.append(Prepared(item))
        return prepared

    def _prepare(self, conn: sqlite3.Connection, item: Received) -> Prepared:
        gw = self._gateway_num(conn, item.gateway_id)
        values = None
        if gw is not None and isinstance(item.payload, DataBatch):
            values = self._known_channel_values(gw, item.payload)
            if values is None:  # maybe another ingest process gave them ids: look
                self._load_channel_ids(conn, gw)
                values = self._known_channel_values(gw, item.payload)
        return Prepared(item, gw, values)

    def _load_channel_ids(self, conn: sqlite3.Connection, gw: int) -> None:
        rows = conn.execute("SELECT name, id FROM channels WHERE gw = ?", (gw,)).fetchall()
        self._channel_ids.setdefault(gw, {}).update(rows)

    def commit(self, conn: sqlite3.Connection, prepared: Sequence[Prepared]) -> CommitResult:
        """Store ``prepared`` in one transaction and return the acks to publish.

        If one message cannot be stored (SQLite refuses its data, or anything else raises
        while it is written: an int too big to bind, a bug), the group is retried one
        message at a time, so only that message is rejected (``storage_error`` or
        ``internal_error``) and is not acked; every other gateway's batch commits. Only
        operational errors (disk full, lock timeout) propagate: they are no message's
        fault, nothing is acked, and the gateways resend.
        """
        result = CommitResult()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._write(conn, prepared, result)
            if self._hold_before_commit is not None and result.rows_stored:
                freeze(self._hold_before_commit)
            conn.execute("COMMIT")
        except sqlite3.OperationalError:
            self._rollback(conn)
            raise
        except Exception as exc:  # not only sqlite3.Error: OverflowError dropped whole groups
            self._rollback(conn)
            if len(prepared) == 1:
                return CommitResult(rejected=[_rejection(prepared[0].item, exc)])
            return self._one_by_one(conn, prepared)
        except BaseException:
            self._rollback(conn)
            raise
        return result

    def _one_by_one(self, conn: sqlite3.Connection, prepared: Sequence[Prepared]) -> CommitResult:
        merged = CommitResult()
        for entry in prepared:
            single = self.commit(conn, [entry])
            merged.acks.update(single.acks)
            merged.rows_stored += single.rows_stored
            merged.rows_duplicate += single.rows_duplicate
            merged.rejected += single.rejected
        return merged

    def _rollback(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        self._channel_ids.clear()  # ids handed out inside the rolled-back transaction

    def _write(
        self, conn: sqlite3.Connection, prepared: Sequence[Prepared], result: CommitResult
    ) -> None:
        last_seen: dict[int, float] = {}
        for entry in prepared:
            item = entry.item
            gw = entry.gw if entry.gw is not None else self._gateway_num(conn, item.gateway_id)
            if gw is None:
                result.rejected.append((item.gateway_id, "unknown_gateway", "not enrolled"))
                continue
            if _seen_now(item):
                last_seen[gw] = max(last_seen.get(gw, 0.0), item.received_at)
            payload = item.payload
            if isinstance(payload, DataBatch):
                held, mark = advance_stream(
                    conn, gw, Stream.READINGS, payload.first_seq, payload.last_seq
                )
                result.acks[(item.gateway_id, Stream.READINGS)] = mark
                stored = 0
                if payload.last_seq > held:
                    values = entry.values or self._channel_values(conn, gw, payload)
                    stored = insert_readings(conn, _newer_than(values, payload, held))
                result.rows_stored += stored
                result.rows_duplicate += len(payload.rows) - stored
            elif isinstance(payload, EventBatch):
                held, mark = advance_stream(
                    conn, gw, Stream.EVENTS, payload.first_seq, payload.last_seq
                )
                result.acks[(item.gateway_id, Stream.EVENTS)] = mark
                new = [e for e in payload.rows if e.seq > held]
                stored = insert_events(conn, gw, new, item.received_at)
                result.rows_stored += stored
                result.rows_duplicate += len(payload.rows) - stored
            else:
                self._apply_status(conn, gw, item)
        conn.executemany(
            "UPDATE gateways SET last_seen = max(coalesce(last_seen, 0), ?) WHERE num = ?",
            [(ts, gw) for gw, ts in last_seen.items()],
        )

    def _gateway_num(self, conn: sqlite3.Connection, gateway_id: str) -> int | None:
        num = self._gateway_nums.get(gateway_id)
        if num is None:
            row = conn.execute("SELECT num FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
            if row is None:
                return None
            num = self._gateway_nums[gateway_id] = int(row[0])
        return num

    def _known_channel_values(self, gw: int, batch: DataBatch) -> list[Any] | None:
        """``gw`` and the batch's flat rows with channel ids, if every id is known."""
        ids = self._channel_ids.get(gw)
        flat = batch.flat_rows()
        names = flat[2::READING_FIELDS]
        if ids is None or not ids.keys() >= set(names):
            return None
        values = [gw, *flat]
        values[3::READING_FIELDS] = map(ids.__getitem__, names)  # in C
        return values

    def _channel_values(self, conn: sqlite3.Connection, gw: int, batch: DataBatch) -> list[Any]:
        """Like ``_known_channel_values``, first giving new channels an id (in the lock)."""
        ids = self._channel_ids.setdefault(gw, {})
        assign_channel_ids(conn, gw, batch.flat_rows()[2::READING_FIELDS], ids)
        values = self._known_channel_values(gw, batch)
        assert values is not None  # every name has an id now
        return values

    @staticmethod
    def _apply_status(conn: sqlite3.Connection, gw: int, item: Received) -> None:
        payload = item.payload
        if isinstance(payload, Health):
            conn.execute(*health_update(gw, item, payload))
        elif isinstance(payload, GatewayState):
            site = payload.site.model_dump_json() if payload.site is not None else None
            conn.execute(
                "UPDATE gateways SET state = ?, state_at = ?, "
                "agent_version = coalesce(?, agent_version), "
                "site_summary = coalesce(?, site_summary) "
                "WHERE num = ? AND coalesce(state_at, 0) <= ?",
                (
                    payload.state,
                    item.received_at,
                    payload.agent_version,
                    site,
                    gw,
                    item.received_at,
                ),
            )
        elif isinstance(payload, CommandResult):
            conn.execute(
                "UPDATE commands SET status = ?, result_at = ?, result_detail = ? "
                "WHERE id = ? AND gw = ?",
                (
                    "ok" if payload.ok else "failed",
                    item.received_at,
                    payload.detail,
                    payload.id,
                    gw,
                ),
            )


def advance_stream(
    conn: sqlite3.Connection, gw: int, stream: Stream, first_seq: int, last_seq: int
) -> tuple[int, int]:
    """Record that ``first_seq..last_seq`` of a stream is committed: (mark before, after).

    Every seq up to the mark before is already held, so those rows are skipped. A range
    above the mark that does not join it is remembered until the gap is filled.
    """
    row = conn.execute(
        "SELECT contiguous FROM stream_marks WHERE gw = ? AND stream = ?", (gw, stream.value)
    ).fetchone()
    held = int(row[0]) if row else 0
    if last_seq <= held:
        return held, held
    if first_seq > held + 1:
        # Committed, but not joined to the contiguous part yet: remember the range.
        conn.execute(
            "INSERT INTO stream_ranges (gw, stream, first_seq, last_seq) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (gw, stream, first_seq) DO UPDATE "
            "SET last_seq = max(last_seq, excluded.last_seq)",
            (gw, stream.value, first_seq, last_seq),
        )
        return held, held
    mark = last_seq
    while joined := conn.execute(
        "SELECT first_seq, last_seq FROM stream_ranges WHERE gw = ? AND stream = ? "
        "AND first_seq <= ? ORDER BY first_seq LIMIT 1",
        (gw, stream.value, mark + 1),
    ).fetchone():
        conn.execute(
            "DELETE FROM stream_ranges WHERE gw = ? AND stream = ? AND first_seq = ?",
            (gw, stream.value, joined[0]),
        )
        mark = max(mark, int(joined[1]))
    conn.execute(
        "INSERT INTO stream_marks (gw, stream, contiguous) VALUES (?, ?, ?) "
        "ON CONFLICT (gw, stream) DO UPDATE SET contiguous = excluded.contiguous",
        (gw, stream.value, mark),
    )
    return held, mark


def stream_mark(conn: sqlite3.Connection, gw: int, stream: Stream) -> int:
    """The highest seq of ``stream`` up to which every row is committed (0 for none)."""
    row = conn.execute(
        "SELECT contiguous FROM stream_marks WHERE gw = ? AND stream = ?", (gw, stream.value)
    ).fetchone()
    return int(row[0]) if row else 0


def assign_channel_ids(
    conn: sqlite3.Connection, gw: int, names: Iterable[str], ids: dict[str, int]
) -> dict[str, int]:
    """Fill ``ids`` with the id of each channel ``names`` names, creating new ones (in the lock)."""
    for name in set(names) - ids.keys():
        conn.execute("INSERT OR IGNORE INTO channels (gw, name) VALUES (?, ?)", (gw, name))
        found = conn.execute(
            "SELECT id FROM channels WHERE gw = ? AND name = ?", (gw, name)
        ).fetchone()
        ids[name] = int(found[0])
    return ids


def insert_events(
    conn: sqlite3.Connection, gw: int, events: Sequence[EventRow], received_at: float
) -> int:
    """Insert one gateway's events (those not held yet) and follow their alarm episodes.

    Returns how many were new. An ``alarm`` event opens, raises or clears the rule's
    episode in ``alarms``, which is what 叫应 escalation acts on.
    """
    stored = 0
    for event in events:
        cur = conn.execute(
            "INSERT INTO events (gw, seq, ts, kind, subject, level, detail, "
            "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gw, seq) DO NOTHING",
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
                record_ota_report(conn, gw, event, received_at)
    return stored


def _rejection(item: Received, exc: Exception) -> tuple[str, str, str]:
    """Why ``item`` was not stored, as a ``CommitResult.rejected`` entry.

    ``storage_error`` if SQLite refused its data, else ``internal_error``, logged with its
    traceback: the wire models should have refused it.
    """
    what = type(item.payload).__name__
    if isinstance(exc, sqlite3.Error):
        return (item.gateway_id, "storage_error", f"{what}: {exc}")
    log.error("could not store a %s from %s", what, item.gateway_id, exc_info=exc)
    return (item.gateway_id, "internal_error", f"{what}: {type(exc).__name__}: {exc}")


def _newer_than(values: list[Any], batch: DataBatch, held: int) -> list[Any]:
    """``values`` (gateway, then rows in seq order) without the rows up to ``held``."""
    if batch.first_seq > held:
        return values
    skip = bisect_right(values[1::READING_FIELDS], held)
    return [values[0], *values[1 + READING_FIELDS * skip :]]


def _seen_now(item: Received) -> bool:
    """Whether a message shows the gateway alive now: not a broker replay, not its Last Will."""
    if item.retained:
        return False
    return not (isinstance(item.payload, GatewayState) and item.payload.state == "offline")


def _track_alarm(conn: sqlite3.Connection, gw: int, event: EventRow) -> None:
    """Apply what ``event`` does to its rule's alarm episode (``fleet.alarm_episodes``)."""
    row = conn.execute(
        "SELECT id, last_seq FROM alarms WHERE gw = ? AND rule = ? AND cleared_at IS NULL",
        (gw, event.subject),
    ).fetchone()
    change = episode_change(None if row is None else OpenEpisode(row[0], row[1]), event)
    if isinstance(change, OpenAlarm):
        conn.execute(
            "INSERT INTO alarms (gw, rule, level, peak_level, raised_at, last_seq, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        conn.execute(
            "UPDATE alarms SET level = ?, peak_level = max(peak_level, ?), last_seq = ?, "
            "detail = coalesce(?, detail), cleared_at = ? WHERE id = ?",
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
        conn.execute(
            "UPDATE alarms SET acknowledged_at = coalesce(acknowledged_at, ?), "
            "acknowledged_by = coalesce(acknowledged_by, ?), ack_origin = CASE WHEN "
            "acknowledged_at IS NULL THEN 'gateway' ELSE ack_origin END WHERE id = ?",
            (change.at, change.by, change.alarm_id),
        )
    elif isinstance(change, VillageAnswer):
        conn.execute(
            "INSERT INTO alarm_receipts (alarm_id, person, via, note, confirmed_at, "
            "recorded_by) VALUES (?, ?, ?, NULL, ?, 'gateway')",
            (change.alarm_id, change.person, change.via, change.confirmed_at),
        )
        conn.execute(
            "INSERT INTO gateway_answers (alarm_id, level, person, via, at) VALUES (?, ?, ?, ?, ?)",
            (change.alarm_id, change.level, change.person, change.via, change.confirmed_at),
        )
