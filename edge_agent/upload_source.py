"""Unacknowledged readings and events from the local store, as encoded protocol batches.

It reads on its own read-only SQLite connection and does all reading and JSON encoding on
one worker thread of its own, so the event loop (and with it the alarm path) never waits
on the disk or on encoding. It never writes to the store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_agent import reading_stage
from edge_agent.store import last_seqs_sql
from protocol import MAX_PAYLOAD_BYTES, DataBatch, EventBatch, EventRow, ReadingRow, Stream
from protocol.payloads import finite_json, sendable_reading, sendable_timestamp

T = TypeVar("T")

_KIND_MAX = 32
_SUBJECT_MAX = 128


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One batch ready to publish: it covers ``first_seq..last_seq`` of ``stream``."""

    stream: Stream
    first_seq: int
    last_seq: int
    rows: int
    payload: bytes


def event_row(
    seq: int, ts: float, kind: str, subject: str | None, level: int | None, detail: str
) -> EventRow:
    """A stored event as a wire row; fields the wire cannot carry are clipped, never dropped.

    A row the fleet would refuse would stall the events stream for good, so an over-long
    kind or subject is shortened, an unexpected level moves into ``detail``, a NaN or
    infinity in ``detail`` goes as text, and a time outside the wire's range is clamped
    into it (the time as recorded is kept in ``detail.recorded_ts``).
    """
    try:
        parsed = json.loads(detail)
    except ValueError:
        parsed = detail
    details: dict[str, Any] = finite_json(parsed if isinstance(parsed, dict) else {"value": parsed})
    if level is not None and not 0 <= level <= 4:
        details = {**details, "level": level}
        level = None
    sent_ts = sendable_timestamp(ts)
    if sent_ts != ts:
        details = {**details, "recorded_ts": repr(ts)}
    return EventRow(
        seq=seq,
        ts=sent_ts,
        kind=kind[:_KIND_MAX] or "event",
        subject=None if subject is None else subject[:_SUBJECT_MAX],
        level=level,
        detail=details,
    )


class UploadSource:
    """Builds batches of ``gateway_id`` from the store at ``store_path``.

    ``batch_rows`` is the most rows per batch for each stream; a batch is split further
    when its JSON would pass ``MAX_PAYLOAD_BYTES``.
    """

    def __init__(self, store_path: Path, gateway_id: str, batch_rows: Mapping[Stream, int]) -> None:
        self.store_path = store_path
        self.gateway_id = gateway_id
        self.batch_rows = dict(batch_rows)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uplink-reader")
        self._conn: sqlite3.Connection | None = None
        self._staged = False  # whether the connection sees the store's stage

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: work(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"file:{self.store_path}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
            self._staged = reading_stage.attach_recorded(self._conn)
        return self._conn

    def close(self) -> None:
        """Close the connection and stop the thread."""

        def close_conn() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(close_conn).result()
        self._thread.shutdown(wait=True)

    # --- what the store holds ---------------------------------------------------------

    async def watermarks(self) -> dict[Stream, int]:
        """The acknowledged seq of each stream as stored."""

        def read(conn: sqlite3.Connection) -> dict[Stream, int]:
            rows = dict(conn.execute("SELECT stream, seq FROM watermarks").fetchall())
            return {s: int(rows.get(s.value, 0)) for s in Stream}

        return await self._run(read)

    async def last_seqs(self) -> dict[Stream, int]:
        """The highest seq ever assigned in each stream (0 when none)."""

        def read(conn: sqlite3.Connection) -> dict[Stream, int]:
            rows = dict(conn.execute(last_seqs_sql(self._staged)).fetchall())
            return {s: int(rows.get(s.value, 0)) for s in Stream}

        return await self._run(read)

    # --- batches --------------------------------------------------------------------------

    async def batch(self, stream: Stream, after_seq: int) -> EncodedBatch | None:
        """The next batch of ``stream`` after ``after_seq``, or None when nothing is stored.

        The batch starts at ``after_seq + 1`` even when rows there were thinned away under
        the disk quota, so the fleet sees one unbroken range.
        """
        limit = self.batch_rows[stream]
        if stream is Stream.READINGS:
            return await self._run(lambda conn: self._readings(conn, after_seq, limit))
        return await self._run(lambda conn: self._events(conn, after_seq, limit))

    def _readings(self, conn: sqlite3.Connection, after: int, limit: int) -> EncodedBatch | None:
        # sendable_reading flags what the wire cannot carry (NaN, infinities, an unset clock)
        # instead of letting one such row stall the stream.
        rows: list[ReadingRow] = [
            sendable_reading(seq, ts, name, value, quality)
            for seq, ts, name, value, quality in conn.execute(
                "SELECT r.seq, r.ts, c.name, r.value, r.quality FROM readings r "
                "JOIN channels c ON c.id = r.channel WHERE r.seq > ? ORDER BY r.seq LIMIT ?",
                (after, limit),
            )
        ]
        while rows:
            batch = DataBatch(
                gateway_id=self.gateway_id, first_seq=after + 1, last_seq=rows[-1][0], rows=rows
            )
            payload = batch.model_dump_json().encode()
            if len(payload) <= MAX_PAYLOAD_BYTES or len(rows) == 1:
                return EncodedBatch(
                    Stream.READINGS, batch.first_seq, batch.last_seq, len(rows), payload
                )
            rows = rows[: len(rows) // 2]
        return None

    def _events(self, conn: sqlite3.Connection, after: int, limit: int) -> EncodedBatch | None:
        rows = [
            event_row(*row)
            for row in conn.execute(
                "SELECT seq, ts, kind, subject, level, detail FROM events WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after, limit),
            )
        ]
        while rows:
            batch = EventBatch(
                gateway_id=self.gateway_id, first_seq=after + 1, last_seq=rows[-1].seq, rows=rows
            )
            payload = batch.model_dump_json().encode()
            if len(payload) <= MAX_PAYLOAD_BYTES:
                return EncodedBatch(
                    Stream.EVENTS, batch.first_seq, batch.last_seq, len(rows), payload
                )
            if len(rows) == 1:
                # One event larger than a whole message: send what it was, not what it said.
                big = rows[0]
                rows = [big.model_copy(update={"detail": {"truncated_bytes": len(payload)}})]
                continue
            rows = rows[: len(rows) // 2]
        return None


def stored_progress(store_path: Path) -> dict[Stream, tuple[int, int]]:
    """``(highest seq stored, acknowledged seq)`` per stream, read-only; zeros without a store."""
    if not store_path.exists():
        return dict.fromkeys(Stream, (0, 0))
    conn = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=10)
    try:
        staged = reading_stage.attach_recorded(conn)
        last = dict(conn.execute(last_seqs_sql(staged)).fetchall())
        acked = dict(conn.execute("SELECT stream, seq FROM watermarks").fetchall())
    except sqlite3.OperationalError:
        return dict.fromkeys(Stream, (0, 0))  # the agent has not created its schema yet
    finally:
        conn.close()
    return {s: (int(last.get(s.value, 0)), int(acked.get(s.value, 0))) for s in Stream}
