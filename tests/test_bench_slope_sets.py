"""The slope bench runs the set it is asked for, from that set's seeds, and refuses others.

``bench/slope_forecast.py --sets fresh`` is where a choice made with the check set in view
is confirmed, so it must run seeds no other set holds; a misspelt set must stop the bench
before minutes of fitting, not after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("numba")

REPO = Path(__file__).resolve().parents[1]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "bench" / "slope_forecast.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_an_unknown_set_is_refused_with_the_known_ones():
    refused = _bench("--sets", "check,frsh")
    assert refused.returncode == 1
    assert "--sets: unknown set frsh (known: tuning, check, fresh)" in refused.stderr
    assert refused.stdout == ""


def test_the_fresh_set_runs_its_own_seeds_and_reports_both_samplings_together(tmp_path):
    details = tmp_path / "details.json"
    ran = _bench(
        "--sets", "fresh", "--failures", "2", "--quiet", "1", "--workers", "1",
        "--details", str(details),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert set(report) == {"overrides", "fresh", "seconds"}
    records = json.loads(details.read_text())["fresh"]
    assert sorted({r["seed"] for r in records}) == [3000, 3001]
    # by_noise: both sampling intervals together, split at the targets' noise of 0.05 mm.
    # The details list the gradual failures first, then the quiet years, then the abrupt
    # onsets of the failures in scope.
    failures = records[:2]
    assert [r["family"] for r in records[2:3]] == ["quiet"]
    by_noise = report["fresh"]["by_noise"]
    in_scope = sum(1 for r in failures if r["noise_mm"] <= 0.05)
    assert by_noise.get("noise<=0.05", {"failure_series": 0})["failure_series"] == in_scope
    assert sum(g["failure_series"] for g in by_noise.values()) == len(failures)
