"""Two ``fleet serve`` replicas on one database: one runs 叫应, the other takes over when killed.

Real processes on one SQLite data directory, and on one PostgreSQL schema (a real cluster
the session starts), each replica with its own REST port, both on one real mosquitto (the
fleet listener, its shared ingest subscription). A gateway enrolls through the first
replica (which rewrites the broker's files and signals mosquitto) and uploads a red alarm
that the replicas' ingest stores. The lease on the 叫应 engine is first held by a replica
on a machine that vanished (a row this test wrote and stops renewing): no call goes out
until it expires, then exactly one replica takes it and calls the village. That replica is
SIGKILLed after the call is recorded; the other takes the lease over within the lease
length and calls the township at the village's deadline. Every step happens once: one
village call, one township call, one record line each. A console session opened on one
replica works on the other, and the second replica's live feed (SSE) carries the alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fleet.broker_files import FleetAccount, write_access_files
from fleet.leases import ESCALATION_LEASE, ROLLOUTS_LEASE
from fleet.mqtt_connection import BrokerConnection
from fleet.postgres_repository import PostgresRepository
from fleet.repository import Repository, Role
from fleet.roster import PersonIn, Tier
from fleet.settings import FleetSettings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import Mosquitto, running_mosquitto
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.harness.waiting import wait_until
from hardware_sim.harness.webhook_inbox import WebhookInbox
from hardware_sim.simgateway import EncodedBatch, SimulatedGateway, enrollment_request
from protocol import EnrollmentResponse, EventBatch, EventRow, Stream

SITE = "creek-village"
LEASE_S = 3.0
VILLAGE_DEADLINE_S = 15.0
#: A replica on another machine that held the lease and vanished (its PID means nothing here).
VANISHED = "replica-on-a-lost-machine/4026531836/1/deadbeef"


class Replica:
    """One ``fleet serve`` process on the shared data directory (and database)."""

    def __init__(
        self, name: str, data_dir: Path, config: Path, database: str | None, broker: Mosquitto
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log = data_dir.parent / f"{name}.log"
        command = [
            *(sys.executable, "-m", "fleet.cli", "serve", "--data-dir", str(data_dir)),
            *("--port", str(self.port), "--mqtt", broker.fleet_url),
            *("--mosquitto-pid-file", str(broker.pid_file), "--public-broker-url", broker.url),
            *("--escalation", str(config), "--lease-s", str(LEASE_S)),
            *("--log-level", "debug"),
            *(("--database", database) if database else ()),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


def holder_pid(repository: Repository, name: str) -> int | None:
    lease = repository.leases.lease(name)
    if lease is None or lease.expires_at <= time.time():
        return None
    parts = lease.holder.split("/")
    return int(parts[2]) if lease.holder != VANISHED else None


def kill_and_see_the_survivor_take_over(
    repository: Repository, leader: Replica, survivor: Replica
) -> None:
    """SIGKILL the 叫应 leader; the survivor must be its very next holder."""
    leader.kill()
    held = repository.leases.lease(ESCALATION_LEASE)  # the dead leader's last renewal
    assert held is not None
    wait_until(
        lambda: holder_pid(repository, ESCALATION_LEASE) == survivor.process.pid,
        LEASE_S + 5,
        "the survivor to take the 叫应 lease over",
    )
    taken = repository.leases.lease(ESCALATION_LEASE)
    assert taken is not None
    assert taken.term == held.term + 1  # the very next holder
    # On one host it need not wait for the lease to run out: it saw the process gone.
    # (How soon is the wait's bound above; a timed figure belongs in bench/.)
    gone = f"lease {ESCALATION_LEASE}: its holder's process is gone; taking it over"
    assert gone in survivor.log.read_text()


def read_events(url: str, cookies: dict[str, str], into: list[tuple[str, Any]]) -> None:
    """Collect the live feed's events until the stream closes (runs in a thread)."""
    kind = None
    with (
        contextlib.suppress(httpx.HTTPError),
        httpx.stream("GET", f"{url}/api/v1/stream", cookies=cookies, timeout=None) as response,
    ):
        into.append(("status", response.status_code))
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind is not None:
                into.append((kind, json.loads(line.removeprefix("data: "))))
                kind = None


@pytest.fixture(params=("sqlite", "postgresql"))
def shared(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Repository, str | None]]:
    """The replicas' store as this test sees it, and the ``--database`` they are given."""
    data_dir = tmp_path / "fleet"
    data_dir.mkdir()
    if request.param == "sqlite":
        sqlite = SQLiteRepository(data_dir / "fleet.sqlite")
        yield sqlite, None
        sqlite.close()
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        postgres = PostgresRepository(url, pool_size=2, files_dir=data_dir / "releases")
        try:
            yield postgres, url
        finally:
            postgres.close()


def seed(repository: Repository, robots: WebhookInbox, data_dir: Path) -> tuple[str, Path]:
    """A roster, a viewer token and a 叫应 config; the token and the config."""
    now = time.time()
    _token, viewer = repository.create_api_token("duty officer", Role.VIEWER, now)
    repository.escalation.replace_roster(
        SITE,
        [
            PersonIn(Tier.VILLAGE, "王建国", "群测群防员", webhook=robots.url("village")),
            PersonIn(Tier.TOWNSHIP, "李敏", "乡镇值班", webhook=robots.url("township")),
        ],
        now,
    )
    config = data_dir / "escalation.toml"
    config.write_text(
        "tick_s = 0.2\n[policy.levels.red]\nrepeat_s = 600\n"
        f'tiers = [{{tier = "village", deadline_s = {VILLAGE_DEADLINE_S}}}, '
        '{tier = "township", deadline_s = 600}]\n'
    )
    return viewer, config


def open_session_and_feed(
    signs_in: Replica, listens: Replica, viewer: str, events: list[tuple[str, Any]]
) -> None:
    """Sign in on one replica; with its cookie, ask the other who we are and open its feed."""
    signed_in = httpx.post(f"{signs_in.url}/console/session", json={"token": viewer})
    assert signed_in.status_code == 200
    cookies = dict(signed_in.cookies)
    whoami = httpx.get(f"{listens.url}/console/session", cookies=cookies)
    assert (whoami.status_code, whoami.json()["name"]) == (200, "duty officer")
    threading.Thread(target=read_events, args=(listens.url, cookies, events), daemon=True).start()
    wait_until(lambda: ("status", 200) in events, 20, "the other replica's live feed")


def enroll(replica: Replica, admin: str) -> EnrollmentResponse:
    """Enroll a gateway of SITE through ``replica``'s REST API, as a gateway does."""
    headers = {"Authorization": f"Bearer {admin}"}
    created = httpx.post(
        f"{replica.url}/api/v1/enrollment-tokens", json={"site_id": SITE}, headers=headers
    )
    assert created.status_code == 201, created.text
    request = enrollment_request(created.json()["token"])
    answer = httpx.post(f"{replica.url}/api/v1/enroll", json=request.model_dump())
    assert answer.status_code == 201, answer.text
    return EnrollmentResponse.model_validate(answer.json())


async def upload_red_alarm(enrolled: EnrollmentResponse) -> None:
    """The gateway sends a red slope alarm over mosquitto until the fleet acks it."""
    connection = BrokerConnection(
        enrolled.broker_url, enrolled.mqtt.username, enrolled.mqtt.password, None
    )
    row = EventRow(seq=1, ts=time.time(), kind="alarm", subject="slope", level=4, detail={})
    batch = EventBatch(gateway_id=enrolled.gateway_id, first_seq=1, last_seq=1, rows=[row])
    async with SimulatedGateway(enrolled.gateway_id, connection) as gateway:
        await asyncio.wait_for(gateway.upload([EncodedBatch.of(batch)], Stream.EVENTS), 30)


def test_two_replicas_share_one_engine_that_the_survivor_takes_over_after_a_sigkill(
    tmp_path: Path, shared: tuple[Repository, str | None]
) -> None:
    repository, database = shared
    data_dir = tmp_path / "fleet"
    # Held by a replica that vanished: until it expires, neither replica may call.
    repository.leases.take(ESCALATION_LEASE, VANISHED, time.time(), 120)
    _token, admin = repository.create_api_token("admin", Role.ADMIN, time.time())
    broker_dir = FleetSettings(data_dir=data_dir).broker_dir
    write_access_files(broker_dir, FleetAccount.load_or_create(data_dir), [])
    with (
        WebhookInbox().running() as robots,
        running_mosquitto(broker_dir, tmp_path / "mosquitto") as broker,
    ):
        viewer, config = seed(repository, robots, data_dir)
        replicas = [Replica(name, data_dir, config, database, broker) for name in ("a", "b")]
        events: list[tuple[str, Any]] = []
        try:
            for replica in replicas:
                wait_until(lambda r=replica: port_open(r.port), 60, f"replica {replica.name}")
            by_pid = {r.process.pid: r for r in replicas}
            wait_until(
                lambda: holder_pid(repository, ROLLOUTS_LEASE) in by_pid, 30, "a rollouts holder"
            )
            open_session_and_feed(replicas[0], replicas[1], viewer, events)
            enrolled = enroll(replicas[0], admin)

            # The vanished replica's last renewal; then the red alarm.
            vanished = repository.leases.take(ESCALATION_LEASE, VANISHED, time.time(), LEASE_S)
            assert vanished.holder == VANISHED
            asyncio.run(upload_red_alarm(enrolled))
            wait_until(
                lambda: any(k == "level" and d["level_name"] == "red" for k, d in events),
                20,
                "the red alarm on the other replica's live feed",
            )

            wait_until(lambda: len(robots.to("village")) == 1, 30, "the village call")
            assert robots.times("village")[0] >= vanished.expires_at  # not before it expired
            leader = by_pid[holder_pid(repository, ESCALATION_LEASE) or 0]
            survivor = next(r for r in replicas if r is not leader)
            alarm = repository.alarms(
                active=True, gateway_ids=[enrolled.gateway_id], since=None, until=None, limit=1
            )[0]
            (escalation,) = repository.escalation.escalations_of(alarm.id)
            wait_until(
                lambda: repository.escalation.calls(escalation.id)[0].status == "sent",
                20,
                "the village call recorded as sent",
            )

            kill_and_see_the_survivor_take_over(repository, leader, survivor)

            wait_until(lambda: len(robots.to("township")) == 1, 40, "the township call")
            assert robots.times("township")[0] >= escalation.started_at + VILLAGE_DEADLINE_S
            assert len(robots.to("village")) == 1  # not sent again by the survivor
            expected = [("王建国 (village)", "sent"), ("李敏 (township)", "sent")]
            wait_until(
                lambda: (
                    [(c.person, c.status) for c in repository.escalation.calls(escalation.id)]
                    == expected
                ),
                20,
                "both calls recorded as sent",
            )
            kinds = [s["kind"] for s in repository.escalation.record(escalation.id)]
            assert kinds == ["started", "call_sent", "escalated", "call_sent"]
            assert len(repository.escalation.escalations_of(alarm.id)) == 1
            # Each replica's ingest has its own client id: neither knocked the other off.
            assert "already connected" not in broker.log()
        finally:
            for replica in replicas:
                replica.stop()
    logs = {r.name: r.log.read_text() for r in replicas}
    took = [name for name, log in logs.items() if "lease escalation: held by this process" in log]
    assert sorted(took) == ["a", "b"]  # the first holder, then the survivor
    assert sum("calling the village tier" in log for log in logs.values()) == 1
    for log in logs.values():
        assert "/robot/" not in log  # a robot URL's path is its key
        assert viewer not in log
        assert enrolled.mqtt.password not in log
