"""One connection per thread to a fleet SQLite file, its lock files, and closing them all.

The fleet's SQLite stores (``fleet.sqlite_repository``, the SL 651 registry in
``fleet.sl651_stations``) share a file between threads and processes: each thread gets its
own connection, opened with ``isolation_level=None`` so that the only transactions are the
ones begun on purpose, and every writer holds ``<database>.write-lock`` (``WRITE_LOCK``)
for its whole transaction, so commits queue on a blocking ``flock`` (handed over the
moment it is released) instead of on SQLite's busy polling with growing sleeps.

This module knows no table and never begins a transaction but ``write``'s; it never
leaves a lock file locked or a transaction open when the block inside it raises.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Every fleet writer holds ``<database>.write-lock`` (ingest, REST, 叫应, the SL 651 centre),
#: so commits queue on one lock instead of on SQLite's busy polling.
WRITE_LOCK = "write-lock"


class ThreadConnections:
    """Each thread's connection to ``path`` and lock files, all closed by ``close``.

    ``durable`` (the default) fsyncs every commit (``synchronous=FULL``); otherwise a
    commit survives a process crash only (``NORMAL``). ``row_factory`` is given to each
    connection (``sqlite3.Row`` for rows by name; None for plain tuples). ``local`` is per
    thread state that lives as long as that thread's connection (``close`` starts it over).
    """

    def __init__(self, path: Path, *, durable: bool = True, row_factory: Any | None = None) -> None:
        self.path = path
        self.local = threading.local()
        self._synchronous = "FULL" if durable else "NORMAL"
        self._row_factory = row_factory
        self._connections: list[sqlite3.Connection] = []
        self._lock_fds: list[int] = []
        self._lock = threading.Lock()

    def connection(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self.local, "connection", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=60, check_same_thread=False, isolation_level=None
            )
            if self._row_factory is not None:
                conn.row_factory = self._row_factory
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            self.local.connection = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def lock_file(self, name: str, *, wait: bool) -> Iterator[bool]:
        """Hold the lock file ``<database>.<name>``; yields False if taken and not ``wait``."""
        fds: dict[str, int] = getattr(self.local, "lock_fds", None) or {}
        self.local.lock_fds = fds
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
    def write_lock(self) -> Iterator[None]:
        """Exclusive right to write, across threads and processes, waiting for it."""
        with self.lock_file(WRITE_LOCK, wait=True):
            yield

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the write lock from the start (no upgrade deadlocks).

        It commits when the block ends and rolls back when the block or the commit raises
        (SQLite leaves the transaction open when COMMIT fails: a full disk, an I/O error, a
        deferred constraint), so the thread's next write begins afresh.
        """
        conn = self.connection()
        with self.write_lock():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every thread's connection and lock file; a later use opens new ones."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            for fd in self._lock_fds:
                os.close(fd)
            self._connections.clear()
            self._lock_fds.clear()
        self.local = threading.local()
