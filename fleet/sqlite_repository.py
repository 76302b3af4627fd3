"""The embedded storage backend: one SQLite file (WAL) through the standard ``sqlite3``.

Readings and events are keyed by (gateway, seq), so a resent row is ignored, and
``stream_marks`` holds each stream's highest contiguous seq, updated in the same
transaction as the rows, which is what makes the ack exact across crashes. Each thread
gets its own connection; SQLite serialises the writers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fleet import store_rows
from fleet.alarm_tables import AlarmTables
from fleet.alarm_watch import AlarmWatch
from fleet.repository import (
    ACK_ORIGIN_FROM_WORDS,
    API_TOKEN_TTL_S,
    CommitResult,
    Gateway,
    ReadingBucket,
    Received,
)
from fleet.roster import Person
from fleet.sqlite_connections import ThreadConnections
from fleet.sqlite_escalation import SQLiteEscalation
from fleet.sqlite_ingest import IngestWriter
from fleet.sqlite_leases import SQLiteLeases
from fleet.sqlite_ota import SQLiteOta
from fleet.sqlite_statements import SQLiteStatements
from fleet.timestamps import iso
from fleet.token_tables import TokenTables
from protocol import BAD_QUALITY_MASK

log = logging.getLogger(__name__)

#: WAL length, in pages, past which an ingest commit restarts the WAL (see ``commit``):
#: about 16 MB, a few commits' worth.
WAL_RESTART_FRAMES = 4096

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    site_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    mqtt_password_hash TEXT NOT NULL,
    hostname TEXT,
    agent_version TEXT,
    enrolled_at REAL NOT NULL,
    state TEXT,
    state_at REAL,
    last_seen REAL,
    health TEXT,
    health_at REAL,
    site_summary TEXT
);
CREATE TABLE IF NOT EXISTS stream_marks (
    gw INTEGER NOT NULL,
    stream TEXT NOT NULL,
    contiguous INTEGER NOT NULL,
    PRIMARY KEY (gw, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stream_ranges (
    gw INTEGER NOT NULL,
    stream TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (gw, stream, first_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    gw INTEGER NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (gw, name)
);
CREATE TABLE IF NOT EXISTS readings (
    gw INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    channel INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    PRIMARY KEY (gw, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_channel ON readings (channel, ts);
CREATE TABLE IF NOT EXISTS events (
    gw INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT,
    level INTEGER,
    detail TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (gw, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    id INTEGER PRIMARY KEY,
    gw INTEGER NOT NULL,
    rule TEXT NOT NULL,
    level INTEGER NOT NULL,
    peak_level INTEGER NOT NULL,
    raised_at REAL NOT NULL,
    cleared_at REAL,
    last_seq INTEGER NOT NULL,
    detail TEXT,
    acknowledged_at REAL,
    acknowledged_by TEXT,
    ack_note TEXT,
    -- where the acknowledgement was taken (fleet.repository.AckOrigin); NULL: not yet
    ack_origin TEXT CHECK (ack_origin IN ('gateway', 'fleet'))
);
CREATE INDEX IF NOT EXISTS alarms_by_rule ON alarms (gw, rule, cleared_at);
-- the active alarms alone, for the 叫应 engine's watch (fleet/alarm_watch.py)
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (id, level, last_seq) WHERE cleared_at IS NULL;
CREATE TABLE IF NOT EXISTS alarm_receipts (
    id INTEGER PRIMARY KEY,
    alarm_id INTEGER NOT NULL REFERENCES alarms(id),
    person TEXT NOT NULL,
    via TEXT,
    note TEXT,
    confirmed_at REAL NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_answers (
    id INTEGER PRIMARY KEY,
    alarm_id INTEGER NOT NULL REFERENCES alarms(id),
    level INTEGER NOT NULL,
    person TEXT NOT NULL,
    via TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_answers_by_alarm ON gateway_answers (alarm_id);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    id INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    site_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    created_by TEXT,
    note TEXT,
    used_at REAL,
    gateway_id TEXT,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    gw INTEGER NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    issued_at REAL NOT NULL,
    issued_by TEXT,
    status TEXT NOT NULL,
    sent_at REAL,
    result_at REAL,
    result_detail TEXT
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (status, issued_at);
"""


class SQLiteRepository(TokenTables, AlarmTables):
    """``Repository`` on one SQLite file; safe to share between threads.

    ``durable`` (the default) fsyncs every commit, so an ack is never sent for rows a
    power cut could take back; ``durable=False`` survives process crashes only.
    ``hold_before_commit`` is fault injection for crash tests (see ``IngestWriter``).
    """

    def __init__(
        self, path: Path, *, durable: bool = True, hold_before_commit: Path | None = None
    ) -> None:
        self.path = path
        self._ingest = IngestWriter(hold_before_commit)
        self._connections = ThreadConnections(path, durable=durable, row_factory=sqlite3.Row)
        self._gateway_nums: dict[str, int] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        self._migrate(time.time())
        self._sql = SQLiteStatements(self._db, self._write)
        self.ota = SQLiteOta(self._db, self._write, path.parent / "releases")
        self.escalation = SQLiteEscalation(self._db, self._write)
        self.leases = SQLiteLeases(self._db, self._write)

    def roster(self, site_id: str) -> list[Person]:
        """The responsible persons of ``site_id`` (叫应), every tier."""
        return self.escalation.roster(site_id)

    def open_alarm_watch(self) -> AlarmWatch:
        """A watch on the active alarms of this file (``fleet.alarm_watch``)."""
        return AlarmWatch(self.path)

    def _migrate(self, now: float) -> None:
        """Bring a database made by an older version up to ``SCHEMA``.

        API tokens made before tokens expired get the default lifetime from now: they keep
        working for that long, then need ``fleet apitoken rotate``.
        """
        self._migrate_ack_origin()
        gateway_columns = {r["name"] for r in self._db().execute("PRAGMA table_info(gateways)")}
        if "site_summary" not in gateway_columns:
            with self._write() as db:
                columns = {r["name"] for r in db.execute("PRAGMA table_info(gateways)")}
                if "site_summary" not in columns:  # what the gateway says of its site file
                    db.execute("ALTER TABLE gateways ADD COLUMN site_summary TEXT")
        columns = {r["name"] for r in self._db().execute("PRAGMA table_info(api_tokens)")}
        if "expires_at" in columns:
            return
        with self._write() as db:  # another process may be migrating too: look again inside
            columns = {r["name"] for r in db.execute("PRAGMA table_info(api_tokens)")}
            if "expires_at" not in columns:
                db.execute("ALTER TABLE api_tokens ADD COLUMN expires_at REAL")
                db.execute("UPDATE api_tokens SET expires_at = ?", [now + API_TOKEN_TTL_S])
                log.warning(
                    "API tokens now expire: existing ones work until %s",
                    iso(now + API_TOKEN_TTL_S),
                )

    def _migrate_ack_origin(self) -> None:
        """Give ``alarms`` its ``ack_origin``, derived once from the words of older rows.

        Before the column, ingest marked a gateway's acknowledgement only by ending
        ``acknowledged_by`` with ``(at the gateway)``; every other acknowledgement was the
        fleet's REST API.
        """
        columns = {r["name"] for r in self._db().execute("PRAGMA table_info(alarms)")}
        if "ack_origin" in columns:
            return
        with self._write() as db:  # another process may be migrating too: look again inside
            columns = {r["name"] for r in db.execute("PRAGMA table_info(alarms)")}
            if "ack_origin" not in columns:
                db.execute(
                    "ALTER TABLE alarms ADD COLUMN ack_origin TEXT "
                    "CHECK (ack_origin IN ('gateway', 'fleet'))"
                )
                db.execute(ACK_ORIGIN_FROM_WORDS)

    # --- connections ----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """The connection of this thread: rows by name, and no transaction but the ones we begin.

        ``isolation_level=None``: a lone statement commits at once, and a transaction is
        always an explicit ``BEGIN`` (``_write``, the ingest commit, ``read_snapshot``),
        never one sqlite3 opens behind a write and leaves open.
        """
        return self._connections.connection()

    @property
    def _local(self) -> threading.local:
        """Per-thread state that lasts as long as the thread's connection (ingest's WAL)."""
        return self._connections.local

    def _write_lock(self) -> AbstractContextManager[None]:
        """Exclusive right to write, across threads and processes (ingest workers, REST).

        SQLite's own busy handler polls with growing sleeps, so back-to-back ingest commits
        from several processes would starve each other and the console; a blocking
        ``flock`` hands the lock over the moment it is released.
        """
        return self._connections.write_lock()

    def _flock(self, name: str, *, wait: bool) -> AbstractContextManager[bool]:
        """Hold the lock file ``<database>.<name>``; yields False if taken and not ``wait``."""
        return self._connections.lock_file(name, wait=wait)

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction holding the write lock from the start (no upgrade deadlocks)."""
        return self._connections.write()

    def close(self) -> None:
        """Close every thread's connection."""
        self._connections.close()

    # --- gateways ----------------------------------------------------------------------------

    def _gateways(self, where: str, params: Sequence[Any] = ()) -> list[Gateway]:
        db = self._db()
        marks: dict[int, dict[str, int]] = {}
        # Only the selected gateways' marks: one gateway's page must not read the fleet's.
        for r in db.execute(
            "SELECT m.gw, m.stream, m.contiguous FROM stream_marks m "
            f"JOIN gateways g ON g.num = m.gw {where}",
            list(params),
        ):
            marks.setdefault(r["gw"], {})[r["stream"]] = r["contiguous"]
        rows = db.execute(
            "SELECT g.*, (SELECT max(a.level) FROM alarms a WHERE a.gw = g.num "
            f"AND a.cleared_at IS NULL) AS alarm_level FROM gateways g {where} ORDER BY g.id",
            list(params),
        )
        return [store_rows.gateway(r, marks.get(r["num"], {})) for r in rows]

    def _gateway_num(self, gateway_id: str) -> int | None:
        num = self._gateway_nums.get(gateway_id)
        if num is None:
            row = (
                self._db()
                .execute("SELECT num FROM gateways WHERE id = ?", (gateway_id,))
                .fetchone()
            )
            if row is None:
                return None
            num = self._gateway_nums[gateway_id] = int(row[0])
        return num

    # --- ingest ------------------------------------------------------------------------------

    def commit(self, received: Sequence[Received]) -> CommitResult:
        """Store messages in one transaction (see ``fleet.sqlite_ingest``); acks what committed.

        Only the transaction holds the write lock: the values to bind are prepared before
        it and the WAL is checkpointed after it (this connection never checkpoints inside
        a commit), so another ingest process can commit meanwhile. SQLite starts the WAL
        over only when a transaction begins with every page of it checkpointed, which a
        checkpoint taken while another process writes never leaves behind; under steady
        load from several processes the WAL would grow for as long as the load lasts, and
        every page look-up would search a longer WAL index. So past
        ``WAL_RESTART_FRAMES`` a commit first checkpoints, inside the write lock, the
        little committed since (after any checkpoint already running): its own
        transaction then starts the WAL over.
        """
        conn = self._ingest_connection()
        prepared = self._ingest.prepare(conn, received)
        with self._write_lock():
            if getattr(self._local, "wal_frames", 0) > WAL_RESTART_FRAMES:
                self._checkpoint(conn, wait=True)
            result = self._ingest.commit(conn, prepared)
        frames = self._checkpoint(conn, wait=False)
        if frames is not None:
            self._local.wal_frames = frames
        return result

    def _ingest_connection(self) -> sqlite3.Connection:
        conn = self._db()
        if not getattr(self._local, "manual_checkpoints", False):
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.manual_checkpoints = True
        return conn

    def _checkpoint(self, conn: sqlite3.Connection, *, wait: bool) -> int | None:
        """Copy committed WAL pages into the database file; returns the WAL's length in pages.

        Ingest checkpoints take turns through a lock file, so they never find each other
        busy. Without ``wait``, one finding another under way skips (returns None): that
        one copies most of these pages, and a later commit the rest.
        """
        with self._flock("checkpoint-lock", wait=wait) as held:
            if not held:
                return None
            try:
                busy, frames, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.OperationalError as exc:
                log.debug("checkpoint skipped: %s", exc)
                return None
        return None if busy else int(frames)

    # --- readings -----------------------------------------------------------------------------

    def reading_buckets(
        self, gateway_id: str, channel: str, since: float, until: float, step: float
    ) -> list[ReadingBucket]:
        """Min/avg/max of good readings per ``step`` seconds; empty buckets are left out."""
        cid = self._channel_id(gateway_id, channel)
        rows = self._db().execute(
            "SELECT CAST((ts - :since) / :step AS INTEGER) AS bucket, count(v), "
            "count(*) - count(v), min(v), avg(v), max(v) FROM ("
            "  SELECT ts, CASE WHEN (quality & :bad) = 0 THEN value END AS v FROM readings"
            "  WHERE channel = :channel AND ts >= :since AND ts < :until"
            ") GROUP BY bucket ORDER BY bucket",
            {"since": since, "until": until, "step": step, "bad": BAD_QUALITY_MASK, "channel": cid},
        )
        return [
            ReadingBucket(since + b * step, n, bad, lo, avg, hi) for b, n, bad, lo, avg, hi in rows
        ]


def create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600), if it does not exist.

    It holds password and token hashes and every reading; sqlite3 would create it with the
    umask's mode (often 0644). SQLite gives its -wal and -shm files the same mode.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
