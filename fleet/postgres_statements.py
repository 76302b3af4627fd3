"""PostgreSQL's statement runner (``fleet.statements``): the repository's pool, locks and rows.

Statements are written with ``?`` as on SQLite; here they become psycopg's ``%s``. A write
is one transaction on a pooled connection, holding the store's advisory lock if it has one.

This module must never hold SQL of any one resource.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from psycopg_pool import ConnectionPool

from fleet.statements import Result, Statements, Transaction


class PostgresRow(tuple):  # type: ignore[type-arg]
    """A row read by position or by column name, as ``sqlite3.Row`` is."""

    __slots__ = ()
    names: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order (so ``dict(row)`` works)."""
        return list(self.names)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    return _row_class(tuple(column.name for column in cursor.description or ()))


@functools.lru_cache(maxsize=1024)
def _row_class(columns: tuple[str, ...]) -> type[PostgresRow]:
    """The row class of one set of columns, made once (psycopg asks at every execute).

    A class made per statement cost ~5 µs and ~1.4 kB of garbage only the cyclic
    collector frees, on every read of the 叫应 round and the ingest workers' polls.
    """
    names = {name: i for i, name in enumerate(columns)}
    return type("Row", (PostgresRow,), {"__slots__": (), "names": names})


@functools.lru_cache(maxsize=1024)
def postgres_sql(sql: str) -> bytes:
    """``sql`` with psycopg's placeholders (``%s``) for ``?`` (a literal ``%`` doubled).

    The one translation for every statement written for both backends.
    """
    return sql.replace("%", "%%").replace("?", "%s").encode()


class PostgresTransaction(Transaction):
    """Statements on one psycopg connection, written with ``?`` like SQLite's."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._cursor = conn.cursor(row_factory=_row_factory)

    def execute(self, sql: str, params: Any = ()) -> Result:
        """Run one statement written with ``?`` placeholders."""
        return self._cursor.execute(postgres_sql(sql), params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter set."""
        if params:
            self._cursor.executemany(postgres_sql(sql), params)


class PostgresStatements(Statements):
    """Statements on the repository's pool; every write takes ``write_lock`` if given.

    ``write_lock`` is a transaction-scoped advisory lock key: the writes of every fleet
    process that holds it take turns, as on SQLite's one writer.
    """

    for_update = " FOR UPDATE"

    def __init__(self, pool: ConnectionPool[Any], write_lock: int | None = None) -> None:
        super().__init__()
        self._pool = pool
        self._write_lock = write_lock

    def create_schema(self, schema: str, lock: int) -> None:
        """Run ``schema`` holding advisory lock ``lock`` (several processes may start at once)."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            conn.execute(schema.encode())

    @contextmanager
    def _transaction(self) -> Iterator[Transaction]:
        with self._pool.connection() as conn, conn.transaction():
            if self._write_lock is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._write_lock,))
            yield PostgresTransaction(conn)

    @contextmanager
    def _savepoint(self, tx: Transaction) -> Iterator[None]:
        assert isinstance(tx, PostgresTransaction)
        with tx.conn.transaction():
            yield

    @contextmanager
    def _autocommit(self) -> Iterator[Transaction]:
        with self._pool.connection() as conn:
            yield PostgresTransaction(conn)

    @contextmanager
    def _read_only(self) -> Iterator[Transaction]:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield PostgresTransaction(conn)

    def json_array_has(self, column: str) -> str:
        """SQL true when the JSON array of strings in ``column`` holds ``?``."""
        return (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({column}::jsonb) AS v(id) "
            "WHERE v.id = CAST(? AS TEXT))"
        )
