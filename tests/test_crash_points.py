"""The one fault-injection switch: armed only by its variable, for one named point."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hardware_sim.harness.waiting import wait_until
from ota.crash_points import ENV, POINTS, armed, crash_test_env


def test_unarmed_nothing_freezes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert all(armed(point) is None for point in POINTS)


def test_armed_at_one_point_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "m"
    for name, value in crash_test_env("fleet.ingest.commit", marker).items():
        monkeypatch.setenv(name, value)
    assert armed("fleet.ingest.commit") == marker
    assert armed("edge.store.commit") is None


@pytest.mark.parametrize("value", ["fleet.ingest.commit", "no.such.point=/tmp/m", "=/tmp/m"])
def test_a_malformed_value_is_logged_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv(ENV, value)
    with caplog.at_level(logging.ERROR):
        assert armed("fleet.ingest.commit") is None
    assert "ignored" in caplog.text


def test_an_unknown_point_cannot_be_armed_by_a_test(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no crash point"):
        crash_test_env("fleet.ingest.comit", tmp_path / "m")


def test_an_armed_process_freezes_there_and_says_so(tmp_path: Path) -> None:
    marker = tmp_path / "m"
    code = (
        "import logging; logging.basicConfig(); from ota.crash_points import armed, freeze; "
        "m = armed('edge.store.commit'); freeze(m)"
    )
    env = {**crash_test_env("edge.store.commit", marker), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    try:
        wait_until(lambda: marker.exists() or process.poll() is not None, 30, "the freeze")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert marker.read_text().strip() == str(process.pid)
        assert process.poll() is None  # frozen, not finished
    finally:
        process.kill()
        _, err = process.communicate(timeout=30)
    assert "crash test: this process freezes at edge.store.commit" in err
