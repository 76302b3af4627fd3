"""The gateway's local store: readings, events and upload watermarks in one SQLite file.

WAL mode with synchronous=FULL: an event is on disk when ``record_event`` returns, and
readings are committed in batches at least every second, so a SIGKILL or a power cut
loses at most the last uncommitted second of readings and never an event. All writes
happen on one dedicated thread; callers on the event loop never wait on the disk except
when they choose to await durability.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.model import BAD_QUALITY, Quality, Reading

SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    unit TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    channel INTEGER NOT NULL REFERENCES channels(id),
    value REAL,
    quality INTEGER NOT NULL,
    boot_id TEXT,
    mono REAL
);
CREATE INDEX IF NOT EXISTS readings_channel_ts ON readings(channel, ts);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    level INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, subject);
CREATE TABLE IF NOT EXISTS watermarks (
    stream TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
"""

#: How often the reading buffer is committed (the most a crash can lose).
FLUSH_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: alarm level changes, faults, actuations, acks, config loads."""

    seq: int
    ts: float
    kind: str
    subject: str | None
    level: int | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """Stored readings of one channel, oldest first, as arrays for the alarm engine."""

    t: npt.NDArray[np.float64]
    value: npt.NDArray[np.float64]
    good: npt.NDArray[np.bool_]


def _connect(path: Path) -> sqlite3.Connection:
    # Owner-only (0600) before sqlite3 creates it with the umask's mode: the store holds the
    # site's whole history. SQLite gives its -wal and -shm files the same mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit is fsynced, so a committed event survives a power cut.
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class LocalStore:
    """Durable local storage of one gateway.

    Use ``open`` (or the async context manager) to create it; ``add_readings`` buffers in
    memory, ``flush`` commits (the agent's flusher calls it every ``FLUSH_INTERVAL_S``),
    ``record_event`` commits at once.
    """

    def __init__(self, data_dir: Path, quota_bytes: int | None = None) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "store.sqlite"
        self.quota_bytes = quota_bytes
        self.boot_id = uuid.uuid4().hex[:12]
        self._pending: list[Reading] = []
        self._pending_lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._conn: sqlite3.Connection | None = None
        self._channel_ids: dict[str, int] = {}

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> LocalStore:
        """Create the data directory and schema; safe on an existing store."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            # Incremental auto-vacuum lets the quota policy give pages back to the disk;
            # it only takes effect on an empty database or after a VACUUM.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
        conn.executescript(SCHEMA)
        rows = conn.execute("SELECT id, name FROM channels")
        self._channel_ids = {name: cid for cid, name in rows}
        self._conn = conn
        return self

    def close(self) -> None:
        """Commit what is buffered and close the file."""
        if self._conn is None:
            return
        self._writer.submit(self._flush_sync).result()
        self._writer.shutdown(wait=True)
        self._conn.close()
        self._conn = None

    async def __aenter__(self) -> LocalStore:
        return self.open()

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.to_thread(self.close)

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (for reads on the caller's thread)."""
        if self._conn is None:
            msg = "store is not open"
            raise RuntimeError(msg)
        return self._conn

    # --- readings --------------------------------------------------------------------

    def add_readings(self, readings: Iterable[Reading]) -> None:
        """Buffer readings for the next commit; never touches the disk."""
        with self._pending_lock:
            self._pending.extend(readings)

    @property
    def pending(self) -> int:
        """Readings buffered but not yet committed."""
        return len(self._pending)

    async def flush(self) -> int:
        """Commit the buffered readings in one transaction; return how many."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._flush_sync)

    def _channel_id(self, conn: sqlite3.Connection, reading: Reading) -> int:
        cid = self._channel_ids.get(reading.channel_id)
        if cid is None:
            cur = conn.execute(
                "INSERT INTO channels(name, unit) VALUES (?, ?)", (reading.channel_id, reading.unit)
            )
            cid = self._channel_ids[reading.channel_id] = int(cur.lastrowid or 0)
        return cid

    def _flush_sync(self) -> int:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        conn = self.conn
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            rows = [
                (
                    r.timestamp,
                    self._channel_id(conn, r),
                    None if r.value != r.value else r.value,  # NaN is stored as NULL
                    int(r.quality),
                    self.boot_id,
                    r.mono if r.quality & Quality.CLOCK_UNSYNCED else None,
                )
                for r in batch
            ]
            conn.executemany(
                "INSERT INTO readings(ts, channel, value, quality, boot_id, mono) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        if self.quota_bytes is not None:
            self._enforce_quota_sync()
        return len(batch)

    def history(self, channel_id: str, since: float, until: float | None = None) -> ChannelHistory:
        """Return a channel's readings with ``since <= ts (<= until)``, in time order."""
        cid = self._channel_ids.get(channel_id)
        if cid is None:
            empty = np.empty(0)
            return ChannelHistory(empty, empty.copy(), np.empty(0, dtype=bool))
        query = "SELECT ts, value, quality FROM readings WHERE channel = ? AND ts >= ?"
        args: list[Any] = [cid, since]
        if until is not None:
            query += " AND ts <= ?"
            args.append(until)
        rows = self.conn.execute(query + " ORDER BY ts, seq", args).fetchall()
        t = np.array([r[0] for r in rows], dtype=np.float64)
        value = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=np.float64)
        bad = int(BAD_QUALITY)
        good = np.array([(r[2] & bad) == 0 and r[1] is not None for r in rows], dtype=bool)
        return ChannelHistory(t, value, good)

    def channel_names(self) -> list[str]:
        """Channels that have readings in the store."""
        return sorted(self._channel_ids)

    def reading_count(self) -> int:
        """Number of stored readings."""
        return int(self.conn.execute("SELECT count(*) FROM readings").fetchone()[0])

    def last_reading_seq(self) -> int:
        """Highest reading seq ever assigned (0 when none)."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='readings'").fetchone()
        return int(row[0]) if row else 0

    # --- events ----------------------------------------------------------------------

    async def record_event(
        self,
        ts: float,
        kind: str,
        subject: str | None = None,
        level: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Commit one event; when this returns the event is on disk. Returns its seq."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, self._insert_event, ts, kind, subject, level, detail or {}
        )

    def _insert_event(
        self, ts: float, kind: str, subject: str | None, level: int | None, detail: dict[str, Any]
    ) -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO events(ts, kind, subject, level, detail) VALUES (?, ?, ?, ?, ?)",
                (ts, kind, subject, level, json.dumps(detail, default=str)),
            )
        return int(cur.lastrowid or 0)

    def events(
        self, kinds: Sequence[str] | None = None, since_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        """Return stored events, oldest first, optionally of the given kinds."""
        query = "SELECT seq, ts, kind, subject, level, detail FROM events WHERE seq > ?"
        args: list[Any] = [since_seq]
        if kinds:
            query += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        query += " ORDER BY seq"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [
            StoredEvent(seq, ts, kind, subject, level, json.loads(detail))
            for seq, ts, kind, subject, level, detail in self.conn.execute(query, args)
        ]

    # --- watermarks and quota --------------------------------------------------------

    def watermark(self, stream: str) -> int:
        """Highest seq of ``stream`` the fleet has acknowledged (0 when none)."""
        row = self.conn.execute("SELECT seq FROM watermarks WHERE stream = ?", (stream,)).fetchone()
        return int(row[0]) if row else 0

    async def set_watermark(self, stream: str, seq: int) -> None:
        """Advance (never move back) the acknowledged seq of ``stream``."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._set_watermark_sync, stream, seq)

    def _set_watermark_sync(self, stream: str, seq: int) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO watermarks(stream, seq) VALUES (?, ?) "
                "ON CONFLICT(stream) DO UPDATE SET seq = max(seq, excluded.seq)",
                (stream, seq),
            )

    def size_bytes(self) -> int:
        """Bytes the database occupies (pages in use)."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _enforce_quota_sync(self) -> None:
        quota = self.quota_bytes
        if quota is None or self.size_bytes() <= quota:
            return
        conn = self.conn
        acked = self.watermark("readings")
        # 1. Readings the fleet already holds go first, oldest first.
        while self.size_bytes() > quota:
            with conn:
                cur = conn.execute(
                    "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE seq <= ? "
                    "ORDER BY seq LIMIT 5000)",
                    (acked,),
                )
            if cur.rowcount == 0:
                break
        # 2. Then old raw readings are thinned: every other one of the oldest half, again
        #    and again, so the recent past keeps full resolution longest.
        while self.size_bytes() > quota:
            count = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            if count < 10:
                break
            with conn:
                conn.execute(
                    "DELETE FROM readings WHERE seq IN (SELECT seq FROM (SELECT seq, "
                    "row_number() OVER (ORDER BY seq) AS n FROM readings) "
                    "WHERE n <= ? AND n % 2 = 0)",
                    (count // 2,),
                )
        # Events are never deleted. Hand freed pages back to the file system.
        conn.execute("PRAGMA incremental_vacuum")

    async def correct_unsynced(self, wall_now: float, mono_now: float) -> int:
        """Give unsynchronised readings of this boot real timestamps, now the clock is known.

        A reading taken at monotonic time ``m`` happened at ``wall_now - (mono_now - m)``.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._correct_sync, wall_now, mono_now)

    def _correct_sync(self, wall_now: float, mono_now: float) -> int:
        flag = int(Quality.CLOCK_UNSYNCED)
        with self.conn:
            cur = self.conn.execute(
                "UPDATE readings SET ts = ? - (? - mono), quality = quality & ? "
                "WHERE boot_id = ? AND mono IS NOT NULL AND (quality & ?) != 0",
                (wall_now, mono_now, ~flag, self.boot_id, flag),
            )
        return cur.rowcount

    def integrity_check(self) -> str:
        """Run SQLite's integrity check; "ok" when the file is sound."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])
