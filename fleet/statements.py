"""The statement runner the fleet's stores share: SQL written once, run on either backend.

A store (``fleet.escalation_tables``, ``fleet.ota_tables``; the repositories' shared parts,
``fleet.token_tables``, ``fleet.gateway_tables``, ``fleet.alarm_tables``) writes each
statement once with ``?`` placeholders and runs it through a ``Statements``: ``rows`` and
``row`` for one read, ``snapshot`` for several reads that must agree, ``writing`` for a
write transaction, and ``batch`` to make a thread's writes one transaction. The runner
owns what differs between the backends: the placeholder style, the connection and its
transaction, savepoints, the write lock, row locks (``for_update``), JSON functions and
row access: ``fleet.sqlite_statements`` and ``fleet.postgres_statements``. Rows read by
position and by column name alike.

This module must never know a database driver, never commit a write of an open ``batch``
on its own (the batch's transaction commits or rolls back whole), and never hold SQL of
any one resource.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

#: A row: ``row[0]`` and ``row["name"]`` both work, and ``dict(row)`` gives every column.
Row = Any


class Result(Protocol):
    """What a statement returns (an ``sqlite3.Cursor`` or a psycopg cursor)."""

    @property
    def rowcount(self) -> int:
        """How many rows the statement changed."""
        ...

    def fetchone(self) -> Row | None:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Row]:
        """The rows not yet fetched."""
        ...

    def __iter__(self) -> Iterator[Row]: ...


class Transaction(ABC):
    """One connection's statements, inside whatever transaction it is in."""

    @abstractmethod
    def execute(self, sql: str, params: Any = ()) -> Result:
        """Run one statement written with ``?`` placeholders."""

    @abstractmethod
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter set (none: nothing is run)."""

    def rows(self, sql: str, params: Any = ()) -> list[Row]:
        """Every row of one query."""
        return self.execute(sql, params).fetchall()

    def row(self, sql: str, params: Any = ()) -> Row | None:
        """The first row of one query, or None."""
        return self.execute(sql, params).fetchone()

    def tuples(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Every row of one query as a plain tuple (``fleet.live_changes``'s ``Read``)."""
        return [tuple(row) for row in self.rows(sql, params)]

    def grouped(self, sql: str, keys: Sequence[Any], by: str) -> dict[Any, list[Row]]:
        """The rows of ``sql`` by their column ``by``, in order.

        ``sql`` holds ``{keys}`` where the ``IN`` list of ``keys`` goes; no keys, no query.
        """
        found: dict[Any, list[Row]] = {}
        if keys:
            for row in self.rows(sql.replace("{keys}", marks(len(keys))), keys):
                found.setdefault(row[by], []).append(row)
        return found

    def insert(self, sql: str, params: Any = ()) -> int:
        """Run an ``INSERT … RETURNING id``; the id it made (an insert without one is a bug)."""
        made = self.execute(sql, params).fetchone()
        if made is None:
            msg = "insert returned no row id"
            raise RuntimeError(msg)
        return int(made[0])


def marks(count: int) -> str:
    """``count`` placeholders for an ``IN (…)`` list."""
    return ",".join("?" * count)


@dataclass(slots=True)
class _Batch:
    """The one transaction a thread's writes share inside ``Statements.batch``."""

    stack: ExitStack
    tx: Transaction | None = None


class Statements(ABC):
    """Runs a store's statements on one backend; safe to share between threads."""

    #: `` FOR UPDATE`` where the backend locks rows it reads in a write, else empty.
    for_update: ClassVar[str] = ""

    def __init__(self) -> None:
        self._batches = threading.local()

    # --- what each backend provides -------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction of its own (holding the write lock), committed at its end."""

    @abstractmethod
    def _savepoint(self, tx: Transaction) -> AbstractContextManager[None]:
        """A savepoint in ``tx``: rolled back (alone) if the block raises."""

    @abstractmethod
    def _autocommit(self) -> AbstractContextManager[Transaction]:
        """A connection outside any transaction, for one statement."""

    @abstractmethod
    def _read_only(self) -> AbstractContextManager[Transaction]:
        """One consistent snapshot for several reads."""

    @abstractmethod
    def json_array_has(self, column: str) -> str:
        """SQL true when the JSON array of strings in ``column`` holds ``?``."""

    # --- what the stores use ----------------------------------------------------------------

    def _open_batch(self) -> _Batch | None:
        batch: _Batch | None = getattr(self._batches, "open", None)
        return batch

    def rows(self, sql: str, params: Any = ()) -> list[Row]:
        """Every row of one query; inside a batch, on its transaction (its writes seen)."""
        with self._reading(self._autocommit) as tx:
            return tx.rows(sql, params)

    def row(self, sql: str, params: Any = ()) -> Row | None:
        """The first row of one query, or None."""
        with self._reading(self._autocommit) as tx:
            return tx.row(sql, params)

    def snapshot(self) -> AbstractContextManager[Transaction]:
        """Several reads that see one state (inside a batch, the batch's)."""
        return self._reading(self._read_only)

    @contextmanager
    def _reading(
        self, otherwise: Callable[[], AbstractContextManager[Transaction]]
    ) -> Iterator[Transaction]:
        batch = self._open_batch()
        if batch is not None and batch.tx is not None:
            yield batch.tx
            return
        with otherwise() as tx:
            yield tx

    @contextmanager
    def batch(self, before_commit: Callable[[Transaction], None] | None = None) -> Iterator[None]:
        """Make the writes of this thread inside the block one transaction: one commit.

        The transaction begins at the first write, so a block that writes nothing takes no
        lock. Each write stays all-or-nothing on its own (a savepoint); an error escaping
        the block rolls back every write in it. ``before_commit`` runs last in the
        transaction, only if the block wrote; raising there rolls the whole block back.
        """
        if self._open_batch() is not None:
            yield
            return
        with ExitStack() as stack:
            batch = self._batches.open = _Batch(stack)
            try:
                yield
                if before_commit is not None and batch.tx is not None:
                    before_commit(batch.tx)
            finally:
                self._batches.open = None

    @contextmanager
    def writing(self) -> Iterator[Transaction]:
        """A write transaction of its own, or a savepoint in this thread's open batch."""
        batch = self._open_batch()
        if batch is None:
            with self._transaction() as tx:
                yield tx
            return
        if batch.tx is None:
            batch.tx = batch.stack.enter_context(self._transaction())
        with self._savepoint(batch.tx):
            yield batch.tx
