"""Readings staged in RAM: the card sees a move every 5 minutes, and nothing is lost or doubled.

Real SQLite files throughout; the stage lives in the test's directory (on a gateway it is
tmpfs, which only changes where the bytes go). Time is injected: the store's monotonic
clock is replaced by one the test moves. The SIGKILL test kills a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from drivers.model import Quality, Reading
from edge_agent import reading_stage
from edge_agent.store import DURABLE_EVERY_S, LocalStore
from edge_agent.upload_source import UploadSource, stored_progress
from hardware_sim.harness.agent import readings as harness_readings
from protocol import DataBatch, Stream
from tests.full_disk import small_disk

GATEWAY = "gw-0123456789"
T0 = 1_750_000_000.0  # 2025-06-15, inside the wire's range
CHANNELS = 20


@dataclass
class MovedTime:
    """The store's monotonic clock, moved by the test (``LocalStore(monotonic=...)``)."""

    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock() -> MovedTime:
    return MovedTime()


def staged_store(tmp_path: Path, clock: MovedTime) -> LocalStore:
    """A store in ``tmp_path/data`` staged in ``tmp_path/ram``, on the test's clock."""
    return LocalStore(tmp_path / "data", stage_dir=tmp_path / "ram", monotonic=clock.monotonic)


def poll_round(i: int, quality: Quality = Quality.OK) -> list[Reading]:
    t = T0 + 10 * i
    return [
        Reading(t + c * 0.01, f"dev{c // 4}.ch{c}", float(i * 100 + c), "mm", quality, 5.0 + i)
        for c in range(CHANNELS)
    ]


def on_card(store_path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What the file on the card holds, read without the stage."""
    with contextlib.closing(sqlite3.connect(store_path)) as conn:
        return conn.execute(sql).fetchall()


def staged_count(stage: Path) -> int:
    with contextlib.closing(sqlite3.connect(stage)) as conn:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])


async def test_rounds_are_read_from_ram_and_reach_the_card_in_one_move(
    tmp_path: Path, clock: MovedTime
) -> None:
    ram = tmp_path / "ram"
    async with LocalStore(tmp_path / "data", stage_dir=ram, monotonic=clock.monotonic) as store:
        assert store.stage is not None
        for i in range(3):
            store.add_readings(poll_round(i))
            assert await store.flush() == CHANNELS
        # Nothing of them on the card yet ...
        card_before = on_card(store.path, "SELECT count(*) FROM readings")
        stage_before = staged_count(store.stage)
        # ... yet every reader sees them: the store, the uplink, the CLI, the test harness.
        count = store.reading_count()
        last = store.last_reading_seq()
        history = store.history("dev0.ch1", T0 - 60)
        source = UploadSource(store.path, GATEWAY, {Stream.READINGS: 250, Stream.EVENTS: 10})
        try:
            seqs = await source.last_seqs()
            batch = await source.batch(Stream.READINGS, 0)
        finally:
            source.close()
        progress = stored_progress(store.path)
        harness = harness_readings(store.data_dir, "dev0.ch1")
        # The first flush after DURABLE_EVERY_S moves what is staged, then stages its round.
        clock.now += DURABLE_EVERY_S
        store.add_readings(poll_round(3))
        await store.flush()
        card_after = on_card(store.path, "SELECT seq FROM readings ORDER BY seq")
        hours = on_card(store.path, "SELECT hour, first_seq FROM reading_hours")
        stage_after = staged_count(store.stage)
        journal = store.conn.execute("PRAGMA main.journal_mode").fetchall()
    assert card_before == [(0,)]
    assert stage_before == 3 * CHANNELS
    assert (count, last) == (3 * CHANNELS, 3 * CHANNELS)
    assert list(history.value) == [1.0, 101.0, 201.0]
    assert seqs[Stream.READINGS] == 3 * CHANNELS
    assert progress[Stream.READINGS] == (3 * CHANNELS, 0)
    assert [value for _, value, _ in harness] == [1.0, 101.0, 201.0]
    assert batch is not None
    rows = DataBatch.model_validate_json(batch.payload).rows
    assert [row[0] for row in rows] == list(range(1, 3 * CHANNELS + 1))
    assert [seq for (seq,) in card_after] == list(range(1, 3 * CHANNELS + 1))
    assert hours == [(int(T0 // 3600), 1)]
    assert stage_after == CHANNELS
    assert journal == [("truncate",)]  # appends are written once, not WAL then checkpoint


async def test_an_event_takes_the_staged_readings_to_the_card_in_its_commit(
    tmp_path: Path, clock: MovedTime
) -> None:
    async with staged_store(tmp_path, clock) as store:
        store.add_readings(poll_round(0))
        await store.flush()
        await store.record_event(T0 + 5, "alarm", "rain_1h", 4, {"kind": "rise"})
        card = on_card(store.path, "SELECT count(*) FROM readings")
        events = on_card(store.path, "SELECT kind FROM events")
    assert card == [(CHANNELS,)]  # on disk with the alarm, as before the stage
    assert events == [("alarm",)]


async def test_closing_moves_everything_and_the_store_keeps_its_stage_until_a_reboot(
    tmp_path: Path, clock: MovedTime
) -> None:
    data, ram = tmp_path / "data", tmp_path / "ram"
    async with staged_store(tmp_path, clock) as store:
        store.add_readings(poll_round(0))
        await store.flush()
        await store.set_watermark("readings", 7)
    assert on_card(data / "store.sqlite", "SELECT count(*) FROM readings") == [(CHANNELS,)]
    assert on_card(data / "store.sqlite", "SELECT seq FROM watermarks") == [(7,)]
    # A tool (edge update, edge replay) or `edge run` without --stage-dir keeps the stage.
    async with LocalStore(data, monotonic=clock.monotonic) as tool:
        tool.add_readings(poll_round(1))
        await tool.flush()
        kept = (tool.stage, on_card(data / "store.sqlite", "SELECT count(*) FROM readings"))
    assert kept == (store.stage, [(CHANNELS,)])
    # A reboot empties /run: the next start without a stage commits every round again.
    for leftover in ram.iterdir():
        leftover.unlink()
    async with LocalStore(data, monotonic=clock.monotonic) as plain:
        plain.add_readings(poll_round(2))
        await plain.flush()
        seqs = [s for (s,) in plain.reader.execute("SELECT seq FROM readings ORDER BY seq")]
        journal = plain.conn.execute("PRAGMA journal_mode").fetchone()[0]
        record = reading_stage.recorded(plain.conn)
    assert seqs == list(range(1, 3 * CHANNELS + 1))
    assert (plain.stage, journal, record) == (None, "wal", None)


async def test_a_tool_opening_the_store_beside_the_agent_moves_nothing_twice(
    tmp_path: Path, clock: MovedTime
) -> None:
    data = tmp_path / "data"
    async with staged_store(tmp_path, clock) as agent:
        agent.add_readings(poll_round(0))
        await agent.flush()
        async with LocalStore(
            data, monotonic=clock.monotonic
        ) as tool:  # moves the agent's staged round on opening
            await tool.record_event(T0 + 1, "ota", "agent", None, {"step": "download"})
            agent.add_readings(poll_round(1))  # the agent stages on meanwhile
            await agent.flush()
            seen_by_tool = tool.reading_count()
        clock.now += DURABLE_EVERY_S
        agent.add_readings(poll_round(2))
        await agent.flush()
        seqs = [s for (s,) in agent.reader.execute("SELECT seq FROM readings ORDER BY seq")]
    card = [s for (s,) in on_card(data / "store.sqlite", "SELECT seq FROM readings ORDER BY seq")]
    assert seen_by_tool == 2 * CHANNELS
    assert seqs == card == list(range(1, 3 * CHANNELS + 1))


async def test_rows_left_in_the_stage_after_their_move_are_never_seen_twice(
    tmp_path: Path, clock: MovedTime
) -> None:
    """A SIGKILL between the move's commit and the stage's delete leaves both copies."""
    async with staged_store(tmp_path, clock) as store:
        store.add_readings(poll_round(0))
        await store.flush()
        clock.now += DURABLE_EVERY_S
        store.add_readings(poll_round(1))
        await store.flush()  # moved, and dropped from the stage
        assert store.stage is not None
        with contextlib.closing(sqlite3.connect(store.stage)) as stage:  # as if not dropped
            with contextlib.closing(sqlite3.connect(store.path)) as card:
                rows = card.execute("SELECT * FROM readings").fetchall()
            stage.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            stage.commit()
        store.add_readings(poll_round(2))
        await store.flush()
        count = store.reading_count()
        seqs = [s for (s,) in store.reader.execute("SELECT seq FROM readings ORDER BY seq")]
    async with staged_store(tmp_path, clock) as again:
        kept = on_card(again.path, "SELECT seq FROM readings ORDER BY seq")
    assert count == 3 * CHANNELS
    assert seqs == list(range(1, 3 * CHANNELS + 1))
    assert [s for (s,) in kept] == seqs


async def test_unsynced_readings_are_corrected_on_the_card_and_in_the_stage(
    tmp_path: Path, clock: MovedTime
) -> None:
    async with staged_store(tmp_path, clock) as store:
        store.add_readings(poll_round(0, Quality.CLOCK_UNSYNCED))
        await store.flush()
        clock.now += DURABLE_EVERY_S
        store.add_readings(poll_round(1, Quality.CLOCK_UNSYNCED))
        await store.flush()  # round 0 and 1 moved
        store.add_readings(poll_round(2, Quality.CLOCK_UNSYNCED))
        await store.flush()  # round 2 staged
        corrected = await store.correct_unsynced(T0 + 10_000.0, 20.0)
        rows = store.reader.execute("SELECT ts, quality FROM readings ORDER BY seq").fetchall()
    assert corrected == 3 * CHANNELS
    assert {quality for _, quality in rows} == {0}
    # mono was 5 + i: the reading of round i happened (20 - 5 - i) s before T0 + 10,000
    assert sorted({ts for ts, _ in rows}) == [T0 + 10_000.0 - 15.0 + i for i in range(3)]


async def test_a_full_card_keeps_the_readings_in_the_stage_and_moves_them_once_it_has_room(
    tmp_path: Path, clock: MovedTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge_agent")
    with small_disk(tmp_path / "disk") as disk:
        async with LocalStore(
            disk.path,
            stage_dir=tmp_path / "ram",
            monotonic=clock.monotonic,
            max_held_readings=5 * CHANNELS,
            max_held_events=10,
        ) as store:
            store.add_readings(poll_round(0))
            await store.flush()
            disk.fill()
            for i in range(1, 9):  # a move is due at every round while the card refuses
                clock.now += DURABLE_EVERY_S
                store.add_readings(poll_round(i))
                await store.flush()
            full = store.condition()
            assert store.stage is not None
            staged = staged_count(store.stage)
            disk.free()
            clock.now += DURABLE_EVERY_S
            await store.flush()
            after = store.condition()
            values = [v for (v,) in store.conn.execute("SELECT value FROM readings")]
    assert full.unwritable == "database or disk is full"
    # The stage took rounds up to the held-readings limit; the rest waited as held rows.
    assert staged == 5 * CHANNELS
    assert full.held_readings == 4 * CHANNELS
    assert after.unwritable is None
    assert after.held_readings == 0
    assert sorted(values) == sorted(float(i * 100 + c) for i in range(9) for c in range(CHANNELS))
    assert sum("cannot write" in r.getMessage() for r in caplog.records) == 1


async def test_a_damaged_stage_is_set_aside_and_the_agent_stores_on(
    tmp_path: Path, clock: MovedTime, caplog: pytest.LogCaptureFixture
) -> None:
    ram = tmp_path / "ram"
    async with LocalStore(tmp_path / "data", stage_dir=ram, monotonic=clock.monotonic) as store:
        store.add_readings(poll_round(0))
        await store.flush()
    assert store.stage is not None
    store.stage.write_bytes(b"not a database, a stray file of the same name " * 100)
    async with LocalStore(tmp_path / "data", stage_dir=ram, monotonic=clock.monotonic) as again:
        again.add_readings(poll_round(1))
        assert await again.flush() == CHANNELS
        count = again.reading_count()
    set_aside = [p.name for p in ram.iterdir() if ".damaged-" in p.name]
    assert count == 2 * CHANNELS
    assert len(set_aside) == 1
    assert any("cannot be read" in r.getMessage() for r in caplog.records)


async def test_a_stage_directory_that_cannot_be_made_means_no_stage_not_no_agent(
    tmp_path: Path, clock: MovedTime, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("a file where the stage directory should be")
    async with LocalStore(
        tmp_path / "data", stage_dir=tmp_path / "file" / "ram", monotonic=clock.monotonic
    ) as store:
        store.add_readings(poll_round(0))
        assert await store.flush() == CHANNELS
        card = on_card(store.path, "SELECT count(*) FROM readings")
        journal = store.conn.execute("PRAGMA main.journal_mode").fetchone()[0]
    assert store.stage is None
    assert (card, journal) == ([(CHANNELS,)], "wal")
    assert any("no readings' stage" in r.getMessage() for r in caplog.records)


WRITER = """
import asyncio, sys
from pathlib import Path
from drivers.model import Quality, Reading
from edge_agent.store import LocalStore

async def main() -> None:
    store = LocalStore(Path(sys.argv[1]), stage_dir=Path(sys.argv[2])).open()
    for i in range(100_000):
        t = 1_750_000_000.0 + 10 * i
        store.add_readings([Reading(t, f"ch{c}", float(i), "mm", Quality.OK) for c in range(20)])
        await store.flush()
        print(i, flush=True)

asyncio.run(main())
"""


async def test_a_sigkilled_agent_loses_no_staged_reading_and_the_next_start_moves_them(
    tmp_path: Path,
) -> None:
    data, ram = tmp_path / "data", tmp_path / "ram"
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(WRITER), str(data), str(ram),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert writer.stdout is not None
    committed = -1
    try:
        while committed < 50:  # rounds the writer says it committed
            committed = int(await asyncio.wait_for(writer.stdout.readline(), 60))
    finally:
        writer.send_signal(signal.SIGKILL)
        await asyncio.wait_for(writer.wait(), 30)
    assert writer.returncode == -signal.SIGKILL
    card_before = on_card(data / "store.sqlite", "SELECT count(*) FROM readings")[0][0]
    async with LocalStore(data, stage_dir=ram) as store:
        card = on_card(store.path, "SELECT seq, value FROM readings ORDER BY seq")
        assert store.stage is not None
        left = staged_count(store.stage)
    assert card_before < 50 * CHANNELS  # most of them were only in the stage
    seqs = [seq for seq, _ in card]
    assert seqs == list(range(1, len(seqs) + 1))  # each once, none missing
    assert len(seqs) >= (committed + 1) * CHANNELS  # every committed round is there
    assert left == 0
