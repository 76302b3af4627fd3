"""``hardware_sim.mqtt_lite``, the scale bench's gateway client, against a real mosquitto.

The broker runs with the fleet's generated password file and ACL, as in the bench: a
gateway account publishes its batch at QoS 1 and the fleet's account (aiomqtt) receives
it; the fleet's ack on the gateway's topic reaches the lite client; a wrong password is
refused with the broker's reason; a lost connection sets ``closed`` and a publish
then fails at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fleet.broker_files import FleetAccount, write_access_files
from fleet.credentials import mosquitto_hash
from fleet.mqtt_connection import BrokerConnection
from hardware_sim.harness.mosquitto import Mosquitto, running_mosquitto
from hardware_sim.harness.waiting import wait_for
from hardware_sim.mqtt_lite import LiteClient, MqttLiteError
from protocol import Topic, gateway_topic

GATEWAY = "gw-lite-1"
PASSWORD = "lite-password-1"


def broker_files(tmp_path: Path) -> FleetAccount:
    account = FleetAccount.load_or_create(tmp_path / "fleet")
    write_access_files(tmp_path / "broker", account, [(GATEWAY, mosquitto_hash(PASSWORD))])
    return account


async def lite(broker: Mosquitto, received: list[tuple[str, bytes]], secret: str) -> LiteClient:
    return await LiteClient.connect(
        "127.0.0.1",
        broker.port,
        client_id=GATEWAY,
        username=GATEWAY,
        password=secret,
        on_message=lambda topic, payload: received.append((topic, payload)),
        timeout=10,
    )


async def test_a_lite_gateway_publishes_to_the_fleet_and_receives_its_ack(tmp_path: Path) -> None:
    account = broker_files(tmp_path)
    with running_mosquitto(tmp_path / "broker", tmp_path / "mosquitto") as broker:
        fleet = BrokerConnection(broker.fleet_url, account.username, account.password)
        async with fleet.client("fleet-test") as fleet_client:
            await fleet_client.subscribe(gateway_topic(GATEWAY, Topic.DATA), qos=1)
            received: list[tuple[str, bytes]] = []
            client = await lite(broker, received, PASSWORD)
            await client.subscribe(gateway_topic(GATEWAY, Topic.ACK))
            payload = b'{"seq": 1}' * 20  # 200 bytes: a two-byte remaining length
            await asyncio.wait_for(client.publish(gateway_topic(GATEWAY, Topic.DATA), payload), 10)
            message = await asyncio.wait_for(anext(aiter(fleet_client.messages)), 10)
            assert (str(message.topic), message.payload) == (
                gateway_topic(GATEWAY, Topic.DATA),
                payload,
            )
            ack = b'{"stream": "readings", "seq": 1}'
            await fleet_client.publish(gateway_topic(GATEWAY, Topic.ACK), ack, qos=1)
            await wait_for(lambda: received, 10, "the ack at the lite client")
            assert received == [(gateway_topic(GATEWAY, Topic.ACK), ack)]
            client.close()
            await asyncio.wait_for(client.closed.wait(), 10)


async def test_a_wrong_password_is_refused_with_the_brokers_reason(tmp_path: Path) -> None:
    broker_files(tmp_path)
    refused = pytest.raises(MqttLiteError, match="gw-lite-1: connection refused: not authorised")
    with running_mosquitto(tmp_path / "broker", tmp_path / "mosquitto") as broker, refused:
        await lite(broker, [], "not-the-password")


async def test_the_broker_stopping_closes_the_client_and_a_publish_then_fails(
    tmp_path: Path,
) -> None:
    broker_files(tmp_path)
    with running_mosquitto(tmp_path / "broker", tmp_path / "mosquitto") as broker:
        client = await lite(broker, [], PASSWORD)
        broker.stop()
        await asyncio.wait_for(client.closed.wait(), 10)
        with pytest.raises(MqttLiteError, match="not connected"):
            await client.publish(gateway_topic(GATEWAY, Topic.DATA), b"{}")
