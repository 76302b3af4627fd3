"""The uplink over TLS: mqtts with the CA from enrollment; a broker from another CA is refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from drivers.clock import ScaledClock
from hardware_sim.harness.agent import sim_site
from hardware_sim.harness.mosquitto import make_tls_files
from hardware_sim.harness.uplink import (
    SITE,
    edge,
    enroll,
    fleet_seqs,
    gateway_marks,
    running_broker,
    running_fleet,
    storm_station,
)
from hardware_sim.harness.waiting import wait_for

ORIGIN = datetime(2026, 7, 1, tzinfo=UTC).timestamp()


async def test_uplink_verifies_the_broker_over_tls_and_refuses_a_certificate_of_another_ca(
    tmp_path: Path,
) -> None:
    clock = ScaledClock(600, origin=ORIGIN, anchor=round(time.time(), 3))
    county_ca = make_tls_files(tmp_path / "tls", "HazardWatch county CA")
    other_ca = make_tls_files(tmp_path / "tls-other", "Somebody else's CA")
    fleet_dir = tmp_path / "fleet"
    with (
        running_broker(fleet_dir, tmp_path / "mosquitto", tls=county_ca) as broker,
        running_fleet(
            fleet_dir,
            broker,
            public_broker_url=broker.tls_url,
            public_broker_ca=county_ca.ca_file,
        ) as fleet,
    ):
        trusting = enroll(tmp_path / "trusting", fleet)
        enrollment = json.loads((tmp_path / "trusting" / "enrollment.json").read_text())
        assert enrollment["broker_url"].startswith("mqtts://localhost:")
        # A gateway handed another CA: to it the county's broker is an impostor.
        fleet.stop()
        fleet.public_broker_ca = other_ca.ca_file
        fleet.start()
        misled = enroll(tmp_path / "misled", fleet)
        async with sim_site(tmp_path, storm_station(clock, None), SITE, clock) as site:
            good = await site.start_agent("trusting")
            bad = await site.start_agent("misled")
            await wait_for(
                lambda: gateway_marks(good.data_dir)["readings"][1] > 0,
                30,
                "readings acknowledged over TLS",
            )
            await wait_for(
                lambda: "CERTIFICATE_VERIFY_FAILED" in bad.log.read_text(),
                30,
                "the misled gateway to refuse the broker's certificate",
            )
            stored_then = gateway_marks(bad.data_dir)["readings"][0]
            await wait_for(
                lambda: gateway_marks(bad.data_dir)["readings"][0] > stored_then + 100,
                30,
                "the misled gateway to keep polling and storing",
            )
            status = edge("uplink", "status", "-d", str(bad.data_dir), "--json")
    assert status.returncode == 0, status.stderr
    live = json.loads(status.stdout)["live"]
    assert live["state"] in ("connecting", "waiting")
    assert "CERTIFICATE_VERIFY_FAILED" in live["last_error"]
    assert len(fleet_seqs(fleet_dir, trusting)) > 0
    assert fleet_seqs(fleet_dir, misled) == []
    assert f"on port {broker.tls_port}" in broker.log()
    assert f"as {trusting}" in broker.log()
    assert f"as {misled}" not in broker.log()
