"""``bench/escalation.py`` runs end to end on 20 sites and reports what it promises.

A smoke test of the benchmark itself (the real fleet process, receivers, Kannel when
installed): every site is called, every answer ends its escalation, and the JSON record
carries the figures, the baselines and the verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hardware_sim.harness.kannel import kannel_installed

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_twenty_sites_are_all_called_and_every_answer_ends_its_escalation() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "bench" / "escalation.py"), "--sites", "20"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads(run.stdout.strip().splitlines()[-1])
    assert "error" not in record, record["error"]
    channels = ["webhook", "email", *(["sms"] if kannel_installed() else [])]
    assert record["channels"] == channels
    assert record["first_call_s"]["n"] == 20
    assert all(record["by_channel_s"][c]["n"] == 20 for c in channels)
    assert 0 < record["first_call_s"]["p50"] <= record["first_call_s"]["p99"]
    assert record["first_call_s"]["p99"] < record["target_p99_s"] == 5
    assert record["met"] is True
    assert record["failed_calls"] == 0
    answers = record["answers"]
    assert answers["escalations_ended_by_answer"] == 20
    by_link, by_sms = answers["link"]["round_trip_ms"], answers["sms_reply"]["round_trip_ms"]
    assert by_link["n"] + by_sms.get("n", 0) == 20
    assert by_sms.get("n", 0) == (10 if kannel_installed() else 0)
    assert set(record["baseline"]) >= {"webhook_posts_s", "smtp_sends_s", "n"}
