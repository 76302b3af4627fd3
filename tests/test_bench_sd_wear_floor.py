"""``bench/sd_wear_floor.py`` on two simulated hours runs end to end and splits what it counts.

A smoke test of the benchmark itself (the real store and SQLite on /var/tmp, the kernel's
``cachestat``): each variant's bytes are split by file and by cause without losing any,
and the variant without a ``-shm`` file shows none. Its numbers are not judged here.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _kernel() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


@pytest.mark.skipif(
    _kernel() < (6, 5), reason="the bench counts dirty pages with cachestat: Linux 6.5+"
)
@pytest.mark.timeout(120)
def test_the_floor_bench_splits_the_bytes_by_file_and_cause() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sd_wear_floor.py"), "--hours", "2",
         "--only", "store", "sqlite_1024_no_shm"],
        capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.strip().splitlines()[-1])
    variants = record["variants"]
    assert sorted(variants) == ["sqlite_1024_no_shm", "store"]
    for figures in variants.values():
        total = figures["bytes_per_reading"]
        assert total > record["raw_row_bytes"]  # at least the rows themselves
        assert sum(figures["by_file"].values()) == pytest.approx(total, abs=0.3)
        assert sum(figures["by_cause"].values()) == pytest.approx(total, abs=0.3)
    assert variants["store"]["by_file"]["shm"] > 0
    assert variants["sqlite_1024_no_shm"]["by_file"]["shm"] == 0


PROBE = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import edge_agent.store as store_module
from sd_wear_floor import store_variant

shipped = store_module.PAGE_SIZE
with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
    store_variant(Path(tmp), 3, 30.0, 512, marks=True)
print(json.dumps([shipped, store_module.PAGE_SIZE, store_module.time is time]))
"""


@pytest.mark.skipif(
    _kernel() < (6, 5), reason="the bench counts dirty pages with cachestat: Linux 6.5+"
)
def test_a_store_variant_leaves_the_store_module_as_shipped() -> None:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "bench")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    shipped, after, real_time = json.loads(run.stdout.strip().splitlines()[-1])
    assert (after, real_time) == (shipped, True)


def test_a_page_size_sqlite_would_ignore_is_refused() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "sd_wear_floor.py"), "--page-size", "3000",
         "--hours", "0.01", "--only", "store"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert "--page-size: invalid choice: 3000" in run.stderr
