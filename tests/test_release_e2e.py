"""Agent releases end to end: fleet rollout -> signed document -> real agent in slots -> fleet.

A gateway installed in release slots runs ``edge run --slots`` under a restart-always
loop with the supervisor before each start (``SlotService``), enrolled with the fleet,
polling simulated devices. Releases built from this source tree are published with
``fleet release publish`` and rolled out with ``fleet rollout create``; the agent
downloads them from the fleet with its own credentials, installs a new slot, switches,
restarts into it and confirms itself. The evidence: which slot runs, the agent's ``ota``
events, and the fleet's rollout record.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardware_sim.harness.agent import events
from hardware_sim.harness.release import (
    Release,
    admin_token,
    build,
    build_broken,
    create_rollout,
    elapsed,
    run_fleet_cli,
    slot_gateway,
)
from hardware_sim.harness.uplink import (
    FleetProcess,
    enroll,
    fleet_gateway,
    make_clock,
    running_broker,
    running_fleet,
)
from hardware_sim.harness.waiting import wait_for
from ota.crash_points import crash_test_env


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Release]]:
    """0.1.1 (installed first), 0.1.2 (a good update) and 0.1.3 (crashes at start)."""
    base = tmp_path_factory.mktemp("e2e-releases")
    built = {v: build(base, v) for v in ("0.1.1", "0.1.2")}
    built["0.1.3"] = build_broken(base, "0.1.3")
    yield built
    shutil.rmtree(base, ignore_errors=True)  # three bundles of ~100 MB


def rollout_in(fleet: FleetProcess, rollout_id: int, state: str) -> dict[str, Any] | None:
    """The rollout once it is in ``state`` (REST; quick, so the simulator keeps answering)."""
    answer: dict[str, Any] = fleet.rest("GET", f"/api/v1/rollouts/{rollout_id}")
    return answer if answer["state"] == state else None


def release_reports(data_dir: Path) -> list[tuple[int, str, str | None]]:
    return [
        (e["version"], e["state"], e.get("reason"))
        for e in events(data_dir, "ota")
        if e["subject"] == "release"
    ]


@pytest.mark.timeout(900)
async def test_a_release_rolls_out_to_a_real_gateway_and_a_crashing_one_halts_at_the_canary(
    tmp_path: Path, releases: dict[str, Release]
) -> None:
    clock = make_clock(60)
    with (
        running_broker(tmp_path / "fleet", tmp_path / "mosquitto") as broker,
        running_fleet(tmp_path / "fleet", broker) as fleet,
    ):
        token = admin_token(fleet.data_dir)
        cli = ("--fleet", fleet.url, "--token", token)
        idle = [enroll(tmp_path / f"idle{n}", fleet) for n in range(2)]
        for version in ("0.1.2", "0.1.3"):
            run_fleet_cli("release", "publish", str(releases[version].bundle), *cli)
        async with slot_gateway(tmp_path, fleet, releases["0.1.1"], clock) as (gateway_id, service):
            data = tmp_path / "gw"

            # A good release: downloaded, installed, switched, confirmed, committed.
            started = time.monotonic()
            created = await create_rollout(cli, "0.1.2", [gateway_id])
            done = await wait_for(
                lambda: rollout_in(fleet, created["id"], "completed"), 240, "0.1.2 complete"
            )
            print(f"0.1.2: published -> committed and seen by the fleet in {elapsed(started)} s")
            assert done["devices"][0]["state"] == "succeeded"
            assert service.starts == ["0.1.1", "0.1.2"]
            assert service.exits == [0]  # left on purpose to start the new slot
            states = [s for _v, s, _r in release_reports(data)]
            assert states[-1] == "applied"
            assert "downloading" in states
            # "applied" only after the new version confirmed itself, never before.
            assert states.index("applied") > states.index("installed")
            # The fleet sees the version that runs (the installed package's, not a constant).
            await wait_for(
                lambda: fleet_gateway(fleet.data_dir, gateway_id)["agent_version"] == "0.1.2",
                60,
                "the fleet to see 0.1.2 running",
            )

            # A release that crashes at start: rolled back within its starts; the fleet
            # sees the failure and the rollout halts at the canary.
            created = await create_rollout(
                cli, "0.1.3", [gateway_id, *idle], "1,100%", "--error-threshold", "0"
            )
            halted = await wait_for(
                lambda: rollout_in(fleet, created["id"], "halted"), 240, "0.1.3 halted"
            )
            by_gateway = {d["gateway_id"]: d for d in halted["devices"]}
            assert by_gateway[gateway_id]["state"] == "failed"
            assert "did not commit after" in by_gateway[gateway_id]["reason"]
            assert all(by_gateway[g]["state"] == "waiting" for g in idle)
            assert "0.1.3" in service.starts
            rolled = [r for _v, s, r in release_reports(data) if s == "rolled_back"]
            assert rolled
            await wait_for(lambda: len(events(data, "agent_start")) >= 3, 60, "0.1.2 again")
            assert service.starts[-1] == "0.1.2"  # back on the good version
            print(f"0.1.3: starts {service.starts}, exits {service.exits}; {rolled[-1]}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("step", ["download", "verify", "install", "switch", "start", "commit"])
async def test_a_real_agent_killed_at_each_step_of_an_update_ends_on_a_working_version(
    tmp_path: Path, releases: dict[str, Release], step: str
) -> None:
    """SIGKILL ``edge run`` frozen at ``step``; the restarted gateway finishes the update.

    download/verify/install/switch freeze the old version taking the release; start and
    commit freeze the new version confirming itself at its first start.
    """
    clock = make_clock(60)
    with (
        running_broker(tmp_path / "fleet", tmp_path / "mosquitto") as broker,
        running_fleet(tmp_path / "fleet", broker) as fleet,
    ):
        cli = ("--fleet", fleet.url, "--token", admin_token(fleet.data_dir))
        run_fleet_cli("release", "publish", str(releases["0.1.2"].bundle), *cli)
        root = tmp_path / "opt-hazardwatch"
        pause = crash_test_env(f"ota.{step}", root / f"paused-at-{step}")
        async with slot_gateway(tmp_path, fleet, releases["0.1.1"], clock, pause) as (
            gateway_id,
            service,
        ):
            created = await create_rollout(cli, "0.1.2", [gateway_id])
            marker = root / f"paused-at-{step}"
            await wait_for(marker.exists, 240, f"the agent frozen at {step}")
            service.env.clear()
            marker.unlink()
            killed = len(service.starts) - 1
            killed_on = service.starts[killed]
            service.kill()
            done = await wait_for(
                lambda: rollout_in(fleet, created["id"], "completed"), 240, "the update to finish"
            )
            assert done["devices"][0]["state"] == "succeeded"
            assert service.starts[-1] == "0.1.2"
            assert service.exits[killed] == -9  # SIGKILL, no clean-up of any kind
            applied = [r for r in release_reports(tmp_path / "gw") if r[1] == "applied"]
            assert len(applied) == 1  # reported once, although the agent died on the way
            print(f"killed at {step} on {killed_on}: starts {service.starts}")
