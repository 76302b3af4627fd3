"""``bench/scale.py`` at a small scale runs end to end and reports what it promises.

A smoke test of the benchmark itself (real mosquitto, a throwaway PostgreSQL cluster, real
``fleet ingest --database`` processes): every steady batch is acknowledged and stored,
each flush stores every row once with every stream's mark at its last seq (the bench
fails otherwise), and the JSON record carries the held connections, the ack delays, the
ceiling measured before each flush and one flush figure per worker count, with no
failed commit. Its numbers are not judged here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_the_small_scale_bench_holds_its_gateways_and_flushes_through_each_worker_count() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--gateways", "60", "--speed", "60",
         "--cycles", "1", "--gateway-processes", "2", "--flush-gateways", "20",
         "--backlog", "300", "--batch", "100", "--workers", "1", "2", "--repeat", "1"],
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.strip().splitlines()[-1])
    steady = record["steady"]
    assert steady["held_connections_least"] == 60
    assert (steady["acked_batches"], steady["unacked_batches"]) == (60, 0)
    assert steady["rows_stored"] == steady["rows_expected"] == 60 * 2 * 30
    assert 0 < steady["ack_delay_s"]["p50"] <= steady["ack_delay_s"]["max"]
    assert record["copy_ceiling_rows_per_s"] > 0
    assert sorted(record["flush"]) == ["1", "2"]
    assert all(f["rows_per_s"] > 0 for f in record["flush"].values())
    assert all(f["ceiling_rows_per_s"] > 0 for f in record["flush"].values())
    assert [f["failed_commits"] for f in record["flush"].values()] == [0, 0]
