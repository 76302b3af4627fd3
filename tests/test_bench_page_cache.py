"""``bench/page_cache.py`` and the SD-wear bench's flusher on a kernel without ``cachestat``.

An older kernel (before 6.5) answers the ``cachestat`` call with ENOSYS; the probe here
asks the real kernel a call number no kernel has, which it answers the same way. The
flusher must still write the store back and say it cannot split the bytes by file.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.test_bench_sd_wear_floor import _kernel

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, sqlite3, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import page_cache
from sd_wear import STORE_FILES, Flusher
from drivers.clock import ScaledClock

data_dir = Path(sys.argv[2])
conn = sqlite3.connect(data_dir / "store.sqlite")
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("CREATE TABLE readings(seq INTEGER PRIMARY KEY, value REAL)")
with conn:
    conn.executemany("INSERT INTO readings(value) VALUES (?)", [(i,) for i in range(2000)])
real = page_cache.SYS_CACHESTAT
page_cache.SYS_CACHESTAT = 1023  # no kernel has it: ENOSYS, as before Linux 6.5
flusher = Flusher(data_dir, ScaledClock(60.0, origin=1_782_864_000.0))
flusher.settle()
flusher.tick()
counting = flusher.counting
page_cache.SYS_CACHESTAT = real
dirty = {name: page_cache.dirty_pages(data_dir / name) for name in STORE_FILES}
print(json.dumps({"counting": counting, "dirty": dirty, "real": page_cache.counts_dirty_pages()}))
conn.close()
"""


@pytest.mark.skipif(_kernel() < (6, 5), reason="checks the writeback with cachestat: Linux 6.5+")
def test_without_cachestat_the_flusher_still_writes_the_store_back_uncounted() -> None:
    with tempfile.TemporaryDirectory(prefix="hw-pagecache-", dir="/var/tmp") as data_dir:
        run = subprocess.run(
            [sys.executable, "-c", PROBE, str(REPO / "bench"), data_dir],
            capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert record["counting"] is False
    assert record["real"] is True  # this kernel has it: the probe tells the two apart
    assert record["dirty"] == {
        "store.sqlite": 0,
        "store.sqlite-wal": 0,
        "store.sqlite-shm": 0,
        "store.sqlite-journal": 0,
    }
