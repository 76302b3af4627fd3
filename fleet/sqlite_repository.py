"""The embedded storage backend: one SQLite file (WAL) through the standard ``sqlite3``.

Readings and events are keyed by (gateway, seq), so a resent row is ignored, and
``stream_marks`` holds each stream's highest contiguous seq, updated in the same
transaction as the rows, which is what makes the ack exact across crashes. Each thread
gets its own connection; SQLite serialises the writers.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleet.alarm_watch import AlarmWatch
from fleet.credentials import new_secret, token_hash
from fleet.live_changes import LiveChange, LiveCursor, Read, changes_since, start_cursor
from fleet.repository import (
    ACK_ORIGIN_FROM_WORDS,
    API_TOKEN_TTL_S,
    COMMAND_CLAIM_S,
    Alarm,
    ApiToken,
    CommitResult,
    ConflictError,
    EnrollmentRefusedError,
    EnrollmentToken,
    Gateway,
    NewGateway,
    NotFoundError,
    QueuedCommand,
    ReadingBucket,
    ReadingPoint,
    Receipt,
    Received,
    Role,
    StoredEvent,
    ack_origin_of,
)
from fleet.roster import Person
from fleet.sqlite_escalation import SQLiteEscalation
from fleet.sqlite_ingest import IngestWriter
from fleet.sqlite_leases import SQLiteLeases
from fleet.sqlite_ota import SQLiteOta, read_snapshot, rowid
from fleet.timestamps import iso
from protocol import (
    BAD_QUALITY_MASK,
    Stream,
)

log = logging.getLogger(__name__)

#: Every fleet writer holds ``<database>.write-lock`` (ingest, REST, 叫应, the SL 651 centre),
#: so commits queue on one lock instead of on SQLite's busy polling.
WRITE_LOCK = "write-lock"

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


def _reader(db: sqlite3.Connection) -> Read:
    """``fleet.live_changes``'s view of one connection: rows as plain tuples."""

    def read(query: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in db.execute(query, params)]

    return read


def _json_object(text: str) -> dict[str, Any]:
    """A stored event's detail; one that is not a JSON object reads as empty."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class SQLiteRepository:
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
        self._synchronous = "FULL" if durable else "NORMAL"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock_fds: list[int] = []
        self._lock = threading.Lock()
        self._gateway_nums: dict[str, int] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        create_private(path)
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        self._migrate(time.time())
        self.ota = SQLiteOta(self._db, self._write, path.parent / "releases")
        self.escalation = SQLiteEscalation(self._db, self._write)
        self.leases = SQLiteLeases(self._db, self._write)

    def roster(self, site_id: str) -> list[Person]:
        """The responsible persons of ``site_id`` (叫应), every tier."""
        return self.escalation.roster(site_id)

    def open_alarm_watch(self) -> AlarmWatch:
        """A watch on the active alarms of this file (``fleet.alarm_watch``)."""
        return AlarmWatch(self.path)

    def live_cursor(self) -> LiveCursor:
        """A cursor at the present for ``live_changes``."""
        with read_snapshot(self._db()) as db:
            return start_cursor(_reader(db))

    def live_changes(self, cursor: LiveCursor) -> list[LiveChange]:
        """Level changes, health and 叫应 steps stored after ``cursor`` (moved past them)."""
        with read_snapshot(self._db()) as db:
            return changes_since(_reader(db), cursor)

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
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=60, check_same_thread=False, isolation_level=None
            )
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive right to write, across threads and processes (ingest workers, REST).

        SQLite's own busy handler polls with growing sleeps, so back-to-back ingest commits
        from several processes would starve each other and the console; a blocking
        ``flock`` hands the lock over the moment it is released.
        """
        with self._flock(WRITE_LOCK, wait=True):
            yield

    @contextmanager
    def _flock(self, name: str, *, wait: bool) -> Iterator[bool]:
        """Hold the lock file ``<database>.<name>``; yields False if taken and not ``wait``."""
        fds: dict[str, int] = getattr(self._local, "lock_fds", None) or {}
        self._local.lock_fds = fds
        fd = fds.get(name)
        if fd is None:
            lock_path = self.path.with_name(f"{self.path.name}.{name}")
            fd = fds[name] = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            with self._lock:
                self._lock_fds.append(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the write lock from the start (no upgrade deadlocks)."""
        db = self._db()
        with self._write_lock():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            for fd in self._lock_fds:
                os.close(fd)
            self._connections.clear()
            self._lock_fds.clear()
        self._local = threading.local()

    # --- API tokens -------------------------------------------------------------------------

    def create_api_token(
        self, name: str, role: Role, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Store a new API token valid for ``ttl_s``; return it with its secret (shown once)."""
        secret = new_secret("hwt_")
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO api_tokens (name, role, token_hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [name, role.value, token_hash(secret), now, now + ttl_s],
            )
        return ApiToken(rowid(cursor), name, role, now, None, now + ttl_s), secret

    def api_token_for_secret(self, secret: str, now: float) -> ApiToken | None:
        """The token with this secret if it is neither revoked nor expired at ``now``."""
        rows = self._db().execute(
            "SELECT * FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL "
            "AND coalesce(expires_at, 0) > ?",
            [token_hash(secret), now],
        )
        row = next(rows, None)
        return _api_token(row) if row else None

    def rotate_api_token(
        self, token_id: int, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Give a token a new secret valid for ``ttl_s`` (the old one stops at once).

        Raises NotFoundError, or ConflictError for a revoked token.
        """
        secret = new_secret("hwt_")
        with self._write() as db:
            row = next(db.execute("SELECT * FROM api_tokens WHERE id = ?", [token_id]), None)
            if row is None:
                raise NotFoundError(f"no API token with id {token_id}")
            if row["revoked_at"] is not None:
                msg = (
                    f"API token {token_id} was revoked at {iso(row['revoked_at'])}; "
                    "create a new one instead"
                )
                raise ConflictError(msg)
            db.execute(
                "UPDATE api_tokens SET token_hash = ?, expires_at = ? WHERE id = ?",
                [token_hash(secret), now + ttl_s, token_id],
            )
            row = next(db.execute("SELECT * FROM api_tokens WHERE id = ?", [token_id]))
        return _api_token(row), secret

    def list_api_tokens(self) -> list[ApiToken]:
        """All API tokens, revoked ones included."""
        return [_api_token(r) for r in self._db().execute("SELECT * FROM api_tokens ORDER BY id")]

    def api_token(self, token_id: int) -> ApiToken | None:
        """One API token by id (revoked and expired ones too), or None."""
        rows = list(self._db().execute("SELECT * FROM api_tokens WHERE id = ?", [token_id]))
        return _api_token(rows[0]) if rows else None

    def revoke_api_token(self, token_id: int, now: float) -> ApiToken:
        """Revoke a token; raises NotFoundError."""
        with self._write() as db:
            db.execute(
                "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                [now, token_id],
            )
            row = next(db.execute("SELECT * FROM api_tokens WHERE id = ?", [token_id]), None)
        if row is None:
            raise NotFoundError(f"no API token with id {token_id}")
        return _api_token(row)

    # --- enrollment ------------------------------------------------------------------------

    def create_enrollment_token(
        self, site_id: str, expires_at: float, created_by: str | None, note: str | None, now: float
    ) -> tuple[EnrollmentToken, str]:
        """Store a one-time token for ``site_id``; return it with its secret."""
        secret = new_secret("hwe_")
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO enrollment_tokens (token_hash, site_id, created_at, expires_at, "
                "created_by, note) VALUES (?, ?, ?, ?, ?, ?)",
                [token_hash(secret), site_id, now, expires_at, created_by, note],
            )
        token = EnrollmentToken(rowid(cursor), site_id, now, expires_at, created_by, note)
        return token, secret

    def list_enrollment_tokens(self) -> list[EnrollmentToken]:
        """All enrollment tokens, newest first."""
        rows = self._db().execute("SELECT * FROM enrollment_tokens ORDER BY id DESC")
        return [_enrollment_token(r) for r in rows]

    def revoke_enrollment_token(self, token_id: int, now: float) -> EnrollmentToken:
        """Revoke an unused token; raises NotFoundError or ConflictError."""
        with self._write() as db:
            row = next(db.execute("SELECT * FROM enrollment_tokens WHERE id = ?", [token_id]), None)
            if row is None:
                raise NotFoundError(f"no enrollment token with id {token_id}")
            if row["used_at"] is not None:
                msg = f"enrollment token {token_id} was already used by gateway {row['gateway_id']}"
                raise ConflictError(msg)
            db.execute(
                "UPDATE enrollment_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                [now, token_id],
            )
            row = next(db.execute("SELECT * FROM enrollment_tokens WHERE id = ?", [token_id]))
        return _enrollment_token(row)

    def redeem_enrollment_token(self, secret: str, gateway: NewGateway, now: float) -> Gateway:
        """Atomically use the token and register the gateway; raises EnrollmentRefusedError.

        A used token presented again, before it expires, with the key of the gateway it
        enrolled is that gateway retrying after it lost the answer (a dropped connection,
        a power cut): it keeps its id and gets the new password in place of the old one.
        """
        with self._write() as db:
            row = next(
                db.execute(
                    "SELECT * FROM enrollment_tokens WHERE token_hash = ?", [token_hash(secret)]
                ),
                None,
            )
            if row is None:
                msg = (
                    "unknown enrollment token: check that it was copied completely, "
                    "or ask the county for a new one"
                )
                raise EnrollmentRefusedError(msg, gone=False)
            if row["revoked_at"] is not None:
                msg = f"this enrollment token was revoked at {iso(row['revoked_at'])}"
                raise EnrollmentRefusedError(msg + "; ask the county for a new one", gone=True)
            retry = row["used_at"] is not None and now < row["expires_at"]
            if retry and self._reissue(db, row["gateway_id"], gateway):
                log.warning(
                    "enrollment token %s redeemed again by gateway %s (same key): "
                    "credentials issued anew",
                    row["id"],
                    row["gateway_id"],
                )
                return self.get_gateway(row["gateway_id"])
            if row["used_at"] is not None:
                # Not which gateway: whoever holds a copy of the token must learn nothing.
                msg = (
                    f"this enrollment token was already used at {iso(row['used_at'])}; "
                    "a token works once, ask the county for a new one"
                )
                raise EnrollmentRefusedError(msg, gone=True)
            if now >= row["expires_at"]:
                msg = f"this enrollment token expired at {iso(row['expires_at'])}"
                raise EnrollmentRefusedError(msg + "; ask the county for a new one", gone=True)
            db.execute(
                "INSERT INTO gateways (id, site_id, public_key, mqtt_password_hash, hostname, "
                "agent_version, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    gateway.gateway_id,
                    row["site_id"],
                    gateway.public_key,
                    gateway.mqtt_password_hash,
                    gateway.hostname,
                    gateway.agent_version,
                    now,
                ],
            )
            db.execute(
                "UPDATE enrollment_tokens SET used_at = ?, gateway_id = ? WHERE id = ?",
                [now, gateway.gateway_id, row["id"]],
            )
        return self.get_gateway(gateway.gateway_id)

    @staticmethod
    def _reissue(db: sqlite3.Connection, gateway_id: str, gateway: NewGateway) -> bool:
        """Give ``gateway_id`` the new password if it holds ``gateway``'s public key."""
        cursor = db.execute(
            "UPDATE gateways SET mqtt_password_hash = ?, hostname = coalesce(?, hostname), "
            "agent_version = coalesce(?, agent_version) WHERE id = ? AND public_key = ?",
            [
                gateway.mqtt_password_hash,
                gateway.hostname,
                gateway.agent_version,
                gateway_id,
                gateway.public_key,
            ],
        )
        return cursor.rowcount == 1

    def broker_accounts(self) -> list[tuple[str, str]]:
        """``(username, mosquitto password hash)`` of every enrolled gateway."""
        rows = self._db().execute("SELECT id, mqtt_password_hash FROM gateways ORDER BY id")
        return [(r["id"], r["mqtt_password_hash"]) for r in rows]

    # --- gateways ----------------------------------------------------------------------------

    def list_gateways(self) -> list[Gateway]:
        """All gateways with their last state, health and highest active alarm level."""
        return self._gateways("")

    def get_gateway(self, gateway_id: str) -> Gateway:
        """One gateway; raises NotFoundError."""
        found = self._gateways("WHERE g.id = ?", [gateway_id])
        if not found:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        return found[0]

    def site_gateways(self, site_id: str) -> list[Gateway]:
        """The gateways of ``site_id`` (none for an unknown site), as ``list_gateways``."""
        return self._gateways("WHERE g.site_id = ?", [site_id])

    def _gateways(self, where: str, params: Sequence[Any] = ()) -> list[Gateway]:
        db = self._db()
        marks: dict[int, dict[str, int]] = {}
        for r in db.execute("SELECT gw, stream, contiguous FROM stream_marks"):
            marks.setdefault(r["gw"], {})[r["stream"]] = r["contiguous"]
        rows = db.execute(
            "SELECT g.*, (SELECT max(a.level) FROM alarms a WHERE a.gw = g.num "
            f"AND a.cleared_at IS NULL) AS alarm_level FROM gateways g {where} ORDER BY g.id",
            list(params),
        )
        return [
            Gateway(
                id=r["id"],
                site_id=r["site_id"],
                public_key=r["public_key"],
                hostname=r["hostname"],
                agent_version=r["agent_version"],
                enrolled_at=r["enrolled_at"],
                state=r["state"],
                state_at=r["state_at"],
                last_seen=r["last_seen"],
                health=json.loads(r["health"]) if r["health"] else None,
                health_at=r["health_at"],
                alarm_level=r["alarm_level"] or 0,
                streams={s.value: marks.get(r["num"], {}).get(s.value, 0) for s in Stream},
                site=json.loads(r["site_summary"]) if r["site_summary"] else None,
            )
            for r in rows
        ]

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

    def _channel_id(self, gateway_id: str, channel: str) -> int:
        gw = self._gateway_num(gateway_id)
        if gw is None:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        row = (
            self._db()
            .execute("SELECT id FROM channels WHERE gw = ? AND name = ?", (gw, channel))
            .fetchone()
        )
        if row is None:
            known = ", ".join(self.channels(gateway_id)) or "none yet"
            raise NotFoundError(f"gateway {gateway_id} has no channel {channel!r} (has: {known})")
        return int(row[0])

    def channels(self, gateway_id: str) -> list[str]:
        """Names of the channels a gateway has uploaded readings of."""
        rows = self._db().execute(
            "SELECT c.name FROM channels c JOIN gateways g ON g.num = c.gw WHERE g.id = ? "
            "ORDER BY c.name",
            [gateway_id],
        )
        return [r["name"] for r in rows]

    def readings(
        self, gateway_id: str, channel: str, since: float, until: float, limit: int
    ) -> list[ReadingPoint]:
        """Readings of a channel with ``since <= ts < until``, oldest first."""
        cid = self._channel_id(gateway_id, channel)
        rows = self._db().execute(
            "SELECT seq, ts, value, quality FROM readings WHERE channel = ? AND ts >= ? "
            "AND ts < ? ORDER BY ts, seq LIMIT ?",
            (cid, since, until, limit),
        )
        return [ReadingPoint(*r) for r in rows]

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

    def events(
        self,
        gateway_ids: Sequence[str],
        *,
        kinds: Sequence[str] | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int,
    ) -> list[StoredEvent]:
        """Events of these gateways with ``since <= ts < until``, newest first."""
        if not gateway_ids:
            return []
        clauses = [f"g.id IN ({','.join('?' * len(gateway_ids))})"]
        params: list[object] = list(gateway_ids)
        if kinds is not None:
            if not kinds:
                return []
            clauses.append(f"e.kind IN ({','.join('?' * len(kinds))})")
            params.extend(kinds)
        if subject is not None:
            clauses.append("e.subject = ?")
            params.append(subject)
        if since is not None:
            clauses.append("e.ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("e.ts < ?")
            params.append(until)
        params.append(limit)
        rows = self._db().execute(
            "SELECT g.id, e.seq, e.ts, e.kind, e.subject, e.level, e.detail FROM events e "
            f"JOIN gateways g ON g.num = e.gw WHERE {' AND '.join(clauses)} "
            "ORDER BY e.ts DESC, e.seq DESC LIMIT ?",
            params,
        )
        return [
            StoredEvent(gateway_id, seq, ts, kind, subject, level, _json_object(detail))
            for gateway_id, seq, ts, kind, subject, level, detail in rows
        ]

    # --- alarms and commands ------------------------------------------------------------------

    def alarms(
        self,
        *,
        active: bool | None,
        gateway_ids: Sequence[str] | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[Alarm]:
        """Alarms, newest first, in one query; ``active`` True for those not back to normal."""
        clauses: list[str] = []
        params: list[object] = []
        if active is not None:
            clauses.append("a.cleared_at IS NULL" if active else "a.cleared_at IS NOT NULL")
        if gateway_ids is not None:
            clauses.append(f"g.id IN ({','.join('?' * len(gateway_ids))})")
            params.extend(gateway_ids)
        if since is not None:
            clauses.append("coalesce(a.cleared_at, 1e300) >= ?")
            params.append(since)
        if until is not None:
            clauses.append("a.raised_at < ?")
            params.append(until)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        return self._alarms(f"{where} ORDER BY a.raised_at DESC, a.id DESC LIMIT ?", params)

    def _alarms(self, tail: str, params: Sequence[Any]) -> list[Alarm]:
        db = self._db()
        rows = list(
            db.execute(
                "SELECT a.*, g.id AS gateway_id FROM alarms a "
                f"JOIN gateways g ON g.num = a.gw {tail}",
                list(params),
            )
        )
        receipts: dict[int, list[Receipt]] = {}
        if rows:
            ids = [r["id"] for r in rows]
            for r in db.execute(
                f"SELECT * FROM alarm_receipts WHERE alarm_id IN ({','.join('?' * len(ids))}) "
                "ORDER BY confirmed_at",
                ids,
            ):
                receipts.setdefault(r["alarm_id"], []).append(
                    Receipt(r["person"], r["via"], r["note"], r["confirmed_at"], r["recorded_by"])
                )
        return [
            Alarm(
                id=r["id"],
                gateway_id=r["gateway_id"],
                rule=r["rule"],
                level=r["level"],
                peak_level=r["peak_level"],
                raised_at=r["raised_at"],
                cleared_at=r["cleared_at"],
                detail=r["detail"],
                acknowledged_at=r["acknowledged_at"],
                acknowledged_by=r["acknowledged_by"],
                ack_note=r["ack_note"],
                ack_origin=ack_origin_of(r["ack_origin"]),
                receipts=tuple(receipts.get(r["id"], ())),
            )
            for r in rows
        ]

    def get_alarm(self, alarm_id: int) -> Alarm:
        """One alarm with its receipts; raises NotFoundError."""
        found = self._alarms("WHERE a.id = ?", [alarm_id])
        if not found:
            raise NotFoundError(f"no alarm with id {alarm_id}")
        return found[0]

    def acknowledge_alarm(self, alarm_id: int, by: str, note: str | None, now: float) -> Alarm:
        """Record who acknowledged an alarm; raises NotFoundError or ConflictError."""
        alarm = self.get_alarm(alarm_id)
        if alarm.acknowledged_at is not None:
            msg = (
                f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by} "
                f"at {iso(alarm.acknowledged_at)}"
            )
            raise ConflictError(msg)
        with self._write() as db:
            db.execute(
                "UPDATE alarms SET acknowledged_at = ?, acknowledged_by = ?, ack_note = ?, "
                "ack_origin = 'fleet' WHERE id = ? AND acknowledged_at IS NULL",
                [now, by, note, alarm_id],
            )
        return self.get_alarm(alarm_id)

    def confirm_receipt(
        self,
        alarm_id: int,
        person: str,
        via: str | None,
        note: str | None,
        recorded_by: str,
        now: float,
    ) -> Alarm:
        """Record that ``person`` confirmed receiving the warning; raises NotFoundError."""
        self.get_alarm(alarm_id)
        with self._write() as db:
            db.execute(
                "INSERT INTO alarm_receipts (alarm_id, person, via, note, confirmed_at, "
                "recorded_by) VALUES (?, ?, ?, ?, ?, ?)",
                [alarm_id, person, via, note, now, recorded_by],
            )
        return self.get_alarm(alarm_id)

    def queue_command(
        self, gateway_id: str, name: str, args: dict[str, Any], by: str | None, now: float
    ) -> QueuedCommand:
        """Queue a command for delivery to a gateway."""
        gw = self._gateway_num(gateway_id)
        if gw is None:
            raise NotFoundError(f"no gateway {gateway_id!r}")
        command = QueuedCommand(uuid.uuid4().hex, gateway_id, name, args, now, by, "pending")
        with self._write() as db:
            db.execute(
                "INSERT INTO commands (id, gw, name, args, issued_at, issued_by, status) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                [command.id, gw, name, json.dumps(args), now, by],
            )
        return command

    def claim_commands(self, now: float) -> list[QueuedCommand]:
        """Take the pending commands (and claims older than ``COMMAND_CLAIM_S``), oldest first.

        Atomic, so with several ingest workers each command is delivered by one of them; a
        claim whose publisher died before ``command_sent`` is taken again once it expires.
        """
        stale = now - COMMAND_CLAIM_S
        pending = f"SELECT 1 FROM commands WHERE {_CLAIMABLE} LIMIT 1"
        if self._db().execute(pending, (stale,)).fetchone() is None:
            return []
        with self._write() as db:
            rows = db.execute(
                f"UPDATE commands SET status = 'publishing', sent_at = ? WHERE {_CLAIMABLE} "
                "RETURNING id, gw, name, args, issued_at, issued_by",
                (now, stale),
            ).fetchall()
        names = {num: gid for gid, num in self._gateway_ids()}
        commands = [
            QueuedCommand(cid, names[gw], name, json.loads(args), issued, by, "publishing")
            for cid, gw, name, args, issued, by in rows
        ]
        return sorted(commands, key=lambda c: c.issued_at)

    def command_sent(self, command_id: str) -> None:
        """Record that the broker took a claimed command (its claim no longer expires)."""
        with self._write() as db:
            db.execute(
                "UPDATE commands SET status = 'sent' WHERE id = ? AND status = 'publishing'",
                [command_id],
            )

    def release_command(self, command_id: str) -> None:
        """Put a claimed command back for the next delivery attempt."""
        with self._write() as db:
            db.execute(
                "UPDATE commands SET status = 'pending', sent_at = NULL "
                "WHERE id = ? AND status = 'publishing'",
                [command_id],
            )

    def _gateway_ids(self) -> list[tuple[str, int]]:
        return [(r["id"], r["num"]) for r in self._db().execute("SELECT id, num FROM gateways")]


#: A command waiting, or claimed by a publisher that has not said it sent it in time.
_CLAIMABLE = "(status = 'pending' OR (status = 'publishing' AND sent_at < ?))"


def _api_token(row: sqlite3.Row) -> ApiToken:
    return ApiToken(
        row["id"],
        row["name"],
        Role(row["role"]),
        row["created_at"],
        row["revoked_at"],
        row["expires_at"],
    )


def create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600), if it does not exist.

    It holds password and token hashes and every reading; sqlite3 would create it with the
    umask's mode (often 0644). SQLite gives its -wal and -shm files the same mode.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def _enrollment_token(row: sqlite3.Row) -> EnrollmentToken:
    return EnrollmentToken(
        id=row["id"],
        site_id=row["site_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        created_by=row["created_by"],
        note=row["note"],
        used_at=row["used_at"],
        gateway_id=row["gateway_id"],
        revoked_at=row["revoked_at"],
    )
