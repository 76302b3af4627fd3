"""Exactly once across a crash: the fleet process is SIGKILLed inside a batch's transaction."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet.broker_files import FleetAccount, write_access_files
from fleet.mqtt_connection import BrokerConnection
from hardware_sim.harness.mosquitto import Mosquitto, running_mosquitto
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_for, wait_until
from hardware_sim.simgateway import EncodedBatch, SimulatedGateway, enrollment_request
from ota.crash_points import crash_test_env
from protocol import DataBatch, EnrollmentResponse, Stream

T0 = 1_750_000_000.0
BATCHES, ROWS = 20, 500


class FleetProcess:
    """``fleet serve`` as a real subprocess against an external mosquitto."""

    def __init__(self, data_dir: Path, broker: Mosquitto) -> None:
        self.data_dir = data_dir
        self.broker = broker
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> None:
        command = [
            *(sys.executable, "-m", "fleet.cli", "serve"),
            *("--data-dir", str(self.data_dir), "--port", str(self.port)),
            *("--mqtt", self.broker.fleet_url, "--public-broker-url", self.broker.url),
            *("--mosquitto-pid-file", str(self.broker.pid_file)),
            *("--log-level", "warning"),
        ]
        log = (self.data_dir / "fleet.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, **env})
        wait_until(lambda: port_open(self.port), 20, "the fleet's REST port")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(timeout=20)

    def api_token(self) -> str:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "fleet.cli", "apitoken", "create", "--name", "test"),
                *("--role", "admin", "--data-dir", str(self.data_dir)),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    data_dir = tmp_path / "fleet"
    write_access_files(data_dir / "broker", FleetAccount.load_or_create(data_dir), [])
    with running_mosquitto(data_dir / "broker", tmp_path / "mosquitto") as running:
        yield running


async def ingest_ready(http: httpx.AsyncClient, token: str) -> bool:
    answer = await http.get("/api/v1/ingest", headers={"Authorization": f"Bearer {token}"})
    return bool(answer.json()["ready"])


async def test_sigkill_inside_a_commit_loses_and_duplicates_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    data_dir = tmp_path / "fleet"
    marker = tmp_path / "holding"
    fleet = FleetProcess(data_dir, broker)
    token = fleet.api_token()
    fleet.start(**crash_test_env("fleet.ingest.commit", marker))
    try:
        base = f"http://127.0.0.1:{fleet.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await wait_for(lambda: ingest_ready(http, token), 20, "the ingest to subscribe")
            created = await http.post(
                "/api/v1/enrollment-tokens",
                json={"site_id": "creek-village"},
                headers={"Authorization": f"Bearer {token}"},
            )
            answer = await http.post(
                "/api/v1/enroll", json=enrollment_request(created.json()["token"]).model_dump()
            )
            enrolled = EnrollmentResponse.model_validate(answer.json())
        gid = enrolled.gateway_id
        batches = [
            EncodedBatch.of(
                DataBatch(
                    gateway_id=gid,
                    first_seq=first,
                    last_seq=first + ROWS - 1,
                    rows=[(s, T0 + s, "rain_total", 0.1, 0) for s in range(first, first + ROWS)],
                )
            )
            for first in range(1, BATCHES * ROWS + 1, ROWS)
        ]
        connection = BrokerConnection(enrolled.broker_url, gid, enrolled.mqtt.password)
        async with SimulatedGateway(gid, connection, ack_timeout=1.0, window=4) as gateway:
            upload = asyncio.create_task(gateway.upload(batches))
            await asyncio.wait_for(asyncio.to_thread(wait_until, marker.exists, 20, "hold"), 25)
            fleet.signal(signal.SIGKILL)  # rows written, transaction not committed
            assert gateway.acked[Stream.READINGS] < BATCHES * ROWS
            assert len(stored(data_dir)) < BATCHES * ROWS
            fleet.start()
            await asyncio.wait_for(upload, 60)
        fleet.signal(signal.SIGTERM)
    finally:
        if fleet.process and fleet.process.poll() is None:
            fleet.process.kill()
            fleet.process.wait()

    assert stored(data_dir) == list(range(1, BATCHES * ROWS + 1))
    with sqlite3.connect(data_dir / "fleet.sqlite") as db:
        assert db.execute("SELECT contiguous FROM stream_marks").fetchone() == (BATCHES * ROWS,)


def stored(data_dir: Path) -> list[int]:
    with sqlite3.connect(data_dir / "fleet.sqlite") as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM readings ORDER BY seq")]
