"""SL 651 receiving centre: reports stored and acknowledged per second, over TCP, durable.

Runs ``fleet sl651 serve`` as its own process on a fresh data directory (SQLite with
``synchronous=FULL``, as in production) and N simulated stations
(``hardware_sim.sl651_station``) in this process, all connected at once, each sending R
timed reports (32: accumulated rain, water level, voltage) one after another, each waiting
for its acknowledgement. Reports the rate and the acknowledgement latency (send to
answer, p50/p99/max), and checks that every reading was stored once. What a county needs:
5,000 stations reporting every 5 minutes are about 17 reports per second. How many
stations one process holds connected is the next slice's bench (bench/sl651.py).
Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from fleet.sl651_stations import StationRegistry
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_until
from hardware_sim.sl651_station import Sl651Station

PASSWORD = 0x5A7C


def address(n: int) -> str:
    """The address of simulated station ``n``."""
    return f"{1_000_000_000 + n:010d}"


async def station_reports(port: int, n: int, reports: int, latencies: list[float]) -> None:
    """One station: ``reports`` timed reports, one after another, each acknowledged."""
    async with Sl651Station(address(n), PASSWORD, "127.0.0.1", port, ack_timeout_s=30) as sim:
        start = datetime(2026, 7, 18, 0, 0)
        for r in range(reports):
            observed = start + timedelta(minutes=5 * r)
            began = time.perf_counter()
            await sim.timed_report(
                observed,
                observed + timedelta(seconds=7),
                water_level=f"{1 + r / 1000:.3f}",
                rainfall_accumulated=f"{r / 10:.1f}",
            )
            latencies.append(time.perf_counter() - began)


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the centre accepts connections (failing at once if its process ends)."""

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"fleet sl651 serve ended with {process.returncode}")
        return port_open(port)

    wait_until(listening, 60, "fleet sl651 serve listening")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200, help="stations connected at once")
    parser.add_argument("--reports", type=int, default=10, help="reports per station")
    args = parser.parse_args()
    fleet = [sys.executable, "-m", "fleet.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data = ["--data-dir", tmp]
        add = [*fleet, "sl651", "add-station", address(0), "--password", "5A7C", "--site", "s"]
        subprocess.run([*add, *data], check=True, capture_output=True)
        _register_rest(Path(tmp), args.stations)
        port = free_port()
        serve = [*fleet, "sl651", "serve", "--port", str(port), "--log-level", "warning", *data]
        process = subprocess.Popen(serve)
        try:
            wait_listening(port, process)
            latencies: list[float] = []

            async def run_all() -> float:
                began = time.perf_counter()
                async with asyncio.TaskGroup() as group:
                    for n in range(args.stations):
                        group.create_task(station_reports(port, n, args.reports, latencies))
                return time.perf_counter() - began

            elapsed = asyncio.run(run_all())
        finally:
            process.terminate()
            process.wait(30)
        stored = _count(Path(tmp) / "fleet.sqlite")
    total = args.stations * args.reports
    latencies.sort()
    result = {
        "bench": "sl651_centre",
        "stations": args.stations,
        "reports": total,
        "seconds": round(elapsed, 2),
        "reports_per_s": round(total / elapsed, 1),
        "ack_ms_p50": round(1000 * statistics.median(latencies), 1),
        "ack_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "ack_ms_max": round(1000 * latencies[-1], 1),
        "readings_stored": stored,
        "readings_expected": total * 3,
        "cpus": os.cpu_count(),
    }
    print(f"{total} reports from {args.stations} stations in {elapsed:.1f} s")
    print(json.dumps(result))


def _register_rest(data_dir: Path, stations: int) -> None:
    """Register stations 1.. directly (the CLI registered station 0 and made the schema)."""
    registry = StationRegistry(data_dir / "fleet.sqlite")
    try:
        for n in range(1, stations):
            registry.add_station(address(n), PASSWORD, "s", time.time())
    finally:
        registry.close()


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])


if __name__ == "__main__":
    main()
