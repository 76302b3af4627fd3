"""Ingest through a real mosquitto: exactly-once storage, acks, health, bad input, ACLs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from fleet.broker_files import FleetAccount
from fleet.ingest import MAX_COMMIT_BYTES, IngestWorker, group_size
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import CommitResult, Received, Role
from fleet.service import INGEST_GROUP, run_fleet
from fleet.settings import FleetSettings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import FleetUnderTest, auth, fleet_with_mosquitto
from hardware_sim.harness.waiting import wait_for
from hardware_sim.simgateway import EncodedBatch
from protocol import (
    MAX_PAYLOAD_BYTES,
    MAX_READING_ROWS,
    DataBatch,
    EventBatch,
    EventRow,
    GatewayState,
    Health,
    Stream,
    Topic,
    gateway_topic,
)

T0 = 1_750_000_000.0


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[FleetUnderTest]:
    async with fleet_with_mosquitto(tmp_path) as running:
        yield running


def test_a_commit_takes_queued_messages_up_to_its_byte_budget() -> None:
    assert group_size([]) == 0
    half = MAX_COMMIT_BYTES // 2
    assert group_size([half, half, 1, 1]) == 2
    assert group_size([MAX_COMMIT_BYTES * 3, 1]) == 1  # one larger message goes alone
    assert group_size(iter([1] * 10)) == 10


def data_batch(gateway_id: str, first: int, last: int, channel: str = "rain_total") -> DataBatch:
    rows = [(seq, T0 + seq, channel, seq * 0.5, 0) for seq in range(first, last + 1)]
    return DataBatch(gateway_id=gateway_id, first_seq=first, last_seq=last, rows=rows)


def stored_seqs(fleet: FleetUnderTest, gateway_id: str) -> list[int]:
    with sqlite3.connect(fleet.settings.db_path) as db:
        rows = db.execute(
            "SELECT r.seq FROM readings r JOIN gateways g ON g.num = r.gw WHERE g.id = ? "
            "ORDER BY r.seq",
            (gateway_id,),
        )
        return [seq for (seq,) in rows]


async def test_batches_are_stored_once_and_acked_with_the_contiguous_seq(
    fleet: FleetUnderTest,
) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    async with fleet.gateway(enrolled) as gateway:
        first = data_batch(gid, 1, 100).model_dump_json()
        await gateway.publish(Topic.DATA, first)
        await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 100), 10)
        # 201..300 arrives before 101..200: stored, but the ack waits for the gap to close.
        await gateway.publish(Topic.DATA, data_batch(gid, 201, 300).model_dump_json())
        await gateway.publish(Topic.DATA, first)  # a resend: acked again, stored once
        await gateway.publish(Topic.DATA, data_batch(gid, 101, 200).model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 300), 10)

    assert stored_seqs(fleet, gid) == list(range(1, 301))
    answer = await fleet.http.get(
        f"/api/v1/gateways/{gid}/readings",
        params={"channel": "rain_total", "since": T0, "until": T0 + 1000},
        headers=auth(fleet.admin_token),
    )
    assert answer.status_code == 200, answer.text
    readings = answer.json()["readings"]
    assert [r["seq"] for r in readings] == list(range(1, 301))
    assert readings[0]["value"] == 0.5


async def test_a_thinned_range_counts_as_contiguous(fleet: FleetUnderTest) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    # The gateway thinned 11..20 under its disk quota: the batch covers 1..30 without them.
    rows = [(s, T0 + s, "level", 1.0, 0) for s in [*range(1, 11), *range(21, 31)]]
    batch = DataBatch(gateway_id=gid, first_seq=1, last_seq=30, rows=rows)
    async with fleet.gateway(enrolled) as gateway:
        await gateway.publish(Topic.DATA, batch.model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 30), 10)
    assert len(stored_seqs(fleet, gid)) == 20


async def test_upload_with_window_stores_every_reading_exactly_once(fleet: FleetUnderTest) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    batches = [EncodedBatch.of(data_batch(gid, s, s + 499)) for s in range(1, 5001, 500)]
    window_sent = asyncio.Event()
    async with fleet.gateway(enrolled, window=3) as gateway:
        upload = asyncio.create_task(gateway.upload(batches, window_sent=window_sent))
        await asyncio.wait_for(window_sent.wait(), 10)
        # The first window (3 of 10 batches) is out; the last batch cannot be acked yet.
        assert gateway.acked[Stream.READINGS] < batches[-1].last_seq
        await asyncio.wait_for(upload, 20)
    assert stored_seqs(fleet, gid) == list(range(1, 5001))
    detail = (
        await fleet.http.get(f"/api/v1/gateways/{gid}", headers=auth(fleet.admin_token))
    ).json()
    assert detail["streams"] == {"readings": 5000, "events": 0}


async def test_bad_messages_are_counted_and_ingest_carries_on(fleet: FleetUnderTest) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    too_many = [(s, T0 + s, "x", 1.0, 0) for s in range(1, MAX_READING_ROWS + 2)]
    oversized_rows = json.dumps(
        {"v": 1, "gateway_id": gid, "first_seq": 1, "last_seq": len(too_many), "rows": too_many}
    )
    async with fleet.gateway(enrolled) as gateway:
        await gateway.publish(Topic.DATA, b"{not json")
        await gateway.publish(Topic.DATA, json.dumps({"v": 1, "gateway_id": gid, "rows": "x"}))
        await gateway.publish(Topic.DATA, oversized_rows)
        await gateway.publish(Topic.DATA, b"[" + b" " * MAX_PAYLOAD_BYTES + b"]")
        await gateway.publish(Topic.DATA, data_batch("gw-someoneelse", 1, 5).model_dump_json())
        await gateway.publish(Topic.DATA, data_batch(gid, 1, 5).model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 5), 10)

    stats = (await fleet.http.get("/api/v1/ingest", headers=auth(fleet.admin_token))).json()
    assert stats["rejected"] == {
        "malformed_json": 1,
        "schema": 1,
        "oversize": 2,
        "gateway_mismatch": 1,
    }
    assert stored_seqs(fleet, gid) == [1, 2, 3, 4, 5]


async def test_unusable_numbers_are_refused_and_never_acked(fleet: FleetUnderTest) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id

    def batch(first: int, last: int, rows: str) -> str:
        return (
            f'{{"v":1,"gateway_id":"{gid}","first_seq":{first},"last_seq":{last},"rows":[{rows}]}}'
        )

    nan_ts = f'[1,{T0},"rain",1.0,0],[2,NaN,"rain",2.0,0],[3,{T0},"rain",3.0,0]'
    nan_event = (
        f'{{"v":1,"gateway_id":"{gid}","first_seq":1,"last_seq":2,"rows":['
        f'{{"seq":1,"ts":{T0},"kind":"fault"}},{{"seq":2,"ts":NaN,"kind":"fault"}}]}}'
    )
    good_health = Health(gateway_id=gid, ts=T0, uptime_s=5.0, agent_version="0.1.0")
    infinite_health = good_health.model_dump_json().replace('"uptime_s":5.0', '"uptime_s":Infinity')
    assert "Infinity" in infinite_health
    async with fleet.gateway(enrolled) as gateway:
        await gateway.publish(Topic.HEALTH, good_health.model_dump_json())
        await gateway.publish(Topic.DATA, batch(1, 3, nan_ts))
        await gateway.publish(Topic.DATA, batch(1, 1, f'[1,{T0},"rain",Infinity,0]'))
        await gateway.publish(Topic.DATA, batch(1, 1, f'[1,{T0},"rain",-1e308,0]'))
        await gateway.publish(Topic.DATA, batch(2**63, 2**63, ""))
        await gateway.publish(Topic.EVENTS, nan_event)
        await gateway.publish(Topic.HEALTH, infinite_health)
        await gateway.publish(Topic.DATA, data_batch(gid, 4, 6).model_dump_json())
        ok_event = EventBatch(
            gateway_id=gid, first_seq=3, last_seq=3, rows=[EventRow(seq=3, ts=T0, kind="fault")]
        )
        await gateway.publish(Topic.EVENTS, ok_event.model_dump_json())
        await wait_for(lambda: stored_seqs(fleet, gid) == [4, 5, 6], 10, "readings 4..6")
        await wait_for(lambda: fleet.ingest.stats.rejected["schema"] == 6, 10, "6 refusals")
        # Neither stream was acked past what was refused: 4..6 and event 3 wait for 1..3.
        assert gateway.acked == {Stream.READINGS: 0, Stream.EVENTS: 0}
        detail = await fleet.http.get(f"/api/v1/gateways/{gid}", headers=auth(fleet.admin_token))
        assert detail.status_code == 200, detail.text
        assert detail.json()["streams"] == {"readings": 0, "events": 0}
        assert detail.json()["health"]["uptime_s"] == 5.0

        # The gateway resends what it holds, now sendable: the acks close the whole range.
        await gateway.publish(Topic.DATA, data_batch(gid, 1, 3).model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 6), 10)
    assert stored_seqs(fleet, gid) == [1, 2, 3, 4, 5, 6]
    with sqlite3.connect(fleet.settings.db_path) as db:
        values = [v for (v,) in db.execute("SELECT value FROM readings ORDER BY seq")]
    assert values == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]  # no infinity, no -1e308
    assert dict(fleet.ingest.stats.rejected) == {"schema": 6}


async def test_a_gateway_cannot_publish_into_another_gateways_topics(
    fleet: FleetUnderTest,
) -> None:
    a, b = await fleet.enroll(), await fleet.enroll()
    async with fleet.gateway(a) as gateway_a:
        # Forged as B on B's own topic: the broker drops it, so it never reaches the fleet.
        forged = data_batch(b.gateway_id, 1, 10).model_dump_json()
        await gateway_a.client.publish(gateway_topic(b.gateway_id, Topic.DATA), forged, qos=1)
        # A's own batch afterwards: once it is acked, anything before it was processed.
        await gateway_a.publish(Topic.DATA, data_batch(a.gateway_id, 1, 3).model_dump_json())
        await asyncio.wait_for(gateway_a.wait_acked(Stream.READINGS, 3), 10)
    assert stored_seqs(fleet, b.gateway_id) == []
    assert fleet.ingest.stats.messages == 1
    assert f"Denied PUBLISH from {a.gateway_id}" in fleet.mosquitto.log()


async def test_a_gateway_cannot_subscribe_to_another_gateways_commands(
    fleet: FleetUnderTest,
) -> None:
    a, b = await fleet.enroll(), await fleet.enroll()
    async with fleet.gateway(a) as gateway_a, fleet.gateway(b) as gateway_b:
        # mosquitto grants the subscription but never delivers what the ACL does not allow.
        await gateway_a.client.subscribe(gateway_topic(b.gateway_id, Topic.CMD), qos=1)
        fleet.repository.queue_command(b.gateway_id, "siren_test", {"for": "b"}, "test", T0)
        fleet.ingest.wake_outbox()
        for_b = await asyncio.wait_for(gateway_b.commands.get(), 10)
        assert json.loads(for_b.payload)["args"] == {"for": "b"}
        # Then one for A: the broker delivers in order, so had it let A read B's command,
        # that would arrive first.
        fleet.repository.queue_command(a.gateway_id, "siren_test", {"for": "a"}, "test", T0 + 1)
        fleet.ingest.wake_outbox()
        first_for_a = await asyncio.wait_for(gateway_a.commands.get(), 10)
        assert json.loads(first_for_a.payload)["args"] == {"for": "a"}
        assert gateway_a.commands.empty()


async def test_health_and_last_will_show_online_then_offline(
    fleet: FleetUnderTest, tmp_path: Path
) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    health = Health(
        gateway_id=gid,
        ts=T0,
        uptime_s=12.0,
        agent_version="0.1.0",
        backlog_readings=40,
        backlog_events=2,
        cpu_temp_c=51.5,
        battery_v=12.6,
    )
    async with fleet.gateway(enrolled) as gateway:
        await gateway.publish(
            Topic.STATE, GatewayState(state="online").model_dump_json(), retain=True
        )
        await gateway.publish(Topic.HEALTH, health.model_dump_json(), retain=True)
        await gateway.publish(Topic.DATA, data_batch(gid, 1, 1).model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 1), 10)

    listed = (await fleet.http.get("/api/v1/gateways", headers=auth(fleet.admin_token))).json()
    row = next(g for g in listed if g["id"] == gid)
    assert row["status"] == "online"
    assert row["backlog"] == 42
    detail = (
        await fleet.http.get(f"/api/v1/gateways/{gid}", headers=auth(fleet.admin_token))
    ).json()
    assert detail["health"]["cpu_temp_c"] == 51.5
    assert detail["health"]["battery_v"] == 12.6

    # A gateway process that dies without saying goodbye: the broker publishes its Last Will.
    script = tmp_path / "dies.py"
    script.write_text(DYING_GATEWAY)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        enrolled.broker_url,
        gid,
        enrolled.mqtt.password,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 10) == b"connected\n"
    process.kill()
    await process.wait()

    await wait_for(
        lambda: fleet.repository.get_gateway(gid).state == "offline", 10, "the Last Will"
    )
    listed = (await fleet.http.get("/api/v1/gateways", headers=auth(fleet.admin_token))).json()
    row = next(g for g in listed if g["id"] == gid)
    assert row["status"] == "offline"
    assert row["last_seen"] is not None


DYING_GATEWAY = """
import asyncio, sys
from fleet.mqtt_connection import BrokerConnection
from hardware_sim.simgateway import SimulatedGateway

async def main():
    url, gid, password = sys.argv[1:]
    async with SimulatedGateway(gid, BrokerConnection(url, gid, password)):
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_alarm_events_become_alarms_that_operators_handle(fleet: FleetUnderTest) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    rise = EventRow(
        seq=1,
        ts=T0,
        kind="alarm",
        subject="creek_level",
        level=3,
        detail={"from": "normal", "to": "orange", "kind": "rise", "detail": "level 2.4 m >= 2.2"},
    )
    events = EventBatch(gateway_id=gid, first_seq=1, last_seq=1, rows=[rise])
    viewer, operator = fleet.api_token(Role.VIEWER), fleet.api_token(Role.OPERATOR)
    async with fleet.gateway(enrolled) as gateway:
        await gateway.publish(Topic.EVENTS, events.model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.EVENTS, 1), 10)
        active = (
            await fleet.http.get("/api/v1/alarms", params={"active": True}, headers=auth(viewer))
        ).json()
        assert [(a["gateway_id"], a["rule"], a["level_name"]) for a in active] == [
            (gid, "creek_level", "orange")
        ]
        alarm_id = active[0]["id"]

        refused = await fleet.http.post(
            f"/api/v1/alarms/{alarm_id}/acknowledge", json={}, headers=auth(viewer)
        )
        assert refused.status_code == 403
        assert "needs the operator role" in refused.json()["detail"]

        acked = await fleet.http.post(
            f"/api/v1/alarms/{alarm_id}/acknowledge",
            json={"note": "spoke to the village head"},
            headers=auth(operator),
        )
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_by"] == "operator"
        command = json.loads((await asyncio.wait_for(gateway.commands.get(), 10)).payload)
        assert command["name"] == "ack_alarm"
        assert command["args"] == {"rule": "creek_level", "by": "operator"}

        again = await fleet.http.post(
            f"/api/v1/alarms/{alarm_id}/acknowledge", json={}, headers=auth(operator)
        )
        assert again.status_code == 409
        assert "already acknowledged by operator" in again.json()["detail"]

        receipt = await fleet.http.post(
            f"/api/v1/alarms/{alarm_id}/receipts",
            json={"person": "Village head Ana", "via": "phone"},
            headers=auth(operator),
        )
        assert receipt.status_code == 201, receipt.text
        [confirmed] = receipt.json()["receipts"]
        assert confirmed["person"] == "Village head Ana"
        assert confirmed["recorded_by"] == "operator"

        fall = rise.model_copy(update={"seq": 2, "ts": T0 + 600, "level": 0})
        ended = EventBatch(gateway_id=gid, first_seq=2, last_seq=2, rows=[fall])
        await gateway.publish(Topic.EVENTS, ended.model_dump_json())
        await asyncio.wait_for(gateway.wait_acked(Stream.EVENTS, 2), 10)
    history = (
        await fleet.http.get("/api/v1/alarms", params={"active": False}, headers=auth(viewer))
    ).json()
    assert [(a["id"], a["cleared_at"], a["peak_level"]) for a in history] == [
        (alarm_id, T0 + 600, 3)
    ]


async def test_two_ingest_workers_split_the_load_and_store_each_reading_once(
    fleet: FleetUnderTest,
) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    account = FleetAccount.load_or_create(fleet.settings.data_dir)
    second = IngestWorker(
        SQLiteRepository(fleet.settings.db_path),
        BrokerConnection(fleet.settings.broker_url, account.username, account.password),
        client_id="test-worker-2",
        shared_group=INGEST_GROUP,
    )
    running = asyncio.create_task(second.run())
    try:
        await asyncio.wait_for(second.ready.wait(), 10)
        batches = [EncodedBatch.of(data_batch(gid, s, s + 249)) for s in range(1, 10_001, 250)]
        async with fleet.gateway(enrolled, window=8) as gateway:
            await asyncio.wait_for(gateway.upload(batches), 30)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert stored_seqs(fleet, gid) == list(range(1, 10_001))
    # The broker handed batches to both workers, and SQLite serialised their commits.
    assert fleet.ingest.stats.batches > 0
    assert second.stats.batches > 0


async def test_ingest_is_back_within_seconds_of_a_broker_restart_after_an_outage(
    fleet: FleetUnderTest,
) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    batch = data_batch(gid, 1, 10).model_dump_json()
    fleet.mosquitto.stop()
    # The outage itself (not synchronisation): ingest's backoff (protocol.reconnect, from
    # 1 s doubling, jittered) has failed a few times, so a plain backoff would next try
    # several seconds later; the port probes bring it back at once.
    await asyncio.sleep(8)
    fleet.mosquitto.restart()
    back_at = time.monotonic()
    async with fleet.gateway(enrolled) as gateway:

        async def acked() -> bool:
            # Published before ingest resubscribed, a batch is lost: publish until acked.
            await gateway.publish(Topic.DATA, batch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gateway.wait_acked(Stream.READINGS, 10), 0.25)
            return gateway.acked[Stream.READINGS] >= 10

        await wait_for(acked, 30, "ingest to take batches again")
    assert time.monotonic() - back_at < 4.0
    assert stored_seqs(fleet, gid) == list(range(1, 11))


class FirstAcksUnbuildable(SQLiteRepository):
    """Real storage whose first commit result also carries an ack for no valid gateway id.

    It stands in for a bug between the commit and the publish: that round of acks fails.
    """

    poisoned = True

    def commit(self, received: Sequence[Received]) -> CommitResult:
        result = super().commit(received)
        if self.poisoned:
            self.poisoned = False
            result.acks[("not/a/gateway", Stream.READINGS)] = 1
        return result


async def test_a_failed_round_of_acks_is_logged_and_counted_and_no_task_outlives_the_worker(
    fleet: FleetUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    enrolled = await fleet.enroll()
    gid = enrolled.gateway_id
    account = FleetAccount.load_or_create(fleet.settings.data_dir)
    worker = IngestWorker(  # a plain subscription: it sees every message besides the fleet's
        FirstAcksUnbuildable(fleet.settings.db_path),
        BrokerConnection(fleet.settings.broker_url, account.username, account.password),
        client_id="test-acks",
    )
    switch_interval = sys.getswitchinterval()
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        # A process-wide choice belongs to the process (fleet serve, fleet ingest).
        assert sys.getswitchinterval() == switch_interval
        async with fleet.gateway(enrolled) as gateway:
            await gateway.publish(Topic.DATA, data_batch(gid, 1, 10).model_dump_json())
            await wait_for(lambda: worker.stats.acks_failed > 0, 10, "the failed round of acks")
            await gateway.publish(Topic.DATA, data_batch(gid, 11, 20).model_dump_json())
            await wait_for(lambda: worker.stats.acks_sent > 0, 10, "the next round of acks")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    errors = [r for r in caplog.records if r.name == "fleet.ingest" and r.levelno >= logging.ERROR]
    [failed] = errors
    lost = re.fullmatch(r"could not send (\d+) acks; those gateways will resend", failed.message)
    assert lost is not None
    assert int(lost[1]) == worker.stats.acks_failed
    assert failed.exc_info is not None
    assert "invalid gateway id 'not/a/gateway'" in str(failed.exc_info[1])
    assert stored_seqs(fleet, gid) == list(range(1, 21))
    # Every task the worker started ended with it: none left running, none left unawaited.
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("test-acks")]


async def test_an_ingest_that_fails_says_so_at_once_not_at_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handed_out = tmp_path / "gateway-ca.pem"
    handed_out.write_text("the CA gateways are given\n")
    settings = FleetSettings(
        data_dir=tmp_path / "fleet",
        broker="external",
        mqtt_url="mqtts://127.0.0.1:8883",
        mqtt_ca=tmp_path / "removed-ca.pem",  # the fleet's own CA file is gone
        public_broker_ca=handed_out,
    )
    stack = contextlib.AsyncExitStack()
    service = await stack.enter_async_context(run_fleet(settings))
    try:
        assert service.ingest_task is not None
        await wait_for(service.ingest_task.done, 10, "ingest to fail")
    except BaseException:
        with contextlib.suppress(BaseException):
            await stack.aclose()
        raise
    # Said while the fleet still runs, not first at its stop ...
    [said] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert said.name == "fleet.service"
    assert said.message.startswith("ingest stopped: no gateway data is stored")
    assert said.exc_info is not None
    with pytest.raises(ExceptionGroup) as stopped:  # ... and the stop still reports it.
        await stack.aclose()
    assert stopped.group_contains(FileNotFoundError)
