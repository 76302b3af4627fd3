"""The configuration updater's steps on real files: confirmation, roll-back, crash loops.

The probe and the post-restart confirmation are the agent's (tested end to end in
``test_config_ota.py``); here they are plain functions returning what the agent would
find, so the state machine's every branch is reached without waiting on devices.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config_state import (
    MAX_CONFIRM_STARTS,
    MAX_TAKE_TRIES,
    STATE_FILE,
    TAKING_FILE,
    ConfigOtaState,
    Taking,
    candidate_path,
    prepare_start,
    previous_path,
)
from edge_agent.config_update import ConfigUpdater
from fleet.signing import SigningKey
from hardware_sim.harness.enrolled import write_enrollment
from ota.document import Document, DocumentKind, Target, sign_document
from ota.report import OtaReport
from protocol.reconnect import Backoff
from tests.ota_fixtures import ReportStore

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
    write_enrollment(tmp_path / "data", GATEWAY, key.public_key_b64, fleet_url="http://127.0.0.1:1")
    path = tmp_path / "site.toml"
    path.write_text(OLD)
    return path


class Harness:
    """A ConfigUpdater whose probe and confirmation answer as told.

    ``full_store`` reports fail to be stored first, as on a full disk; ``probe_raises`` makes
    the probe fail unexpectedly at every try. Tries are 10-40 ms apart, not minutes.
    """

    def __init__(
        self,
        site: Path,
        probe: str | None = None,
        confirm: str | None = None,
        *,
        full_store: int = 0,
        probe_raises: bool = False,
    ):
        self.restarts = 0
        self.probes = 0
        self.changed = asyncio.Event()
        self.probe_answer = probe
        self.confirm_answer = confirm
        self.store = ReportStore(self.changed, full_store)
        self.reports = self.store.reports
        self.probe_raises = probe_raises
        self.updater = ConfigUpdater(
            site,
            site.parent / "data",
            self.store,
            self._probe,
            self._confirm,
            self._restart,
            confirm_deadline_s=1.0,
            retry=Backoff(0.02, 0.04, random.Random(7)),
        )

    async def _probe(self, _site: Any) -> str | None:
        self.probes += 1
        self.changed.set()
        if self.probe_raises:
            msg = f"probe failed unexpectedly (try {self.probes})"
            raise RuntimeError(msg)
        return self.probe_answer

    async def _confirm(self, _deadline: float) -> str | None:
        return self.confirm_answer

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


async def test_a_report_the_store_could_not_take_is_tried_again_and_the_config_applied(
    site: Path, key: SigningKey
) -> None:
    # The first report fails to be stored (a full disk). The retained document will not
    # come again until a reconnect, so the updater must try it again by itself.
    harness = Harness(site, full_store=1)
    harness.updater.offer(_doc(key, 3, NEW))
    await harness.run_until(1, restarts=1)
    assert harness.states() == [(3, "delivered")]
    assert text(site) == NEW
    state = ConfigOtaState.load(site.parent / "data")
    assert (state.confirming, state.handled_version) == (3, 3)
    assert Taking.load(site.parent / "data") is None


async def test_a_try_that_keeps_raising_is_given_up_with_its_error_reported(
    site: Path, key: SigningKey
) -> None:
    harness = Harness(site, probe_raises=True)
    harness.updater.offer(_doc(key, 3, NEW))
    await harness.run_until(2)
    assert harness.states() == [(3, "delivered"), (3, "rejected")]
    assert harness.probes == MAX_TAKE_TRIES
    reason = str(harness.reports[1].reason)
    assert f"gave up after {MAX_TAKE_TRIES} tries" in reason
    assert f"RuntimeError: probe failed unexpectedly (try {MAX_TAKE_TRIES})" in reason
    assert text(site) == OLD
    assert not candidate_path(site).exists()
    data = site.parent / "data"
    assert ConfigOtaState.load(data).handled_version == 3
    assert Taking.load(data) is None
    assert harness.updater.status()["taking"] is None
    # The retained copy after a reconnect is no news: it is not tried again. A newer
    # version offered behind it shows the updater has taken it.
    harness.probe_raises = False
    harness.updater.offer(_doc(key, 3, NEW))
    harness.updater.offer(_doc(key, 4, NEW))
    await harness.run_until(3, restarts=1)
    assert harness.states()[2:] == [(4, "delivered")]
    assert harness.probes == MAX_TAKE_TRIES + 1


async def test_an_agent_that_dies_in_the_probe_tries_again_then_gives_up(
    site: Path, key: SigningKey
) -> None:
    # Each agent dies while its probe runs: the task is cancelled at the probe, which leaves
    # the data directory as a killed process would (everything here lives in files). One
    # real SIGKILL in the probe: tests/test_config_ota.py.
    data = site.parent / "data"
    for deaths in range(1, MAX_TAKE_TRIES + 1):
        harness = Harness(site)
        probing = asyncio.Event()

        async def probe_never_returns(_site: Any, probing: asyncio.Event = probing) -> str | None:
            probing.set()
            await asyncio.Event().wait()
            return None

        harness.updater.probe = probe_never_returns
        harness.updater.offer(_doc(key, 3, NEW))  # the retained document after each start
        task = asyncio.create_task(harness.updater.run())
        async with asyncio.timeout(10):
            await probing.wait()
        task.cancel()
        assert Taking.load(data) == Taking(3, deaths, delivered=True)
        taking = {"version": 3, "tries": deaths, "delivered": True, "failure": None}
        assert harness.updater.status()["taking"] == taking
        assert harness.states() == ([(3, "delivered")] if deaths == 1 else [])
    # The next start reports the configuration given up, without trying it again.
    last = Harness(site)
    last.updater.offer(_doc(key, 3, NEW))
    await last.run_until(1)
    assert last.states() == [(3, "rejected")]
    assert "the agent stopped while taking it" in str(last.reports[0].reason)
    assert text(site) == OLD


def test_state_written_by_a_newer_version_still_loads(site: Path) -> None:
    # After a roll-back, the older version reads what the newer one wrote.
    data = site.parent / "data"
    (data / STATE_FILE).write_text(json.dumps({"handled_version": 4, "a_later_field": [1]}))
    assert ConfigOtaState.load(data).handled_version == 4


def test_an_unreadable_count_of_tries_starts_the_count_again(site: Path) -> None:
    data = site.parent / "data"
    Taking(3, 2, delivered=True).save(data)
    assert Taking.load(data) == Taking(3, 2, delivered=True)
    (data / TAKING_FILE).write_text('{"version": "three"')
    assert Taking.load(data) is None
