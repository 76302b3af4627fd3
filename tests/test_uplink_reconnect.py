"""The uplink's return after a broker outage, against a real mosquitto stopped and restarted."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from edge_agent.store import LocalStore
from edge_agent.uplink import Uplink
from fleet.broker_files import FleetAccount, write_access_files
from fleet.credentials import mosquitto_hash
from hardware_sim.harness.enrolled import write_enrollment
from hardware_sim.harness.uplink import BrokerProcess
from hardware_sim.harness.waiting import wait_for
from site_schema.site_config import UplinkSettings

GATEWAY = "gw-0123456789"
PASSWORD = "gateway-secret"


def enrolled(data_dir: Path, broker_url: str) -> None:
    """Write the enrollment a gateway keeps, as ``edge enroll`` would."""
    write_enrollment(
        data_dir,
        GATEWAY,
        "A" * 43,
        broker_url=broker_url,
        site_id="test-village",
        password=PASSWORD,
    )


async def test_the_uplink_is_back_within_5_s_of_the_broker_even_with_a_long_backoff(
    tmp_path: Path,
) -> None:
    fleet_dir = tmp_path / "fleet"
    broker = BrokerProcess(fleet_dir, tmp_path / "mosquitto")
    account = FleetAccount.load_or_create(fleet_dir)
    write_access_files(fleet_dir / "broker", account, [(GATEWAY, mosquitto_hash(PASSWORD))])
    broker.start()
    data_dir = tmp_path / "gateway"
    enrolled(data_dir, broker.url)
    # The first wait after a lost session alone is 10-20 s: only the probe can beat 5 s.
    settings = UplinkSettings(reconnect_min_s=20.0, reconnect_max_s=120.0)
    try:
        async with LocalStore(data_dir) as store:
            uplink = Uplink(data_dir, store, settings, "0.0.0-test", rng=random.Random(7))
            task = asyncio.create_task(uplink.run())
            try:
                await wait_for(lambda: uplink.state == "connected", 10, "the first session")
                broker.stop()
                await wait_for(lambda: uplink.state == "waiting", 10, "the session to drop")
                broker.start()
                back_at = time.monotonic()
                await wait_for(lambda: uplink.counters["connects"] == 2, 30, "the return")
                returned_after = time.monotonic() - back_at
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        broker.stop()
    assert returned_after < 5.0, returned_after
    assert uplink.status()["reconnect"]["returns"] == 1
