"""``edge enroll`` against a real fleet: the key stays on the gateway, a token works once.

The fleet runs as ``fleet serve`` beside a real mosquitto; the gateway side is the real
``edge`` CLI and, for the offline bundle, the real agent.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.clock import ScaledClock
from fleet.signing import SigningKey
from hardware_sim.harness.agent import sim_site
from hardware_sim.harness.uplink import (
    FLEET,
    SITE,
    SITE_ID,
    FleetProcess,
    edge,
    fleet_gateway,
    fleet_seqs,
    running_broker,
    running_fleet,
    storm_station,
)
from hardware_sim.harness.waiting import wait_for


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetProcess]:
    tmp = tmp_path_factory.mktemp("enroll")
    with (
        running_broker(tmp / "fleet", tmp / "mosquitto") as broker,
        running_fleet(tmp / "fleet", broker) as running,
    ):
        yield running


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_enroll_keeps_the_private_key_on_the_gateway_and_stores_the_trust_anchor(
    tmp_path: Path, fleet: FleetProcess
) -> None:
    result = edge("enroll", "-d", str(tmp_path), "--fleet", fleet.url, "--token", fleet.token())
    assert result.returncode == 0, result.stderr
    enrollment = json.loads((tmp_path / "enrollment.json").read_text())
    gateway_id = enrollment["gateway_id"]
    assert f"enrolled as {gateway_id} for site {SITE_ID}" in result.stdout
    key_file = tmp_path / "gateway_key.pem"
    assert mode(key_file) == 0o600
    assert mode(tmp_path / "enrollment.json") == 0o600  # it holds the MQTT password
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # The fleet registered the gateway's public key and never saw the private one.
    assert (
        fleet_gateway(fleet.data_dir, gateway_id)["public_key"] == base64.b64encode(public).decode()
    )
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert base64.b64encode(private) not in (fleet.data_dir / "fleet.sqlite").read_bytes()
    # The fleet's signing key is kept as the trust anchor; the broker and credentials too.
    assert (
        enrollment["fleet_signing_key"] == SigningKey.load_or_create(fleet.data_dir).public_key_b64
    )
    assert enrollment["broker_url"] == fleet.broker.url
    assert enrollment["mqtt"]["username"] == gateway_id
    assert enrollment["mqtt"]["password"] not in result.stdout + result.stderr


def test_a_token_works_once_and_a_used_or_expired_token_is_refused_clearly(
    tmp_path: Path, fleet: FleetProcess
) -> None:
    token = fleet.token()
    first = edge("enroll", "-d", str(tmp_path / "a"), "--fleet", fleet.url, "--token", token)
    assert first.returncode == 0, first.stderr
    again = edge("enroll", "-d", str(tmp_path / "a"), "--fleet", fleet.url, "--token", token)
    assert again.returncode == 2
    assert "already enrolled as gw-" in again.stderr
    reused = edge("enroll", "-d", str(tmp_path / "b"), "--fleet", fleet.url, "--token", token)
    assert reused.returncode == 2
    assert "enrollment refused" in reused.stderr
    assert "already used" in reused.stderr
    assert "works once" in reused.stderr
    expired = fleet.token(ttl_s=-1)
    late = edge("enroll", "-d", str(tmp_path / "c"), "--fleet", fleet.url, "--token", expired)
    assert late.returncode == 2
    assert "expired at" in late.stderr
    unknown = edge("enroll", "-d", str(tmp_path / "d"), "--fleet", fleet.url, "--token", "x" * 40)
    assert unknown.returncode == 2
    assert "unknown enrollment token" in unknown.stderr
    for refused in ("b", "c", "d"):
        assert not (tmp_path / refused / "enrollment.json").exists()


def test_enrolling_with_the_fleet_out_of_reach_changes_nothing(tmp_path: Path) -> None:
    result = edge(
        "enroll", "-d", str(tmp_path), "--fleet", "http://127.0.0.1:9", "--token", "t" * 40
    )
    assert result.returncode == 1
    assert "cannot reach the fleet at http://127.0.0.1:9" in result.stderr
    assert not (tmp_path / "enrollment.json").exists()


def bundle(fleet: FleetProcess, out: Path, ttl: str = "30d") -> None:
    subprocess.run(
        [
            *FLEET, "token", "bundle", "--site", SITE_ID, "--out", str(out), "--ttl", ttl,
            "--fleet-url", fleet.url, "--data-dir", str(fleet.data_dir),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip


async def test_offline_bundle_is_checked_at_once_and_completes_on_the_first_connection(
    tmp_path: Path, fleet: FleetProcess
) -> None:
    bundle(fleet, tmp_path / "expired.json", ttl="0")
    refused = edge("enroll", "-d", str(tmp_path / "gw"), "--bundle", str(tmp_path / "expired.json"))
    assert refused.returncode == 2
    assert "expired at" in refused.stderr

    bundle(fleet, tmp_path / "usb.json")
    stored = edge("enroll", "-d", str(tmp_path / "gw"), "--bundle", str(tmp_path / "usb.json"))
    assert stored.returncode == 0, stored.stderr
    assert "completes when the agent first reaches" in stored.stdout
    assert mode(tmp_path / "gw" / "gateway_key.pem") == 0o600
    assert mode(tmp_path / "gw" / "enrollment_pending.json") == 0o600
    status = edge("uplink", "status", "-d", str(tmp_path / "gw"), "--json")
    assert json.loads(status.stdout)["enrollment"]["state"] == "pending"

    origin = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    clock = ScaledClock(600, origin=origin, anchor=round(time.time(), 3))
    async with sim_site(tmp_path, storm_station(clock, None), SITE, clock) as site:
        agent = await site.start_agent("gw")
        enrollment_file = agent.data_dir / "enrollment.json"
        await wait_for(enrollment_file.exists, 30, "the agent to complete the enrollment")
        gateway_id = json.loads(enrollment_file.read_text())["gateway_id"]
        await wait_for(
            lambda: len(fleet_seqs(fleet.data_dir, gateway_id)) > 0, 30, "its first readings"
        )
        assert await agent.stop() == 0
    assert not (agent.data_dir / "enrollment_pending.json").exists()
    assert mode(enrollment_file) == 0o600
    status = edge("uplink", "status", "-d", str(agent.data_dir))
    assert f"gateway {gateway_id} (site {SITE_ID})" in status.stdout
    assert "agent not running" in status.stdout
