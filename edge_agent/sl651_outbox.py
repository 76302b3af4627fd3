"""The SL 651 uplink's store-and-forward: its frames and its own watermark, on disk.

Every report is composed once, given the next serial and written here, whole, before it
is first sent; a resend sends those very bytes, so the centre sees the original serial,
observation time and send time. The tables live in the agent's ``store.sqlite`` beside
(never inside) the store's own tables: ``sl651_frames`` holds the frames, acknowledged or
not, and ``sl651_progress`` the uplink's counters (last serial, the report times already
composed, the watermark: every frame up to it is acknowledged). Its own connection
(``synchronous=FULL``) on one thread of its own, so the event loop never waits on the
disk. This module never reads or writes the store's readings, events or watermarks, and
never deletes a frame the centre has not acknowledged.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from protocol.sl651 import FunctionCode

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS sl651_frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function INTEGER NOT NULL,
    serial INTEGER NOT NULL,
    observed_at REAL NOT NULL,
    composed_at REAL NOT NULL,
    frame BLOB NOT NULL,
    sends INTEGER NOT NULL DEFAULT 0,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS sl651_frames_unacked ON sl651_frames(acked_at, id);
CREATE TABLE IF NOT EXISTS sl651_progress (
    key TEXT PRIMARY KEY,
    value REAL NOT NULL
);
"""
#: Acknowledged frames kept below the watermark (for ``edge status`` and audits): about
#: two weeks of 5-minute reports. Older acknowledged ones are deleted.
KEEP_ACKED = 5000

#: ``sl651_progress`` keys.
SERIAL = "serial"
WATERMARK = "watermark"
COMPOSED = {FunctionCode.TIMED: "timed_through", FunctionCode.HOURLY: "hourly_through"}


@dataclass(frozen=True, slots=True)
class OutboxFrame:
    """One composed report as stored: its bytes are what every send sends."""

    id: int
    function: FunctionCode
    serial: int
    observed_at: float
    frame: bytes
    sends: int
    acked_at: float | None


@dataclass(frozen=True, slots=True)
class OutboxState:
    """The uplink's progress: watermark (frame id), highest id, unacknowledged frames."""

    watermark: int
    last_id: int
    backlog: int
    serial: int


class Sl651Outbox:
    """The frames of ``store_path`` (the agent's ``store.sqlite``); ``open`` before use."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sl651-outbox")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: work(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.store_path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    async def open(self) -> None:
        """Create the tables (the store has made the file and chosen its journal mode)."""
        await self._run(lambda _conn: None)

    def close(self) -> None:
        """Close the connection and stop the thread."""

        def close_conn() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(close_conn).result()
        self._thread.shutdown(wait=True)

    # --- composing ------------------------------------------------------------------------

    async def progress(self, key: str) -> float | None:
        """A progress value (None when never set)."""
        return await self._run(lambda conn: _progress(conn, key))

    async def set_progress(self, key: str, value: float) -> None:
        """Set a progress value (a report time composed with nothing to send, say)."""

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                _set(conn, key, value)

        await self._run(write)

    async def compose(
        self,
        function: FunctionCode,
        observed_at: float,
        composed_at: float,
        build: Callable[[int], bytes],
    ) -> int:
        """Give a report the next serial, build its bytes and store them; return its id.

        One transaction: the frame, the serial and (for a timed or hourly report) its
        report time as composed go in together, so a crash never composes a report twice.
        """

        def write(conn: sqlite3.Connection) -> int:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                serial = int(_progress(conn, SERIAL) or 0) % 0xFFFF + 1
                frame = build(serial)
                cursor = conn.execute(
                    "INSERT INTO sl651_frames (function, serial, observed_at, composed_at, frame)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (int(function), serial, observed_at, composed_at, frame),
                )
                _set(conn, SERIAL, serial)
                if function in COMPOSED:
                    _set(conn, COMPOSED[function], observed_at)
                return int(cursor.lastrowid or 0)

        return await self._run(write)

    # --- sending --------------------------------------------------------------------------

    async def next_unacknowledged(self) -> OutboxFrame | None:
        """The frame to send next: add reports first, then the oldest."""

        def read(conn: sqlite3.Connection) -> OutboxFrame | None:
            row = conn.execute(
                f"{_SELECT} WHERE acked_at IS NULL ORDER BY function != ?, id LIMIT 1",
                (int(FunctionCode.ADD),),
            ).fetchone()
            return None if row is None else _frame(row)

        return await self._run(read)

    async def sending(self, frame_id: int) -> None:
        """Count one send of a frame."""

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("UPDATE sl651_frames SET sends = sends + 1 WHERE id = ?", (frame_id,))

        await self._run(write)

    async def acknowledge(self, frame_id: int, now: float) -> int:
        """Mark a frame acknowledged and move the watermark; return the watermark."""

        def write(conn: sqlite3.Connection) -> int:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(
                    "UPDATE sl651_frames SET acked_at = ? WHERE id = ? AND acked_at IS NULL",
                    (now, frame_id),
                )
                first_open = conn.execute(
                    "SELECT min(id) FROM sl651_frames WHERE acked_at IS NULL"
                ).fetchone()[0]
                last = conn.execute("SELECT max(id) FROM sl651_frames").fetchone()[0] or 0
                watermark = int(first_open - 1 if first_open is not None else last)
                _set(conn, WATERMARK, max(watermark, int(_progress(conn, WATERMARK) or 0)))
                conn.execute(
                    "DELETE FROM sl651_frames WHERE id <= ? AND acked_at IS NOT NULL",
                    (watermark - KEEP_ACKED,),
                )
                return watermark

        return await self._run(write)

    # --- reading ---------------------------------------------------------------------------

    async def state(self) -> OutboxState:
        """Watermark, highest frame id, how many wait for an answer, last serial."""

        def read(conn: sqlite3.Connection) -> OutboxState:
            backlog = conn.execute(
                "SELECT count(*) FROM sl651_frames WHERE acked_at IS NULL"
            ).fetchone()[0]
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'sl651_frames'")
            last = row.fetchone()
            return OutboxState(
                int(_progress(conn, WATERMARK) or 0),
                int(last[0]) if last else 0,
                int(backlog),
                int(_progress(conn, SERIAL) or 0),
            )

        return await self._run(read)

    async def frames(self) -> list[OutboxFrame]:
        """Every frame kept, oldest first."""
        return await self._run(
            lambda conn: [_frame(row) for row in conn.execute(f"{_SELECT} ORDER BY id")]
        )


_SELECT = "SELECT id, function, serial, observed_at, frame, sends, acked_at FROM sl651_frames"


def _frame(row: tuple[int, int, int, float, bytes, int, float | None]) -> OutboxFrame:
    frame_id, function, serial, observed_at, frame, sends, acked_at = row
    return OutboxFrame(
        frame_id, FunctionCode(function), serial, observed_at, bytes(frame), sends, acked_at
    )


def _progress(conn: sqlite3.Connection, key: str) -> float | None:
    row = conn.execute("SELECT value FROM sl651_progress WHERE key = ?", (key,)).fetchone()
    return None if row is None else float(row[0])


def _set(conn: sqlite3.Connection, key: str, value: float) -> None:
    conn.execute(
        "INSERT INTO sl651_progress (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
