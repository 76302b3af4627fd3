"""Fleet ingest throughput: simulated gateways flush their backlogs through mosquitto.

Three measurements in one run, on the same messages:
- end to end: the real fleet processes (``fleet serve`` plus ``fleet ingest`` workers:
  validation, SQLite, acks) while every gateway uploads its backlog by the protocol
  (window of batches, watermark moved by acks); until every gateway holds the ack of its
  last batch;
- broker ceiling: the same messages to a bare subscriber (its own process) that only
  counts them;
- storage ceiling: the same rows, their values ready to bind, inserted straight into the
  fleet's SQLite schema in the same commit groups, same durability; the best of ingest's
  per-batch INSERT and the classic six-values-a-row multi-row INSERT (``executemany`` is
  reported beside them).

The fleet already holds ``--history`` readings of every gateway (default 2,000), as a
county fleet in service does when a backlog arrives after an outage; every measurement
starts from that database. ``--history 0`` starts from an empty one instead, where the
storage ceiling appends every row, in key order, at the end of the table (SQLite's
fastest path), which rows split among two ingest processes by the broker do not get.

With ``--load preload`` (the default) the receivers (fleet processes, bare subscriber)
are stopped while the gateways publish their first window, so the broker holds it for
their sessions as after an outage; the window opens when they continue. The simulated
gateways, other machines in the field, then only take their acks inside the window and
run niced. ``--load live`` times from the first publish instead. CPU seconds inside each
window are reported per part, with what other programs on the machine (and the kernel's
I/O threads) used meanwhile, since the machine may be shared.

Gateways are real MQTT sessions with their own credentials and ACL, spread over a few
publisher processes. Prints a JSON object as its last line; target: >= 200,000 readings/s
end to end and >= 80 % of the lower ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from fleet.broker_files import (
    FleetAccount,
    Listener,
    mosquitto_conf,
    write_access_files,
)
from fleet.credentials import mosquitto_hash, new_secret
from fleet.ingest import group_size
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import NewGateway, Role
from fleet.sqlite_ingest import insert_readings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.simgateway import EncodedBatch, SimulatedGateway
from protocol import DataBatch, Stream, Topic, subscription

T0 = 1_750_000_000.0
CHANNELS = ("rain_total", "rain_rate", "water_level", "tilt_x", "tilt_y", "crack", "battery_v")
EXECUTEMANY_SQL = (
    "INSERT OR IGNORE INTO readings (gw, seq, ts, channel, value, quality) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
TARGET = 200_000
RATIO_TARGET = 0.8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    msg = f"nothing listens on port {port} after {timeout} s"
    raise RuntimeError(msg)


def make_rows(first: int, count: int) -> list[tuple[int, float, str, float, int]]:
    return [
        (seq, T0 + seq * 10.0, CHANNELS[seq % len(CHANNELS)], (seq % 977) * 0.25, 0)
        for seq in range(first, first + count)
    ]


def batch_spans(first: int, readings: int, batch: int) -> list[tuple[int, int]]:
    """(first seq, rows) of each batch of a backlog of ``readings`` from seq ``first``."""
    end = first + readings
    return [(start, min(batch, end - start)) for start in range(first, end, batch)]


def encode_backlog(gateway_id: str, first: int, readings: int, batch: int) -> list[EncodedBatch]:
    return [
        EncodedBatch.of(
            DataBatch(
                gateway_id=gateway_id,
                first_seq=start,
                last_seq=start + rows - 1,
                rows=make_rows(start, rows),
            )
        )
        for start, rows in batch_spans(first, readings, batch)
    ]


# --- publisher processes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishRun:
    """One flush by every publisher: the measured window and what it cost."""

    start: float
    done: float
    resends: int
    publisher_cpu: float
    watched_cpu: list[float]
    machine_cpu: tuple[float, float]  # busy and stolen CPU seconds of the whole machine


def publisher_main(
    url: str,
    accounts: list[tuple[str, str]],
    first: int,
    readings: int,
    batch: int,
    mode: str,
    window: int,
    barrier: Barrier,
    results: mp.Queue[Any],
    niceness: int,
) -> None:
    """One publisher process: its share of the gateways, connected before the barrier.

    It runs at ``niceness`` so the simulated gateways, other machines in the field, yield
    the CPU to the fleet and the broker under test.
    """
    os.nice(niceness)
    asyncio.run(_publish(url, accounts, first, readings, batch, mode, window, barrier, results))


async def _publish(
    url: str,
    accounts: list[tuple[str, str]],
    first: int,
    readings: int,
    batch: int,
    mode: str,
    window: int,
    barrier: Barrier,
    results: mp.Queue[Any],
) -> None:
    backlogs = {gid: encode_backlog(gid, first, readings, batch) for gid, _ in accounts}
    gateways = [
        SimulatedGateway(gid, BrokerConnection(url, gid, pw), ack_timeout=120, window=window)
        for gid, pw in accounts
    ]
    connecting = asyncio.Semaphore(50)

    async def connect(gateway: SimulatedGateway) -> None:
        async with connecting:
            await gateway.__aenter__()

    await asyncio.gather(*(connect(g) for g in gateways))
    await asyncio.to_thread(barrier.wait)
    cpu_start = time.process_time()
    sent = [asyncio.Event() for _ in gateways]

    async def flush(gateway: SimulatedGateway, window_sent: asyncio.Event) -> None:
        batches = backlogs[gateway.gateway_id]
        if mode == "e2e":
            await gateway.upload(batches, window_sent=window_sent)
        else:
            for encoded in batches:
                await gateway.publish(Topic.DATA, encoded.payload)
            window_sent.set()

    flushing = asyncio.gather(*(flush(g, e) for g, e in zip(gateways, sent, strict=True)))
    await asyncio.wait(
        [flushing, asyncio.ensure_future(asyncio.gather(*(e.wait() for e in sent)))],
        return_when=asyncio.FIRST_COMPLETED,
    )
    results.put({"kind": "sent", "cpu": time.process_time() - cpu_start})
    cpu_window = time.process_time()
    await flushing
    done = time.time()
    cpu = time.process_time() - cpu_window
    resends = sum(g.resends for g in gateways)
    await asyncio.gather(*(g.__aexit__(None, None, None) for g in gateways))
    results.put({"kind": "done", "done": done, "resends": resends, "cpu": cpu})


def run_publishers(
    url: str,
    accounts: list[tuple[str, str]],
    args: argparse.Namespace,
    mode: str,
    consumers: Sequence[int],
    watch: Sequence[int] = (),
    finished: Callable[[], float] | None = None,
) -> PublishRun:
    """Flush every gateway's backlog; ``consumers`` are the processes that receive it.

    ``--load preload`` (the default) stops the consumers (SIGSTOP) while the gateways
    publish their first window, so the broker holds it for their sessions, as after an
    outage; the window opens when they are continued. ``--load live`` opens it when the
    publishers start, so their CPU competes with the consumers'. The window closes when
    the last gateway holds its last ack, or when ``finished`` (which blocks) returns that
    time. The CPU seconds that ``consumers`` and ``watch`` used inside it are returned.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(args.publishers + 1)
    results: mp.Queue[Any] = ctx.Queue()
    shares = [accounts[i :: args.publishers] for i in range(args.publishers)]
    processes = [
        ctx.Process(
            target=publisher_main,
            args=(
                *(url, share, args.history + 1, args.readings, args.batch, mode, args.window),
                *(barrier, results, args.publisher_nice),
            ),
        )
        for share in shares
    ]
    for process in processes:
        process.start()
    watched = [*consumers, *watch]
    preload = args.load == "preload"
    reports: dict[str, list[dict[str, Any]]] = {"sent": [], "done": []}
    if preload:
        for pid in consumers:
            os.kill(pid, signal.SIGSTOP)
    try:
        barrier.wait(timeout=300)
        start = time.time()
        cpu_before = [cpu_seconds(pid) for pid in watched]
        machine_before = machine_cpu()
        while len(reports["sent"]) < len(processes):
            report = results.get(timeout=600)
            reports[report["kind"]].append(report)
        if preload:
            start = time.time()
            cpu_before = [cpu_seconds(pid) for pid in watched]
            machine_before = machine_cpu()
    finally:
        if preload:
            for pid in consumers:
                os.kill(pid, signal.SIGCONT)
    while len(reports["done"]) < len(processes):
        report = results.get(timeout=600)
        reports[report["kind"]].append(report)
    done = max(r["done"] for r in reports["done"]) if finished is None else finished()
    cpu_after = [cpu_seconds(pid) for pid in watched]
    machine_after = machine_cpu()
    for process in processes:
        process.join(timeout=60)
    publisher_cpu = sum(r["cpu"] for r in reports["done"])
    if not preload:
        publisher_cpu += sum(r["cpu"] for r in reports["sent"])
    return PublishRun(
        start=start,
        done=done,
        resends=sum(r["resends"] for r in reports["done"]),
        publisher_cpu=publisher_cpu,
        watched_cpu=[after - before for before, after in zip(cpu_before, cpu_after, strict=True)],
        machine_cpu=(
            machine_after[0] - machine_before[0],
            machine_after[1] - machine_before[1],
        ),
    )


# --- the three measurements -----------------------------------------------------------------


def per_row_sql(rows: int) -> str:
    return EXECUTEMANY_SQL.removesuffix("(?, ?, ?, ?, ?, ?)") + ",".join(["(?,?,?,?,?,?)"] * rows)


PER_ROW_STATEMENT = per_row_sql(1000)


def insert_per_row(conn: sqlite3.Connection, values: list[Any]) -> None:
    """The classic multi-row INSERT: six values a row, 1,000 rows a statement."""
    full = len(values) - len(values) % 6000
    for start in range(0, full, 6000):
        conn.execute(PER_ROW_STATEMENT, values[start : start + 6000])
    if full < len(values):
        conn.execute(per_row_sql((len(values) - full) // 6), values[full:])


def channel_ids(conn: sqlite3.Connection) -> dict[tuple[int, str], int]:
    """Every gateway's channel ids, giving the bench's channels one where missing."""
    nums = [int(num) for (num,) in conn.execute("SELECT num FROM gateways ORDER BY num")]
    conn.executemany(
        "INSERT OR IGNORE INTO channels (gw, name) VALUES (?, ?)",
        [(gw, name) for gw in nums for name in CHANNELS],
    )
    rows = conn.execute("SELECT gw, name, id FROM channels").fetchall()
    return {(int(gw), str(name)): int(cid) for gw, name, cid in rows}


def bind_values(gw: int, rows: list[tuple[int, float, str, float, int]], ids: Any) -> list[Any]:
    """Ingest's bind list for one batch: the gateway, then five values a row."""
    values: list[Any] = [gw]
    for s, t, c, v, q in rows:
        values += (s, t, ids[(gw, c)], v, q)
    return values


def per_row_values(values: list[Any]) -> list[Any]:
    """``bind_values`` with the gateway repeated in every row: six values a row."""
    gw = values[0]
    return [x for i in range(1, len(values), 5) for x in (gw, *values[i : i + 5])]


def store_history(db_path: Path, history: int, batch: int) -> None:
    """Store ``history`` readings (seq 1..history) and the stream mark of every gateway.

    As a fleet that has been running holds them before a backlog arrives.
    """
    if history <= 0:
        return
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        ids = channel_ids(conn)
        nums = sorted({gw for gw, _name in ids})
        for start, count in batch_spans(1, history, batch):
            rows = make_rows(start, count)
            for gw in nums:
                insert_readings(conn, bind_values(gw, rows, ids))
        conn.executemany(
            "INSERT INTO stream_marks (gw, stream, contiguous) VALUES (?, ?, ?)",
            [(gw, Stream.READINGS.value, history) for gw in nums],
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def storage_rates(
    work: Path, base: Path, first: int, readings: int, batch: int
) -> dict[str, float]:
    """Rows/s straight into the fleet schema, by three ways of inserting; the best counts.

    Each method starts from a copy of ``base``: the fleet's database with its gateways
    enrolled and their history stored. No MQTT, no parsing, no acks: values ready to bind,
    in the order the gateways publish them and in the biggest commit groups ingest takes
    (``group_size`` over the payload sizes), synchronous=FULL as the fleet's durable
    default. ``per-batch`` is ingest's own ``insert_readings`` (one statement per batch,
    the gateway bound once); ``per-row`` is the classic multi-row INSERT of six values a
    row, 1,000 rows a statement; ``executemany`` one row per step.
    """
    ready = work / "storage-base.sqlite"  # the base with the bench's channels given ids
    shutil.copyfile(base, ready)
    with contextlib.closing(sqlite3.connect(ready, isolation_level=None)) as conn:
        ids = channel_ids(conn)
    nums = sorted({gw for gw, _name in ids})
    messages = []  # (gw, rows, payload bytes) in the order the gateways publish them
    for start, count in batch_spans(first, readings, batch):
        rows = make_rows(start, count)
        wire = DataBatch(
            gateway_id=f"gw-{0:010d}", first_seq=start, last_seq=start + count - 1, rows=rows
        )
        size = len(wire.model_dump_json())  # as long as every gateway's (fixed-width ids)
        messages += [(gw, rows, size) for gw in nums]
    groups: list[list[list[Any]]] = []  # per commit, per batch: ingest's values to bind
    while messages:
        taken = group_size(size for _gw, _rows, size in messages)
        groups.append([bind_values(gw, rows, ids) for gw, rows, _size in messages[:taken]])
        messages = messages[taken:]
    six_a_row = [[per_row_values(values) for values in group] for group in groups]
    rates = {}
    for method in ("per-batch", "per-row", "executemany"):
        path = work / f"storage-{method}.sqlite"
        shutil.copyfile(ready, path)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        method_groups = groups if method == "per-batch" else six_a_row
        start_time = time.perf_counter()
        for group in method_groups:
            conn.execute("BEGIN IMMEDIATE")
            for values in group:
                if method == "per-batch":
                    insert_readings(conn, values)
                elif method == "per-row":
                    insert_per_row(conn, values)
                else:
                    conn.executemany(EXECUTEMANY_SQL, zip(*[iter(values)] * 6, strict=True))
            conn.execute("COMMIT")
        rates[method] = readings * len(nums) / (time.perf_counter() - start_time)
        conn.close()
    return rates


def bare_subscriber_main(
    url: str, username: str, password: str, expected: int, results: mp.Queue[Any]
) -> None:
    """Count messages on every gateway's data topic; report when the last one arrived."""
    asyncio.run(_bare_subscriber(url, username, password, expected, results))


async def _bare_subscriber(
    url: str, username: str, password: str, expected: int, results: mp.Queue[Any]
) -> None:
    connection = BrokerConnection(url, username, password)
    async with connection.client("bench-bare-subscriber") as client:
        await client.subscribe(subscription(Topic.DATA), qos=1)
        results.put("ready")
        seen = 0
        async for _message in client.messages:
            seen += 1
            if seen == expected:
                results.put({"last": time.time()})
                return
    results.put({"error": "the bare subscriber stopped early"})


def broker_ceiling(
    broker: Broker,
    account: FleetAccount,
    accounts: list[tuple[str, str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Readings/s from the broker to a subscriber that only counts them, loaded like ingest.

    The subscriber uses the fleet's account on the fleet's listener, as ingest does.
    """
    messages = len(accounts) * len(batch_spans(args.history + 1, args.readings, args.batch))
    ctx = mp.get_context("spawn")
    results: mp.Queue[Any] = ctx.Queue()
    counter = ctx.Process(
        target=bare_subscriber_main,
        args=(broker.fleet_url, account.username, account.password, messages, results),
    )
    counter.start()
    try:
        if results.get(timeout=60) != "ready":
            msg = "the bare subscriber did not subscribe"
            raise RuntimeError(msg)
        assert counter.pid is not None

        def last_message() -> float:
            report = results.get(timeout=600)
            if "error" in report:
                raise RuntimeError(report["error"])
            return float(report["last"])

        run = run_publishers(
            broker.url, accounts, args, "bare", [counter.pid], [broker.pid], last_message
        )
    finally:
        counter.join(timeout=10)
        if counter.is_alive():
            counter.kill()
    total = len(accounts) * args.readings
    return {
        "rate": total / (run.done - run.start),
        "seconds": run.done - run.start,
        "cpu_s": {
            "subscriber": round(run.watched_cpu[0], 2),
            "broker": round(run.watched_cpu[1], 2),
            "publishers": round(run.publisher_cpu, 2),
            **others_cpu(run, sum(run.watched_cpu) + run.publisher_cpu),
        },
    }


def machine_cpu() -> tuple[float, float]:
    """Busy and stolen CPU seconds of the whole machine so far, all CPUs (Linux)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def others_cpu(run: PublishRun, ours: float) -> dict[str, float]:
    """CPU seconds that other programs on the machine used inside the window, and stolen."""
    busy, steal = run.machine_cpu
    return {"others": round(max(busy - ours, 0.0), 2), "stolen": round(steal, 2)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fleet_end_to_end(
    data_dir: Path,
    broker: Broker,
    accounts: list[tuple[str, str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Readings/s through the real fleet processes; also checks that they stored them all."""
    import httpx  # noqa: PLC0415

    repository = SQLiteRepository(data_dir / "fleet.sqlite", durable=False)
    _token, api_token = repository.create_api_token("bench", Role.VIEWER, time.time())
    repository.close()
    port = free_port()
    log_path = data_dir / "fleet.log"
    log = log_path.open("ab")
    fleet = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "fleet.cli", "serve", "--data-dir", str(data_dir)),
                *("--port", str(port), "--mqtt", broker.fleet_url, "--log-level", "warning"),
                *("--public-broker-url", broker.url),
                *("--ingest-connections", str(args.ingest_connections)),
            ],
            stdout=log,
            stderr=log,
        )
    ]
    for worker in range(1, args.ingest_workers):
        fleet.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "fleet.cli", "ingest", "--data-dir", str(data_dir)),
                    *("--mqtt", broker.fleet_url, "--worker", str(worker)),
                    *("--log-level", "info"),
                    *("--ingest-connections", str(args.ingest_connections)),
                ],
                stdout=log,
                stderr=log,
            )
        )
    try:
        try:
            wait_port(port, 30)
        except RuntimeError:
            sys.stderr.write(log_path.read_text()[-4000:])
            raise
        headers = {"Authorization": f"Bearer {api_token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            workers_ready = (args.ingest_workers - 1) * args.ingest_connections
            deadline = time.monotonic() + 60
            while not (
                http.get("/api/v1/ingest").json()["ready"]
                and log_path.read_text().count("subscribed at") >= workers_ready
            ):
                if time.monotonic() > deadline or any(p.poll() is not None for p in fleet):
                    sys.stderr.write(log_path.read_text()[-4000:])
                    msg = "the fleet's ingest did not subscribe within 60 s"
                    raise RuntimeError(msg)
                time.sleep(0.05)
            pids = [p.pid for p in fleet]
            run = run_publishers(broker.url, accounts, args, "e2e", pids, [broker.pid])
            stats = http.get("/api/v1/ingest").json()
    finally:
        for process in fleet:
            process.send_signal(signal.SIGTERM)
        for process in fleet:
            process.wait(timeout=60)
    with contextlib.closing(sqlite3.connect(data_dir / "fleet.sqlite")) as db:
        stored = int(db.execute("SELECT count(*) FROM readings").fetchone()[0])
        marks = db.execute("SELECT count(*), min(contiguous) FROM stream_marks").fetchone()
    held = args.history + args.readings
    total = len(accounts) * args.readings
    if stored != len(accounts) * held or tuple(marks) != (len(accounts), held):
        msg = f"fleet holds {stored} readings with marks {marks}, expected {len(accounts) * held}"
        raise RuntimeError(msg)
    return {
        "rate": total / (run.done - run.start),
        "seconds": run.done - run.start,
        "resends": run.resends,
        "serve_commits": int(stats["commits"]),
        "cpu_s": {
            "fleet": round(sum(run.watched_cpu[:-1]), 2),
            "broker": round(run.watched_cpu[-1], 2),
            "publishers": round(run.publisher_cpu, 2),
            **others_cpu(run, sum(run.watched_cpu) + run.publisher_cpu),
        },
    }


# --- set-up ---------------------------------------------------------------------------------


def enroll_gateways(data_dir: Path, count: int) -> list[tuple[str, str]]:
    """Register ``count`` gateways the way enrollment does (own password hash each)."""
    repository = SQLiteRepository(data_dir / "fleet.sqlite", durable=False)
    accounts = []
    for i in range(count):
        _token, secret = repository.create_enrollment_token("bench", T0 * 2, None, None, 0)
        gateway_id, password = f"gw-{i:010d}", new_secret()
        repository.redeem_enrollment_token(
            secret,
            NewGateway(gateway_id, "A" * 43 + "=", mosquitto_hash(password), None, None),
            time.time(),
        )
        accounts.append((gateway_id, password))
    write_access_files(
        data_dir / "broker", FleetAccount.load_or_create(data_dir), repository.broker_accounts()
    )
    repository.close()
    return accounts


@dataclass(frozen=True, slots=True)
class Broker:
    """The mosquitto under test: its process and its gateway and fleet listeners."""

    process: subprocess.Popen[bytes]
    url: str
    fleet_url: str

    @property
    def pid(self) -> int:
        """The broker's process id."""
        return self.process.pid


def start_mosquitto(data_dir: Path, work: Path) -> Broker:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port, fleet_port = free_port(), free_port()
    listeners = [Listener(port), Listener(fleet_port, fleet=True)]
    conf = mosquitto_conf(data_dir / "broker", listeners, None)
    conf += "persistence false\nlog_dest none\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    (work / "mosquitto.conf").write_text(conf)
    process = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")])
    wait_port(port, 10)
    wait_port(fleet_port, 10)
    return Broker(process, f"mqtt://127.0.0.1:{port}", f"mqtt://127.0.0.1:{fleet_port}")


def raise_file_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=2000, help="backlog per gateway")
    parser.add_argument("--batch", type=int, default=1000, help="readings per message")
    parser.add_argument(
        "--history",
        type=int,
        default=2000,
        help="readings per gateway the fleet already holds before the backlogs arrive "
        "(0: an empty fleet, every row appended at the end of the table)",
    )
    parser.add_argument("--window", type=int, default=4, help="unacked batches per gateway")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--publisher-nice",
        type=int,
        default=10,
        help="niceness of the publishers: simulated gateways yield the CPU to what is measured",
    )
    parser.add_argument("--ingest-connections", type=int, default=1, help="per process")
    parser.add_argument(
        "--ingest-workers", type=int, default=2, help="fleet processes: serve + N-1 `fleet ingest`"
    )
    parser.add_argument(
        "--load",
        choices=("preload", "live"),
        default="preload",
        help="preload: the broker holds the first window while the receivers are stopped, "
        "as after an outage; live: publishers run inside the measured window",
    )
    args = parser.parse_args()
    files = raise_file_limit()
    if files < args.gateways * 2 + 100:
        sys.exit(f"need {args.gateways * 2 + 100} open files, the limit is {files}")

    with tempfile.TemporaryDirectory(prefix="hw-bench-ingest-") as tmp:
        work = Path(tmp)
        data_dir = work / "fleet"
        accounts = enroll_gateways(data_dir, args.gateways)
        account = FleetAccount.load_or_create(data_dir)
        store_history(data_dir / "fleet.sqlite", args.history, args.batch)
        total = args.gateways * args.readings
        print(
            f"{args.gateways} gateways x {args.readings} readings in batches of {args.batch}, "
            f"{args.history} readings each already held"
        )

        first = args.history + 1
        inserts = storage_rates(work, data_dir / "fleet.sqlite", first, args.readings, args.batch)
        storage = max(inserts["per-batch"], inserts["per-row"])
        print(f"storage ceiling (raw SQLite insert): {storage:,.0f} readings/s")
        for method, rate in inserts.items():
            print(f"  ({method + ',':12} {rate:,.0f} readings/s)")

        mosquitto = start_mosquitto(data_dir, work)
        try:
            bare = broker_ceiling(mosquitto, account, accounts, args)
            broker = bare["rate"]
            print(f"broker ceiling (bare subscriber):     {broker:,.0f} readings/s")
            run = fleet_end_to_end(data_dir, mosquitto, accounts, args)
            e2e = run["rate"]
            print(f"end to end (published->committed->acked): {e2e:,.0f} readings/s")
        finally:
            mosquitto.process.terminate()
            mosquitto.process.wait(timeout=10)

    lower = min(broker, storage)
    result = {
        "benchmark": "fleet_ingest",
        "gateways": args.gateways,
        "readings": total,
        "batch_rows": args.batch,
        "history_per_gateway": args.history,
        "window": args.window,
        "publisher_processes": args.publishers,
        "publisher_nice": args.publisher_nice,
        "ingest_workers": args.ingest_workers,
        "ingest_connections": args.ingest_connections,
        "load": args.load,
        "cpus": os.cpu_count(),
        "e2e_readings_per_s": round(e2e),
        "broker_ceiling_readings_per_s": round(broker),
        "storage_ceiling_readings_per_s": round(storage),
        "storage_by_method_readings_per_s": {k: round(v) for k, v in inserts.items()},
        "ratio_to_lower_ceiling": round(e2e / lower, 3),
        "e2e_seconds": round(run["seconds"], 2),
        "cpu_seconds_during_e2e": run["cpu_s"],
        "cpu_seconds_during_broker_ceiling": bare["cpu_s"],
        "resends": run["resends"],
        "target_readings_per_s": TARGET,
        "target_ratio": RATIO_TARGET,
        "meets_target": e2e >= TARGET and e2e / lower >= RATIO_TARGET,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
