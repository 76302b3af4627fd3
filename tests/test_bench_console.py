"""``bench/console.py --quick`` runs end to end in real Chromium and reports what it promises.

A smoke test of the benchmark itself (``fleet serve`` on a seeded SQLite file, Debian's
Chromium): every load showed every marker and alarm (the bench fails otherwise), every
level change reached the map, the 30-day chart was drawn from its 43,200 readings, and
the JSON record carries the figures, the baselines, the targets and a verdict for each.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(),
    reason="the console bench needs Debian's chromium: apt-get install chromium",
)
@pytest.mark.timeout(240)
def test_the_quick_console_bench_measures_loads_changes_and_charts() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "console.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert (record["sites"], record["active_alarms"], record["changes"]) == (100, 10, 10)
    assert record["chart_readings"] == 43_200
    assert record["overview_load_s"]["n"] == 2
    assert record["level_change_s"]["n"] == 10
    assert record["level_change_s"]["rises"]["n"] == record["level_change_s"]["falls"]["n"] == 5
    assert record["chart_30d_s"]["n"] == 2
    # A change cannot show before it was committed, nor a page before it was asked for.
    assert 0 < record["level_change_s"]["p50"] <= record["level_change_s"]["max"]
    assert 0 < record["overview_load_s"]["median"] <= record["overview_load_s"]["max"]
    assert 0 < record["chart_30d_s"]["median"] <= record["chart_30d_s"]["max"]
    assert set(record["baseline_s"]) >= {"sites_s", "active_alarms_s", "readings_30d_s"}
    assert all(record["baseline_s"][k] > 0 for k in ("sites_s", "readings_30d_s"))
    assert record["targets"] == {
        "overview_load_s": 2.0,
        "level_change_p99_s": 2.0,
        "chart_30d_s": 1.0,
    }
    assert set(record["met"]) == {"overview_load", "level_change", "chart_30d"}
    assert all(isinstance(v, bool) for v in record["met"].values())
