"""SL 651-2014: codec throughput, and how many stations one receiving centre holds.

Codec, one core: a timed report (32, 60 bytes) and an hourly report (34, 121 bytes with
two 5-minute series), both from the worked examples of tests/test_sl651_codec.py; the
centre's acknowledgement (decode a report, build and encode its ESC answer); and a
1,630-byte equal-interval report through M3 split and reassembly.

Stations held (``--stations``, default 5,000; 0 leaves it out): ``fleet sl651 serve`` runs
as its own process on a fresh data directory (SQLite, ``synchronous=FULL``), and this
process (asyncio, one connection per station) connects every station, each sending a
keep-alive as a station does when its link comes up, then holds them all connected while
each reports (32: accumulated rain, water level, voltage) every 5 simulated minutes, at a
phase of its own (fixed seed), for ``--cycles`` rounds; ``--speed`` compresses time (10:
a report every 30 s, ten times a county's real load). Reports the connections held (the
stations still on their first connection, and the sockets the centre's process has open),
reports per second, the acknowledgement latency (send to answer, p50/p99/max), the
centre's CPU (percent of one core, from /proc), and checks every reading was stored once.
Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hardware_sim.harness.sl651_centre import (
    PASSWORD,
    count_readings,
    register_stations,
    serving_centre,
    station_address,
)
from hardware_sim.sl651_station import FIVE_MINUTES_S, NoAcknowledgementError, Sl651Station
from protocol.sl651 import (
    Control,
    Direction,
    ElementId,
    Header,
    ObservationGroup,
    Reassembly,
    Report,
    Series,
    StationAddress,
    StationBlock,
    StationType,
    TimeStep,
    acknowledge,
    decode,
    encode,
    split,
)

# Worked examples (sources cited in tests/test_sl651_codec.py): yu-xiaoyao/sl651-2014-server,
# netty-client/.../Sl651ClientApplication.java, INNER_HEX 0x32 and 0x34.
TIMED_32 = bytes.fromhex(
    "7E7E05001122334403E832002B020034170718110016F1F1001122334448F0F01707181100"
    "201900004026190000403923000104903812109903A421"
)
HOURLY_34 = bytes.fromhex(
    "7E7E05001122334403E8340068020033170718110014F1F1001122334448F0F01707181005"
    "F4600500000014FFFFFFFFFF0000F0F017071811002619000040F0F01707181005F5C0000C000C"
    "001C00310031FFFFFFFFFFFFFFFFFFFF00310031F0F0170718110039230001049020190000403812"
    "109903F502"
)


def rate(work: Callable[[], object], seconds: float) -> float:
    """Calls of ``work`` per second over about ``seconds``."""
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            work()
        calls += 100
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def m3_upload() -> tuple[Header, Report]:
    header = Header(Direction.UP, 5, StationAddress("0011223344"), 0x03E8, 0x31)
    when = datetime(2024, 6, 1, 8, 0)
    values = tuple(Decimal(n).scaleb(-3) for n in range(1000, 1400))
    series = Series(ElementId.WATER_LEVEL, values, 4, 3)
    group = ObservationGroup(when, (TimeStep(minutes=5), series))
    block = StationBlock(StationAddress("0011223344"), StationType.RIVER, (group,))
    return header, Report(7, when, (block,))


def codec(seconds: float) -> dict[str, float]:
    """Codec operations per second, ``seconds`` each."""
    timed, hourly = decode(TIMED_32), decode(HOURLY_34)
    now = datetime(2017, 7, 18, 11, 0, 20)
    header, body = m3_upload()
    frames = split(header, body, 500)

    def reassemble() -> None:
        reassembly = Reassembly()
        for frame in frames:
            reassembly.add(decode(frame))

    results = {
        "decode_timed_32_per_s": rate(lambda: decode(TIMED_32), seconds),
        "encode_timed_32_per_s": rate(lambda: encode(timed), seconds),
        "decode_hourly_34_per_s": rate(lambda: decode(HOURLY_34), seconds),
        "encode_hourly_34_per_s": rate(lambda: encode(hourly), seconds),
        "decode_and_acknowledge_per_s": rate(
            lambda: encode(acknowledge(decode(TIMED_32), now, Control.ESC)), seconds
        ),
        "m3_split_1630_bytes_per_s": rate(lambda: split(header, body, 500), seconds),
        "m3_reassemble_1630_bytes_per_s": rate(reassemble, seconds),
    }
    for name, value in results.items():
        print(f"{name:34s} {value:12,.0f}")
    return {name: round(value) for name, value in results.items()}


# --- stations held connected by one receiving process ----------------------------------------


@dataclass
class Held:
    """What the reporting stations measured."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    stations: list[Sl651Station] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sockets(pid: int) -> int:
    """Sockets process ``pid`` has open."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


def open_files_for(connections: int) -> None:
    """Raise this process's open-file limit for ``connections`` sockets (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def hold(port: int, args: argparse.Namespace, centre_pid: int) -> dict[str, float]:
    """Connect every station, then let each report every interval for ``args.cycles`` rounds."""
    held = Held()
    idle_sockets = sockets(centre_pid)  # its listener and the event loop's own pair
    started = datetime(2026, 7, 18, 0, 0)
    connecting = asyncio.Semaphore(200)  # connect in waves, as stations come up over minutes

    async def come_up(n: int) -> Sl651Station:
        station = Sl651Station(station_address(n), PASSWORD, "127.0.0.1", port, ack_timeout_s=60)
        async with connecting:
            await station.keep_alive(started)
        return station

    began = time.perf_counter()
    held.stations = list(await asyncio.gather(*(come_up(n) for n in range(args.stations))))
    connect_s = time.perf_counter() - began
    interval = FIVE_MINUTES_S / args.speed
    phases = random.Random(651).sample(range(args.stations), args.stations)

    async def report(n: int, station: Sl651Station, start: float) -> None:
        for cycle in range(args.cycles):
            due = start + (phases[n] / args.stations + cycle) * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))  # the station's schedule
            observed = started + timedelta(minutes=5 * (cycle + 1))
            sent = time.perf_counter()
            try:
                await station.timed_report(
                    observed,
                    observed + timedelta(seconds=7),
                    water_level=f"{1 + n / 10_000:.3f}",
                    rainfall_accumulated=f"{cycle / 10:.1f}",
                )
            except NoAcknowledgementError:
                held.failures += 1
                continue
            held.latencies.append(time.perf_counter() - sent)

    cpu_before, start = cpu_seconds(centre_pid), time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n, station in enumerate(held.stations):
            group.create_task(report(n, station, start))
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds(centre_pid) - cpu_before
    centre_sockets = sockets(centre_pid) - idle_sockets
    on_first_link = sum(s.connects == 1 and s._link is not None for s in held.stations)
    await asyncio.gather(*(s.hang_up() for s in held.stations))
    latencies = sorted(held.latencies)
    return {
        "stations": args.stations,
        "connect_s": round(connect_s, 1),
        "held_on_first_connection": on_first_link,
        "centre_sockets_open": centre_sockets,
        "report_interval_s": round(interval, 1),
        "speed": args.speed,
        "reports": len(latencies),
        "reports_unanswered": held.failures,
        "hold_s": round(elapsed, 1),
        "reports_per_s": round(len(latencies) / elapsed, 1),
        "ack_ms_p50": round(1000 * statistics.median(latencies), 1),
        "ack_ms_p99": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1),
        "ack_ms_max": round(1000 * latencies[-1], 1),
        "centre_cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
    }


def stations_held(args: argparse.Namespace) -> dict[str, float]:
    """Run ``fleet sl651 serve`` and hold ``args.stations`` connected while they report."""
    open_files_for(args.stations)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        register_stations(data_dir, args.stations)
        limit = ["--max-connections", str(args.stations + 100)]
        with serving_centre(data_dir, limit) as (port, pid):
            result = asyncio.run(hold(port, args, pid))
        stored = count_readings(data_dir)
    result["readings_stored"] = stored
    result["readings_expected"] = 3 * int(result["reports"])
    for name, value in result.items():
        print(f"{name:34s} {value:>12}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per codec measurement")
    parser.add_argument("--stations", type=int, default=5000, help="stations held (0: none)")
    parser.add_argument("--speed", type=float, default=10.0, help="simulated time per real")
    parser.add_argument("--cycles", type=int, default=2, help="reports per station")
    args = parser.parse_args()
    results: dict[str, object] = {"bench": "sl651", "cpus": os.cpu_count()}
    if args.seconds > 0:
        results |= codec(args.seconds)
    if args.stations > 0:
        results["held"] = stations_held(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
