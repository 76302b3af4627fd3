"""SQLite's statement runner (``fleet.statements``): the repository's file, lock and rows.

Statements run on the thread's own connection (``SQLiteRepository._db``); a write holds
the repository's write lock from ``BEGIN IMMEDIATE`` (``SQLiteRepository._write``).

This module must never hold SQL of any one resource, nor open a connection of its own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from fleet.statements import Result, Statements, Transaction


class SQLiteTransaction(Transaction):
    """Statements on one ``sqlite3`` connection (rows are ``sqlite3.Row``)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: Any = ()) -> Result:
        """Run one statement written with ``?`` placeholders."""
        return self.db.execute(sql, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter set."""
        if params:
            self.db.executemany(sql, params)


@contextmanager
def read_snapshot(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One consistent snapshot for several queries (inside a write, that write's view)."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN")
    try:
        yield db
    finally:
        db.execute("COMMIT")


class SQLiteStatements(Statements):
    """Statements on the repository's SQLite file: its per-thread connection and write lock."""

    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        super().__init__()
        self._db = db
        self._write = write

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        with self._write() as db:
            yield SQLiteTransaction(db)

    @contextmanager
    def _savepoint(self, tx: Transaction) -> Iterator[None]:
        assert isinstance(tx, SQLiteTransaction)
        tx.db.execute("SAVEPOINT store_write")
        try:
            yield
        except BaseException:
            tx.db.execute("ROLLBACK TO store_write")
            tx.db.execute("RELEASE store_write")
            raise
        tx.db.execute("RELEASE store_write")

    @contextmanager
    def _autocommit(self) -> Iterator[Transaction]:
        yield SQLiteTransaction(self._db())

    @contextmanager
    def _read_only(self) -> Iterator[Transaction]:
        with read_snapshot(self._db()) as db:
            yield SQLiteTransaction(db)

    def json_array_has(self, column: str) -> str:
        """SQL true when the JSON array of strings in ``column`` holds ``?``."""
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE value = ?)"
