"""Broker access: generated mosquitto files, TLS with a pinned CA, and the embedded broker.

The access-control checks run against both brokers (``kind``): what one gateway may read
or write of another's, anonymous clients, wrong passwords, client-id takeovers, forged
wills and retained messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
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
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import (
    auth,
    fleet_with_mosquitto,
    make_tls_files,
    running_mosquitto,
)
from hardware_sim.harness.ports import free_port
from hardware_sim.harness.waiting import wait_for
from hardware_sim.simgateway import SimulatedGateway, enrollment_request
from protocol import (
    GATEWAY_SUBSCRIBES,
    TOPIC_ROOT,
    DataBatch,
    EnrollmentResponse,
    Stream,
    Topic,
    gateway_topic,
)
from tests.either_broker import BROKERS, BrokerKind, running_broker

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

        await wait_for(stale_password_refused, 10, "mosquitto to drop the lost password")
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


# --- access control, against both brokers ------------------------------------------------------

Received = list[tuple[str, bytes]]


@contextlib.asynccontextmanager
async def inbox(client: aiomqtt.Client) -> AsyncIterator[Received]:
    """Collect every message ``client`` receives, as (topic, payload), while in the block."""
    got: Received = []

    async def read() -> None:
        async for message in client.messages:
            payload = message.payload
            got.append((str(message.topic), payload if isinstance(payload, bytes) else b""))

    task = asyncio.create_task(read())
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _string(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _remaining_length(length: int) -> bytes:
    out = b""
    while True:
        byte, length = length & 0x7F, length >> 7
        out += bytes([byte | (0x80 if length else 0)])
        if not length:
            return out


def connect_packet(
    client_id: str,
    username: str,
    password: str,
    *,
    level: int = 4,
    will: tuple[str, bytes] | None = None,
    properties: bytes = b"",
) -> bytes:
    """The raw bytes of a CONNECT (3.1.1 or, with ``level=5``, MQTT 5 with ``properties``)."""
    flags = 0x80 | 0x40 | 0x02  # user name, password, clean session
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
    variable = _string(b"MQTT") + bytes([level, flags]) + (60).to_bytes(2, "big")
    if level == 5:
        variable += bytes([len(properties)]) + properties
    payload = _string(client_id.encode())
    if will is not None:
        payload += (b"\x00" if level == 5 else b"") + _string(will[0].encode()) + _string(will[1])
    payload += _string(username.encode()) + _string(password.encode())
    body = variable + payload
    return b"\x10" + _remaining_length(len(body)) + body


async def raw_exchange(port: int, packet: bytes) -> tuple[bytes, asyncio.StreamWriter]:
    """Send ``packet`` on a new TCP connection; the first 4 bytes answered (b"" if closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(packet)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.readexactly(4), 10)
    except asyncio.IncompleteReadError as exc:
        answer = exc.partial
    return answer, writer


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_fresh_gateway_receives_no_retained_message_of_another_gateway(
    kind: BrokerKind, tmp_path: Path
) -> None:
    async with running_broker(kind, tmp_path) as broker:
        a, b = broker.gateways["a"].gateway_id, broker.gateways["b"].gateway_id
        async with broker.fleet_connection().client("fleet-test") as fleet, inbox(fleet) as seen:
            # A fleet subscriber on every topic: amqtt offered its filter to every client.
            await fleet.subscribe(f"{TOPIC_ROOT}/#", qos=1)
            await fleet.publish(gateway_topic(b, Topic.CONFIG), b"b's config", qos=1, retain=True)
            await fleet.publish(gateway_topic(a, Topic.CONFIG), b"a's config", qos=1, retain=True)
            async with broker.gateway("b").client(b) as gateway_b:
                await gateway_b.subscribe(gateway_topic(b, Topic.CMD), qos=1)
                for topic in (Topic.HEALTH, Topic.STATE):
                    await gateway_b.publish(gateway_topic(b, topic), b"b's", qos=1, retain=True)
                await wait_for(lambda: len(seen) >= 4, 10, "the fleet to see B's messages")
            async with broker.gateway("a").client(a) as gateway_a, inbox(gateway_a) as got:
                # Anything leaked on connect arrives before the answers to these subscriptions.
                for topic in GATEWAY_SUBSCRIBES:
                    await gateway_a.subscribe(gateway_topic(a, topic), qos=1)
                await wait_for(
                    lambda: (gateway_topic(a, Topic.CONFIG), b"a's config") in got,
                    10,
                    "A's own retained config",
                )
    assert got == [(gateway_topic(a, Topic.CONFIG), b"a's config")]


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_gateway_can_neither_read_nor_write_another_gateways_topics(
    kind: BrokerKind, tmp_path: Path
) -> None:
    async with running_broker(kind, tmp_path) as broker:
        a, b = broker.gateways["a"].gateway_id, broker.gateways["b"].gateway_id
        async with (
            broker.fleet_connection().client("fleet-test") as fleet,
            inbox(fleet) as fleet_got,
            broker.gateway("b").client(b) as gateway_b,
            inbox(gateway_b) as b_got,
            broker.gateway("a").client(a) as gateway_a,
            inbox(gateway_a) as a_got,
        ):
            await fleet.subscribe(f"{TOPIC_ROOT}/+/data", qos=1)
            await gateway_b.subscribe(gateway_topic(b, Topic.CMD), qos=1)
            for topic in (Topic.CMD, Topic.ACK, Topic.CONFIG):
                # The broker may grant or refuse these; either way nothing of B's may arrive.
                with contextlib.suppress(aiomqtt.MqttError):
                    await gateway_a.subscribe(gateway_topic(b, topic), qos=1)
            await gateway_a.subscribe(f"{TOPIC_ROOT}/+/cmd", qos=1)
            await gateway_a.subscribe(gateway_topic(a, Topic.CMD), qos=1)
            await gateway_a.publish(gateway_topic(b, Topic.DATA), b"forged by a", qos=1)
            await gateway_a.publish(gateway_topic(a, Topic.DATA), b"a's own", qos=1)
            await fleet.publish(gateway_topic(b, Topic.CMD), b"for b", qos=1)
            await fleet.publish(gateway_topic(a, Topic.CMD), b"for a", qos=1)
            await wait_for(lambda: all([fleet_got, b_got, a_got]), 10, "every sentinel")
    assert fleet_got == [(gateway_topic(a, Topic.DATA), b"a's own")]
    assert b_got == [(gateway_topic(b, Topic.CMD), b"for b")]
    assert a_got == [(gateway_topic(a, Topic.CMD), b"for a")]


@pytest.mark.parametrize("kind", BROKERS)
async def test_anonymous_clients_and_wrong_passwords_are_refused_and_logged(
    kind: BrokerKind, tmp_path: Path
) -> None:
    async with running_broker(kind, tmp_path) as broker:
        a = broker.gateways["a"].gateway_id
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user|Connect"):
            async with BrokerConnection(broker.url).client(a):
                pass
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user|Connect"):
            async with broker.gateway("a", "not-the-password").client(a):
                pass
        async with broker.gateway("a").client(a):
            pass
        if kind == "embedded":
            await wait_for(lambda: broker.log().count("refused") == 2, 10, "two refusals")
            assert f"refused {a!r} from 127.0.0.1" in broker.log()
            assert "wrong password" in broker.log()
        else:  # mosquitto logs each refusal, but names the client only when it can
            await wait_for(lambda: broker.log().count("not authorised") == 2, 10, "refusals")
        assert "not-the-password" not in broker.log()


@pytest.mark.parametrize("kind", BROKERS)
async def test_no_gateway_can_knock_another_off_with_its_client_id(
    kind: BrokerKind, tmp_path: Path
) -> None:
    async with running_broker(kind, tmp_path) as broker:
        a, b = broker.gateways["a"].gateway_id, broker.gateways["b"].gateway_id
        async with (
            broker.fleet_connection().client("fleet-test") as fleet,
            broker.gateway("b").client(b) as gateway_b,
            inbox(gateway_b) as b_got,
        ):
            await gateway_b.subscribe(gateway_topic(b, Topic.CMD), qos=1)
            try:
                # mosquitto gives A its own id whatever it asks for; the embedded broker refuses.
                async with broker.gateway("a").client(b) as gateway_a:
                    await gateway_a.publish(gateway_topic(a, Topic.STATE), b"a", qos=1)
                assert kind == "mosquitto"
            except aiomqtt.MqttError:
                assert kind == "embedded"
            await fleet.publish(gateway_topic(b, Topic.CMD), b"still there?", qos=1)
            await wait_for(lambda: len(b_got) == 1, 10, "B to get the fleet's command")
            await gateway_b.publish(gateway_topic(b, Topic.STATE), b"yes", qos=1)
        if kind == "mosquitto":
            assert "closing old connection" not in broker.log()


@pytest.mark.parametrize("kind", BROKERS)
async def test_a_gateways_last_will_cannot_speak_for_another_gateway(
    kind: BrokerKind, tmp_path: Path
) -> None:
    async with running_broker(kind, tmp_path) as broker:
        a, b = broker.gateways["a"].gateway_id, broker.gateways["b"].gateway_id
        async with broker.fleet_connection().client("fleet-test") as fleet, inbox(fleet) as got:
            await fleet.subscribe(f"{TOPIC_ROOT}/+/state", qos=1)
            packet = connect_packet(
                a,
                a,
                broker.gateways["a"].password,
                will=(gateway_topic(b, Topic.STATE), b"forged offline"),
            )
            answer, writer = await raw_exchange(broker.port, packet)
            writer.transport.abort()  # no DISCONNECT: a broker that accepted the will sends it
            assert answer[:2] in (b"\x20\x02", b"")
            async with broker.gateway("a").client(a) as gateway_a:
                await gateway_a.publish(gateway_topic(a, Topic.STATE), b"a's own", qos=1)
            await wait_for(lambda: (gateway_topic(a, Topic.STATE), b"a's own") in got, 10, "A")
        async with broker.fleet_connection().client("fleet-late") as late, inbox(late) as kept:
            await late.subscribe(f"{TOPIC_ROOT}/+/state", qos=1)
            await late.publish(f"{TOPIC_ROOT}/sentinel/state", b"end", qos=1)
            await wait_for(lambda: (f"{TOPIC_ROOT}/sentinel/state", b"end") in kept, 10, "end")
    assert all(topic != gateway_topic(b, Topic.STATE) for topic, _ in got + kept), got + kept


async def test_the_embedded_broker_refuses_mqtt5_cleanly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with running_broker("embedded", tmp_path) as broker:
        a = broker.gateways["a"]
        bare = connect_packet(a.gateway_id, a.gateway_id, a.password, level=5)
        # What an MQTT 5 client sends: properties (session expiry 3600 s) before the payload.
        full = connect_packet(
            a.gateway_id, a.gateway_id, a.password, level=5, properties=b"\x11\x00\x00\x0e\x10"
        )
        for packet in (bare, full):
            answer, writer = await raw_exchange(broker.port, packet)
            writer.close()
            # CONNACK, "unacceptable protocol version" (the 3.1.1 return code 0x01).
            assert answer == b"\x20\x02\x00\x01"
        answer, writer = await raw_exchange(broker.port, b"GET / HTTP/1.1\r\n\r\n")
        writer.close()
        assert answer == b""
        # A 3.1.1 client still gets in after all that.
        async with broker.gateway("a").client(a.gateway_id):
            pass
        assert broker.log().count("MQTT 5 CONNECT; this broker speaks MQTT 3.1.1 only") == 2
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
