"""Broker access: generated mosquitto files, TLS with a pinned CA, and the embedded broker."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest

from fleet.broker_files import FleetAccount, write_access_files
from fleet.credentials import mosquitto_hash, mosquitto_verify
from fleet.embedded_broker import topic_allowed
from fleet.main import create_app
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import Role
from fleet.settings import FleetSettings
from fleet.simgateway import SimulatedGateway, enrollment_request
from fleet.sqlite_repository import SQLiteRepository
from protocol import DataBatch, EnrollmentResponse, Stream, Topic, gateway_topic
from tests.mosquitto import (
    auth,
    eventually,
    fleet_with_mosquitto,
    free_port,
    make_tls_files,
    running_mosquitto,
)

T0 = 1_750_000_000.0


def one_batch(gateway_id: str, last: int = 3) -> str:
    rows = [(s, T0 + s, "rain_total", 0.2, 0) for s in range(1, last + 1)]
    return DataBatch(gateway_id=gateway_id, first_seq=1, last_seq=last, rows=rows).model_dump_json()


def test_our_password_hashes_match_mosquitto_passwd(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(passwd), "alice", "s3cret"], check=True)
    theirs = passwd.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$")
    assert mosquitto_verify("s3cret", theirs)
    assert not mosquitto_verify("wrong", theirs)
    assert mosquitto_verify("s3cret", mosquitto_hash("s3cret"))


async def test_anonymous_and_wrong_password_clients_are_refused(tmp_path: Path) -> None:
    account = FleetAccount.load_or_create(tmp_path / "fleet")
    write_access_files(tmp_path / "broker", account, [])
    with running_mosquitto(tmp_path / "broker", tmp_path / "mosquitto") as broker:
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
            async with BrokerConnection(broker.url).client():
                pass
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user"):
            async with BrokerConnection(broker.url, account.username, "wrong").client():
                pass
        async with BrokerConnection(broker.url, account.username, account.password).client():
            pass


async def test_uplink_works_over_mqtts_with_the_ca_handed_out_at_enrollment(
    tmp_path: Path,
) -> None:
    tls = make_tls_files(tmp_path / "tls", "HazardWatch test CA")
    async with fleet_with_mosquitto(tmp_path, tls=tls) as fleet:
        enrolled = await fleet.enroll()
        assert enrolled.broker_url.startswith("mqtts://")
        assert enrolled.broker_ca_pem == tls.ca_file.read_text()
        async with fleet.gateway(enrolled) as gateway:
            await gateway.publish(Topic.DATA, one_batch(enrolled.gateway_id))
            await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 3), 10)


async def test_a_broker_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls", "HazardWatch test CA")
    impostor_ca = make_tls_files(tmp_path / "other", "Somebody else's CA").ca_file
    account = FleetAccount.load_or_create(tmp_path / "fleet")
    write_access_files(tmp_path / "broker", account, [])
    with running_mosquitto(tmp_path / "broker", tmp_path / "mosquitto", tls) as broker:
        pinned = BrokerConnection(broker.tls_url, account.username, account.password, tls.ca_file)
        async with pinned.client():
            pass
        wrong = BrokerConnection(broker.tls_url, account.username, account.password, impostor_ca)
        with pytest.raises(aiomqtt.MqttError, match="CERTIFICATE_VERIFY_FAILED"):
            async with wrong.client():
                pass


async def test_no_gateway_can_take_over_another_gateways_session(tmp_path: Path) -> None:
    async with fleet_with_mosquitto(tmp_path) as fleet:
        a, b = await fleet.enroll(), await fleet.enroll()
        own = BrokerConnection(a.broker_url, a.mqtt.username, a.mqtt.password)
        async with fleet.gateway(b) as victim:
            # On the gateway listener A's client id is its user name, whatever it asks for.
            async with own.client(b.gateway_id):
                await victim.publish(Topic.DATA, one_batch(b.gateway_id))
                await asyncio.wait_for(victim.wait_acked(Stream.READINGS, 3), 10)
            assert "closing old connection" not in fleet.mosquitto.log()
            # The fleet's listener knows no gateway account at all.
            borrowed = BrokerConnection(fleet.mosquitto.fleet_url, a.mqtt.username, a.mqtt.password)
            with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user"):
                async with borrowed.client(b.gateway_id):
                    pass
            # There the fleet's connections keep their own ids: a second one leaves ingest be.
            account = FleetAccount.load_or_create(fleet.settings.data_dir)
            extra = BrokerConnection(fleet.mosquitto.fleet_url, account.username, account.password)
            async with extra.client("fleet-extra"):
                await victim.publish(Topic.DATA, one_batch(b.gateway_id, last=5))
                await asyncio.wait_for(victim.wait_acked(Stream.READINGS, 5), 10)
        assert "closing old connection" not in fleet.mosquitto.log()


async def test_a_gateway_that_lost_its_enrollment_answer_enrolls_again_with_its_key(
    tmp_path: Path,
) -> None:
    async with fleet_with_mosquitto(tmp_path) as fleet:
        created = await fleet.http.post(
            "/api/v1/enrollment-tokens", json={"site_id": "ridge"}, headers=auth(fleet.admin_token)
        )
        token = created.json()["token"]
        request = enrollment_request(token).model_dump()
        answers = [await fleet.http.post("/api/v1/enroll", json=request) for _ in range(2)]
        assert [answer.status_code for answer in answers] == [201, 201]
        lost, kept = (EnrollmentResponse.model_validate(answer.json()) for answer in answers)
        assert kept.gateway_id == lost.gateway_id
        assert kept.mqtt.password != lost.mqtt.password
        assert [g.id for g in fleet.repository.list_gateways()] == [kept.gateway_id]

        stale = BrokerConnection(lost.broker_url, lost.mqtt.username, lost.mqtt.password)

        async def stale_password_refused() -> bool:
            try:
                async with stale.client(lost.gateway_id):
                    return False
            except aiomqtt.MqttError:
                return True

        await eventually(stale_password_refused, 10, "mosquitto to drop the lost password")
        async with fleet.gateway(kept) as gateway:
            await gateway.publish(Topic.DATA, one_batch(kept.gateway_id))
            await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 3), 10)
        # Another device holding the same token is still refused.
        other = await fleet.http.post("/api/v1/enroll", json=enrollment_request(token).model_dump())
        assert other.status_code == 410
        assert "already used" in other.json()["detail"]


def test_embedded_acl_confines_gateways_to_their_own_prefix() -> None:
    fleet = "fleet_ingest"
    assert topic_allowed(
        "gw-aaaaaaaaaa", "hw/v1/gw-aaaaaaaaaa/data", publish=True, fleet_username=fleet
    )
    assert not topic_allowed(
        "gw-aaaaaaaaaa", "hw/v1/gw-bbbbbbbbbb/data", publish=True, fleet_username=fleet
    )
    assert not topic_allowed(
        "gw-aaaaaaaaaa", "hw/v1/gw-aaaaaaaaaa/ack", publish=True, fleet_username=fleet
    )
    assert topic_allowed(
        "gw-aaaaaaaaaa", "hw/v1/gw-aaaaaaaaaa/cmd", publish=False, fleet_username=fleet
    )
    assert not topic_allowed("gw-aaaaaaaaaa", "hw/v1/+/cmd", publish=False, fleet_username=fleet)
    assert not topic_allowed(
        "gw-aaaaaaaaaa", "hw/v1/gw-bbbbbbbbbb/cmd", publish=False, fleet_username=fleet
    )
    assert topic_allowed(fleet, "hw/v1/+/data", publish=False, fleet_username=fleet)


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


async def test_embedded_broker_serves_the_fleet_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    settings = FleetSettings(data_dir=tmp_path / "fleet", embedded_port=port)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.ingest.ready.wait(), 10)
        assert listening_addresses(port) == {"127.0.0.1"}
        repository: SQLiteRepository = app.state.repository
        _token, admin = repository.create_api_token("admin", Role.ADMIN, time.time())

        import httpx  # noqa: PLC0415 - only this test needs a client without the helper

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as http:
            enrolled = []
            for _ in range(2):
                created = await http.post(
                    "/api/v1/enrollment-tokens", json={"site_id": "hill"}, headers=auth(admin)
                )
                request = enrollment_request(created.json()["token"])
                answer = await http.post("/api/v1/enroll", json=request.model_dump())
                enrolled.append(EnrollmentResponse.model_validate(answer.json()))
        a, b = enrolled
        assert a.broker_url == f"mqtt://127.0.0.1:{port}"

        with pytest.raises(aiomqtt.MqttError):
            async with BrokerConnection(a.broker_url).client():
                pass
        connection = BrokerConnection(a.broker_url, a.mqtt.username, a.mqtt.password)
        # A gateway may connect under its own client id only (it would knock B off).
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user"):
            async with connection.client(b.gateway_id):
                pass
        async with SimulatedGateway(a.gateway_id, connection) as gateway:
            # A's forgery on B's topic is dropped by the broker; A's own batch is acked.
            await gateway.client.publish(
                gateway_topic(b.gateway_id, Topic.DATA), one_batch(b.gateway_id), qos=1
            )
            await gateway.publish(Topic.DATA, one_batch(a.gateway_id))
            await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 3), 10)
        assert repository.get_gateway(b.gateway_id).streams["readings"] == 0
        assert app.state.ingest.stats.messages == 1
