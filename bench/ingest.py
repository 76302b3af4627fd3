"""Fleet ingest throughput: simulated gateways flush their backlogs through mosquitto.

Three measurements in one run, on the same messages:
- end to end: the real ``fleet serve`` process (ingest, SQLite, acks) while every gateway
  uploads its backlog by the protocol (window of batches, watermark moved by acks); time
  from the first publish until every gateway holds the ack of its last batch;
- broker ceiling: the same messages published to a bare subscriber that only counts them;
- storage ceiling: the same rows, their values ready to bind, inserted straight into the
  fleet's SQLite schema with its multi-row INSERT (the fastest way found; the plain
  ``executemany`` rate is reported beside it), in transactions as large as ingest's
  biggest group, same durability.

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
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from fleet.broker_files import FleetAccount, Listener, mosquitto_conf, write_access_files
from fleet.credentials import mosquitto_hash, new_secret
from fleet.ingest import MAX_COMMIT_ROWS
from fleet.mqtt_connection import BrokerConnection
from fleet.repository import NewGateway, Role
from fleet.simgateway import EncodedBatch, SimulatedGateway
from fleet.sqlite_ingest import insert_readings
from fleet.sqlite_repository import SQLiteRepository
from protocol import DataBatch, Topic, subscription

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


def encode_backlog(gateway_id: str, readings: int, batch: int) -> list[EncodedBatch]:
    return [
        EncodedBatch.of(
            DataBatch(
                gateway_id=gateway_id,
                first_seq=first,
                last_seq=min(first + batch, readings + 1) - 1,
                rows=make_rows(first, min(batch, readings + 1 - first)),
            )
        )
        for first in range(1, readings + 1, batch)
    ]


# --- publisher processes ---------------------------------------------------------------


def publisher_main(
    url: str,
    accounts: list[tuple[str, str]],
    readings: int,
    batch: int,
    mode: str,
    window: int,
    barrier: Barrier,
    results: mp.Queue[Any],
) -> None:
    """One publisher process: its share of the gateways, connected before the barrier."""
    asyncio.run(_publish(url, accounts, readings, batch, mode, window, barrier, results))


async def _publish(
    url: str,
    accounts: list[tuple[str, str]],
    readings: int,
    batch: int,
    mode: str,
    window: int,
    barrier: Barrier,
    results: mp.Queue[Any],
) -> None:
    backlogs = {gid: encode_backlog(gid, readings, batch) for gid, _ in accounts}
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

    async def flush(gateway: SimulatedGateway) -> None:
        batches = backlogs[gateway.gateway_id]
        if mode == "e2e":
            await gateway.upload(batches)
        else:
            for encoded in batches:
                await gateway.publish(Topic.DATA, encoded.payload)

    await asyncio.gather(*(flush(g) for g in gateways))
    done = time.time()
    cpu = time.process_time() - cpu_start
    resends = sum(g.resends for g in gateways)
    await asyncio.gather(*(g.__aexit__(None, None, None) for g in gateways))
    results.put({"done": done, "resends": resends, "cpu": cpu})


def run_publishers(
    url: str,
    accounts: list[tuple[str, str]],
    args: argparse.Namespace,
    mode: str,
) -> tuple[float, float, int, float]:
    """Start the publishers, release them together; return start, last done, resends, CPU s."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(args.publishers + 1)
    results: mp.Queue[Any] = ctx.Queue()
    shares = [accounts[i :: args.publishers] for i in range(args.publishers)]
    processes = [
        ctx.Process(
            target=publisher_main,
            args=(url, share, args.readings, args.batch, mode, args.window, barrier, results),
        )
        for share in shares
    ]
    for process in processes:
        process.start()
    barrier.wait(timeout=300)
    start = time.time()
    reports = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    done = max(r["done"] for r in reports)
    return start, done, sum(r["resends"] for r in reports), sum(r["cpu"] for r in reports)


# --- the three measurements -----------------------------------------------------------------


def storage_rates(work: Path, gateways: int, readings: int, batch: int) -> tuple[float, float]:
    """Rows/s straight into the fleet schema: (multi-row INSERT, executemany) for reference.

    No MQTT, no parsing, no acks: values ready to bind, in commits as large as ingest's
    largest group, synchronous=FULL as the fleet's durable default.
    """
    rates = []
    for method in ("multi-row", "executemany"):
        path = work / f"storage-{method}.sqlite"
        SQLiteRepository(path).close()  # the fleet's schema, in WAL mode
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")
        channel_ids = {}
        for gw in range(1, gateways + 1):
            for name in CHANNELS:
                cur = conn.execute("INSERT INTO channels (gw, name) VALUES (?, ?)", (gw, name))
                channel_ids[(gw, name)] = cur.lastrowid
        groups: list[list[tuple[Any, ...]]] = [[]]
        for first in range(1, readings + 1, batch):
            rows = make_rows(first, min(batch, readings + 1 - first))
            for gw in range(1, gateways + 1):
                if len(groups[-1]) >= MAX_COMMIT_ROWS:
                    groups.append([])
                groups[-1] += [(gw, s, t, channel_ids[(gw, c)], v, q) for s, t, c, v, q in rows]
        flat = [[value for row in group for value in row] for group in groups]
        total = sum(len(group) for group in groups)
        start = time.perf_counter()
        for group, values in zip(groups, flat, strict=True):
            conn.execute("BEGIN IMMEDIATE")
            if method == "multi-row":
                insert_readings(conn, values)
            else:
                conn.executemany(EXECUTEMANY_SQL, group)
            conn.execute("COMMIT")
        rates.append(total / (time.perf_counter() - start))
        conn.close()
    return rates[0], rates[1]


async def bare_subscriber(
    url: str, account: FleetAccount, expected: int, ready: asyncio.Event
) -> float:
    """Count messages on every gateway's data topic; return when the last one arrived."""
    connection = BrokerConnection(url, account.username, account.password)
    async with connection.client("bench-bare-subscriber") as client:
        await client.subscribe(subscription(Topic.DATA), qos=1)
        ready.set()
        seen = 0
        async for _message in client.messages:
            seen += 1
            if seen == expected:
                return time.time()
    msg = "subscriber stopped early"
    raise RuntimeError(msg)


async def broker_ceiling(
    url: str, account: FleetAccount, accounts: list[tuple[str, str]], args: argparse.Namespace
) -> tuple[float, float]:
    messages = len(accounts) * -(-args.readings // args.batch)
    ready = asyncio.Event()
    counting = asyncio.create_task(bare_subscriber(url, account, messages, ready))
    await ready.wait()
    start, _published, _, _ = await asyncio.to_thread(run_publishers, url, accounts, args, "bare")
    last = await asyncio.wait_for(counting, 600)
    return start, last


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fleet_end_to_end(
    data_dir: Path,
    url: str,
    broker_pid: int,
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
                *("--port", str(port), "--mqtt", url, "--log-level", "warning"),
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
                    *("--mqtt", url, "--worker", str(worker), "--log-level", "info"),
                    *("--ingest-connections", str(args.ingest_connections)),
                ],
                stdout=log,
                stderr=log,
            )
        )
    try:
        wait_port(port, 30)
        headers = {"Authorization": f"Bearer {api_token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            while not http.get("/api/v1/ingest").json()["ready"]:
                time.sleep(0.05)
            workers_ready = (args.ingest_workers - 1) * args.ingest_connections
            while log_path.read_text().count("subscribed at") < workers_ready:
                time.sleep(0.05)
            cpu_before = [cpu_seconds(p.pid) for p in fleet] + [cpu_seconds(broker_pid)]
            start, done, resends, publisher_cpu = run_publishers(url, accounts, args, "e2e")
            cpu_after = [cpu_seconds(p.pid) for p in fleet] + [cpu_seconds(broker_pid)]
            stats = http.get("/api/v1/ingest").json()
    finally:
        for process in fleet:
            process.send_signal(signal.SIGTERM)
        for process in fleet:
            process.wait(timeout=60)
    with contextlib.closing(sqlite3.connect(data_dir / "fleet.sqlite")) as db:
        stored = int(db.execute("SELECT count(*) FROM readings").fetchone()[0])
        marks = db.execute("SELECT count(*), min(contiguous) FROM stream_marks").fetchone()
    total = len(accounts) * args.readings
    if stored != total or tuple(marks) != (len(accounts), args.readings):
        msg = f"fleet stored {stored} readings with marks {marks}, expected {total}"
        raise RuntimeError(msg)
    used = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    return {
        "rate": total / (done - start),
        "seconds": done - start,
        "resends": resends,
        "serve_commits": int(stats["commits"]),
        "cpu_s": {
            "fleet": round(sum(used[:-1]), 2),
            "broker": round(used[-1], 2),
            "publishers": round(publisher_cpu, 2),
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


def start_mosquitto(data_dir: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = mosquitto_conf(data_dir / "broker", [Listener(port)], None)
    conf += "persistence false\nlog_dest none\n"
    if os.geteuid() == 0:
        conf += "user root\n"
    (work / "mosquitto.conf").write_text(conf)
    process = subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")])
    wait_port(port, 10)
    return process, f"mqtt://127.0.0.1:{port}"


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
    parser.add_argument("--window", type=int, default=4, help="unacked batches per gateway")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument("--ingest-connections", type=int, default=1, help="per process")
    parser.add_argument(
        "--ingest-workers", type=int, default=2, help="fleet processes: serve + N-1 `fleet ingest`"
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
        total = args.gateways * args.readings
        print(f"{args.gateways} gateways x {args.readings} readings in batches of {args.batch}")

        storage, executemany = storage_rates(work, args.gateways, args.readings, args.batch)
        print(f"storage ceiling (raw SQLite insert): {storage:,.0f} readings/s")
        print(f"  (executemany, for reference:       {executemany:,.0f} readings/s)")

        broker_process, url = start_mosquitto(data_dir, work)
        try:
            start, last = asyncio.run(broker_ceiling(url, account, accounts, args))
            broker = total / (last - start)
            print(f"broker ceiling (bare subscriber):     {broker:,.0f} readings/s")
            run = fleet_end_to_end(data_dir, url, broker_process.pid, accounts, args)
            e2e = run["rate"]
            print(f"end to end (published->committed->acked): {e2e:,.0f} readings/s")
        finally:
            broker_process.terminate()
            broker_process.wait(timeout=10)

    lower = min(broker, storage)
    result = {
        "benchmark": "fleet_ingest",
        "gateways": args.gateways,
        "readings": total,
        "batch_rows": args.batch,
        "window": args.window,
        "publisher_processes": args.publishers,
        "ingest_workers": args.ingest_workers,
        "ingest_connections": args.ingest_connections,
        "cpus": os.cpu_count(),
        "e2e_readings_per_s": round(e2e),
        "broker_ceiling_readings_per_s": round(broker),
        "storage_ceiling_readings_per_s": round(storage),
        "storage_executemany_readings_per_s": round(executemany),
        "ratio_to_lower_ceiling": round(e2e / lower, 3),
        "e2e_seconds": round(run["seconds"], 2),
        "cpu_seconds_during_e2e": run["cpu_s"],
        "resends": run["resends"],
        "target_readings_per_s": TARGET,
        "target_ratio": RATIO_TARGET,
        "meets_target": e2e >= TARGET and e2e / lower >= RATIO_TARGET,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
