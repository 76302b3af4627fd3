"""SL 651 receiving centre: reports stored and acknowledged per second, over TCP, durable.

Runs ``fleet sl651 serve`` as its own process on a fresh data directory (SQLite with
``synchronous=FULL``, as in production) and N simulated stations
(``hardware_sim.sl651_station``) in this process, all connected at once, each sending R
timed reports (32: accumulated rain, water level, voltage) one after another, each waiting
for its acknowledgement. Reports the rate and the acknowledgement latency (send to
answer, p50/p99/max), and checks that every reading was stored once. What a county needs:
5,000 stations reporting every 5 minutes are about 17 reports per second. How many
stations one process holds connected while they report: bench/sl651.py.
Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from hardware_sim.harness.sl651_centre import (
    PASSWORD,
    count_readings,
    register_stations,
    serving_centre,
    station_address,
)
from hardware_sim.sl651_station import Sl651Station


async def station_reports(port: int, n: int, reports: int, latencies: list[float]) -> None:
    """One station: ``reports`` timed reports, one after another, each acknowledged."""
    async with Sl651Station(
        station_address(n), PASSWORD, "127.0.0.1", port, ack_timeout_s=30
    ) as sim:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=200, help="stations connected at once")
    parser.add_argument("--reports", type=int, default=10, help="reports per station")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        register_stations(data_dir, args.stations)
        with serving_centre(data_dir) as (port, _pid):
            latencies: list[float] = []

            async def run_all() -> float:
                began = time.perf_counter()
                async with asyncio.TaskGroup() as group:
                    for n in range(args.stations):
                        group.create_task(station_reports(port, n, args.reports, latencies))
                return time.perf_counter() - began

            elapsed = asyncio.run(run_all())
        stored = count_readings(data_dir)
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


if __name__ == "__main__":
    main()
