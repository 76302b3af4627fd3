"""Rollouts end to end through a real mosquitto, with simulated gateways that report.

The simulated gateways verify the signed documents and report through the events stream.

The scheduler's clock is manual: deadlines pass when a test moves it. Everything else
waits on conditions with a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from drivers.clock import ManualClock
from fleet.repository import DeviceState, Role, RolloutState
from fleet.rollouts import RolloutTiming
from hardware_sim.harness.mosquitto import auth, fleet_with_mosquitto
from hardware_sim.harness.ota_rig import RolloutRig
from hardware_sim.harness.waiting import wait_for
from hardware_sim.sim_ota_gateway import OtaPlan, SimulatedOtaGateway
from ota.document import DocumentKind
from ota.manifest import ReleaseFile

EXAMPLES = Path(__file__).parent.parent / "edge_agent" / "examples"
SITE = (EXAMPLES / "creek_village.toml").read_text()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[RolloutRig]:
    clock = ManualClock(time.time())
    timing = RolloutTiming(clock=clock.now, tick_s=0.05)
    async with (
        fleet_with_mosquitto(tmp_path, rollout_timing=timing) as fleet,
        AsyncExitStack() as stack,
    ):
        yield RolloutRig(fleet, clock, stack)


def first(gateway: SimulatedOtaGateway, step: str) -> float:
    return min(t for t, what, _ in gateway.timeline if what == step)


def last(gateway: SimulatedOtaGateway, step: str) -> float:
    return max(t for t, what, _ in gateway.timeline if what == step)


async def test_a_release_rolls_out_wave_by_wave_across_20_gateways(rig: RolloutRig) -> None:
    enrolled = [await rig.fleet.enroll() for _ in range(20)]
    await rig.release()
    gateways = [await rig.connect(e) for e in enrolled]
    started = time.monotonic()
    rollout_id = await rig.rollout([e.gateway_id for e in enrolled], waves=["1", "25%", "100%"])
    rollout = await rig.until(rollout_id, RolloutState.COMPLETED)
    elapsed = time.monotonic() - started

    assert rollout.reason == "20 of 20 gateways updated in 3 waves"
    assert [len(w.gateways) for w in rollout.waves] == [1, 4, 15]
    assert {d.state for d in rollout.devices} == {DeviceState.SUCCEEDED}
    waves = [gateways[:1], gateways[1:5], gateways[5:]]
    for number, wave in enumerate(waves, 1):
        assert {g.versions(DocumentKind.RELEASE)[0] for g in wave} == {number}
        assert all(g.received[0].payload["version"] == "1.4.0" for g in wave)
    for earlier, later in itertools.pairwise(waves):
        # A wave is sent only after every gateway of the one before reported applied.
        assert min(first(g, "received") for g in later) > max(last(g, "applied") for g in earlier)
    assert all(g.refused == [] for g in gateways)
    print(f"\n20-gateway 3-wave rollout through mosquitto: {elapsed:.2f} s")


async def test_a_rollout_halts_when_a_waves_failure_rate_passes_the_error_threshold(
    rig: RolloutRig,
) -> None:
    enrolled = [await rig.fleet.enroll() for _ in range(20)]
    await rig.release()
    # Wave 2 (4 gateways): two roll back and one never finishes, so the rollout halts
    # before that wave could complete.
    plans = [OtaPlan.APPLY, OtaPlan.ROLL_BACK, OtaPlan.STALL, OtaPlan.ROLL_BACK, OtaPlan.APPLY]
    plans += [OtaPlan.APPLY] * 15
    gateways = [await rig.connect(e, p) for e, p in zip(enrolled, plans, strict=True)]
    rollout_id = await rig.rollout(
        [e.gateway_id for e in enrolled], waves=["1", "25%", "100%"], error_threshold=0.25
    )
    rollout = await rig.until(rollout_id, RolloutState.HALTED)

    assert rollout.reason == "wave 2: 2 of 4 gateways failed (50% > error threshold 25%)"
    failed = [d for d in rollout.devices if d.state is DeviceState.FAILED]
    assert [d.gateway_id for d in failed] == [enrolled[1].gateway_id, enrolled[3].gateway_id]
    assert {d.reason for d in failed} == {
        "rolled_back: health check failed after the switch (simulated)"
    }
    third_wave = [d for d in rollout.devices if d.wave == 2]
    assert {(d.state, d.doc_version) for d in third_wave} == {(DeviceState.WAITING, None)}
    assert all(g.received == [] for g in gateways[5:])
    shown = await rig.fleet.http.get(f"/api/v1/rollouts/{rollout_id}", headers=rig.admin)
    assert [w["status"] for w in shown.json()["waves"]] == ["succeeded", "failed", "waiting"]


async def test_a_silent_gateway_times_out_and_a_delivered_one_is_not_a_success(
    rig: RolloutRig,
) -> None:
    enrolled = [await rig.fleet.enroll() for _ in range(4)]
    await rig.release()
    plans = [OtaPlan.SILENT, OtaPlan.STALL, OtaPlan.APPLY, OtaPlan.APPLY]
    gateways = [await rig.connect(e, p) for e, p in zip(enrolled, plans, strict=True)]
    rollout_id = await rig.rollout(
        [e.gateway_id for e in enrolled],
        waves=["100%"],
        device_timeout_s=120,
        success_threshold=0.5,
        error_threshold=0.5,
    )

    def settled() -> bool:
        devices = rig.get(rollout_id).devices
        return bool(gateways[0].received) and [d.reported for d in devices] == [
            None,
            "delivered",
            "applied",
            "applied",
        ]

    await wait_for(settled, 30, "every gateway to receive and report")
    rollout = rig.get(rollout_id)
    assert rollout.state is RolloutState.RUNNING
    assert [d.state for d in rollout.devices[:2]] == [DeviceState.IN_PROGRESS] * 2

    rig.clock.advance(120)
    rollout = await rig.until(rollout_id, RolloutState.COMPLETED)
    assert [(d.state, d.reason) for d in rollout.devices[:2]] == [
        (DeviceState.TIMED_OUT, "no final report within 120 s (no report at all)"),
        (DeviceState.TIMED_OUT, "no final report within 120 s (last report: delivered)"),
    ]
    assert rollout.reason == "2 of 4 gateways updated in 1 waves"


async def test_a_failed_download_is_tried_again_as_the_agent_does_and_then_applies(
    rig: RolloutRig,
) -> None:
    # The fleet refuses the first download (wrong password: 401); the gateway keeps
    # "downloading", tries again, and applies: it neither stops nor reports a final failure.
    enrolled = await rig.fleet.enroll()
    await rig.release()
    refused, allowed = rig.fetch(enrolled, password="not-its-password"), rig.fetch(enrolled)
    attempts: list[str] = []

    async def flaky(version: str, file: ReleaseFile) -> bytes:
        attempts.append(file.name)
        return await (refused if len(attempts) == 1 else allowed)(version, file)

    gateway = await rig.connect(enrolled, fetch=flaky, retry_after_s=0.1)
    rollout_id = await rig.rollout([enrolled.gateway_id], waves=["100%"])
    rollout = await rig.until(rollout_id, RolloutState.COMPLETED)
    assert [d.state for d in rollout.devices] == [DeviceState.SUCCEEDED]
    assert len(gateway.download_failures) == 1
    assert "401" in gateway.download_failures[0]
    assert [r.state.value for r in gateway.reports] == ["delivered", "downloading", "applied"]


async def test_pause_resume_and_abort_steer_a_live_rollout(rig: RolloutRig) -> None:
    enrolled = [await rig.fleet.enroll() for _ in range(6)]
    ids = [e.gateway_id for e in enrolled]
    await rig.release()
    http = rig.fleet.http
    operator = auth(rig.fleet.api_token(Role.OPERATOR))
    # Waves: 1 (canary), 3 (50%), 6 (100%). The canary is offline when the rollout starts.
    rollout_id = await rig.rollout(ids, waves=["1", "50%", "100%"])
    paused = await http.post(f"/api/v1/rollouts/{rollout_id}/pause", headers=operator)
    assert (paused.json()["state"], paused.json()["current_wave"]) == ("paused", 1)

    canary = await rig.connect(enrolled[0])  # gets the retained document on connecting
    second = [await rig.connect(enrolled[1])]  # enrolled[2] stays offline for now
    third = [await rig.connect(e) for e in enrolled[3:]]
    await wait_for(
        lambda: rig.get(rollout_id).devices[0].state is DeviceState.SUCCEEDED, 30, "the canary"
    )
    held = await asyncio.to_thread(rig.fleet.app.state.rollouts.advance, rollout_id)
    assert (held.state, held.current_wave) == (RolloutState.PAUSED, 0)
    assert second[0].received == []

    resumed = await http.post(f"/api/v1/rollouts/{rollout_id}/resume", headers=operator)
    assert (resumed.json()["state"], resumed.json()["current_wave"]) == ("running", 2)
    await wait_for(
        lambda: rig.get(rollout_id).devices[1].state is DeviceState.SUCCEEDED, 30, "wave 2"
    )
    aborted = await http.post(f"/api/v1/rollouts/{rollout_id}/abort", headers=operator)
    assert aborted.json()["state"] == "aborted"
    assert [d["state"] for d in aborted.json()["devices"]] == [
        "succeeded",
        "succeeded",
        "cancelled",
        "cancelled",
        "cancelled",
        "cancelled",
    ]
    # The offline gateway of wave 2 still gets its retained document when it comes back;
    # the aborted rollout records the report but no longer counts it.
    late = await rig.connect(enrolled[2])
    await wait_for(lambda: rig.get(rollout_id).devices[2].reported == "applied", 30, "report")
    assert late.versions(DocumentKind.RELEASE) == [2]
    assert rig.get(rollout_id).devices[2].state is DeviceState.CANCELLED
    assert all(g.received == [] for g in third)
    assert canary.versions(DocumentKind.RELEASE) == [1]


async def test_an_offline_gateway_gets_the_newest_config_and_its_state_shows_it(
    rig: RolloutRig,
) -> None:
    enrolled = await rig.fleet.enroll()
    url = f"/api/v1/gateways/{enrolled.gateway_id}/config"
    configurator = auth(rig.fleet.api_token(Role.CONFIGURATOR))
    for note in ("first", "second"):
        created = await rig.fleet.http.post(
            "/api/v1/configs",
            json={"gateway_id": enrolled.gateway_id, "site_toml": SITE, "note": note},
            headers=configurator,
        )
        assert created.status_code == 201, created.text

    async def published() -> bool:
        history = (await rig.fleet.http.get(url, headers=configurator)).json()["history"]
        return history[0]["version"] == 2 and history[0]["published_at"] is not None

    await wait_for(published, 30, "the broker to hold the newest config")
    gateway = await rig.connect(enrolled)

    async def applied() -> bool:
        return (await rig.fleet.http.get(url, headers=configurator)).json()["state"] == "applied"

    await wait_for(applied, 30, "the gateway to apply it")
    shown = (await rig.fleet.http.get(url, headers=configurator)).json()
    assert (shown["version"], shown["reason"]) == (2, None)
    assert [(h["version"], h["state"]) for h in shown["history"]] == [
        (2, "applied"),
        (1, "superseded"),
    ]
    assert gateway.versions(DocumentKind.CONFIG) == [2]
    assert gateway.received[0].payload == {"site_toml": SITE}
