"""The local store: seq order, durability across SIGKILL, quota policy, clock correction."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drivers.model import Quality, Reading
from edge_agent.store import LocalStore


def reading(
    t: float, channel: str = "rain.total", value: float = 1.0, quality=Quality.OK, mono=None
):
    return Reading(t, channel, value, "mm", quality, mono)


async def test_readings_get_increasing_seq_and_come_back_as_channel_history(tmp_path):
    async with LocalStore(tmp_path) as store:
        store.add_readings(
            [
                reading(10, value=1),
                reading(11, "level.mm", 5),
                reading(12, value=math.nan, quality=Quality.TIMEOUT),
            ]
        )
        assert await store.flush() == 3
        store.add_readings([reading(13, value=2), reading(14, value=9, quality=Quality.SPIKE)])
        await store.flush()
        seqs = [row[0] for row in store.conn.execute("SELECT seq FROM readings ORDER BY seq")]
        history = store.history("rain.total", since=0)
    assert seqs == [1, 2, 3, 4, 5]
    assert list(history.t) == [10, 12, 13, 14]
    assert math.isnan(history.value[1])
    assert list(history.good) == [True, False, True, False]


async def test_seq_is_never_reused_after_old_readings_are_deleted(tmp_path):
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(t) for t in range(5)])
        await store.flush()
        store.conn.execute("DELETE FROM readings")
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(99)])
        await store.flush()
        assert store.last_reading_seq() == 6


async def test_watermark_only_moves_forward(tmp_path):
    async with LocalStore(tmp_path) as store:
        await store.set_watermark("readings", 10)
        await store.set_watermark("readings", 4)
        assert store.watermark("readings") == 10
        assert store.watermark("events") == 0


async def test_an_event_a_queued_flush_writes_first_is_still_recorded_once_with_its_seq(tmp_path):
    """``record_event`` while flushes wait for the writer: one of them commits the event.

    Another connection holds the file's write lock, so the first flush (readings) waits
    in the writer and the second is queued behind it when the event is recorded; that
    second flush takes the event before the record's own write runs. An agent met this as
    an update abandoned with "the event was dropped from memory".
    """
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(1)])
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        blocked = asyncio.ensure_future(store.flush())
        thief = asyncio.ensure_future(store.flush())
        recorded = asyncio.ensure_future(
            store.record_event(5, "ota", "release", None, {"state": "downloading"})
        )
        # Runs after the three have queued their work with the writer (FIFO ready queue).
        loop.call_soon(other.rollback)
        assert await blocked == 1
        await thief
        seq = await recorded
        other.close()
        stored = store.events(kinds=["ota"])
    assert [(e.seq, e.ts, e.detail) for e in stored] == [(seq, 5, {"state": "downloading"})]


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from drivers.model import Quality, Reading
    from edge_agent.store import LocalStore

    async def main():
        store = LocalStore(Path(sys.argv[1])).open()
        t = 0.0
        while True:
            for _ in range(20):
                t += 1
                store.add_readings([Reading(t, "rain.total", t, "mm", Quality.OK)])
            committed = await store.flush()
            seq = await store.record_event(t, "alarm", "rain", 2, {"note": "yellow"})
            print(f"event {seq} readings {int(t)}", flush=True)

    asyncio.run(main())
    """
)


def test_sigkill_loses_no_recorded_event_and_no_committed_reading(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    confirmed_events, confirmed_readings = [], 0
    for line in child.stdout:
        _, seq, _, count = line.split()
        confirmed_events.append(int(seq))
        confirmed_readings = int(count)
        if len(confirmed_events) >= 40:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    store = LocalStore(tmp_path).open()
    try:
        stored_events = {e.seq for e in store.events()}
        assert set(confirmed_events) <= stored_events
        assert store.reading_count() >= confirmed_readings
        assert store.integrity_check() == "ok"
    finally:
        store.close()


async def test_quota_drops_acknowledged_readings_first_and_no_event_the_fleet_lacks(tmp_path):
    async with LocalStore(tmp_path, quota_bytes=None) as store:
        for chunk in range(20):
            store.add_readings([reading(chunk * 1000 + i, value=i) for i in range(1000)])
            await store.flush()
        for i in range(50):
            await store.record_event(i, "alarm", "rain", 1)
        acked = 12_000
        await store.set_watermark("readings", acked)
        full = store.size_bytes()
        store.quota_bytes = full // 2
        store.add_readings([reading(99_999)])
        await store.flush()
        remaining_min = store.conn.execute("SELECT min(seq) FROM readings").fetchone()[0]
        unacked_kept = store.conn.execute(
            "SELECT count(*) FROM readings WHERE seq > ?", (acked,)
        ).fetchone()[0]
        assert store.size_bytes() <= full // 2
        assert remaining_min > 1  # the oldest acknowledged readings went first
        assert unacked_kept == 20_000 - acked + 1  # nothing the fleet lacks was dropped
        assert len(store.events()) == 50


async def test_quota_thins_old_unacknowledged_readings_when_it_must(tmp_path):
    async with LocalStore(tmp_path) as store:
        for chunk in range(10):
            store.add_readings([reading(chunk * 1000 + i) for i in range(1000)])
            await store.flush()
        await store.record_event(1, "alarm", "rain", 4)
        store.quota_bytes = store.size_bytes() // 2
        store.add_readings([reading(20_000)])
        await store.flush()
        count = store.reading_count()
        newest = store.conn.execute("SELECT max(ts) FROM readings").fetchone()[0]
        assert store.size_bytes() <= store.quota_bytes
        assert 0 < count < 10_001
        assert newest == 20_000  # the newest readings survive thinning
        assert len(store.events()) == 1


async def test_unsynced_readings_are_corrected_once_the_clock_is_known(tmp_path):
    async with LocalStore(tmp_path) as store:
        # Before sync the Pi thinks it is 1970: timestamps are junk, mono is what counts.
        store.add_readings(
            [
                reading(5.0, quality=Quality.CLOCK_UNSYNCED, mono=100.0),
                reading(6.0, quality=Quality.CLOCK_UNSYNCED | Quality.SPIKE, mono=101.0),
            ]
        )
        await store.flush()
        fixed = await store.correct_unsynced(wall_now=1_800_000_000.0, mono_now=110.0)
        rows = store.conn.execute("SELECT ts, quality FROM readings ORDER BY seq").fetchall()
    assert fixed == 2
    assert rows == [(1_799_999_990.0, 0), (1_799_999_991.0, int(Quality.SPIKE))]


def test_store_file_is_in_wal_mode(tmp_path: Path):
    store = LocalStore(tmp_path).open()
    try:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def file_modes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in directory.iterdir()}


async def test_store_files_are_readable_by_the_owner_only(tmp_path: Path):
    old_umask = os.umask(0o022)  # the usual umask, under which sqlite3 makes 0644 files
    try:
        async with LocalStore(tmp_path) as store:
            store.add_readings([reading(1_750_000_000.0)])
            await store.flush()
            modes = file_modes(tmp_path)
    finally:
        os.umask(old_umask)
    files = ["store.sqlite", "store.sqlite-shm", "store.sqlite-wal"]
    assert modes == dict.fromkeys(files, 0o600)


@pytest.mark.parametrize("value", [math.inf, -1e300])
async def test_extreme_values_round_trip(tmp_path, value):
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(1, value=value)])
        await store.flush()
        assert store.history("rain.total", 0).value[0] == value


async def fill_with_events(store: LocalStore, count: int, first_ts: float = 0.0) -> None:
    """``count`` fault events of about 200 bytes each, written in batches."""
    for start in range(0, count, 5000):
        for i in range(start, min(count, start + 5000)):
            store.add_event(
                first_ts + i, "sensor_fault", f"dev{i % 10}.level", None, {"pad": "x" * 120}
            )
        await store.write_events()


async def test_events_keep_to_their_share_so_a_flush_of_readings_keeps_them_all(tmp_path):
    async with LocalStore(tmp_path) as store:
        await fill_with_events(store, 30_000)
        store.add_readings([reading(t) for t in range(1000)])
        await store.flush()
        await store.set_watermark("events", store.events()[-1].seq)  # the fleet holds them
        # Events were never deleted, so they grew past the quota on their own.
        store.quota_bytes = int(store.size_bytes() * 0.9)
        kept = []
        for flush in range(5):
            first = 10_000 + flush * 100
            store.add_readings([reading(first + i) for i in range(100)])
            await store.flush()
            kept.append(
                store.conn.execute(
                    "SELECT count(*) FROM readings WHERE ts >= ? AND ts < ?", (first, first + 100)
                ).fetchone()[0]
            )
        event_pages = store.conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name IN ('events', 'events_kind')"
        ).fetchone()[0]
        size, quota = store.size_bytes(), store.quota_bytes
        oldest_event = store.events(limit=1)[0].ts
    assert kept == [100] * 5  # before events had a share, each flush kept 8
    assert size <= quota
    assert event_pages <= 0.1 * quota * 1.05  # events within their share
    assert oldest_event > 20_000  # they gave way oldest first


async def test_events_the_fleet_lacks_and_the_latch_state_are_never_deleted(tmp_path):
    async with LocalStore(tmp_path) as store:
        # A latched red rise and an older ack of another rule, long before the flood.
        await store.record_event(1, "alarm", "rain_1h", 4, {"kind": "rise", "to": "red"})
        await store.record_event(2, "ack", "creek", None, {"by": "ana"})
        await store.record_event(3, "alarm", "rain_1h", 3, {"kind": "fall", "to": "orange"})
        await fill_with_events(store, 20_000, first_ts=10)
        acked = store.events()[10_000].seq  # the fleet holds about the first half
        await store.set_watermark("events", acked)
        store.add_readings([reading(t) for t in range(1000)])
        await store.flush()
        store.quota_bytes = store.size_bytes()
        # Enough readings to need new pages (a reading row is about 30 bytes).
        store.add_readings([reading(5000 + t) for t in range(1000)])
        await store.flush()
        last = store.events()[-1].seq
        remaining = store.events()
        readings_kept = store.conn.execute("SELECT count(*) FROM readings WHERE ts >= 5000")
        assert readings_kept.fetchone()[0] > 0
    # Unacknowledged events alone pass their share: every acknowledged one gave way but
    # the newest red rise of rain_1h and the ack of creek, which a restart needs.
    assert [(e.seq, e.kind) for e in remaining if e.seq <= acked] == [(1, "alarm"), (2, "ack")]
    assert [e.seq for e in remaining if e.seq > acked] == list(range(acked + 1, last + 1))


async def test_reads_off_the_writer_see_committed_rows_only_and_last_gives_the_newest(tmp_path):
    async with LocalStore(tmp_path) as store:
        for n in range(5):
            await store.record_event(1000.0 + n, "alarm", "creek", n % 5, {"n": n})
        assert [e.detail["n"] for e in store.events(["alarm"], last=2)] == [3, 4]
        # The writer holds a transaction open with a row not yet committed (as the writer
        # thread may at any moment): the event loop's reads do not see it, and do not
        # disturb the transaction.
        store.conn.execute("BEGIN IMMEDIATE")
        store.conn.execute(
            "INSERT INTO events(ts, kind, subject, level, detail) VALUES (1, 'alarm', 'x', 1, '{}')"
        )
        assert len(store.events(["alarm"])) == 5
        assert store.last_event("alarm", "x") is None
        assert store.conn.in_transaction
        store.conn.execute("COMMIT")
        last = store.last_event("alarm", "x")
        assert last is not None
        assert last.level == 1


async def test_a_commit_calls_the_listeners_of_new_rows(tmp_path):
    woken: list[str] = []
    async with LocalStore(tmp_path) as store:
        store.on_commit(lambda: woken.append("commit"))
        assert await store.flush() == 0
        assert woken == []  # nothing held, nothing committed
        store.add_readings([reading(1), reading(2)])
        await store.flush()
        assert woken == ["commit"]
        await store.record_event(3, "alarm", "rain_1h", 2, {"kind": "rise"})
        assert woken == ["commit", "commit"]


async def test_history_finds_readings_whose_clock_went_back(tmp_path):
    async with LocalStore(tmp_path) as store:
        # Hours 10 and 11, then the clock is set back into hour 9 and runs on.
        store.add_readings([reading(36_000 + t) for t in (0, 1800, 3600, 5400)])
        await store.flush()
        store.add_readings([reading(33_000 + t, value=2) for t in (0, 600, 1200, 5000)])
        await store.flush()
        history = store.history("rain.total", since=37_000)
        assert sorted(history.t) == list(history.t)
        assert list(history.t) == [37_800.0, 38_000.0, 39_600.0, 41_400.0]
        assert list(store.history("rain.total", since=33_500, until=34_000).t) == [33_600.0]


async def test_corrected_readings_are_found_at_their_real_time(tmp_path):
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(5.0, quality=Quality.CLOCK_UNSYNCED, mono=100.0)])
        store.add_readings([reading(1_799_999_000.0)])
        await store.flush()
        await store.correct_unsynced(wall_now=1_800_000_000.0, mono_now=110.0)
        history = store.history("rain.total", since=1_799_999_900.0)
    assert list(history.t) == [1_799_999_990.0]


POWER_CUT_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from drivers.model import Quality, Reading
    from edge_agent.store import LocalStore

    async def main():
        store = LocalStore(Path(sys.argv[1])).open()
        for t in range(1, 40):
            store.add_readings([Reading(float(t), "rain.total", t, "mm", Quality.OK)])
            await store.flush()
            print(store.last_reading_seq(), flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_a_power_cut_that_takes_committed_readings_never_lets_their_seq_return(tmp_path):
    # Readings are committed without an fsync: a SIGKILL keeps them (the page cache does),
    # a power cut may not. Their seqs may already be at the fleet, so they must not be
    # handed out again: the store reserves seqs on disk, with an fsync, before using them.
    child = subprocess.Popen(
        [sys.executable, "-c", POWER_CUT_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    handed_out = [int(child.stdout.readline()) for _ in range(39)]  # then the child waits
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert handed_out == list(range(1, 40))
    # What a power cut can leave: the WAL frames of the last commits lost, the reservation
    # (fsynced before any of them) kept.
    db = sqlite3.connect(tmp_path / "store.sqlite")
    with db:
        db.execute("DELETE FROM readings WHERE seq > 30")
    db.close()

    async def restart_and_poll() -> int:
        async with LocalStore(tmp_path) as store:
            store.add_readings([reading(100.0)])
            await store.flush()
            return store.last_reading_seq()

    assert asyncio.run(restart_and_poll()) > max(handed_out)


async def test_a_clean_stop_leaves_no_gap_in_the_seqs(tmp_path):
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(t) for t in range(5)])
        await store.flush()
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(10)])
        await store.flush()
        seqs = [s for (s,) in store.conn.execute("SELECT seq FROM readings ORDER BY seq")]
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_watermarks_are_kept_in_memory_and_written_at_close(tmp_path):
    async with LocalStore(tmp_path) as store:
        await store.set_watermark("readings", 3)  # the first is written at once
        assert stored_watermarks(tmp_path) == {"readings": 3}
        await store.set_watermark("readings", 7)  # later ones wait (WATERMARK_EVERY_S)
        assert store.watermark("readings") == 7
        assert stored_watermarks(tmp_path) == {"readings": 3}
    assert stored_watermarks(tmp_path) == {"readings": 7}


def stored_watermarks(data_dir: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{data_dir / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT stream, seq FROM watermarks").fetchall())
    finally:
        db.close()


#: The schema of stores written before the per-channel index was dropped (0b8743b).
SCHEMA_BEFORE = """
PRAGMA journal_mode=WAL;
CREATE TABLE channels (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, unit TEXT NOT NULL);
CREATE TABLE readings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL,
    channel INTEGER NOT NULL REFERENCES channels(id), value REAL, quality INTEGER NOT NULL,
    boot_id TEXT, mono REAL
);
CREATE INDEX readings_channel_ts ON readings(channel, ts);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, kind TEXT NOT NULL,
    subject TEXT, level INTEGER, detail TEXT NOT NULL
);
CREATE INDEX events_kind ON events(kind, subject);
CREATE TABLE watermarks (stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


async def test_a_store_written_by_the_previous_release_is_upgraded_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "store.sqlite")
    db.executescript(SCHEMA_BEFORE)
    with db:
        db.execute("INSERT INTO channels VALUES (1, 'rain.total', 'mm'), (2, 'level.mm', 'mm')")
        db.executemany(
            "INSERT INTO readings(ts, channel, value, quality, boot_id) VALUES (?, ?, ?, 0, 'b')",
            [(7200.0 + 60 * i, 1 + i % 2, float(i)) for i in range(200)],
        )
        db.execute(
            "INSERT INTO events(ts, kind, subject, level, detail) "
            "VALUES (10, 'alarm', 'rain_1h', 4, '{\"kind\": \"rise\"}')"
        )
        db.execute("INSERT INTO watermarks VALUES ('readings', 150), ('events', 1)")
    db.close()
    async with LocalStore(tmp_path) as store:
        indexes = {n for (n,) in store.conn.execute("SELECT name FROM sqlite_master")}
        history = store.history("rain.total", since=7200.0 + 60 * 150)
        assert store.watermark("readings") == 150
        assert store.last_event("alarm", "rain_1h") is not None
        store.add_readings([reading(20_000.0, value=-1)])
        await store.flush()
        new = store.history("rain.total", since=19_500)
        assert store.last_reading_seq() == 201
    assert "readings_channel_ts" not in indexes
    assert list(history.value) == [float(i) for i in range(150, 200, 2)]
    assert list(new.value) == [-1.0]


async def test_readings_written_by_an_older_release_after_a_rollback_are_found(tmp_path):
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(36_000.0 + 60 * i) for i in range(10)])  # hour 10
        await store.flush()
    # An update rolled back: the older release recreates its index and appends readings
    # of hour 13, which reading_hours does not know.
    db = sqlite3.connect(tmp_path / "store.sqlite")
    with db:
        db.execute("CREATE INDEX readings_channel_ts ON readings(channel, ts)")
        db.executemany(
            "INSERT INTO readings(ts, channel, value, quality) VALUES (?, 1, 7, 0)",
            [(46_800.0 + 60 * i,) for i in range(5)],
        )
    db.close()
    async with LocalStore(tmp_path) as store:
        history = store.history("rain.total", since=46_800)
    assert list(history.t) == [46_800.0 + 60 * i for i in range(5)]


async def test_a_new_store_has_small_pages_and_an_old_one_keeps_its_own(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    async with LocalStore(new) as store:
        store.add_readings([reading(7200.0 + i) for i in range(50)])
        await store.flush()
        assert store.conn.execute("PRAGMA page_size").fetchone()[0] == 1024
    # A store the previous release made, with its 2 KiB pages and readings in them.
    old.mkdir()
    db = sqlite3.connect(old / "store.sqlite")
    db.execute("PRAGMA page_size=2048")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_BEFORE)
    with db:
        db.execute("INSERT INTO channels VALUES (1, 'rain.total', 'mm')")
        db.executemany(
            "INSERT INTO readings(ts, channel, value, quality) VALUES (?, 1, ?, 0)",
            [(7200.0 + i, float(i)) for i in range(50)],
        )
    db.close()
    async with LocalStore(old) as store:
        store.add_readings([reading(7300.0, value=-1)])
        await store.flush()
        page_size = store.conn.execute("PRAGMA page_size").fetchone()[0]
        history = store.history("rain.total", since=7200.0)
        integrity = store.integrity_check()
    assert page_size == 2048
    assert integrity == "ok"
    assert list(history.value) == [float(i) for i in range(50)] + [-1.0]
