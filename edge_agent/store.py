"""The gateway's local store: readings, events and upload watermarks in one SQLite file.

WAL mode with synchronous=FULL: an event is on disk when ``record_event`` returns, and
readings are committed in batches at least every second, so a SIGKILL or a power cut
loses at most the last uncommitted second of readings and never a recorded event. All
writes happen on one dedicated thread; callers on the event loop never wait on the disk
except when they choose to await durability. When the disk refuses a write (full), rows
wait in memory (``edge_agent.held_rows``) and are written, in order, once it accepts them;
the store never raises on the alarm path and never deletes an event the fleet lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.model import BAD_QUALITY, Quality, Reading
from edge_agent.held_rows import MAX_HELD_EVENTS, MAX_HELD_READINGS, HeldEvent, HeldRows
from ota.crash_points import armed, freeze

log = logging.getLogger(__name__)

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
#: Most readings committed in one transaction: after a full disk, what was held goes in
#: slices, so a little free space already takes the oldest of them.
READINGS_PER_COMMIT = 5000
#: Share of the quota events may fill; beyond it, events the fleet holds give way first.
EVENT_SHARE = 0.1
#: Bytes an event row takes besides its text (row header, seq, ts, level, index entry),
#: for the running estimate of the events' size; measured on a WAL store with 4 KiB pages.
EVENT_ROW_OVERHEAD = 48
#: The same estimate in SQL: kind and subject are stored twice (table and index).
_EVENT_BYTES_SQL = (
    f"length(detail) + 2 * length(kind) + 2 * ifnull(length(subject), 0) + {EVENT_ROW_OVERHEAD}"
)


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
class WriteCondition:
    """Whether the store can write, and what waits in memory because it could not.

    ``refused_writes``, ``readings_thinned`` and ``events_lost`` count since start-up;
    ``unwritable`` is the last refusal's reason while writes are refused, else None.
    """

    unwritable: str | None
    refused_writes: int
    held_events: int
    held_readings: int
    readings_thinned: int
    events_lost: int


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

    Use ``open`` (or the async context manager) to create it; ``add_readings`` and
    ``add_event`` hold rows in memory, ``flush`` commits held events, then readings (the
    agent's flusher calls it every ``FLUSH_INTERVAL_S``), ``write_events`` commits held
    events at once, ``record_event`` commits one event or raises. A refused write (a full
    disk) is logged once and counted in ``condition()``; the rows stay held.
    """

    def __init__(
        self,
        data_dir: Path,
        quota_bytes: int | None = None,
        max_held_readings: int = MAX_HELD_READINGS,
        max_held_events: int = MAX_HELD_EVENTS,
    ) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "store.sqlite"
        self.quota_bytes = quota_bytes
        self.boot_id = uuid.uuid4().hex[:12]
        self._held = HeldRows(max_held_readings, max_held_events)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._channel_ids: dict[str, int] = {}
        self._unwritable: str | None = None
        self._refused_writes = 0
        self._refused_before = 0  # refusals counted when the current condition began
        # Estimated bytes of the events table; counted once, on the first quota check.
        self._event_bytes: int | None = None
        # crash tests and `bench/chaos.py kill`: freeze inside the first readings commit
        self._hold_before_commit = armed("edge.store.commit")

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
        self._channel_ids = {name: cid for cid, name in conn.execute(SELECT_CHANNELS)}
        self._conn = conn
        # Reads from the event loop get their own read-only connection: the writer thread
        # may hold a transaction open on ``conn`` at any moment, and reads on it would see
        # (or disturb) that transaction. In WAL mode this one sees each committed state.
        self._reader = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30
        )
        return self

    def close(self) -> None:
        """Commit what is held and close the file; what the disk still refuses is logged."""
        if self._conn is None:
            return
        self._writer.submit(self._flush_sync).result()
        self._writer.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._conn.close()
        self._conn = None
        events = self._held.take_events()
        readings = self._held.take_readings()
        if events or readings:
            log.error(
                "stopping with %d events and %d readings the store could not write (%s); "
                "the events follow here so the log keeps them",
                len(events),
                len(readings),
                self._unwritable,
            )
        for event in events:
            log.error(
                "unstored event: ts=%r kind=%s subject=%s level=%s detail=%s",
                event.ts,
                event.kind,
                event.subject,
                event.level,
                event.detail,
            )

    async def __aenter__(self) -> LocalStore:
        return self.open()

    async def __aexit__(self, *_exc: object) -> None:
        await asyncio.to_thread(self.close)

    @property
    def conn(self) -> sqlite3.Connection:
        """The writer's connection: for the writer thread (and tests), not for reads elsewhere."""
        if self._conn is None:
            msg = "store is not open"
            raise RuntimeError(msg)
        return self._conn

    @property
    def reader(self) -> sqlite3.Connection:
        """A read-only connection that sees committed rows, for reads off the writer thread."""
        if self._reader is None:
            msg = "store is not open"
            raise RuntimeError(msg)
        return self._reader

    # --- readings --------------------------------------------------------------------

    def add_readings(self, readings: Iterable[Reading]) -> None:
        """Hold readings for the next commit; never touches the disk."""
        self._held.add_readings(readings)

    @property
    def pending(self) -> int:
        """Readings held but not yet committed."""
        return self._held.readings

    def condition(self) -> WriteCondition:
        """Whether writes go through, and what waits in memory."""
        return WriteCondition(
            self._unwritable,
            self._refused_writes,
            self._held.events,
            self._held.readings,
            self._held.readings_thinned,
            self._held.events_lost,
        )

    async def flush(self) -> int:
        """Commit held events, then held readings; return how many readings.

        Nothing is committed while the held events are refused: events go first.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._flush_sync)

    def _refused(self, exc: sqlite3.DatabaseError) -> None:
        """Count a write the disk refused; say so once, without a traceback per retry."""
        self._refused_writes += 1
        if self._unwritable is None:
            self._unwritable = str(exc)
            self._refused_before = self._refused_writes - 1
            log.warning(
                "the store cannot write (%s): events and readings wait in memory (at most "
                "%d events and %d readings) and are written in order when it can; later "
                "refusals are only counted",
                exc,
                self._held.max_events,
                self._held.max_readings,
            )
        if self.conn.in_transaction:  # SQLite rolls back some refusals itself, not all
            with contextlib.suppress(sqlite3.Error):
                self.conn.rollback()

    def _accepted(self) -> None:
        """A flush wrote everything it took: the condition is over."""
        if self._unwritable is not None:
            log.warning(
                "the store writes again (%d writes were refused); held events were written "
                "in order with their original times",
                self._refused_writes - self._refused_before,
            )
            self._unwritable = None
            self._held.condition_cleared()

    def _channel_id(self, conn: sqlite3.Connection, reading: Reading) -> int:
        cid = self._channel_ids.get(reading.channel_id)
        if cid is None:
            cur = conn.execute(
                "INSERT INTO channels(name, unit) VALUES (?, ?)", (reading.channel_id, reading.unit)
            )
            cid = self._channel_ids[reading.channel_id] = int(cur.lastrowid or 0)
        return cid

    def _flush_sync(self) -> int:
        if self._write_events_sync() is None:
            return 0
        batch = self._held.take_readings()
        written = 0
        while written < len(batch):
            chunk = batch[written : written + READINGS_PER_COMMIT]
            try:
                self._insert_readings(chunk)
            except sqlite3.OperationalError as exc:
                self._held.put_back_readings(batch[written:])
                self._refused(exc)
                # The rolled-back transaction may have created channels: ask the file.
                with contextlib.suppress(sqlite3.Error):
                    self._channel_ids = {
                        name: cid for cid, name in self.conn.execute(SELECT_CHANNELS)
                    }
                break
            written += len(chunk)
        else:
            self._accepted()
        if written and self.quota_bytes is not None:
            try:
                self._enforce_quota_sync()
            except sqlite3.OperationalError as exc:
                self._refused(exc)
        return written

    def _insert_readings(self, batch: list[Reading]) -> None:
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
            if self._hold_before_commit is not None:
                freeze(self._hold_before_commit)  # the rows are written, not committed

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
        rows = self.reader.execute(query + " ORDER BY ts, seq", args).fetchall()
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
        return int(self.reader.execute("SELECT count(*) FROM readings").fetchone()[0])

    def last_reading_seq(self) -> int:
        """Highest reading seq ever assigned (0 when none)."""
        row = self.reader.execute(
            "SELECT seq FROM sqlite_sequence WHERE name='readings'"
        ).fetchone()
        return int(row[0]) if row else 0

    # --- events ----------------------------------------------------------------------

    def add_event(
        self,
        ts: float,
        kind: str,
        subject: str | None = None,
        level: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Hold one event for ``write_events`` (or the next flush); never touches the disk.

        Raises:
            ValueError: for an event no row could hold (a non-finite time, an empty kind).
        """
        self._held.add_event(_held_event(ts, kind, subject, level, detail))

    async def write_events(self) -> int:
        """Commit the held events in one transaction; return how many (0 when refused)."""
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(self._writer, self._write_events_sync)
        return len(written or ())

    async def record_event(
        self,
        ts: float,
        kind: str,
        subject: str | None = None,
        level: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Commit one event after those held; when this returns it is on disk. Returns its seq.

        Raises:
            sqlite3.DatabaseError: the file refused the write (OperationalError for a full
                disk). The event is then not held either, so the caller may record it
                again without a duplicate.
        """
        event = _held_event(ts, kind, subject, level, detail)
        self._held.add_event(event)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._record_sync, event)

    def _record_sync(self, event: HeldEvent) -> int:
        try:
            written = self._write_events_sync(raise_refusal=True)
        except sqlite3.DatabaseError:
            self._held.withdraw_event(event)
            raise
        for held, seq in written or ():
            if held is event:
                return seq
        msg = "the event was dropped from memory before it could be written"
        raise RuntimeError(msg)

    def _write_events_sync(self, raise_refusal: bool = False) -> list[tuple[HeldEvent, int]] | None:
        """Write every held event in one transaction; None when the disk refused."""
        batch = self._held.take_events()
        if not batch:
            return []
        written: list[tuple[HeldEvent, int]] = []
        conn = self.conn
        try:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                for event in batch:
                    cur = conn.execute(
                        "INSERT INTO events(ts, kind, subject, level, detail) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (event.ts, event.kind, event.subject, event.level, event.detail),
                    )
                    written.append((event, int(cur.lastrowid or 0)))
        except sqlite3.DatabaseError as exc:
            # Every held event is a valid row (``_held_event``), so any refusal is the
            # file's (full, locked, damaged): keep them all, in order, and try again.
            self._held.put_back_events(batch)
            self._refused(exc)
            if raise_refusal:
                raise
            return None
        if self._event_bytes is not None:
            self._event_bytes += sum(_event_bytes(event) for event in batch)
        return written

    def events(
        self,
        kinds: Sequence[str] | None = None,
        since_seq: int = 0,
        limit: int | None = None,
        last: int | None = None,
    ) -> list[StoredEvent]:
        """Stored events, oldest first, optionally of some kinds; ``last``: only the newest N."""
        query = "SELECT seq, ts, kind, subject, level, detail FROM events WHERE seq > ?"
        args: list[Any] = [since_seq]
        if kinds:
            query += f" AND kind IN ({','.join('?' * len(kinds))})"
            args.extend(kinds)
        if last is not None:  # the newest ``last``, still oldest first
            query = f"SELECT * FROM ({query} ORDER BY seq DESC LIMIT {int(last)})"
        query += " ORDER BY seq"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [
            StoredEvent(seq, ts, kind, subject, level, json.loads(detail))
            for seq, ts, kind, subject, level, detail in self.reader.execute(query, args)
        ]

    def last_event(self, kind: str, subject: str, change: str | None = None) -> StoredEvent | None:
        """The newest stored event of ``kind`` about ``subject``, or None.

        ``change`` narrows it to events whose ``detail.kind`` is that (``rise``: an alarm
        that rose).
        """
        query = "SELECT seq, ts, kind, subject, level, detail FROM events "
        query += "WHERE kind = ? AND subject = ?"
        args: list[Any] = [kind, subject]
        if change is not None:
            query += " AND json_extract(detail, '$.kind') = ?"
            args.append(change)
        row = self.reader.execute(query + " ORDER BY seq DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        seq, ts, kind, subject, level, detail = row
        return StoredEvent(seq, ts, kind, subject, level, json.loads(detail))

    # --- watermarks and quota --------------------------------------------------------

    def watermark(self, stream: str) -> int:
        """Highest seq of ``stream`` the fleet has acknowledged (0 when none)."""
        return _watermark(self.reader, stream)

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
        # 1. Events beyond their share that the fleet holds, oldest first.
        self._trim_events_sync(int(quota * EVENT_SHARE))
        acked = _watermark(conn, "readings")
        # 2. Readings the fleet already holds, oldest first.
        while self.size_bytes() > quota:
            with conn:
                cur = conn.execute(
                    "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings WHERE seq <= ? "
                    "ORDER BY seq LIMIT 5000)",
                    (acked,),
                )
            if cur.rowcount == 0:
                break
        # 3. Then old raw readings are thinned: every other one of the oldest half, again
        #    and again, so the recent past keeps full resolution longest. Only events the
        #    fleet does not hold yet can push readings below their share this way.
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
        # Hand freed pages back to the file system.
        conn.execute("PRAGMA incremental_vacuum")

    def event_bytes(self) -> int:
        """Estimated bytes the events take (text plus ``EVENT_ROW_OVERHEAD`` per row)."""
        if self._event_bytes is None:
            row = self.conn.execute(f"SELECT ifnull(sum({_EVENT_BYTES_SQL}), 0) FROM events")
            self._event_bytes = int(row.fetchone()[0])
        return self._event_bytes

    def _trim_events_sync(self, share: int) -> None:
        """Delete events the fleet holds, oldest first, until they fit in ``share`` bytes.

        An event the fleet has not acknowledged is never deleted, and neither is the
        newest ``rise`` alarm nor the newest ``ack`` of each rule: a restart reads them
        to restore a latched alarm.
        """
        if self.event_bytes() <= share:
            return
        conn = self.conn
        acked = _watermark(self.conn, "events")
        latch_state = [
            seq
            for (seq,) in conn.execute(
                "SELECT max(seq) FROM events WHERE kind = 'ack' GROUP BY subject UNION "
                "SELECT max(seq) FROM events WHERE kind = 'alarm' "
                "AND json_extract(detail, '$.kind') = 'rise' GROUP BY subject"
            )
        ]
        keep = ",".join(str(int(seq)) for seq in latch_state) or "0"
        oldest = (
            f"SELECT seq FROM events WHERE seq <= ? AND seq NOT IN ({keep}) ORDER BY seq LIMIT 500"
        )
        while self.event_bytes() > share:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                count, freed = conn.execute(
                    f"SELECT count(*), ifnull(sum({_EVENT_BYTES_SQL}), 0) FROM events "
                    f"WHERE seq IN ({oldest})",
                    (acked,),
                ).fetchone()
                conn.execute(f"DELETE FROM events WHERE seq IN ({oldest})", (acked,))
            if count == 0:
                break
            self._event_bytes = self.event_bytes() - int(freed)

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


SELECT_CHANNELS = "SELECT id, name FROM channels"


def _watermark(conn: sqlite3.Connection, stream: str) -> int:
    row = conn.execute("SELECT seq FROM watermarks WHERE stream = ?", (stream,)).fetchone()
    return int(row[0]) if row else 0


def _held_event(
    ts: float, kind: str, subject: str | None, level: int | None, detail: dict[str, Any] | None
) -> HeldEvent:
    """Check an event can be a row, and freeze its detail as JSON now, as it happened.

    An infinite time is kept (the uplink sends it clamped and flagged, see
    ``upload_source``); NaN cannot be stored at all and is refused here, before it could
    block the queue of held events.
    """
    if math.isnan(ts):
        msg = f"event {kind!r}: time {ts!r} is not a number"
        raise ValueError(msg)
    if not kind:
        msg = "an event needs a kind"
        raise ValueError(msg)
    if level is not None and not -(2**63) <= level < 2**63:
        msg = f"event {kind!r}: level {level} does not fit a stored integer"
        raise ValueError(msg)
    return HeldEvent(float(ts), kind, subject, level, json.dumps(detail or {}, default=str))


def _event_bytes(event: HeldEvent) -> int:
    """The Python side of ``_EVENT_BYTES_SQL``."""
    subject = len(event.subject) if event.subject is not None else 0
    return len(event.detail) + 2 * len(event.kind) + 2 * subject + EVENT_ROW_OVERHEAD
