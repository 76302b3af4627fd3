"""Rollout rules: cumulative waves, deadlines, thresholds, and the scheduler on real SQLite.

Time is a manual clock: a deadline passes when the test moves the clock, never by waiting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.clock import ManualClock
from fleet.repository import (
    DeviceState,
    NewGateway,
    NewRollout,
    Rollout,
    RolloutDevice,
    RolloutState,
    RolloutWave,
)
from fleet.rollouts import (
    RolloutScheduler,
    RolloutTiming,
    WaveSpec,
    next_step,
    plan_waves,
)
from fleet.signing import SigningKey
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.release_rest import manifest_of
from ota.document import DocumentKind, read_unverified, verify_document
from ota.report import OtaReport, OtaState, OtaSubject
from tests.ota_fixtures import commit_ota_report

T0 = 1_790_000_000.0
GATEWAYS = [f"gw-{i:02d}-sim" for i in range(20)]


def specs(*texts: str | int) -> list[WaveSpec]:
    return [WaveSpec.parse(t) for t in texts]


def make_rollout(
    waves: list[list[str]],
    devices: dict[str, DeviceState] | None = None,
    *,
    current: int = -1,
    state: RolloutState = RolloutState.RUNNING,
    success: float = 0.9,
    error: float = 0.1,
    deadline: float = T0 + 600,
) -> Rollout:
    devices = devices or {}
    records = []
    for index, members in enumerate(waves):
        for gateway_id in members:
            device_state = devices.get(
                gateway_id, DeviceState.IN_PROGRESS if index <= current else DeviceState.WAITING
            )
            sent = index <= current
            records.append(
                RolloutDevice(
                    gateway_id=gateway_id,
                    wave=index,
                    state=device_state,
                    doc_version=index + 1 if sent else None,
                    sent_at=T0 if sent else None,
                    deadline=deadline if sent else None,
                    reported=None,
                    reason=None,
                    updated_at=T0,
                )
            )
    return Rollout(
        id=7,
        kind=DocumentKind.RELEASE,
        release_version="1.4.0",
        config_id=None,
        group=None,
        success_threshold=success,
        error_threshold=error,
        device_timeout_s=600,
        state=state,
        current_wave=current,
        reason=None,
        revision=3,
        created_at=T0,
        created_by="test",
        updated_at=T0,
        waves=tuple(
            RolloutWave(
                i, "x", tuple(m), i + 1 if i <= current else None, T0 if i <= current else None
            )
            for i, m in enumerate(waves)
        ),
        devices=tuple(records),
    )


# --- planning ------------------------------------------------------------------------------


def test_waves_are_cumulative_a_canary_then_percentages() -> None:
    waves = plan_waves(GATEWAYS, specs(1, "25%", "100%"))
    assert [(spec, len(members)) for spec, members in waves] == [("1", 1), ("25%", 4), ("100%", 15)]
    assert [g for _, members in waves for g in members] == GATEWAYS


def test_a_wave_that_adds_nobody_is_left_out() -> None:
    waves = plan_waves(["gw-a-1", "gw-b-1"], specs(1, "25%", "100%"))
    assert waves == (("1", ("gw-a-1",)), ("100%", ("gw-b-1",)))


@pytest.mark.parametrize(
    ("waves", "problem"),
    [
        (("5", "10%", "100%"), "wave 2 (10% = 2 gateways) is below the 5 reached before it"),
        (("1", "25%"), "the waves reach 5 of 20 gateways: make the last wave 100%"),
    ],
)
def test_waves_that_shrink_or_stop_short_are_refused(waves: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}"):
        plan_waves(GATEWAYS, specs(*waves))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("30x", "use a gateway count like 1 or a percentage like 25%"),
        ("0%", "a percentage must be above 0 and at most 100"),
        ("150%", "a percentage must be above 0 and at most 100"),
        ("1.5", "a count must be a whole number of gateways"),
        ("0", "a count must be a whole number of gateways, at least 1"),
    ],
)
def test_a_malformed_wave_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        WaveSpec.parse(text)


# --- decisions -----------------------------------------------------------------------------


def test_a_new_rollout_starts_its_first_wave() -> None:
    step = next_step(make_rollout([["a1"], ["b1", "b2"]]), T0)
    assert step is not None
    assert (step.start_wave, step.state, step.revision) == (0, RolloutState.RUNNING, 3)


def test_a_device_that_only_received_the_document_is_not_a_success() -> None:
    clock = ManualClock(T0)
    rollout = make_rollout([["a1"], ["b1"]], current=0)
    clock.advance(599)
    assert next_step(rollout, clock.now()) is None  # in progress until applied or deadline


def test_a_silent_device_times_out_at_its_deadline_and_counts_as_a_failure() -> None:
    clock = ManualClock(T0)
    rollout = make_rollout([["a1"], ["b1"]], current=0)
    clock.advance(600)
    step = next_step(rollout, clock.now())
    assert step is not None
    assert step.timed_out == ("a1",)
    assert step.state is RolloutState.HALTED
    assert step.start_wave is None
    assert step.reason == "wave 1: 1 of 1 gateways failed (100% > error threshold 10%)"


def test_the_next_wave_starts_when_a_finished_wave_reaches_the_success_threshold() -> None:
    rollout = make_rollout([["a1"], ["b1", "b2"], ["c1"]], {"a1": DeviceState.SUCCEEDED}, current=0)
    step = next_step(rollout, T0 + 1)
    assert step is not None
    assert (step.start_wave, step.state) == (1, RolloutState.RUNNING)


def test_a_rollout_halts_as_soon_as_a_waves_failures_pass_the_error_threshold() -> None:
    wave = ["b1", "b2", "b3", "b4"]
    rollout = make_rollout(
        [["a1"], wave],
        {"a1": DeviceState.SUCCEEDED, "b1": DeviceState.FAILED},
        current=1,
        error=0.2,
    )
    step = next_step(rollout, T0 + 1)  # three devices still in progress
    assert step is not None
    assert step.state is RolloutState.HALTED
    assert step.reason == "wave 2: 1 of 4 gateways failed (25% > error threshold 20%)"


def test_failures_at_exactly_the_error_threshold_do_not_halt() -> None:
    wave = [f"b{i}" for i in range(10)]
    states = {"a1": DeviceState.SUCCEEDED, "b0": DeviceState.FAILED}
    rollout = make_rollout([["a1"], wave], states, current=1, error=0.1)
    assert next_step(rollout, T0 + 1) is None


def test_a_finished_wave_below_the_success_threshold_halts() -> None:
    states = dict.fromkeys(["b1", "b2", "b3"], DeviceState.SUCCEEDED) | {"b4": DeviceState.FAILED}
    rollout = make_rollout(
        [["b1", "b2", "b3", "b4"], ["c1"]], states, current=0, success=1.0, error=0.5
    )
    step = next_step(rollout, T0 + 1)
    assert step is not None
    assert step.state is RolloutState.HALTED
    assert step.reason == "wave 1 ended with 3 of 4 gateways updated (75% < success threshold 100%)"


def test_the_last_wave_completes_the_rollout() -> None:
    states = dict.fromkeys(["a1", "b1", "b2"], DeviceState.SUCCEEDED)
    step = next_step(make_rollout([["a1"], ["b1", "b2"]], states, current=1), T0 + 1)
    assert step is not None
    assert step.state is RolloutState.COMPLETED
    assert step.reason == "3 of 3 gateways updated in 2 waves"


def test_a_paused_rollout_starts_no_wave_but_still_times_out_and_halts() -> None:
    done = make_rollout(
        [["a1"], ["b1"]], {"a1": DeviceState.SUCCEEDED}, current=0, state=RolloutState.PAUSED
    )
    assert next_step(done, T0 + 1) is None
    silent = make_rollout([["a1"], ["b1"]], current=0, state=RolloutState.PAUSED)
    step = next_step(silent, T0 + 600)
    assert step is not None
    assert (step.timed_out, step.state) == (("a1",), RolloutState.HALTED)


def test_halted_rollouts_only_record_timeouts_and_ended_ones_nothing() -> None:
    halted = make_rollout(
        [["a1", "a2"]], {"a1": DeviceState.FAILED}, current=0, state=RolloutState.HALTED
    )
    assert next_step(halted, T0 + 1) is None
    step = next_step(halted, T0 + 600)
    assert step is not None
    assert (step.timed_out, step.state, step.start_wave) == (("a2",), RolloutState.HALTED, None)
    for ended in (RolloutState.ABORTED, RolloutState.COMPLETED):
        assert next_step(make_rollout([["a1"]], current=0, state=ended), T0 + 9999) is None


# --- the scheduler on real SQLite ------------------------------------------------------------


@dataclass
class Fleet:
    repository: SQLiteRepository
    key: SigningKey
    clock: ManualClock
    scheduler: RolloutScheduler
    seqs: dict[str, int]

    def report(
        self, gateway_id: str, version: int, state: OtaState, reason: str | None = None
    ) -> None:
        """Commit an ``ota`` event as ingest would after it arrived from the gateway."""
        report = OtaReport(OtaSubject.RELEASE, version, state, reason)
        commit_ota_report(self.repository, self.seqs, gateway_id, report, self.clock.now())

    def start(self, gateways: list[str], waves: list[str], **bounds: float) -> int:
        new = NewRollout(
            kind=DocumentKind.RELEASE,
            release_version="1.4.0",
            config_id=None,
            group="north",
            waves=plan_waves(gateways, specs(*waves)),
            success_threshold=bounds.get("success", 0.9),
            error_threshold=bounds.get("error", 0.1),
            device_timeout_s=bounds.get("timeout", 600),
            created_by="test",
        )
        return self.repository.ota.create_rollout(new, self.clock.now()).id


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    repository = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
    for gateway_id in GATEWAYS[:6]:
        _token, secret = repository.create_enrollment_token("north", T0 + 3600, None, None, T0)
        gateway = NewGateway(gateway_id, "k" * 44, "$7$x", None, None)
        repository.redeem_enrollment_token(secret, gateway, T0)
    wheel = b"not really a wheel"
    manifest = manifest_of({"hazardwatch-1.4.0-py3-none-any.whl": wheel}, created_at=T0)
    repository.ota.add_release(manifest, "test", T0)
    upload, _size = repository.ota.release_upload_path("1.4.0", manifest.files[0].name)
    upload.write_bytes(wheel)
    repository.ota.store_release_file("1.4.0", manifest.files[0].name, upload, T0)
    clock = ManualClock(T0)
    key = SigningKey.load_or_create(tmp_path)
    scheduler = RolloutScheduler(repository, key, RolloutTiming(clock=clock.now))
    yield Fleet(repository, key, clock, scheduler, {})
    repository.close()


def test_each_wave_gets_one_signed_document_with_a_newer_version(fleet: Fleet) -> None:
    rollout_id = fleet.start(GATEWAYS[:4], ["1", "100%"])
    fleet.scheduler.advance(rollout_id)
    first = fleet.repository.ota.claim_documents(fleet.clock.now())
    assert [(d.gateway_id, d.version) for d in first] == [(GATEWAYS[0], 1)]
    document = verify_document(
        first[0].document, fleet.key.public_key_b64, GATEWAYS[0], DocumentKind.RELEASE, 0
    )
    assert document.payload["version"] == "1.4.0"
    assert (document.target.gateways, document.target.group) == ((GATEWAYS[0],), "north")

    fleet.report(GATEWAYS[0], 1, OtaState.DELIVERED)
    assert fleet.scheduler.advance(rollout_id).current_wave == 0  # delivered is not applied
    fleet.report(GATEWAYS[0], 1, OtaState.APPLIED)
    rollout = fleet.scheduler.advance(rollout_id)
    assert rollout.current_wave == 1
    second = fleet.repository.ota.claim_documents(fleet.clock.now())
    assert [(d.gateway_id, d.version) for d in second] == [(g, 2) for g in GATEWAYS[1:4]]
    assert read_unverified(second[0].document).target.gateways == tuple(GATEWAYS[1:4])


def test_reports_out_of_order_never_undo_an_outcome(fleet: Fleet) -> None:
    rollout_id = fleet.start(GATEWAYS[:1], ["100%"])
    fleet.scheduler.advance(rollout_id)
    fleet.report(GATEWAYS[0], 1, OtaState.APPLIED)
    fleet.report(GATEWAYS[0], 1, OtaState.DELIVERED)  # late, out of order
    fleet.report(GATEWAYS[0], 1, OtaState.REJECTED, "stale_version: a duplicate copy")
    rollout = fleet.scheduler.advance(rollout_id)
    assert rollout.state is RolloutState.COMPLETED
    assert (rollout.devices[0].state, rollout.devices[0].reported) == (
        DeviceState.SUCCEEDED,
        "applied",
    )


def test_a_late_applied_report_does_not_revive_a_timed_out_device(fleet: Fleet) -> None:
    rollout_id = fleet.start(GATEWAYS[:2], ["100%"], error=0.5, success=0.5)
    fleet.scheduler.advance(rollout_id)
    fleet.report(GATEWAYS[0], 1, OtaState.APPLIED)
    fleet.report(GATEWAYS[1], 1, OtaState.DELIVERED)
    fleet.clock.advance(600)
    rollout = fleet.scheduler.advance(rollout_id)
    late = rollout.devices[1]
    assert (late.state, late.reason) == (
        DeviceState.TIMED_OUT,
        "no final report within 600 s (last report: delivered)",
    )
    assert rollout.state is RolloutState.COMPLETED  # 1 of 2 reached the 50% bar
    fleet.report(GATEWAYS[1], 1, OtaState.APPLIED)
    device = fleet.repository.ota.get_rollout(rollout_id).devices[1]
    assert (device.state, device.reported) == (DeviceState.TIMED_OUT, "applied")


def test_a_decision_taken_on_an_old_snapshot_is_not_applied(fleet: Fleet) -> None:
    rollout_id = fleet.start(GATEWAYS[:2], ["1", "100%"])
    fleet.scheduler.advance(rollout_id)
    snapshot = fleet.repository.ota.get_rollout(rollout_id)
    fleet.report(GATEWAYS[0], 1, OtaState.ROLLED_BACK, "health check failed")
    fleet.clock.advance(600)
    stale = next_step(snapshot, fleet.clock.now())
    assert stale is not None
    assert not fleet.repository.ota.apply_rollout_step(stale, fleet.clock.now(), None)
    rollout = fleet.scheduler.advance(rollout_id)
    assert rollout.devices[0].state is DeviceState.FAILED
    assert rollout.devices[0].reason == "rolled_back: health check failed"
    assert rollout.state is RolloutState.HALTED


def test_document_versions_never_repeat_across_rollouts(fleet: Fleet) -> None:
    first = fleet.start(GATEWAYS[:1], ["100%"])
    fleet.scheduler.advance(first)
    fleet.report(GATEWAYS[0], 1, OtaState.APPLIED)
    fleet.scheduler.advance(first)
    second = fleet.start(GATEWAYS[:2], ["100%"])
    fleet.scheduler.advance(second)
    versions = {d.doc_version for d in fleet.repository.ota.get_rollout(second).devices}
    assert versions == {2}
    stored = (
        fleet.repository._db()
        .execute("SELECT kind, version, gateways FROM ota_documents ORDER BY version")
        .fetchall()
    )
    assert [(k, v, json.loads(g)) for k, v, g in stored] == [
        ("release", 1, [GATEWAYS[0]]),
        ("release", 2, GATEWAYS[:2]),
    ]
