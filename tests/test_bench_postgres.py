"""``bench/postgres_store.py`` on a small backlog runs end to end and reports what it promises.

A smoke test of the benchmark itself (a throwaway PostgreSQL cluster): every row arrives
once through each measured path (the bench fails otherwise), and the JSON record carries
the ceiling and one flush figure per writer count. Its numbers are not judged here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_the_small_postgres_bench_measures_the_ceiling_and_each_writer_count() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "postgres_store.py"), "--gateways", "20",
         "--batches", "2", "--writers", "1", "2"],
        capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert (record["rows"], record["gateways"]) == (4_000, 20)
    assert record["copy_ceiling_rows_per_s"] > 0
    assert sorted(record["flush"]) == ["1", "2"]
    assert all(f["rows_per_s"] > 0 for f in record["flush"].values())
