"""The gateway's local store: readings, events and upload watermarks in one SQLite file.

It spares the SD card: readings are appended in seq order (no per-channel index: a
small ``reading_hours`` table finds where an hour begins) and committed with
synchronous=NORMAL, so a commit adds a page or two to the WAL and waits for no fsync;
events are committed with synchronous=FULL, so an event is on disk when ``record_event``
or ``write_events`` returns (that fsync also makes every reading before it durable).
With a stage directory on tmpfs (``stage_dir``;
``edge_agent.reading_stage``) a poll round's commit goes to RAM instead, and the
readings move into the store in one FULL commit every ``DURABLE_EVERY_S``, with each
event write, and on closing; the store then uses a rollback journal, so those appends
reach the card once, not first in the WAL and again at the checkpoint.
A SIGKILL loses only readings not yet committed, never a committed one nor an event; a
power cut may also lose the readings committed since the last fsync (at most
``DURABLE_EVERY_S``), and their seqs are never handed out again: seqs are reserved on
disk, with FULL sync, ahead of use (``sqlite_sequence`` holds the reservation, so a
commit of readings does not write it). Watermarks are kept in memory and written at most
every ``WATERMARK_EVERY_S`` (an older one on disk only means a resend the fleet dedupes).
All writes happen on one dedicated thread; callers on the event loop never wait on the
disk except when they choose to await durability. When the disk refuses a write (full),
rows wait in memory (``edge_agent.held_rows``) and are written, in order, once it accepts
them; the store never raises on the alarm path and never deletes an event the fleet lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drivers.model import BAD_QUALITY, Quality, Reading
from edge_agent import reading_stage
from edge_agent.held_rows import MAX_HELD_EVENTS, MAX_HELD_READINGS, HeldEvent, HeldRows
from edge_agent.mounts import system_mount_of
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
CREATE TABLE IF NOT EXISTS reading_hours (
    hour INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL
);
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

#: Stores of earlier releases had one index entry per reading in (channel, ts): every
#: commit rewrote one index page per channel. It goes on upgrade, and ``reading_hours``
#: is filled from the readings (again after a rollback to such a release, which
#: recreates the index and writes readings ``reading_hours`` does not know).
_UPGRADE = """
DROP INDEX IF EXISTS readings_channel_ts;
INSERT INTO reading_hours(hour, first_seq)
    SELECT CAST(ts / 3600 AS INTEGER) AS h, min(seq) FROM readings WHERE true GROUP BY h
    ON CONFLICT(hour) DO UPDATE SET first_seq = min(first_seq, excluded.first_seq);
"""

#: Page size of a new store: a commit of one poll round appends whole pages to the WAL.
#: 1 KiB: a round of 20 readings is about 640 bytes of rows; ``bench/sd_wear_floor.py``
#: measured 524 bytes written per reading at 2 KiB, 496 at 1 KiB and 482 at 512 bytes
#: (smaller pages: more frames per commit, more ``-shm`` entries, more overflow pages for
#: events). A store made with another page size keeps it: in WAL mode SQLite cannot
#: change it, and rewriting the whole file (VACUUM) would write more than it ever saves.
PAGE_SIZE = 1024
#: Seconds the agent waits after the first reading of a poll round before committing,
#: so the round's other devices go in the same commit (see ``Agent._commit_readings``).
GROUP_COMMIT_S = 0.1
#: While the disk refuses writes, how often held rows are tried again.
RETRY_S = 1.0
#: Seqs reserved on disk ahead of use; one FULL commit per this many readings.
#: ``sqlite_sequence`` holds the reservation while the store is open; so the highest seq
#: stored is ``last_seqs_sql``'s, not ``sqlite_sequence``'s.
SEQ_RESERVE = 10_000
#: Watermarks are written at most this often (and when the store closes).
WATERMARK_EVERY_S = 300.0
#: Readings committed with synchronous=NORMAL are fsynced at least this often (with a
#: stage: moved from RAM into the store, FULL, at least this often).
DURABLE_EVERY_S = 300.0
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
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a new file
    # NORMAL for readings, watermarks and housekeeping: a commit is in the WAL (safe from
    # a SIGKILL) with no fsync. Events switch to FULL for their commit (``_durable``).
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _journal(conn: sqlite3.Connection, staged: bool) -> None:
    """WAL for a round committed at a time; a rollback journal for a staged store's moves.

    A move is a few large appends: a rollback journal writes their pages once (it saves
    only the few pages they change), where the WAL writes them twice.
    """
    mode = "truncate" if staged else "wal"
    got = str(conn.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]).lower()
    if got != mode:
        log.warning(
            "the store stays in %s journal mode (another process has it open); "
            "it works the same, and writes more", got,
        )  # fmt: skip


@contextlib.contextmanager
def _durable(conn: sqlite3.Connection) -> Iterator[None]:
    """Commits inside are fsynced (synchronous=FULL): on disk when the commit returns."""
    conn.execute("PRAGMA synchronous=FULL")
    try:
        yield
    finally:
        conn.execute("PRAGMA synchronous=NORMAL")


class LocalStore:
    """Durable local storage of one gateway.

    Use ``open`` (or the async context manager) to create it; ``add_readings`` and
    ``add_event`` hold rows in memory, ``flush`` commits held events, then readings (the
    agent calls it once per poll round, ``GROUP_COMMIT_S`` after its first reading),
    ``write_events`` commits held events at once, ``record_event`` commits one event or
    raises. After each commit that added rows, the listeners given to ``on_commit`` are
    called on the event loop (the uplink's wake-up). A refused write (a full disk) is
    logged once and counted in ``condition()``; the rows stay held.
    """

    def __init__(
        self,
        data_dir: Path,
        quota_bytes: int | None = None,
        max_held_readings: int = MAX_HELD_READINGS,
        max_held_events: int = MAX_HELD_EVENTS,
        stage_dir: Path | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = data_dir
        #: The store's intervals (moves, fsyncs, watermark writes) run on this clock: the
        #: agent gives its own (sped up with a simulated one), tests and benches theirs.
        self._monotonic = monotonic
        self.path = data_dir / "store.sqlite"
        #: Readings are committed here (RAM) and moved into the store in bulk; None: direct.
        self.stage = None if stage_dir is None else reading_stage.stage_path(stage_dir, self.path)
        self.quota_bytes = quota_bytes
        self.boot_id = uuid.uuid4().hex[:12]
        self._held = HeldRows(max_held_readings, max_held_events)
        # Events a ``record_event`` caller awaits -> their seq once committed (None before).
        # Any flush may commit such an event first: the seq is kept here for the caller.
        self._awaited: dict[HeldEvent, int | None] = {}
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
        self._commit_listeners: list[Callable[[], None]] = []
        # Reading seqs: the next to hand out, and the highest reserved on disk.
        self._next_seq = 1
        self._reserved = 0
        self._hours: set[int] = set()  # hours that have a reading_hours row
        self._staged_rows = 0  # readings in the stage, not yet in the store
        self._durable_at = self._monotonic()
        # Watermarks as acknowledged (memory) and as last written.
        self._marks_lock = threading.Lock()
        self._watermarks: dict[str, int] = {}
        self._marks_written: dict[str, int] = {}
        self._marks_at: dict[str, float] = {}  # when each stream's was last written

    # --- lifecycle -------------------------------------------------------------------

    def open(self) -> LocalStore:
        """Create the data directory and schema; safe on an existing store."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        # A store staged before keeps its stage while that is there (a tool opening the
        # agent's store, or `edge run` without --stage-dir until a reboot empties /run).
        earlier = reading_stage.recorded(conn)
        if self.stage is None and earlier is not None and earlier.exists():
            self.stage = earlier
        _journal(conn, staged=self.stage is not None)
        # Incremental auto-vacuum lets the quota policy give pages back to the disk; it
        # only takes effect on an empty database or after a VACUUM. A staged store goes
        # without: each move would also rewrite a pointer-map page (``bench/sd_wear_floor``:
        # 3.25x the raw bytes with it, 2.71x without), and its quota reuses freed pages
        # instead of shrinking the file. A store that has it keeps it (no rewrite).
        if self.stage is None and conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
        conn.executescript(SCHEMA)
        if conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'readings_channel_ts'"
        ).fetchone():
            log.warning("upgrading the store: dropping the per-channel index of readings")
            conn.executescript(f"BEGIN IMMEDIATE;{_UPGRADE}COMMIT;")
        self._open_stage(conn, earlier)
        self._channel_ids = {name: cid for cid, name in conn.execute(SELECT_CHANNELS)}
        # After an unclean stop the seqs reserved may have reached the fleet in readings a
        # power cut then took from the WAL: they are never used again.
        self._next_seq = _sequence(conn, "readings") + 1
        self._reserved = self._next_seq - 1
        self._hours = {hour for (hour,) in conn.execute("SELECT hour FROM reading_hours")}
        self._watermarks = dict(conn.execute("SELECT stream, seq FROM watermarks").fetchall())
        self._marks_written = dict(self._watermarks)
        self._conn = conn
        # Reads from the event loop get their own read-only connection: the writer thread
        # may hold a transaction open on ``conn`` at any moment, and reads on it would see
        # (or disturb) that transaction. In WAL mode this one sees each committed state.
        self._reader = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30
        )
        if self.stage is not None:
            reading_stage.attach(self._reader, self.stage, read_only=True)
        return self

    def _open_stage(self, conn: sqlite3.Connection, earlier: Path | None) -> None:
        """Move what the ``earlier`` stage holds into the store, then attach this run's.

        Neither a stage that cannot be read nor one that cannot be made keeps the agent
        from starting: the first is set aside (and said), the second means no stage.
        """
        if earlier is not None:
            try:
                with _durable(conn):
                    reading_stage.recover(conn, earlier)
            except sqlite3.Error as exc:
                log.error(
                    "the readings an earlier run staged in %s could not be moved into the "
                    "store (%s); they stay in that file%s",
                    earlier, exc,
                    "" if earlier == self.stage else f", until a start with --stage-dir "
                    f"{earlier.parent}",
                )  # fmt: skip
        if self.stage is not None and not self._attach_stage(conn, self.stage):
            self.stage = None
            _journal(conn, staged=False)  # commits every round, as without one
        if earlier != self.stage:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                reading_stage.record(conn, self.stage)

    def _attach_stage(self, conn: sqlite3.Connection, stage: Path) -> bool:
        """Attach ``stage`` for writing; a damaged file is set aside for a fresh one."""
        try:
            stage.parent.mkdir(parents=True, exist_ok=True)
            mount = system_mount_of(stage.parent)
            if mount is not None and not mount.in_ram:
                log.warning(
                    "the readings' stage %s is not on tmpfs: it spares the SD card only in "
                    "RAM (under systemd: RuntimeDirectory=hazardwatch, --stage-dir "
                    "/run/hazardwatch)",
                    stage.parent,
                )
            try:
                reading_stage.attach(conn, stage, read_only=False)
            except sqlite3.DatabaseError as exc:
                aside = stage.with_name(f"{stage.name}.damaged-{int(time.time())}")
                log.error("the readings' stage %s cannot be read (%s): set aside as %s",
                          stage, exc, aside)  # fmt: skip
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("DETACH DATABASE stage")
                stage.rename(aside)
                reading_stage.attach(conn, stage, read_only=False)
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "no readings' stage in %s (%s): each round is committed in the store",
                stage.parent, exc,
            )  # fmt: skip
            with contextlib.suppress(sqlite3.Error):
                conn.execute("DETACH DATABASE stage")
            return False
        return True

    def close(self) -> None:
        """Commit what is held and close the file; what the disk still refuses is logged."""
        if self._conn is None:
            return
        self._writer.submit(self._flush_sync).result()
        self._writer.submit(self._close_sync).result()
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

    def _close_sync(self) -> None:
        """Move what is staged; write the watermarks; free the seqs reserved beyond the last."""
        conn = self.conn
        if self.stage is not None and self._staged_rows:
            try:
                self._move_sync()
            except sqlite3.DatabaseError as exc:  # the next start moves them
                log.warning("could not move the staged readings into the store: %s", exc)
        with self._marks_lock:
            marks_moved = self._watermarks != self._marks_written
        if not marks_moved and self._reserved <= self._next_seq - 1:
            return  # nothing to say (a tool that only read, or a store that only read)
        try:
            with _durable(conn), conn:
                conn.execute("BEGIN IMMEDIATE")
                moved = self._write_watermarks(conn)
                if self._reserved > self._next_seq - 1:  # this store reserved seqs
                    conn.execute(
                        "UPDATE sqlite_sequence SET seq = ? WHERE name = 'readings'",
                        (self._next_seq - 1,),
                    )
            self._marks_written.update(moved)
        except sqlite3.DatabaseError as exc:
            # The next start skips the reserved seqs, and resends what the fleet has.
            log.warning("could not write the watermarks on closing: %s", exc)

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop after each commit that added rows."""
        self._commit_listeners.append(listener)

    def _committed(self) -> None:
        for listener in self._commit_listeners:
            listener()

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
        written = await loop.run_in_executor(self._writer, self._flush_sync)
        if written:
            self._committed()
        return written

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
        # Staged: a move that is due goes first (so rows held while the card refused go in
        # after the staged ones); refused, the stage keeps its rows and takes more.
        moved = self.stage is not None and self._staged_rows > 0 and self._move_due()
        if moved:
            moved = self._try_move()
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
            if self.stage is None:
                self._accepted()
        # The quota is the card's: staged, it changes only with a move.
        grew = moved if self.stage is not None else written > 0
        if grew and self.quota_bytes is not None:
            try:
                self._enforce_quota_sync()
            except sqlite3.OperationalError as exc:
                self._refused(exc)
        return written

    def _move_due(self) -> bool:
        """Whether the staged readings go into the store now (time, size, or a refusal)."""
        return (
            self._monotonic() - self._durable_at >= DURABLE_EVERY_S
            or self._staged_rows >= READINGS_PER_COMMIT
            or self._unwritable is not None
        )

    def _try_move(self) -> bool:
        """Move what is staged; False when the card refused (the rows wait in the stage)."""
        try:
            self._move_sync()
        except sqlite3.OperationalError as exc:
            self._refused(exc)
            return False
        self._accepted()
        return True

    def _move_sync(self) -> None:
        """Move the staged readings into the store in one FULL commit, with the watermarks."""
        conn = self.conn
        with _durable(conn), conn:
            conn.execute("BEGIN IMMEDIATE")
            moved = self._move_staged(conn)
        self._moved(moved)

    def _move_staged(self, conn: sqlite3.Connection) -> tuple[int, list[tuple[str, int]]]:
        """Staged readings, their hours and the watermarks into the store (caller's transaction).

        Returns what ``_moved`` needs once that transaction committed.
        """
        upto = reading_stage.move_into_store(conn)
        return upto, self._write_watermarks(conn)

    def _moved(self, moved: tuple[int, list[tuple[str, int]]]) -> None:
        """After the store's commit holding a move: the stage may drop those rows."""
        upto, marks = moved
        self._marks_written.update(marks)
        self._staged_rows = 0
        self._durable_at = self._monotonic()
        try:
            reading_stage.drop_moved(self.conn, upto)
        except sqlite3.Error as exc:  # they stay, and the view never shows them twice
            log.warning("could not drop moved readings from the stage: %s", exc)

    def _insert_readings(self, batch: list[Reading]) -> None:
        """Append ``batch`` with the next seqs, in one NORMAL commit (FULL when one is due).

        With a stage, the commit goes to the stage, in RAM; ``_move_sync`` takes it on.
        """
        conn = self.conn
        staged = self.stage is not None
        if staged and self._unwritable is not None and self._staged_rows >= self._held.max_readings:
            # The card refuses the moves: past this the readings wait as held rows (thinned).
            msg = f"the stage holds {self._staged_rows} readings the store cannot take"
            raise sqlite3.OperationalError(msg)
        first = self._next_seq
        last = first + len(batch) - 1
        if last > self._reserved:
            self._reserve(last + SEQ_RESERVE)
        now = self._monotonic()
        durable = not staged and now - self._durable_at >= DURABLE_EVERY_S
        hours: dict[int, int] = {}
        with _durable(conn) if durable else contextlib.nullcontext(), conn:
            # Staged: a deferred transaction locks only the stage (and the store only when
            # a new channel is named), so the card is not touched.
            conn.execute("BEGIN" if staged else "BEGIN IMMEDIATE")
            rows = []
            for seq, r in enumerate(batch, start=first):
                rows.append(
                    (
                        seq,
                        r.timestamp,
                        self._channel_id(conn, r),
                        None if r.value != r.value else r.value,  # NaN is stored as NULL
                        int(r.quality),
                        # Which boot and when on its monotonic clock: only what
                        # ``correct_unsynced`` needs, so only while the clock is unsynced.
                        self.boot_id if r.quality & Quality.CLOCK_UNSYNCED else None,
                        r.mono if r.quality & Quality.CLOCK_UNSYNCED else None,
                    )
                )
                hour = _hour(r.timestamp)
                if not staged and hour not in self._hours:  # staged: the move adds them
                    hours.setdefault(hour, seq)
            table = "stage.readings" if staged else "main.readings"
            conn.executemany(
                f"INSERT INTO {table}(seq, ts, channel, value, quality, boot_id, mono) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if hours:
                conn.executemany(_ADD_HOUR, list(hours.items()))
            moved = self._write_watermarks(conn) if self._marks_due(now) else []
            if self._hold_before_commit is not None:
                freeze(self._hold_before_commit)  # the rows are written, not committed
        self._marks_written.update(moved)
        self._next_seq = last + 1
        self._hours.update(hours)
        if staged:
            self._staged_rows += len(batch)
        if durable:
            self._durable_at = now

    def _reserve(self, upto: int) -> None:
        """Reserve reading seqs up to ``upto`` on disk (FULL) before any is handed out."""
        conn = self.conn
        with _durable(conn), conn:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(
                "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'readings'", (upto,)
            )
            if cur.rowcount == 0:
                conn.execute(
                    "INSERT INTO sqlite_sequence(name, seq) VALUES ('readings', ?)", (upto,)
                )
        self._reserved = upto
        self._durable_at = self._monotonic()

    def history(self, channel_id: str, since: float, until: float | None = None) -> ChannelHistory:
        """Return a channel's readings with ``since <= ts (<= until)``, in time order.

        It reads every channel's readings from the first seq of ``since``'s hour on
        (``reading_hours``), and keeps this channel's.
        """
        cid = self._channel_ids.get(channel_id)
        empty = np.empty(0)
        nothing = ChannelHistory(empty, empty.copy(), np.empty(0, dtype=bool))
        if cid is None:
            return nothing
        (start,) = self.reader.execute(
            "SELECT min(first_seq) FROM reading_hours WHERE hour >= ?", (_hour(since) - 1,)
        ).fetchone()
        if self.stage is not None:  # the stage's rows have no reading_hours yet: all of them
            (first,) = self.reader.execute("SELECT min(seq) FROM stage.readings").fetchone()
            if first is not None:
                start = first if start is None else min(start, first)
        if start is None:
            return nothing
        query = "SELECT ts, value, quality FROM readings WHERE seq >= ? AND channel = ? AND ts >= ?"
        args: list[Any] = [start, cid, since]
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
        """Highest reading seq stored, or acknowledged and deleted since (0 when none)."""
        rows = self.reader.execute(last_seqs_sql(self.stage is not None)).fetchall()
        return int(dict(rows)["readings"])

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
        if written:
            self._committed()
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
        self._awaited[event] = None
        self._held.add_event(event)
        loop = asyncio.get_running_loop()
        try:
            seq = await loop.run_in_executor(self._writer, self._record_sync, event)
        finally:
            del self._awaited[event]
        self._committed()
        return seq

    def _record_sync(self, event: HeldEvent) -> int:
        # A flush queued ahead of this call may have committed the event already.
        if (seq := self._awaited[event]) is not None:
            return seq
        try:
            self._write_events_sync(raise_refusal=True)
        except sqlite3.DatabaseError:
            self._held.withdraw_event(event)
            raise
        if (seq := self._awaited[event]) is not None:
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
        moved = None
        try:
            # FULL: the event is on disk when this returns (and so is every reading before:
            # with a stage, they move into the store in the same commit).
            with _durable(conn), conn:
                conn.execute("BEGIN IMMEDIATE")
                if self.stage is not None and self._staged_rows:
                    moved = self._move_staged(conn)
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
        for event, seq in written:
            if event in self._awaited:
                self._awaited[event] = seq
        if moved is not None:
            self._moved(moved)
        self._durable_at = self._monotonic()
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
        with self._marks_lock:
            return self._watermarks.get(stream, 0)

    async def set_watermark(self, stream: str, seq: int) -> None:
        """Advance (never move back) the acknowledged seq of ``stream``.

        It is written at once when the last write is ``WATERMARK_EVERY_S`` old, else with
        the next readings commit or write after that, or when the store closes.
        """
        with self._marks_lock:
            if seq <= self._watermarks.get(stream, 0):
                return
            self._watermarks[stream] = seq
        if self._marks_due(self._monotonic()):
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer, self._set_watermark_sync)

    def _set_watermark_sync(self) -> None:
        try:
            with self.conn:
                moved = self._write_watermarks(self.conn)
        except sqlite3.OperationalError as exc:
            self._refused(exc)  # written with a later commit
            return
        self._marks_written.update(moved)

    def _marks_due(self, now: float) -> bool:
        """Whether a stream's watermark moved and was last written ``WATERMARK_EVERY_S`` ago.

        So the first acknowledgement of each stream is written at once. With a stage they
        are written only with the moves (every ``DURABLE_EVERY_S``) and on closing.
        """
        if self.stage is not None:
            return False
        with self._marks_lock:
            return any(
                self._marks_written.get(stream) != seq
                and now - self._marks_at.get(stream, -math.inf) >= WATERMARK_EVERY_S
                for stream, seq in self._watermarks.items()
            )

    def _write_watermarks(self, conn: sqlite3.Connection) -> list[tuple[str, int]]:
        """Write the watermarks that moved, inside the caller's transaction; return them.

        The caller marks them written (``_marks_written``) once its transaction committed.
        """
        with self._marks_lock:
            moved = [(s, q) for s, q in self._watermarks.items() if self._marks_written.get(s) != q]
        if moved:
            conn.executemany(
                "INSERT INTO watermarks(stream, seq) VALUES (?, ?) "
                "ON CONFLICT(stream) DO UPDATE SET seq = max(seq, excluded.seq)",
                moved,
            )
        now = self._monotonic()
        self._marks_at.update((stream, now) for stream, _ in moved)
        return moved

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
        acked = self.watermark("readings")
        # 2. Readings the fleet already holds, oldest first.
        while self.size_bytes() > quota:
            with conn:
                cur = conn.execute(
                    "DELETE FROM main.readings WHERE seq IN (SELECT seq FROM main.readings "
                    "WHERE seq <= ? ORDER BY seq LIMIT 5000)",
                    (acked,),
                )
            if cur.rowcount == 0:
                break
        # 3. Then old raw readings are thinned: every other one of the oldest half, again
        #    and again, so the recent past keeps full resolution longest. Only events the
        #    fleet does not hold yet can push readings below their share this way.
        while self.size_bytes() > quota:
            count = conn.execute("SELECT count(*) FROM main.readings").fetchone()[0]
            if count < 10:
                break
            with conn:
                conn.execute(
                    "DELETE FROM main.readings WHERE seq IN (SELECT seq FROM (SELECT seq, "
                    "row_number() OVER (ORDER BY seq) AS n FROM main.readings) "
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
        acked = self.watermark("events")
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
        conn = self.conn
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            corrected = 0
            for table in ("main.readings", "stage.readings") if self.stage else ("main.readings",):
                cur = conn.execute(
                    f"UPDATE {table} SET ts = ? - (? - mono), quality = quality & ? "
                    "WHERE boot_id = ? AND mono IS NOT NULL AND (quality & ?) != 0",
                    (wall_now, mono_now, ~flag, self.boot_id, flag),
                )
                corrected += cur.rowcount
            # The corrected times belong to other hours: ``history`` must find them there.
            hours = conn.execute(
                "SELECT CAST(ts / 3600 AS INTEGER) AS h, min(seq) FROM readings "
                "WHERE boot_id = ? AND mono IS NOT NULL GROUP BY h",
                (self.boot_id,),
            ).fetchall()
            conn.executemany(_ADD_HOUR, hours)
        self._hours.update(hour for hour, _ in hours)
        return corrected

    def integrity_check(self) -> str:
        """Run SQLite's integrity check; "ok" when the file is sound."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])


SELECT_CHANNELS = "SELECT id, name FROM channels"
_ADD_HOUR = (
    "INSERT INTO reading_hours(hour, first_seq) VALUES (?, ?) "
    "ON CONFLICT(hour) DO UPDATE SET first_seq = min(first_seq, excluded.first_seq)"
)
#: ``_hour`` keeps hours within what SQLite's integers hold.
_HOUR_LIMIT = 2**62


def _hour(ts: float) -> int:
    """The hour (since the epoch) of ``ts``, as ``reading_hours`` counts it."""
    if math.isnan(ts):
        return -_HOUR_LIMIT
    if math.isinf(ts):
        return _HOUR_LIMIT if ts > 0 else -_HOUR_LIMIT
    return max(-_HOUR_LIMIT, min(_HOUR_LIMIT, math.floor(ts / 3600)))


def _sequence(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


#: ``(stream, highest seq)`` of both streams: for readings the highest stored, or the
#: watermark when the quota deleted every reading up to it (``sqlite_sequence`` holds
#: the reservation); for events the highest ever assigned.
_LAST_SEQS_SQL = """
SELECT 'readings', max(
    ifnull((SELECT max(seq) FROM main.readings), 0),{staged}
    ifnull((SELECT seq FROM watermarks WHERE stream = 'readings'), 0))
UNION ALL
SELECT 'events', ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)
"""


def last_seqs_sql(staged: bool) -> str:
    """``(stream, highest seq)`` of both streams, for a connection with or without the stage.

    Each table's own ``max(seq)`` is one B-tree lookup; through the view it is a scan.
    """
    return _LAST_SEQS_SQL.format(
        staged="\n    ifnull((SELECT max(seq) FROM stage.readings), 0)," if staged else ""
    )


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
