"""Store-and-forward exactly once: a broker outage, a fleet crash, an agent crash.

Each test runs mosquitto, ``fleet serve`` and ``edge run`` as real processes, breaks one
of them mid-flow and, after recovery, compares the (gateway, seq) sets of the fleet's and
the gateway's SQLite files: equal, no gap, no duplicate. The final comparison follows
``edge uplink drain`` on the stopped gateway, so the sets are complete on both sides.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from hardware_sim.harness.agent import events, sim_site
from hardware_sim.harness.uplink import (
    ORIGIN,
    SITE,
    BrokerObserver,
    assert_exactly_once,
    drain,
    enroll,
    fleet_caught_up,
    fleet_command_status,
    fleet_gateway,
    fleet_seqs,
    gateway_marks,
    make_clock,
    running_broker,
    running_fleet,
    storm_station,
)
from hardware_sim.harness.waiting import wait_for
from hardware_sim.scenarios import DesignStorm
from ota.crash_points import crash_test_env


def acked(data_dir: Path, stream: str = "readings") -> int:
    return gateway_marks(data_dir)[stream][1]


async def test_broker_outage_in_a_storm_loses_and_duplicates_nothing_and_alarms_go_first(
    tmp_path: Path,
) -> None:
    with (
        running_broker(tmp_path / "fleet", tmp_path / "mosquitto") as broker,
        running_fleet(tmp_path / "fleet", broker) as fleet,
    ):
        gateway_id = enroll(tmp_path / "gw", fleet)
        # The storm starts 1 s (real) after the clock: set it going once the fleet is up,
        # however long a loaded machine takes to start the fleet.
        clock = make_clock(600)
        storm = DesignStorm(ORIGIN + 600, 7200, 60.0, step_s=300, seed=3)
        devices = storm_station(clock, storm)
        relays = devices[2]
        observer = BrokerObserver(fleet.data_dir, gateway_id)
        async with (
            observer.running(broker.port),
            sim_site(tmp_path, devices, SITE, clock) as site,
        ):
            agent = await site.start_agent("gw")
            await wait_for(lambda: acked(agent.data_dir) > 0, 30, "the first acknowledged batch")

            broker.stop()
            outage_start = clock.now()
            readings_before, _ = gateway_marks(agent.data_dir)["readings"]
            events_before, _ = gateway_marks(agent.data_dir)["events"]
            # The storm goes on: alarms rise to red and the siren sounds with no uplink.
            await wait_for(
                lambda: any(
                    e["seq"] > events_before and e["to"] == "red"
                    for e in events(agent.data_dir, "alarm")
                ),
                60,
                "a red alarm during the outage",
            )
            await wait_for(lambda: relays.coil(0), 10, "the siren during the outage")
            await wait_for(lambda: clock.now() > outage_start + 2 * 3600, 30, "two hours out")
            outage_s = clock.now() - outage_start
            readings_stored, readings_acked = gateway_marks(agent.data_dir)["readings"]
            outage_alarms = [
                e["seq"] for e in events(agent.data_dir, "alarm") if e["seq"] > events_before
            ]
            seen_before_restart = len(observer.seen)

            broker.start()
            await wait_for(
                lambda: fleet_caught_up(fleet.data_dir, gateway_id, agent.data_dir),
                60,
                "the fleet to catch up after the outage",
            )
            # The duty officer acknowledges the latched red alarm at the console; the
            # command reaches the gateway over its cmd topic and the result comes back.
            active = fleet.rest(
                "GET", "/api/v1/alarms", params={"active": "true", "gateway_id": gateway_id}
            )
            latched = next(a for a in active if a["rule"] == "rain_1h")
            fleet.rest("POST", f"/api/v1/alarms/{latched['id']}/acknowledge", json={})
            await wait_for(
                lambda: [e for e in events(agent.data_dir, "ack") if e["by"] == "test-operator"],
                20,
                "the remote acknowledgement at the gateway",
            )
            await wait_for(
                lambda: fleet_command_status(fleet.data_dir) == ["ok"], 20, "the command result"
            )
            assert await agent.stop() == 0
        drain(agent.data_dir)
        figures = assert_exactly_once(fleet.data_dir, gateway_id, agent.data_dir)
        duplicates = fleet.ingest()["rows_duplicate"]

    # Order: every alarm event of the outage reached the broker before any reading of it.
    after = observer.seen[seen_before_restart:]
    events_done = next(
        i for i, o in enumerate(after) if o.kind == "events" and o.last_seq >= max(outage_alarms)
    )
    first_outage_reading = next(
        i for i, o in enumerate(after) if o.kind == "data" and o.last_seq > readings_before
    )
    assert events_done < first_outage_reading
    backlog = readings_stored - readings_acked
    print(
        f"outage {outage_s / 3600:.1f} simulated h: backlog {backlog} readings and "
        f"{len(outage_alarms)} alarm events; after recovery the fleet holds {figures} rows, "
        f"{duplicates} resent rows ignored; alarm events arrived at position {events_done}, "
        f"the first outage reading at {first_outage_reading}"
    )
    assert backlog > 500


async def test_fleet_sigkilled_inside_a_batch_commit_loses_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    clock = make_clock(600)
    devices = storm_station(clock, None)
    marker = tmp_path / "holding"
    with (
        running_broker(tmp_path / "fleet", tmp_path / "mosquitto") as broker,
        running_fleet(tmp_path / "fleet", broker) as fleet,
    ):
        gateway_id = enroll(tmp_path / "gw", fleet)
        fleet.stop()
        fleet.start(**crash_test_env("fleet.ingest.commit", marker))
        async with sim_site(tmp_path, devices, SITE, clock) as site:
            agent = await site.start_agent("gw")
            await wait_for(marker.exists, 30, "the fleet inside its first commit")
            fleet.kill()  # rows written, transaction not committed
            assert fleet_seqs(fleet.data_dir, gateway_id) == []
            assert acked(agent.data_dir) == 0
            fleet.start()
            await wait_for(
                lambda: fleet_caught_up(fleet.data_dir, gateway_id, agent.data_dir),
                60,
                "the fleet to catch up after its crash",
            )
            assert await agent.stop() == 0
        drain(agent.data_dir)
        figures = assert_exactly_once(fleet.data_dir, gateway_id, agent.data_dir)
    print(f"fleet SIGKILLed inside a commit: afterwards it holds {figures} rows, exactly once")


@pytest.mark.parametrize("staged", [False, True], ids=["on_card", "staged_in_ram"])
async def test_agent_sigkilled_mid_upload_resends_and_the_fleet_keeps_each_row_once(
    tmp_path: Path, staged: bool
) -> None:
    # Staged: each round is committed in the stage (as under systemd, --stage-dir) and the
    # killed agent's staged readings are moved into the store by the restarted one.
    env = {"HAZARDWATCH_STAGE_DIR": str(tmp_path / "ram")} if staged else {}
    clock = make_clock(600)
    devices = storm_station(clock, None)
    with (
        running_broker(tmp_path / "fleet", tmp_path / "mosquitto") as broker,
        running_fleet(tmp_path / "fleet", broker) as fleet,
    ):
        gateway_id = enroll(tmp_path / "gw", fleet)
        observer = BrokerObserver(fleet.data_dir, gateway_id)
        async with (
            observer.running(broker.port),
            sim_site(tmp_path, devices, SITE, clock) as site,
        ):
            agent = await site.start_agent("gw", env=env)
            await wait_for(lambda: acked(agent.data_dir) > 0, 30, "the first acknowledged batch")
            await wait_for(
                lambda: fleet_gateway(fleet.data_dir, gateway_id)["state"] == "online",
                10,
                "the retained online state",
            )
            # Freeze the fleet: batches reach the broker but nothing is acknowledged, so the
            # agent is killed with a full window of batches in flight.
            fleet.signal(signal.SIGSTOP)
            frozen_at = len(observer.seen)
            await wait_for(
                lambda: observer.kinds_since(frozen_at, "data") >= 4, 30, "a full window in flight"
            )
            agent.kill()
            await agent.process.wait()
            stored, watermark = gateway_marks(agent.data_dir)["readings"]
            in_flight = max(o.last_seq for o in observer.seen if o.kind == "data")
            assert watermark < in_flight <= stored
            fleet.signal(signal.SIGCONT)
            # The Last Will tells the fleet the gateway is gone; the fleet stores the
            # batches the dead agent never saw acknowledged.
            await wait_for(
                lambda: fleet_gateway(fleet.data_dir, gateway_id)["state"] == "offline",
                20,
                "the Last Will",
            )
            await wait_for(
                lambda: (
                    fleet_gateway(fleet.data_dir, gateway_id)["marks"].get("readings", 0)
                    >= in_flight
                ),
                20,
                "the fleet to commit the batches in flight",
            )
            restarted = await site.start_agent("gw", env=env)
            # Each poll round is uploaded as soon as it is committed, so the fleet may hold
            # every stored reading already: wait for new ones from the restarted agent too.
            await wait_for(
                lambda: (
                    gateway_marks(restarted.data_dir)["readings"][0] > stored
                    and fleet_caught_up(fleet.data_dir, gateway_id, restarted.data_dir)
                ),
                60,
                "the fleet to catch up after the agent's restart",
            )
            health = fleet_gateway(fleet.data_dir, gateway_id)["health"]
            assert await restarted.stop() == 0
        drain(restarted.data_dir)
        figures = assert_exactly_once(fleet.data_dir, gateway_id, restarted.data_dir)
        duplicates = fleet.ingest()["rows_duplicate"]
    assert duplicates >= in_flight - watermark  # resent after the crash, stored once
    if staged:  # the rounds went through the stage
        assert [p.name[:9] for p in (tmp_path / "ram").glob("*.sqlite")] == ["readings-"]
    # The retained health message the fleet keeps: uptime, versions, host and store figures.
    assert isinstance(health, str)
    report = json.loads(health)
    assert report["uptime_s"] > 0
    assert report["agent_version"]
    assert report["config_version"].startswith("sha256:")
    assert report["load_1m"] is not None
    assert 0 < report["mem_available"] <= report["mem_total"]
    assert 0 < report["disk_free"] <= report["disk_total"]
    assert report["store_bytes"] > 0
    assert report["backlog_readings"] >= 0
    assert report["buses"]["field"]["last_success"] > ORIGIN  # last good poll, simulated time
    assert report["buses"]["field"]["transactions"] > 0
    assert report["alarm_level"] == 0
    print(
        f"agent SIGKILLed with seqs {watermark + 1}..{in_flight} in flight: the fleet "
        f"ignored {duplicates} resent rows and holds {figures} rows, exactly once"
    )
