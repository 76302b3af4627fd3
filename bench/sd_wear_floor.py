"""What sets the SD-card write floor: the store's files and causes, lever by lever, in seconds.

``bench/sd_wear.py`` runs the whole agent for a simulated day (30 minutes); this drives
only the storage at the same load (20 readings per poll round every 10 s, one commit per
round unless a variant says otherwise) on a simulated clock, and plays the kernel's
writeback (``--dirty-expire-s``, 30 s: Debian's and Pi OS's ``vm.dirty_expire_centisecs``)
per file: a file dirtied ``expire`` simulated seconds ago is written back (fsync) at the
next 5 s tick, and its dirty pages counted then (``bench/page_cache.py``); WAL and
``-shm`` pages SQLite fsyncs itself (a checkpoint, a FULL commit) are counted just before.
The database file, written only by checkpoints (which fsync it), is the rest of
``write_bytes``. ``by_cause`` splits the same bytes by the operation that dirtied them:
the readings' commits, the watermarks' writes, the commits that ran a checkpoint, the
uplink's reads (a reader marks the ``-shm``) and the rest (nothing, unless a writeback
itself dirtied something).

Variants: ``store`` is the shipped ``LocalStore`` (its monotonic clock simulated, so its
5-minute watermarks and fsyncs happen as in a day), at ``--page-size``; ``store_no_marks``
the same without the uplink's watermarks. The ``sqlite_*`` variants are bare SQLite in WAL
mode with the store's settings (incremental auto-vacuum, synchronous=NORMAL, a reader
connection), one lever changed each: the page size, no auto-vacuum, a round packed into
one row, a commit every 3, 6 or 30 rounds (30 s, 60 s, 5 minutes), and no ``-shm`` file
(``locking_mode=EXCLUSIVE``: the WAL index on the heap; no other connection or process
could then read the store).

Raw row bytes: 32 (seq, time, channel, value, quality at their binary sizes). JSON on the
last line. It writes only in its own temporary directory on /var/tmp (a real disk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sqlite3
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_harness_bench import emit
from page_cache import PAGE, dirty_pages, write_back, write_bytes

import edge_agent.store as store_module
from drivers.model import Quality, Reading
from edge_agent.store import LocalStore

RAW_ROW_BYTES = 32
CHANNELS = 20
POLL_S = 10.0
FLUSHER_S = 5.0
SUFFIXES = {"db": "", "wal": "-wal", "shm": "-shm"}
#: The page sizes SQLite accepts: powers of two from 512 bytes to 64 KiB.
SQLITE_PAGE_SIZES = tuple(2**n for n in range(9, 17))


@dataclass
class Writeback:
    """The kernel's flusher for one store's files, on the simulated clock."""

    db: Path
    expire_s: float
    dirtied: dict[str, float] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUFFIXES, 0))
    by_cause: dict[str, int] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        """The store's file ``name`` (db, wal, shm)."""
        return Path(str(self.db) + SUFFIXES[name])

    def tick(self, now: float) -> None:
        """A flusher wake-up at simulated ``now``."""
        for name in SUFFIXES:
            path = self.path(name)
            if name not in self.dirtied and dirty_pages(path):
                self.dirtied[name] = now
            if name in self.dirtied and now - self.dirtied[name] >= self.expire_s:
                self.written[name] += write_back(path)
                del self.dirtied[name]

    def op(self, cause: str, run: Callable[[], object]) -> None:
        """Run one store operation; count what it dirtied under ``cause``.

        An operation that moved the database file ran a checkpoint (in WAL mode nothing
        else writes it): its bytes count as ``checkpoint``. WAL and ``-shm`` pages SQLite
        wrote back itself during it count for their file as the flusher's would.
        """
        dirty = {name: dirty_pages(self.path(name)) for name in ("wal", "shm")}
        db = self.path("db")
        moved = db.stat().st_mtime_ns if db.exists() else 0
        before = write_bytes()
        run()
        dirtied = write_bytes() - before
        if db.exists() and db.stat().st_mtime_ns != moved:
            cause = "checkpoint"
        self.by_cause[cause] = self.by_cause.get(cause, 0) + dirtied
        for name, pages in dirty.items():
            if dirty_pages(self.path(name)) < pages:  # SQLite fsynced it
                self.written[name] += pages * PAGE
                self.dirtied.pop(name, None)

    def settle(self) -> None:
        """Write everything back (the start and the end of a measurement)."""
        for name in SUFFIXES:
            self.written[name] += write_back(self.path(name))
        self.dirtied.clear()


@dataclass
class SimulatedTime:
    """The simulated clock: the store's monotonic time (its watermarks, fsyncs and moves)."""

    now: float = 1000.0


def _round(i: int, rng: random.Random) -> list[Reading]:
    t = 1_782_864_000.0 + i * POLL_S
    return [
        Reading(t + c * 0.01, f"dev{c // 3}.ch{c}", rng.uniform(0, 100), "mm", Quality(0))
        for c in range(CHANNELS)
    ]


Operation = Callable[[str, Callable[[], object]], None]


def _measure(
    db: Path,
    rounds: int,
    expire_s: float,
    commit: Callable[[int, Operation], None],
    clock: SimulatedTime,
) -> dict[str, Any]:
    writeback = Writeback(db, expire_s)
    commit(0, lambda _cause, run: run() and None)
    writeback.settle()
    writeback.written = dict.fromkeys(SUFFIXES, 0)
    before = write_bytes()
    for i in range(1, rounds + 1):
        clock.now += POLL_S
        commit(i, writeback.op)
        writeback.tick(clock.now - FLUSHER_S)
        writeback.tick(clock.now)
    writeback.settle()
    total = write_bytes() - before
    readings = rounds * CHANNELS
    # The database file is written only by checkpoints, which fsync it: it is the rest.
    writeback.written["db"] = total - writeback.written["wal"] - writeback.written["shm"]
    writeback.by_cause["rest"] = total - sum(writeback.by_cause.values())
    return {
        "bytes_per_reading": round(total / readings, 1),
        "write_factor": round(total / readings / RAW_ROW_BYTES, 2),
        "by_file": {name: round(b / readings, 1) for name, b in writeback.written.items()},
        "by_cause": {name: round(b / readings, 1) for name, b in writeback.by_cause.items()},
    }


@contextlib.contextmanager
def _store_module_at(page_size: int) -> Iterator[None]:
    """The store module at ``page_size``; as shipped after."""
    shipped_page_size = store_module.PAGE_SIZE
    store_module.PAGE_SIZE = page_size
    try:
        yield
    finally:
        store_module.PAGE_SIZE = shipped_page_size


def store_variant(
    tmp: Path, rounds: int, expire_s: float, page_size: int, marks: bool, staged: bool = False
) -> Any:
    """The shipped store, as the agent drives it: a commit per round, watermarks acked.

    ``staged``: with its stage on tmpfs (``/dev/shm``), as the shipped systemd unit runs it.
    """
    clock = SimulatedTime()
    rng = random.Random(16)
    stage_dir = None
    if staged:
        stage_dir = Path(tempfile.mkdtemp(prefix="hw-sdfloor-stage-", dir="/dev/shm"))
    store = LocalStore(tmp, stage_dir=stage_dir, monotonic=lambda: clock.now)
    with _store_module_at(page_size), contextlib.closing(store.open()):
        loop = asyncio.new_event_loop()

        def commit(i: int, op: Operation) -> None:
            store.add_readings(_round(i, rng))
            op("readings", lambda: loop.run_until_complete(store.flush()))
            if marks:
                seq = 0

                def acked() -> None:  # the uplink reads what was committed
                    nonlocal seq
                    seq = store.last_reading_seq()

                op("reads", acked)
                op(
                    "watermarks",
                    lambda: loop.run_until_complete(store.set_watermark("readings", seq)),
                )

        try:
            return _measure(store.path, rounds, expire_s, commit, clock)
        finally:
            loop.close()
            if stage_dir is not None:
                shutil.rmtree(stage_dir, ignore_errors=True)


def sqlite_variant(
    tmp: Path,
    rounds: int,
    expire_s: float,
    page_size: int,
    auto_vacuum: bool = True,
    packed: bool = False,
    rounds_per_commit: int = 1,
    heap_wal_index: bool = False,
) -> Any:
    """Bare SQLite with the store's settings and one lever changed."""
    db = tmp / "store.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute(f"PRAGMA page_size={page_size}")
    if auto_vacuum:
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if heap_wal_index:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    if packed:
        conn.execute("CREATE TABLE readings(seq INTEGER PRIMARY KEY, ts REAL, body BLOB)")
    else:
        conn.execute(
            "CREATE TABLE readings(seq INTEGER PRIMARY KEY, ts REAL, channel INTEGER, "
            "value REAL, quality INTEGER, boot_id TEXT, mono REAL)"
        )
    reader = None if heap_wal_index else sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rng = random.Random(16)
    held: list[Reading] = []
    seq = 0

    def commit(i: int, op: Operation) -> None:
        nonlocal held
        held += _round(i, rng)
        if i % rounds_per_commit:
            return
        op("readings", lambda: insert(held))
        held = []
        if reader is not None:  # the uplink reads what was committed
            op("reads", reader.execute("SELECT max(seq) FROM readings").fetchone)

    def insert(held: list[Reading]) -> None:
        nonlocal seq
        conn.execute("BEGIN IMMEDIATE")
        if packed:
            body = b"".join(
                struct.pack("<Bdb", k % CHANNELS, r.value, 0) for k, r in enumerate(held)
            )
            seq += len(held)
            conn.execute("INSERT INTO readings VALUES (?, ?, ?)", (seq, held[0].timestamp, body))
        else:
            rows = []
            for k, r in enumerate(held):
                seq += 1
                rows.append((seq, r.timestamp, k % CHANNELS, r.value, 0, None, None))
            conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    try:
        return _measure(db, rounds, expire_s, commit, SimulatedTime())
    finally:
        if reader is not None:
            reader.close()
        conn.close()


def variants(page_size: int) -> dict[str, dict[str, Any]]:
    """The levers measured: name -> keyword arguments."""
    return {
        "store": {"kind": "store", "page_size": page_size, "marks": True},
        "store_no_marks": {"kind": "store", "page_size": page_size, "marks": False},
        "store_staged": {"kind": "store", "page_size": page_size, "marks": True, "staged": True},
        "sqlite_4096": {"page_size": 4096},
        "sqlite_2048": {"page_size": 2048},
        "sqlite_1024": {"page_size": 1024},
        "sqlite_512": {"page_size": 512},
        "sqlite_1024_no_auto_vacuum": {"page_size": 1024, "auto_vacuum": False},
        "sqlite_1024_packed_round": {"page_size": 1024, "packed": True},
        "sqlite_512_packed_round": {"page_size": 512, "packed": True},
        "sqlite_1024_commit_every_30s": {"page_size": 1024, "rounds_per_commit": 3},
        "sqlite_1024_commit_every_60s": {"page_size": 1024, "rounds_per_commit": 6},
        "sqlite_1024_commit_every_300s": {"page_size": 1024, "rounds_per_commit": 30},
        "sqlite_512_packed_commit_every_60s": {
            "page_size": 512,
            "packed": True,
            "rounds_per_commit": 6,
        },
        "sqlite_1024_packed_commit_every_300s": {
            "page_size": 1024,
            "packed": True,
            "rounds_per_commit": 30,
        },
        "sqlite_1024_no_shm": {"page_size": 1024, "heap_wal_index": True},
        "sqlite_512_packed_no_shm": {"page_size": 512, "packed": True, "heap_wal_index": True},
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    rounds = int(args.hours * 3600 / POLL_S)
    results: dict[str, Any] = {}
    for name, kwargs in variants(args.page_size).items():
        if args.only and name not in args.only:
            continue
        tmp = Path(tempfile.mkdtemp(prefix="hw-sdfloor-", dir="/var/tmp"))
        try:
            options = dict(kwargs)
            if options.pop("kind", None) == "store":
                result = store_variant(tmp, rounds, args.dirty_expire_s, **options)
            else:
                result = sqlite_variant(tmp, rounds, args.dirty_expire_s, **options)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{name}: {result}", file=sys.stderr)
        results[name] = result
    return {
        "bench": "sd_wear_floor",
        "time": f"SIMULATED: {args.hours:g} h of poll rounds; writeback played per file",
        "channels": CHANNELS,
        "poll_s": POLL_S,
        "dirty_expire_s": args.dirty_expire_s,
        "page_cache_page": PAGE,
        "raw_row_bytes": RAW_ROW_BYTES,
        "variants": results,
    }


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    # SQLite ignores any other page size without a word: the store would be measured at
    # its default while the record says otherwise.
    parser.add_argument("--page-size", type=int, default=store_module.PAGE_SIZE,
                        choices=SQLITE_PAGE_SIZES,
                        help="page size of the store variants")  # fmt: skip
    parser.add_argument("--dirty-expire-s", type=float, default=30.0,
                        help="the kernel's vm.dirty_expire_centisecs, in seconds")  # fmt: skip
    parser.add_argument("--only", nargs="*", help="run only these variants")
    return parser.parse_args()


if __name__ == "__main__":
    emit(main(parse()))
