"""The shared group writer (fleet.group_writer) over a real SQLite file.

Rows handed in while a group is written go together in the next one, each answered once its
group is committed; a failed group either answers with the error or is kept and retried
(never dropped); close writes what still waits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from fleet.group_writer import GroupWriter
from hardware_sim.harness.waiting import wait_for


class ReadingsTable:
    """A real table; ``write`` inserts one group in one transaction, answers the row ids."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, check_same_thread=False, timeout=0)
        self.conn.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        self.conn.commit()
        self.groups: list[list[int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.writing = threading.Event()

    def write(self, values: list[int]) -> list[int]:
        self.writing.set()
        self.hold.wait(10)
        with self.conn:
            insert = "INSERT INTO r (v) VALUES (?)"
            ids = [self.conn.execute(insert, (v,)).lastrowid for v in values]
        self.groups.append(values)
        return [i for i in ids if i is not None]

    def committed(self) -> list[int]:
        with sqlite3.connect(self.path) as other:
            return [v for (v,) in other.execute("SELECT v FROM r ORDER BY id")]


async def test_rows_arriving_during_a_write_go_together_in_the_next_group(tmp_path: Path) -> None:
    table = ReadingsTable(tmp_path / "g.db")
    writer: GroupWriter[int, int] = GroupWriter(table.write, what="readings")
    table.hold.clear()
    first = writer.add(1)
    await wait_for(table.writing.is_set, 5, "the first group to start")
    later = [writer.add(v) for v in (2, 3, 4)]
    assert writer.unanswered == 4
    assert not first.done()  # not answered before its commit
    table.hold.set()
    answers = await asyncio.gather(first, *later)
    assert table.groups == [[1], [2, 3, 4]]
    assert table.committed() == [1, 2, 3, 4]
    assert answers == [1, 2, 3, 4]
    assert writer.unanswered == 0


async def test_without_retry_every_row_of_a_failed_group_gets_the_error(tmp_path: Path) -> None:
    table = ReadingsTable(tmp_path / "g.db")
    writer: GroupWriter[int | None, int] = GroupWriter(table.write, what="readings")  # type: ignore[arg-type]
    futures = [writer.add(5), writer.add(None)]  # NOT NULL fails the whole transaction
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results)
    assert table.committed() == []
    assert await writer.add(6) == 1  # the writer goes on with the next group


async def test_with_retry_a_locked_database_delays_the_group_but_loses_no_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = ReadingsTable(tmp_path / "g.db")
    writer: GroupWriter[int, int] = GroupWriter(table.write, what="readings", retry_after_s=0.05)
    locker = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    futures = [writer.add(v) for v in (7, 8)]
    await wait_for(lambda: "could not record 2 readings" in caplog.text, 5, "the failure logged")
    assert not any(f.done() for f in futures)
    later = writer.add(9)
    locker.execute("COMMIT")
    await asyncio.gather(*futures, later)
    assert table.committed() == [7, 8, 9]  # the retried group first, then the newcomer
    locker.close()


async def test_close_writes_the_rows_still_waiting(tmp_path: Path) -> None:
    table = ReadingsTable(tmp_path / "g.db")
    writer: GroupWriter[int, int] = GroupWriter(table.write, what="readings", retry_after_s=60)
    locker = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    waiting = writer.add(10)
    await wait_for(lambda: writer.unanswered == 1 and table.writing.is_set(), 5, "a failed try")
    locker.execute("COMMIT")
    await writer.close()  # the writer was pausing 60 s before its next try
    assert table.committed() == [10]
    assert waiting.result() == 1
    locker.close()
