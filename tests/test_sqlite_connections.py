"""The fleet's per-thread SQLite connections and write lock (``fleet.sqlite_connections``).

Two holders on one file stand for two processes (an ingest worker and the SL 651 centre):
each has its own connections and lock-file descriptors, as separate processes would.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from fleet.sl651_stations import StationRegistry
from fleet.sqlite_connections import WRITE_LOCK, ThreadConnections
from fleet.sqlite_repository import SQLiteRepository


def made(path: Path) -> ThreadConnections:
    holder = ThreadConnections(path, durable=False)
    with holder.write() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (text TEXT)")
    return holder


def lock_free(path: Path) -> bool:
    """Whether another process could take the write lock right now."""
    other = ThreadConnections(path)
    try:
        with other.lock_file(WRITE_LOCK, wait=False) as held:
            return held
    finally:
        other.close()


def notes(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [text for (text,) in conn.execute("SELECT text FROM notes")]
    finally:
        conn.close()


def test_a_write_holds_the_lock_file_for_its_whole_transaction(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    holder = made(path)
    with holder.write() as conn:
        conn.execute("INSERT INTO notes VALUES ('stored')")
        assert not lock_free(path)
        assert notes(path) == []  # not committed yet
    assert lock_free(path)
    assert notes(path) == ["stored"]
    assert not holder.connection().in_transaction
    holder.close()


def test_a_write_that_raises_is_rolled_back_and_lets_the_lock_go(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    holder = made(path)

    def fail_midway() -> None:
        with holder.write() as conn:
            conn.execute("INSERT INTO notes VALUES ('half')")
            raise RuntimeError("the report was refused")

    with pytest.raises(RuntimeError, match="refused"):
        fail_midway()
    assert lock_free(path)
    assert notes(path) == []
    assert not holder.connection().in_transaction
    holder.close()


def test_each_thread_has_its_own_connection_and_close_closes_them_all(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    holder = made(path)
    main = holder.connection()
    assert holder.connection() is main  # the same one for the same thread
    opened: list[sqlite3.Connection] = []
    lock_fds: list[int] = []

    def in_another_thread() -> None:
        with holder.write() as conn:
            conn.execute("INSERT INTO notes VALUES ('from a thread')")
        opened.append(holder.connection())
        lock_fds.extend(holder.local.lock_fds.values())

    thread = threading.Thread(target=in_another_thread)
    thread.start()
    thread.join()
    assert opened[0] is not main
    holder.close()
    for conn in (main, opened[0]):
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(lock_fds[0])
    # After a close the holder opens anew.
    assert holder.connection() is not main
    assert notes(path) == ["from a thread"]
    holder.close()


def test_durable_syncs_fully_and_rows_come_as_the_factory_makes_them(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    made(path).close()
    durable = ThreadConnections(path, row_factory=sqlite3.Row)
    crash_safe = ThreadConnections(path, durable=False)
    assert durable.connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert crash_safe.connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert durable.connection().execute("SELECT 1 AS one").fetchone()["one"] == 1
    assert crash_safe.connection().execute("SELECT 1").fetchone() == (1,)
    durable.close()
    crash_safe.close()


def test_the_repository_and_the_station_registry_write_under_the_same_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "fleet.sqlite"
    repository = SQLiteRepository(path, durable=False)
    registry = StationRegistry(path, durable=False)
    for write in (repository._write, registry._db.write):  # their own write transactions
        with write():
            assert not lock_free(path)
        assert lock_free(path)
    registry.close()
    repository.close()


def test_a_commit_that_fails_is_rolled_back_and_the_next_write_goes_through(
    tmp_path: Path,
) -> None:
    # SQLite leaves the transaction open when COMMIT itself fails (here a deferred foreign
    # key, checked only then; in the field a full disk or an I/O error can do the same).
    path = tmp_path / "fleet.sqlite"
    holder = made(path)
    with holder.write() as conn:
        conn.execute("CREATE TABLE stations (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE reports (station INTEGER REFERENCES stations(id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
    holder.connection().execute("PRAGMA foreign_keys = ON")

    def orphan_report() -> None:
        with holder.write() as conn:
            conn.execute("INSERT INTO notes VALUES ('with the orphan')")
            conn.execute("INSERT INTO reports VALUES (7)")

    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        orphan_report()
    assert not holder.connection().in_transaction
    assert lock_free(path)
    with holder.write() as conn:
        conn.execute("INSERT INTO notes VALUES ('after it')")
    assert notes(path) == ["after it"]
    holder.close()
