"""The configuration updater's steps on real files: confirmation, roll-back, crash loops.

The probe and the post-restart confirmation are the agent's (tested end to end in
``test_config_ota.py``); here they are plain functions returning what the agent would
find, so the state machine's every branch is reached without waiting on devices.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config_state import (
    MAX_CONFIRM_STARTS,
    ConfigOtaState,
    candidate_path,
    prepare_start,
    previous_path,
)
from edge_agent.config_update import ConfigUpdater
from edge_agent.enroll import ENROLLMENT_FILE, StoredEnrollment, write_private
from fleet.signing import SigningKey
from ota.document import Document, DocumentKind, Target, sign_document
from ota.report import OtaReport
from protocol import MqttCredentials

GATEWAY = "gw-unit-1"
OLD = """
[site]
id = "unit"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = 1502

[[device]]
name = "creek"
bus = "field"
profile = "hlk_ld8001h"
poll_interval_s = 10
"""
NEW = OLD.replace("poll_interval_s = 10", "poll_interval_s = 20")


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "fleet")


@pytest.fixture
def site(tmp_path: Path, key: SigningKey) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    enrollment = StoredEnrollment(
        gateway_id=GATEWAY,
        site_id="unit",
        mqtt=MqttCredentials(username=GATEWAY, password="x" * 24, client_id=GATEWAY),
        broker_url="mqtt://127.0.0.1:1",
        fleet_signing_key=key.public_key_b64,
        topic_prefix=f"hw/v1/{GATEWAY}",
        fleet_url="http://127.0.0.1:1",
        enrolled_at=1.0,
    )
    write_private(data / ENROLLMENT_FILE, enrollment.model_dump_json().encode())
    path = tmp_path / "site.toml"
    path.write_text(OLD)
    return path


class Harness:
    """A ConfigUpdater whose probe and confirmation answer as told."""

    def __init__(self, site: Path, probe: str | None = None, confirm: str | None = None):
        self.reports: list[OtaReport] = []
        self.restarts = 0
        self.changed = asyncio.Event()
        self.probe_answer = probe
        self.confirm_answer = confirm
        self.updater = ConfigUpdater(
            site,
            site.parent / "data",
            self._report,
            self._probe,
            self._confirm,
            self._restart,
            confirm_deadline_s=1.0,
        )

    async def _probe(self, _site: Any) -> str | None:
        return self.probe_answer

    async def _confirm(self, _deadline: float) -> str | None:
        return self.confirm_answer

    async def _report(self, report: OtaReport) -> None:
        self.reports.append(report)
        self.changed.set()

    def _restart(self) -> None:
        self.restarts += 1
        self.changed.set()

    def states(self) -> list[tuple[int, str]]:
        return [(r.version, r.state.value) for r in self.reports]

    async def run_until(self, count: int, restarts: int = 0) -> None:
        """Run the updater until it made ``count`` reports and ``restarts`` restarts."""
        task = asyncio.create_task(self.updater.run())
        try:
            async with asyncio.timeout(10):
                while len(self.reports) < count or self.restarts < restarts:
                    await self.changed.wait()
                    self.changed.clear()
        finally:
            task.cancel()


def text(path: Path) -> str:
    """The file's content (read synchronously: it is small and local)."""
    return path.read_text()


def _doc(key: SigningKey, version: int, text: str) -> bytes:
    return sign_document(
        Document(DocumentKind.CONFIG, version, Target((GATEWAY,)), 1.0, {"site_toml": text}), key
    )


async def test_a_probed_config_is_switched_then_confirmed(site: Path, key: SigningKey) -> None:
    first = Harness(site)
    first.updater.offer(_doc(key, 3, NEW))
    await first.run_until(1, restarts=1)
    assert first.states() == [(3, "delivered")]
    assert first.restarts == 1
    assert text(site) == NEW
    assert text(previous_path(site)) == OLD
    assert not candidate_path(site).exists()
    # The restarted agent confirms.
    second = Harness(site)
    await second.run_until(1)
    assert second.states() == [(3, "applied")]
    state = ConfigOtaState.load(site.parent / "data")
    assert (state.installed_version, state.confirming) == (3, None)


async def test_a_failed_confirmation_restores_the_previous_file(
    site: Path, key: SigningKey
) -> None:
    first = Harness(site)
    first.updater.offer(_doc(key, 3, NEW))
    await first.run_until(1, restarts=1)
    second = Harness(site, confirm="no answer yet from creek after 1 s")
    await second.run_until(1, restarts=1)
    assert second.states() == [(3, "rolled_back")]
    assert "no answer yet from creek after 1 s" in str(second.reports[0].reason)
    assert second.restarts == 1
    assert text(site) == OLD
    state = ConfigOtaState.load(site.parent / "data")
    assert (state.installed_version, state.confirming, state.handled_version) == (0, None, 3)


async def test_a_failed_probe_changes_nothing(site: Path, key: SigningKey) -> None:
    harness = Harness(site, probe="bus field: device creek (unit 1) did not answer")
    harness.updater.offer(_doc(key, 3, NEW))
    await harness.run_until(2)
    assert harness.states() == [(3, "delivered"), (3, "rolled_back")]
    assert harness.restarts == 0
    assert text(site) == OLD
    assert not candidate_path(site).exists()


def test_a_config_that_crash_loops_is_given_up_before_it_is_loaded(
    site: Path, key: SigningKey
) -> None:
    data = site.parent / "data"
    previous_path(site).write_text(OLD)
    site.write_text(NEW)
    ConfigOtaState(installed_version=2, handled_version=3, confirming=3, previous_version=2).save(
        data
    )
    for _ in range(MAX_CONFIRM_STARTS):
        prepare_start(site, data)
        assert text(site) == NEW
    prepare_start(site, data)
    assert text(site) == OLD
    state = ConfigOtaState.load(data)
    assert (state.confirming, state.installed_version) == (None, 2)
    assert state.unreported[0]["state"] == "rolled_back"
    assert f"within {MAX_CONFIRM_STARTS} starts" in state.unreported[0]["reason"]


async def test_left_over_reports_are_sent_once_the_agent_runs(site: Path) -> None:
    data = site.parent / "data"
    ConfigOtaState(
        unreported=[{"subject": "config", "version": 3, "state": "rolled_back", "reason": "x"}]
    ).save(data)
    harness = Harness(site)
    await harness.run_until(1)
    assert harness.states() == [(3, "rolled_back")]
    assert ConfigOtaState.load(data).unreported == []


async def test_left_over_reports_stay_saved_until_they_are_stored(site: Path) -> None:
    # Storing the report fails (the agent dies, the disk is full): it must stay on file.
    data = site.parent / "data"
    left_over = {"subject": "config", "version": 3, "state": "rolled_back", "reason": "x"}
    ConfigOtaState(unreported=[left_over]).save(data)
    harness = Harness(site)

    async def store_fails(_report: OtaReport) -> None:
        raise OSError("no space left on device")

    harness.updater.emit = store_fails
    with pytest.raises(OSError, match="no space"):
        async with asyncio.timeout(10):
            await harness.updater.run()
    assert ConfigOtaState.load(data).unreported == [left_over]
