"""Readings staged in RAM between durable moves into the store: the SD card's main saving.

A poll round's readings are committed first to a small SQLite file in a stage directory
on tmpfs (``/run/hazardwatch`` under systemd), which costs the SD card nothing and which
a SIGKILL of the agent leaves intact. ``LocalStore`` moves them into ``store.sqlite`` on
the card in one fsynced transaction every ``DURABLE_EVERY_S``, with every event it
writes, and when it closes; a start after a SIGKILL moves what the stage still holds. So
the card sees one append of a few hundred rows every five minutes, not a commit every
ten seconds (each of which rewrote the WAL's tail, the ``-shm`` index and, at the
checkpoint, the database pages again).

Readers see both files as one: ``attach`` attaches the stage as schema ``stage`` and
shadows ``readings`` with a TEMP VIEW over ``main.readings`` and the staged rows the
store lacks (a row already moved, which a SIGKILL between the move's commit and the
stage's delete can leave, is never seen twice). The stage's path is recorded in
the store (``store_stage``), so any process reading the store finds it.

It must never: delete a staged reading before the store's commit holding it returned;
move a reading twice; write the SD card itself (the stage belongs on tmpfs, and a stage
directory on a real disk is only warned about, not refused, since it still works).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

#: The stage's one table: the store's ``readings`` columns, seqs given by the store.
STAGE_TABLE = """
CREATE TABLE IF NOT EXISTS stage.readings (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    channel INTEGER NOT NULL,
    value REAL,
    quality INTEGER NOT NULL,
    boot_id TEXT,
    mono REAL
)
"""
#: Where the store keeps its stage's path, for other processes reading it.
RECORD_TABLE = """
CREATE TABLE IF NOT EXISTS store_stage (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    path TEXT NOT NULL
)
"""
COLUMNS = "seq, ts, channel, value, quality, boot_id, mono"
#: Staged rows not yet in the store (one primary-key lookup each; the stage is small).
NOT_IN_STORE = "NOT EXISTS (SELECT 1 FROM main.readings m WHERE m.seq = stage.readings.seq)"
VIEW = (
    f"CREATE TEMP VIEW IF NOT EXISTS readings AS SELECT {COLUMNS} FROM main.readings "
    f"UNION ALL SELECT {COLUMNS} FROM stage.readings WHERE {NOT_IN_STORE}"
)
#: The hours of the staged rows the store lacks, for ``reading_hours``.
_ADD_HOURS = (
    "INSERT INTO main.reading_hours(hour, first_seq) "
    "SELECT CAST(ts / 3600 AS INTEGER) AS h, min(seq) FROM stage.readings "
    f"WHERE {NOT_IN_STORE} GROUP BY h "
    "ON CONFLICT(hour) DO UPDATE SET first_seq = min(first_seq, excluded.first_seq)"
)


def stage_path(stage_dir: Path, store_path: Path) -> Path:
    """The stage file of the store at ``store_path``: one per store, found again after a restart."""
    digest = hashlib.sha256(str(store_path.resolve()).encode()).hexdigest()[:16]
    return stage_dir / f"readings-{digest}.sqlite"


def recorded(conn: sqlite3.Connection) -> Path | None:
    """The stage path the store records, or None (no stage, or a store of an older release)."""
    try:
        row = conn.execute("SELECT path FROM main.store_stage WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        return None
    return Path(row[0]) if row else None


def attached(conn: sqlite3.Connection) -> bool:
    """Whether ``conn`` has a stage attached (and ``readings`` is the view over both)."""
    return any(name == "stage" for _, name, _ in conn.execute("PRAGMA database_list"))


def attach(conn: sqlite3.Connection, path: Path, *, read_only: bool) -> None:
    """Attach the stage at ``path`` as ``stage`` and make ``readings`` the view over both.

    A writer creates the file (owner-only) and its table; a reader needs the connection
    opened with ``uri=True``.
    """
    if read_only:
        conn.execute("ATTACH DATABASE ? AS stage", (f"file:{path}?mode=ro",))
    else:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn.execute("ATTACH DATABASE ? AS stage", (str(path),))
        conn.execute("PRAGMA stage.journal_mode=WAL")
        # In RAM an fsync buys nothing; a SIGKILL loses nothing committed either way.
        conn.execute("PRAGMA stage.synchronous=OFF")
        conn.execute(STAGE_TABLE)
    conn.execute(VIEW)


def attach_recorded(conn: sqlite3.Connection) -> bool:
    """For a reader (opened with ``uri=True``): attach the store's stage if it has one.

    Returns whether it did. Without it ``readings`` is the store's table alone, which
    lacks at most the last few minutes of readings.
    """
    path = recorded(conn)
    if path is None or not path.exists() or attached(conn):
        return attached(conn)
    try:
        attach(conn, path, read_only=True)
    except sqlite3.Error as exc:  # a stage the agent left without its -shm after a crash
        log.debug("the store's stage %s cannot be read: %s", path, exc)
        return False
    return True


def record(conn: sqlite3.Connection, path: Path | None) -> None:
    """Record ``path`` as the store's stage (None: the store has none), in the caller's commit."""
    conn.execute(RECORD_TABLE)
    if path is None:
        conn.execute("DELETE FROM main.store_stage")
    else:
        conn.execute(
            "INSERT INTO main.store_stage(id, path) VALUES (1, ?) "
            "ON CONFLICT(id) DO UPDATE SET path = excluded.path",
            (str(path),),
        )


def move_into_store(conn: sqlite3.Connection) -> int:
    """Copy the staged rows the store lacks into ``main.readings``, in the caller's transaction.

    Their hours go into ``reading_hours``. Returns the highest staged seq: once the
    transaction committed, the stage may drop its rows up to it.
    """
    conn.execute(_ADD_HOURS)
    conn.execute(
        f"INSERT INTO main.readings({COLUMNS}) SELECT {COLUMNS} FROM stage.readings "
        f"WHERE {NOT_IN_STORE} ORDER BY seq"
    )
    return int(conn.execute("SELECT ifnull(max(seq), 0) FROM stage.readings").fetchone()[0])


def drop_moved(conn: sqlite3.Connection, upto: int) -> None:
    """Delete staged rows up to ``upto``, which the store's commit has; the stage only.

    A deferred transaction: it locks only the stage, never the store.
    """
    with conn:
        conn.execute("BEGIN")
        conn.execute("DELETE FROM stage.readings WHERE seq <= ?", (upto,))


def recover(conn: sqlite3.Connection, path: Path) -> int:
    """Move what the stage at ``path`` holds that the store lacks; return how many.

    For a start after a SIGKILL, or after the stage directory changed: the rows go into
    the store in one commit (the caller makes it FULL) before anything else is written.
    Safe beside a running agent (a tool opening its store): rows are moved once and
    dropped only once moved.
    """
    if not path.exists():
        return 0
    conn.execute("ATTACH DATABASE ? AS stage", (str(path),))
    try:
        conn.execute(STAGE_TABLE)
        left_sql = f"SELECT count(*) FROM stage.readings WHERE {NOT_IN_STORE}"
        (left,) = conn.execute(left_sql).fetchone()
        if left:
            with conn:
                conn.execute("BEGIN IMMEDIATE")  # the stage too: no row comes in meanwhile
                upto = move_into_store(conn)
            # Only up to what this transaction saw: a running agent stages new rows after.
            drop_moved(conn, upto)
            log.warning("moved %d readings an earlier run staged in %s into the store", left, path)
    finally:
        conn.execute("DETACH DATABASE stage")
    return int(left)
