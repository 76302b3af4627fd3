"""The whole uplink under test: a real mosquitto, ``fleet serve``, ``edge enroll`` and ``edge run``.

Everything runs as it would in the field: mosquitto with the fleet's generated password
file and ACL (and session persistence, so a clean broker restart keeps sessions), the
fleet as a subprocess that can be SIGKILLed or SIGSTOPped, the agent as a subprocess on
a fast clock. Evidence is read from the fleet's and the gateway's SQLite files, and from
an observer on the broker that records what reached it, in order.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from drivers.clock import ScaledClock
from drivers.profiles import builtin_profiles
from edge_agent import reading_stage
from edge_agent.store import last_seqs_sql
from fleet.broker_files import FleetAccount, Listener, mosquitto_conf, write_access_files
from fleet.repository import Role
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.mosquitto import MOSQUITTO, BrokerUrls, Mosquitto, TlsFiles
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.site_toml import (
    CREEK_RADAR,
    RAIN_1H_RULE,
    RAIN_GAUGE,
    SIREN_RELAYS,
    siren_actuator,
    tcp_site,
)
from hardware_sim.harness.waiting import wait_until
from hardware_sim.scenarios import DesignStorm

EDGE = [sys.executable, "-m", "edge_agent.cli"]
FLEET = [sys.executable, "-m", "fleet.cli"]
PROFILES = builtin_profiles()
SITE_ID = "test-village"

#: A creek site polled every 10 simulated seconds, with an uplink tuned for tests: small
#: batches (many in flight), a short ack timeout and quick reconnects.
SITE = tcp_site(
    SITE_ID,
    [RAIN_GAUGE, CREEK_RADAR, SIREN_RELAYS],
    poll_s=10,
    before_bus=[
        "[agent]\nreassert_s = 1",
        """[uplink]
batch_rows = 100
max_inflight = 4
ack_timeout_s = 2
health_interval_s = 1
reconnect_min_s = 0.2
reconnect_max_s = 1""",
    ],
    after_devices=[
        RAIN_1H_RULE,
        siren_actuator(),
        """[actions]
blue = { siren = "strobe" }
orange = { siren = "warble" }
red = { siren = "warble" }""",
    ],
)


#: Simulated time starts on 1 July 2026 (UTC), in the rainy season.
ORIGIN = datetime(2026, 7, 1, tzinfo=UTC).timestamp()


def make_clock(speed: float) -> ScaledClock:
    """A clock running ``speed`` times faster than real time from ``ORIGIN``."""
    return ScaledClock(speed, origin=ORIGIN, anchor=round(time.time(), 3))


def storm_station(clock: ScaledClock, storm: DesignStorm | None) -> list[SimulatedDevice]:
    """Rain gauge (driven by ``storm``), creek radar and siren relays, as in ``SITE``."""
    rain = SimulatedDevice(
        PROFILES["dfrobot_sen0575"],
        192,
        clock,
        {"rain_total": storm.cumulative_mm} if storm else None,
        values={"window_hours": 1},
    )
    creek = SimulatedDevice(
        PROFILES["hlk_ld8001h"], 1, clock, {"water_level": lambda t: 800 + 3 * math.sin(t / 97)}
    )
    relays = SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock)
    return [rain, creek, relays]


# --- the broker ------------------------------------------------------------------------------


class BrokerProcess(BrokerUrls):
    """Mosquitto with the fleet's access files and session persistence, on free ports.

    ``stop`` and ``start`` again keep the ports, the config and the persisted sessions,
    like a county broker restarted for maintenance.
    """

    def __init__(self, fleet_dir: Path, work_dir: Path, tls: TlsFiles | None = None) -> None:
        broker_dir = fleet_dir / "broker"
        write_access_files(broker_dir, FleetAccount.load_or_create(fleet_dir), [])
        work_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir = work_dir
        self.port = free_port()
        self.fleet_port = free_port()
        self.tls_port = free_port() if tls else None
        listeners = [Listener(self.port), Listener(self.fleet_port, fleet=True)]
        if tls is not None and self.tls_port is not None:
            listeners.append(Listener(self.tls_port, certfile=tls.cert_file, keyfile=tls.key_file))
        self.pid_file = work_dir / "mosquitto.pid"
        conf = mosquitto_conf(broker_dir, listeners, tls.ca_file if tls else None)
        conf += (
            f"pid_file {self.pid_file}\nlog_dest stderr\nlog_type all\n"
            f"persistence true\npersistence_location {work_dir}/\n"
        )
        if os.geteuid() == 0:
            conf += "user root\n"  # the mosquitto user could not read the private temp dir
        (work_dir / "mosquitto.conf").write_text(conf)
        self.mosquitto: Mosquitto | None = None

    def log(self) -> str:
        """What mosquitto logged so far, across restarts."""
        return (self.work_dir / "mosquitto.log").read_text(errors="replace")

    def start(self) -> None:
        """Start mosquitto; return once every listener accepts connections."""
        with (self.work_dir / "mosquitto.log").open("ab") as log:
            process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.work_dir / "mosquitto.conf")], stdout=log, stderr=log
            )
        self.mosquitto = Mosquitto(
            process,
            self.port,
            self.tls_port,
            self.pid_file,
            self.work_dir / "mosquitto.log",
            self.fleet_port,
        )
        ports = [p for p in (self.port, self.tls_port, self.fleet_port) if p]
        wait_until(
            lambda: process.poll() is None and all(port_open(p) for p in ports),
            10,
            "mosquitto to listen",
        )

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its sessions) and reap."""
        if self.mosquitto is not None:
            self.mosquitto.stop()


@contextlib.contextmanager
def running_broker(
    fleet_dir: Path, work_dir: Path, tls: TlsFiles | None = None
) -> Iterator[BrokerProcess]:
    """A started ``BrokerProcess``, always stopped at the end."""
    broker = BrokerProcess(fleet_dir, work_dir, tls)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- the fleet -------------------------------------------------------------------------------


@dataclass
class FleetProcess:
    """``fleet serve`` as a subprocess against an external mosquitto."""

    data_dir: Path
    broker: BrokerProcess
    public_broker_url: str | None = None
    public_broker_ca: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    api_tokens: dict[Role, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The REST base URL (what ``edge enroll --fleet`` is given)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, **env: str) -> None:
        """Start and wait until REST listens and ingest has subscribed."""
        command = [
            *FLEET, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port),
            "--mqtt", self.broker.fleet_url, "--mosquitto-pid-file", str(self.broker.pid_file),
            "--log-level", "warning",
            "--public-broker-url", self.public_broker_url or self.broker.url,
        ]  # fmt: skip
        if self.public_broker_ca:
            command += ["--public-broker-ca", str(self.public_broker_ca)]
        log = (self.data_dir / "fleet.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, **env})
        wait_until(lambda: port_open(self.port), 30, "the fleet's REST port")
        wait_until(lambda: bool(self.ingest()["ready"]), 30, "fleet ingest to subscribe")

    def rest(self, method: str, path: str, role: Role = Role.OPERATOR, **options: Any) -> Any:
        """Call the REST API as ``test-{role}``; the decoded JSON answer."""
        answer = self.request(method, path, role, **options)
        answer.raise_for_status()
        return answer.json()

    def request(
        self, method: str, path: str, role: Role = Role.OPERATOR, **options: Any
    ) -> httpx.Response:
        """Call the REST API as ``test-{role}``; the answer, whatever its status."""
        if role not in self.api_tokens:
            repository = SQLiteRepository(self.data_dir / "fleet.sqlite")
            try:
                _token, self.api_tokens[role] = repository.create_api_token(
                    f"test-{role.value}", role, time.time()
                )
            finally:
                repository.close()
        headers = {"Authorization": f"Bearer {self.api_tokens[role]}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, **options)

    def ingest(self) -> dict[str, Any]:
        """The fleet's ingest counters (GET /api/v1/ingest)."""
        counters: dict[str, Any] = self.rest("GET", "/api/v1/ingest")
        return counters

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the fleet process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def token(self, ttl_s: float = 3600.0, site: str = SITE_ID) -> str:
        """A new one-time enrollment token (written straight into the fleet's database)."""
        repository = SQLiteRepository(self.data_dir / "fleet.sqlite")
        try:
            now = time.time()
            _token, secret = repository.create_enrollment_token(
                site, now + ttl_s, "test", None, now
            )
        finally:
            repository.close()
        return secret


@contextlib.contextmanager
def running_fleet(
    data_dir: Path, broker: BrokerProcess, **options: str | Path | None
) -> Iterator[FleetProcess]:
    """A started ``FleetProcess`` that is always killed at the end."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fleet = FleetProcess(data_dir, broker, **options)  # type: ignore[arg-type]
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.kill()


@contextlib.contextmanager
def fleet_and_gateway(
    tmp: Path, name: str = "gw"
) -> Iterator[tuple[BrokerProcess, FleetProcess, str]]:
    """A broker, the fleet on it, and a gateway enrolled in ``tmp / name``: its id."""
    with (
        running_broker(tmp / "fleet", tmp / "mosquitto") as broker,
        running_fleet(tmp / "fleet", broker) as fleet,
    ):
        yield broker, fleet, enroll(tmp / name, fleet)


# --- the gateway ---------------------------------------------------------------------------------


def edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one ``edge`` command to completion."""
    return subprocess.run(
        [*EDGE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def enroll(data_dir: Path, fleet: FleetProcess, token: str | None = None) -> str:
    """``edge enroll`` with a fresh token; returns the gateway id."""
    result = edge(
        "enroll", "-d", str(data_dir), "--fleet", fleet.url, "--token", token or fleet.token()
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads((data_dir / "enrollment.json").read_text())["gateway_id"])


def _ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to a gateway's store, its stage (if any) attached."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    reading_stage.attach_recorded(conn)
    return conn


def gateway_seqs(data_dir: Path, table: str = "readings") -> list[int]:
    """Every seq of ``table`` in the gateway's store."""
    with contextlib.closing(_ro(data_dir / "store.sqlite")) as db:
        return [s for (s,) in db.execute(f"SELECT seq FROM {table} ORDER BY seq")]


def gateway_marks(data_dir: Path) -> dict[str, tuple[int, int]]:
    """``(last seq, watermark)`` per stream in the gateway's store."""
    path = data_dir / "store.sqlite"
    if not path.exists():
        return {"readings": (0, 0), "events": (0, 0)}
    with contextlib.closing(_ro(path)) as db:
        try:
            last = dict(db.execute(last_seqs_sql(reading_stage.attach_recorded(db))).fetchall())
            acked = dict(db.execute("SELECT stream, seq FROM watermarks").fetchall())
        except sqlite3.OperationalError:
            return {"readings": (0, 0), "events": (0, 0)}
    return {s: (last.get(s, 0), acked.get(s, 0)) for s in ("readings", "events")}


def fleet_seqs(fleet_dir: Path, gateway_id: str, table: str = "readings") -> list[int]:
    """Every seq of ``table`` the fleet stored for ``gateway_id`` (duplicates would show)."""
    with contextlib.closing(_ro(fleet_dir / "fleet.sqlite")) as db:
        return [
            s
            for (s,) in db.execute(
                f"SELECT t.seq FROM {table} t JOIN gateways g ON g.num = t.gw "
                "WHERE g.id = ? ORDER BY t.seq",
                (gateway_id,),
            )
        ]


def fleet_gateway(fleet_dir: Path, gateway_id: str) -> dict[str, object]:
    """The fleet's row for a gateway, with its stream marks."""
    with contextlib.closing(_ro(fleet_dir / "fleet.sqlite")) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM gateways WHERE id = ?", (gateway_id,)).fetchone()
        marks = db.execute(
            "SELECT stream, contiguous FROM stream_marks WHERE gw = ?", (row["num"],)
        ).fetchall()
    return {**dict(row), "marks": {m["stream"]: m["contiguous"] for m in marks}}


def fleet_command_status(fleet_dir: Path) -> list[str]:
    """The status of every command the fleet queued, oldest first."""
    with contextlib.closing(_ro(fleet_dir / "fleet.sqlite")) as db:
        return [s for (s,) in db.execute("SELECT status FROM commands ORDER BY issued_at")]


def fleet_caught_up(fleet_dir: Path, gateway_id: str, data_dir: Path) -> bool:
    """True when the fleet holds both streams up to the gateway's last stored seq."""
    marks = fleet_gateway(fleet_dir, gateway_id)["marks"]
    assert isinstance(marks, dict)
    return all(marks.get(s, 0) >= last for s, (last, _) in gateway_marks(data_dir).items())


def drain(data_dir: Path) -> str:
    """``edge uplink drain`` on a stopped gateway; returns its output."""
    result = edge("uplink", "drain", "-d", str(data_dir), "--timeout", "60", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_exactly_once(fleet_dir: Path, gateway_id: str, data_dir: Path) -> dict[str, int]:
    """The fleet holds exactly the (gateway, seq) set the gateway stored, for both streams."""
    figures = {}
    for table in ("readings", "events"):
        ours, theirs = gateway_seqs(data_dir, table), fleet_seqs(fleet_dir, gateway_id, table)
        assert len(theirs) == len(set(theirs)), f"duplicate {table} at the fleet"
        missing = sorted(set(ours) - set(theirs))
        extra = sorted(set(theirs) - set(ours))
        assert not missing, f"{len(missing)} {table} missing at the fleet, first {missing[:5]}"
        assert not extra, f"{len(extra)} {table} at the fleet the gateway never stored"
        figures[table] = len(ours)
    return figures


# --- what reaches the broker -------------------------------------------------------------------


@dataclass
class Observed:
    """One batch as it reached the broker."""

    kind: str
    first_seq: int
    last_seq: int


class BrokerObserver:
    """Subscribes, with the fleet's account and a persistent session, to a gateway's batches.

    ``seen`` lists every data and events batch in the order the broker delivered them;
    the persistent session keeps that order across a broker restart.
    """

    def __init__(self, fleet_dir: Path, gateway_id: str) -> None:
        self.account = FleetAccount.load_or_create(fleet_dir)
        self.gateway_id = gateway_id
        self.seen: list[Observed] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def _run(self, port: int) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    port,
                    username=self.account.username,
                    password=self.account.password,
                    identifier=f"observer-{self.gateway_id}",
                    clean_session=False,
                ) as client:
                    for kind in ("data", "events"):
                        await client.subscribe(f"hw/v1/{self.gateway_id}/{kind}", qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        body = json.loads(message.payload)
                        kind = str(message.topic).rsplit("/", 1)[1]
                        self.seen.append(Observed(kind, body["first_seq"], body["last_seq"]))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def running(self, port: int) -> AsyncIterator[BrokerObserver]:
        """Observe until the block ends."""
        self._task = asyncio.create_task(self._run(port))
        try:
            await asyncio.wait_for(self._subscribed.wait(), 10)
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kinds_since(self, index: int, kind: str) -> int:
        """How many batches of ``kind`` arrived at or after position ``index``."""
        return sum(1 for o in self.seen[index:] if o.kind == kind)
