"""The SQLite write path of ingest: one transaction per group of messages, exact stream marks.

Each stream keeps its highest contiguous seq (``stream_marks``) plus the committed ranges
above it (``stream_ranges``); both change in the same transaction as the rows, so an ack
computed here is true after any crash. Readings go in as multi-row INSERTs: one SQLite
call per thousand rows holds the GIL only to bind values and does the B-tree work without
it, so parsing the next messages runs alongside.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fleet.repository import CommitResult, Received
from protocol import CommandResult, DataBatch, EventBatch, EventRow, GatewayState, Health, Stream

#: Rows per INSERT statement (6 values each; SQLite allows 32766 per statement).
ROWS_PER_STATEMENT = 1000
_READING_COLUMNS = 6
_INSERT = "INSERT OR IGNORE INTO readings (gw, seq, ts, channel, value, quality) VALUES "


def _insert_sql(rows: int) -> str:
    return _INSERT + ",".join(["(?,?,?,?,?,?)"] * rows)


_FULL_STATEMENT = _insert_sql(ROWS_PER_STATEMENT)


def insert_readings(conn: sqlite3.Connection, flat: list[Any]) -> int:
    """Insert readings given as one flat list of (gw, seq, ts, channel, value, quality) values.

    Returns how many rows were new; rows already held are ignored.
    """
    before = conn.total_changes
    step = ROWS_PER_STATEMENT * _READING_COLUMNS
    full = len(flat) - len(flat) % step
    for start in range(0, full, step):
        conn.execute(_FULL_STATEMENT, flat[start : start + step])
    if full < len(flat):
        conn.execute(_insert_sql((len(flat) - full) // _READING_COLUMNS), flat[full:])
    return conn.total_changes - before


class IngestWriter:
    """Commits groups of received messages; used from the repository's writer thread.

    ``hold_before_commit`` is fault injection for the crash test: before committing the
    first group with rows, create that file and wait for SIGKILL.
    """

    def __init__(self, hold_before_commit: Path | None = None) -> None:
        self._hold_before_commit = hold_before_commit
        self._gateway_nums: dict[str, int] = {}
        self._channel_ids: dict[int, dict[str, int]] = {}

    def commit(self, conn: sqlite3.Connection, received: Sequence[Received]) -> CommitResult:
        """Store ``received`` in one transaction and return the acks to publish.

        If SQLite refuses the data of some message (a constraint, not the disk), the group
        is retried one message at a time so only that message is rejected. Operational
        errors (disk full, lock timeout) propagate: nothing is acked, gateways resend.
        """
        result = CommitResult()
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._write(conn, received, result)
            if self._hold_before_commit is not None and result.rows_stored:
                self._hold_before_commit.touch()
                threading.Event().wait()
            conn.execute("COMMIT")
        except sqlite3.OperationalError:
            self._rollback(conn)
            raise
        except sqlite3.Error as exc:
            self._rollback(conn)
            if len(received) == 1:
                item = received[0]
                return CommitResult(rejected=[(item.gateway_id, "storage_error", str(exc))])
            return self._one_by_one(conn, received)
        except BaseException:
            self._rollback(conn)
            raise
        return result

    def _one_by_one(self, conn: sqlite3.Connection, received: Sequence[Received]) -> CommitResult:
        merged = CommitResult()
        for item in received:
            single = self.commit(conn, [item])
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
        self, conn: sqlite3.Connection, received: Sequence[Received], result: CommitResult
    ) -> None:
        last_seen: dict[int, float] = {}
        for item in received:
            gw = self._gateway_num(conn, item.gateway_id)
            if gw is None:
                result.rejected.append((item.gateway_id, "unknown_gateway", "not enrolled"))
                continue
            if _seen_now(item):
                last_seen[gw] = max(last_seen.get(gw, 0.0), item.received_at)
            payload = item.payload
            if isinstance(payload, DataBatch):
                held, mark = self._advance(conn, gw, Stream.READINGS, payload)
                result.acks[(item.gateway_id, Stream.READINGS)] = mark
                stored = 0
                if payload.last_seq > held:
                    # Batch by batch: binding one while SQLite writes the previous one lets
                    # the event loop parse in between (the B-tree work runs without the GIL).
                    stored = insert_readings(conn, self._flatten(conn, gw, payload, held))
                result.rows_stored += stored
                result.rows_duplicate += len(payload.rows) - stored
            elif isinstance(payload, EventBatch):
                held, mark = self._advance(conn, gw, Stream.EVENTS, payload)
                result.acks[(item.gateway_id, Stream.EVENTS)] = mark
                new = [e for e in payload.rows if e.seq > held]
                stored = self._insert_events(conn, gw, new, item.received_at)
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

    def _advance(
        self, conn: sqlite3.Connection, gw: int, stream: Stream, batch: DataBatch | EventBatch
    ) -> tuple[int, int]:
        """Record that ``batch``'s range is committed; return (mark before, mark after).

        Every seq up to the mark before is already held, so those rows are skipped.
        """
        row = conn.execute(
            "SELECT contiguous FROM stream_marks WHERE gw = ? AND stream = ?", (gw, stream.value)
        ).fetchone()
        held = int(row[0]) if row else 0
        if batch.last_seq <= held:
            return held, held
        if batch.first_seq > held + 1:
            # Committed, but not joined to the contiguous part yet: remember the range.
            conn.execute(
                "INSERT INTO stream_ranges (gw, stream, first_seq, last_seq) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (gw, stream, first_seq) DO UPDATE "
                "SET last_seq = max(last_seq, excluded.last_seq)",
                (gw, stream.value, batch.first_seq, batch.last_seq),
            )
            return held, held
        mark = batch.last_seq
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

    def _flatten(self, conn: sqlite3.Connection, gw: int, batch: DataBatch, held: int) -> list[Any]:
        """The batch's rows newer than ``held`` as one flat list of column values."""
        ids = self._channel_ids.setdefault(gw, {})
        for name in {row[2] for row in batch.rows} - ids.keys():
            conn.execute("INSERT OR IGNORE INTO channels (gw, name) VALUES (?, ?)", (gw, name))
            found = conn.execute(
                "SELECT id FROM channels WHERE gw = ? AND name = ?", (gw, name)
            ).fetchone()
            ids[name] = int(found[0])
        out: list[Any] = []
        extend = out.extend
        rows = batch.rows if batch.first_seq > held else [r for r in batch.rows if r[0] > held]
        for seq, ts, channel, value, quality in rows:
            extend((gw, seq, ts, ids[channel], value, quality))
        return out

    def _insert_events(
        self, conn: sqlite3.Connection, gw: int, events: Sequence[EventRow], received_at: float
    ) -> int:
        stored = 0
        for event in events:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (gw, seq, ts, kind, subject, level, detail, "
                "received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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

    @staticmethod
    def _apply_status(conn: sqlite3.Connection, gw: int, item: Received) -> None:
        payload = item.payload
        if isinstance(payload, Health):
            conn.execute(
                "UPDATE gateways SET health = ?, health_at = ?, agent_version = ? "
                "WHERE num = ? AND coalesce(health_at, 0) <= ?",
                (payload.model_dump_json(), payload.ts, payload.agent_version, gw, payload.ts),
            )
        elif isinstance(payload, GatewayState):
            conn.execute(
                "UPDATE gateways SET state = ?, state_at = ?, "
                "agent_version = coalesce(?, agent_version) WHERE num = ?",
                (payload.state, item.received_at, payload.agent_version, gw),
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


def _seen_now(item: Received) -> bool:
    """Whether a message shows the gateway alive now: not a broker replay, not its Last Will."""
    if item.retained:
        return False
    return not (isinstance(item.payload, GatewayState) and item.payload.state == "offline")


def _track_alarm(conn: sqlite3.Connection, gw: int, event: EventRow) -> None:
    """Follow a rule's alarm episode from ``alarm`` and ``ack`` events.

    An event older than the last one applied to the episode stays in ``events`` but does
    not move the alarm back in time.
    """
    open_alarm = conn.execute(
        "SELECT id, last_seq FROM alarms WHERE gw = ? AND rule = ? AND cleared_at IS NULL",
        (gw, event.subject),
    ).fetchone()
    if open_alarm is not None and event.seq < open_alarm[1]:
        return
    if event.kind == "ack":
        if open_alarm is not None:
            by = f"{event.detail.get('by', 'local')} (at the gateway)"
            conn.execute(
                "UPDATE alarms SET acknowledged_at = coalesce(acknowledged_at, ?), "
                "acknowledged_by = coalesce(acknowledged_by, ?) WHERE id = ?",
                (event.ts, by, open_alarm[0]),
            )
        return
    if event.kind != "alarm" or event.level is None:
        return
    text = event.detail.get("detail")
    detail = str(text) if text is not None else None
    if open_alarm is None:
        if event.level > 0:
            conn.execute(
                "INSERT INTO alarms (gw, rule, level, peak_level, raised_at, last_seq, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (gw, event.subject, event.level, event.level, event.ts, event.seq, detail),
            )
        return
    conn.execute(
        "UPDATE alarms SET level = ?, peak_level = max(peak_level, ?), last_seq = ?, "
        "detail = coalesce(?, detail), cleared_at = CASE WHEN ? = 0 THEN ? END WHERE id = ?",
        (event.level, event.level, event.seq, detail, event.level, event.ts, open_alarm[0]),
    )
