"""The gateway's SL 651 uplink against the fleet's receiving centre: backlog and add reports.

An agent store (durable, on disk) holds ``--hours`` of 30-second polls of a rain counter
and a creek level; the uplink starts with the centre down and composes every report time
of those hours (timed every 5 minutes, hourly on the hour): the compose rate. Then the
centre (``fleet.sl651_centre``, durable SQLite) starts and the backlog drains, one frame
answered at a time: the drain rate, checked for exactly once (the centre holds every
(time, element) the frames carry, each once). Last, ``--adds`` add reports, each timed
from the rule's rise to the centre's answer. The clock of the reports is simulated; rates
and latencies are wall-clock. Prints a JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from alarm_engine import LevelChange
from drivers.clock import ManualClock
from drivers.model import Quality, Reading
from edge_agent.sl651_uplink import SETTLE_S, Sl651Uplink
from edge_agent.store import LocalStore
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_observations import observations
from fleet.sl651_stations import StationRegistry
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.waiting import wait_for
from protocol.sl651 import Report, decode
from site_schema.site_config import parse_site_text

ADDRESS = "0012345678"
START = datetime(2026, 7, 18, 0, 0, tzinfo=UTC).timestamp()
POLL_S = 30.0

SITE = """
[site]
id = "bench"

[[bus]]
name = "cabinet"
kind = "tcp"
host = "127.0.0.1"
port = 5020

[[device]]
name = "rain"
bus = "cabinet"
profile = "dfrobot_sen0575"
unit_id = 192
channels = ["rain_total"]

[[device]]
name = "creek"
bus = "cabinet"
profile = "hlk_ld8001h"
unit_id = 1
channels = ["water_level"]

[sl651_uplink]
centre = "127.0.0.1:{port}"
station = "0012345678"
password = "5A7C"
reconnect_min_s = 0.05
reconnect_max_s = 0.2

[sl651_uplink.elements]
"rain.rain_total" = ["PT", "PN05", "PJ", "P1"]
"creek.water_level" = "Z"
"""


def readings(hours: float) -> list[Reading]:
    out: list[Reading] = []
    t = START
    while t <= START + hours * 3600:
        minutes = (t - START) / 60
        out.append(Reading(t, "rain.rain_total", round(0.3 * minutes, 4), "mm", Quality.OK))
        out.append(Reading(t, "creek.water_level", 900 + minutes, "mm", Quality.OK))
        t += POLL_S
    return out


def centre_holds(path: Path) -> tuple[int, int]:
    """(readings stored, distinct (time, element)) for the station at the centre."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT observed_at || element) FROM sl651_observations "
            "WHERE address = ?",
            (ADDRESS,),
        ).fetchone()
    return int(rows[0]), int(rows[1])


async def bench(hours: float, adds: int, work: Path) -> dict[str, object]:
    repository = SQLiteRepository(work / "fleet.sqlite")
    registry = StationRegistry(repository.path)
    registry.add_station(ADDRESS, 0x5A7C, "bench", START)
    settings = CentreSettings(host="127.0.0.1", port=0, idle_timeout_s=60.0)
    async with ReceivingCentre(registry, settings) as probe_port:
        port = probe_port.port
    spec = parse_site_text(SITE.format(port=port), "bench.toml").sl651_uplink
    assert spec is not None
    clock = ManualClock(START)
    store = LocalStore(work / "gateway").open()
    uplink = Sl651Uplink(spec, store.path, store.history, clock)
    task = asyncio.create_task(uplink.run())
    try:
        await wait_for(uplink.scheduled.is_set, 30, "the uplink's schedule")
        store.add_readings(readings(hours))
        await store.flush()
        expected = int(hours * 12)
        started = time.perf_counter()
        clock.advance(hours * 3600 + SETTLE_S + 1)
        await wait_for(
            lambda: uplink.status()["last_frame"] == expected, 600, f"{expected} reports composed"
        )
        compose_s = time.perf_counter() - started
        settings = CentreSettings(host="127.0.0.1", port=port, idle_timeout_s=60.0)
        async with ReceivingCentre(registry, settings) as centre:
            started = time.perf_counter()
            await wait_for(lambda: uplink.status()["backlog"] == 0, 600, "the backlog to drain")
            drain_s = time.perf_counter() - started
            frames = await uplink.outbox.frames()
            carried: set[tuple[float, str]] = set()
            for frame in frames:
                body = decode(frame.frame).body
                assert isinstance(body, Report)
                carried |= {(o.ts, o.channel) for o in observations(body, ADDRESS)}
            stored, distinct = centre_holds(registry.path)
            latencies = []
            for n in range(adds):
                answered = uplink.answered
                change = LevelChange("creek_stage", clock.now(), n % 4, n % 4 + 1, "rise", 1.0, "")
                started = time.perf_counter()
                uplink.levels_changed([change])
                await wait_for(lambda a=answered: uplink.answered > a, 30, "the add report")  # type: ignore[misc]
                latencies.append((time.perf_counter() - started) * 1000)
                clock.advance(60.0)
            reports = centre.counters.reports
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.close()
        registry.close()
        repository.close()
    return {
        "hours": hours,
        "reports": expected,
        "compose_reports_per_s": round(expected / compose_s, 1),
        "drain_reports_per_s": round(expected / drain_s, 1),
        "drain_s": round(drain_s, 2),
        "centre_reports": reports,
        "values_carried": len(carried),
        "values_stored": stored,
        "exactly_once": stored == distinct == len(carried),
        "add_answer_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "add_answer_ms_max": round(max(latencies), 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="hours of outage to drain")
    parser.add_argument("--adds", type=int, default=20, help="add reports to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sl651-uplink-") as work:
        result = asyncio.run(bench(args.hours, args.adds, Path(work)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
