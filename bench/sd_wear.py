"""SD-card wear of the real agent over a simulated day, and its latency from poll to fleet.

Everything is real: ``edge run`` as a subprocess, 20 channels on seven simulated Modbus
devices over TCP (``hwsim``), polled every 10 s, a real mosquitto with the fleet's access
files, ``fleet serve`` ingesting, the gateway enrolled with ``edge enroll``.
The agent runs as the shipped systemd unit runs it: its readings' stage on tmpfs
(``--stage-dir``; a fresh directory in ``/dev/shm``, whose writes ``write_bytes`` does
not count, as a real tmpfs's reach no card). ``--no-stage`` runs a bare ``edge run``.

Phase ``day``: one simulated day on a fast clock (``--speed``, default 240: the day in six
minutes). It has an uplink outage (mosquitto stopped, ``--outage-h`` hours from 13:00)
and an hour of storm from 14:00 (a design storm on the rain gauge, raising the rain
alarm). What the agent sent to the storage layer is read from ``/proc/PID/io``
(``write_bytes``: every page the agent dirtied, so WAL frames, checkpoints and the
``-shm`` index included), from its first committed reading to the end of the day. The
agent's log goes through a pipe to this process, so it is not counted.

The time is SIMULATED, and the kernel's writeback is not: on a real gateway a file dirty
for 30 s is written back at the flusher's next wake-up (every 5 s), and a page written
again after that counts again. So this bench plays the flusher on the simulated clock
(``Flusher``: a file whose mtime moved 30 simulated s ago is fsynced at the next 5 s
tick), and the fast day counts what a real day would. The pages each played writeback
cleans are counted per file (``bench/page_cache.py``: ``cachestat``, Linux 6.5 or later;
on an older kernel ``by_file`` is null and the totals are measured all the same);
what SQLite wrote back itself is the rest of ``write_bytes``, ``db_and_sqlite_fsyncs``:
the database's pages (only a checkpoint writes them, and it fsyncs them) and the WAL
pages a checkpoint or a FULL commit fsynced before the played writeback came to them.
``by_file`` in the JSON, per reading.
``bench/sd_wear_floor.py`` measures the same split for the store alone, lever by lever.

Phase ``live``: the same gateway at real speed for ``--live-s`` seconds; the fleet's
database is looked at every 5 ms, and each reading's latency is the time it was first
seen there minus its timestamp (taken when the device answered). This phase's own
``write_bytes`` per reading, with the kernel's own writeback, checks the day's figure.

Raw row bytes: what one reading is, at its natural binary size: seq (int64), timestamp
(float64), channel id (int32), value (float64), quality (int32): 32 bytes.

Targets: written per reading <= 3 x raw row bytes and < 100 MB per day; latency from
poll to fleet commit p50 <= 250 ms, p95 <= 500 ms. JSON on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_harness_bench import emit, percentile
from page_cache import counts_dirty_pages, fsync_file, write_back, write_bytes

from drivers.clock import ScaledClock
from drivers.profiles import builtin_profiles
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import NUMBA_CACHE, iso
from hardware_sim.harness.uplink import (
    ORIGIN,
    BrokerProcess,
    FleetProcess,
    enroll,
    gateway_marks,
    running_broker,
    running_fleet,
)
from hardware_sim.harness.waiting import wait_for
from hardware_sim.scenarios import DesignStorm
from hardware_sim.server import serve_tcp

RAW_ROW_BYTES = 8 + 8 + 4 + 8 + 4
DAY_S = 86400.0
POLL_S = 10
#: The kernel's writeback (``vm.dirty_expire_centisecs`` 3000 and
#: ``vm.dirty_writeback_centisecs`` 500, Debian's and Pi OS's defaults): a file dirty
#: for 30 s is written back at the flusher's next wake-up, every 5 s.
DIRTY_EXPIRE_S = 30.0
FLUSHER_S = 5.0
STORE_FILES = ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm", "store.sqlite-journal")
WRITE_FACTOR_TARGET = 3.0
MB_PER_DAY_TARGET = 100.0
P50_TARGET_S, P95_TARGET_S = 0.25, 0.5
#: Where the outage and the storm start, as fractions of the day (13:00 and 14:00).
OUTAGE_START = 13 / 24
STORM_START = 14 / 24
#: Real seconds the agent is given to start before the day (1 July 2026) begins.
START_S = 45.0

SITE = """
[site]
id = "test-village"

[agent]
reassert_s = 30

[uplink]
reconnect_min_s = 0.2
reconnect_max_s = 2

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = {port}

[[device]]
name = "rain"
bus = "field"
profile = "dfrobot_sen0575"
poll_interval_s = 10
timeout_s = 0.5
channels = ["rain_total", "rain_window"]

[[device]]
name = "creek"
bus = "field"
profile = "hlk_ld8001h"
unit_id = 1
poll_interval_s = 10
timeout_s = 0.5
channels = ["water_level", "air_gap"]

[[device]]
name = "gnss"
bus = "field"
profile = "gnss_displacement"
unit_id = 4
poll_interval_s = 10
timeout_s = 0.5
channels = ["east", "north", "up", "fix_quality", "satellites", "supply_v"]

[[device]]
name = "tilt"
bus = "field"
profile = "inclinometer_dual_axis"
unit_id = 5
poll_interval_s = 10
timeout_s = 0.5
channels = ["tilt_x", "tilt_y"]

[[device]]
name = "crack"
bus = "field"
profile = "wire_extensometer"
unit_id = 3
poll_interval_s = 10
timeout_s = 0.5
channels = ["extension", "temperature", "battery_v", "crack_width"]

[[device]]
name = "river"
bus = "field"
profile = "pressure_level_transmitter"
unit_id = 6
poll_interval_s = 10
timeout_s = 0.5
channels = ["level_mm", "temperature", "water_level"]

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"
poll_interval_s = 10
timeout_s = 0.5
channels = ["relay1"]

[[rule]]
id = "rain_1h"
kind = "rain_windows"
channel = "rain.rain_total"
hold_s = 1800
windows = {{ "1h" = {{ blue = 5, yellow = 12, orange = 20, red = 30 }} }}

[[actuator]]
id = "siren"
device = "relays"
patterns = {{ warble = ["relay1"] }}

[actions]
orange = {{ siren = "warble" }}
red = {{ siren = "warble" }}
"""


def _wave(base: float, amplitude: float, period_s: float, phase: float = 0.0) -> Any:
    """A slow sine around ``base``: a value that moves, so no channel is flagged stuck."""
    return lambda t: base + amplitude * math.sin(t / period_s + phase)


def devices(clock: ScaledClock, storm: DesignStorm) -> list[SimulatedDevice]:
    """The seven devices of ``SITE``; the rain gauge follows ``storm``."""
    p = builtin_profiles()
    return [
        SimulatedDevice(
            p["dfrobot_sen0575"], 192, clock,
            {"rain_total": storm.cumulative_mm, "rain_window": _wave(2, 1, 700)},
            values={"window_hours": 1},
        ),
        SimulatedDevice(
            p["hlk_ld8001h"], 1, clock,
            {"water_level": _wave(800, 30, 900), "air_gap": _wave(4000, 30, 900, 3)},
        ),
        SimulatedDevice(
            p["gnss_displacement"], 4, clock,
            {"east": _wave(10, 3, 500), "north": _wave(5, 2, 600), "up": _wave(1, 1, 700),
             "fix_quality": _wave(4, 0.4, 1300), "satellites": _wave(14, 3, 1100),
             "supply_v": _wave(12.4, 0.3, 4000)},
        ),
        SimulatedDevice(
            p["inclinometer_dual_axis"], 5, clock,
            {"tilt_x": _wave(0.2, 0.05, 800), "tilt_y": _wave(-0.1, 0.05, 850)},
        ),
        SimulatedDevice(
            p["wire_extensometer"], 3, clock,
            {"extension": _wave(40, 2, 900), "temperature": _wave(22, 4, 20000),
             "battery_v": _wave(12.6, 0.2, 30000), "crack_width": _wave(3, 0.3, 1200)},
        ),
        SimulatedDevice(
            p["pressure_level_transmitter"], 6, clock,
            {"level_mm": _wave(900, 40, 1000), "temperature": _wave(18, 3, 25000),
             "water_level": _wave(0.9, 0.04, 1000)},
        ),
        SimulatedDevice(p["relay_module_8ch"], 10, clock),
    ]  # fmt: skip


class Flusher:
    """The kernel's flusher on the simulated clock, for the store's files.

    A file counts as dirtied when its mtime moves (a write, or the first store to a clean
    page of the mmapped ``-shm``); at each 5 s tick a file dirtied 30 s ago or more is
    written back (``fsync``), so the agent's next write to it dirties its pages again;
    ``written`` counts, per file, the bytes of the dirty pages each writeback cleaned
    (``counting``: only on a kernel that can say, the writeback is played all the same).
    """

    def __init__(self, data_dir: Path, clock: ScaledClock) -> None:
        self.data_dir, self.clock = data_dir, clock
        self.seen: dict[str, int] = {}  # mtime at the last look
        self.dirtied: dict[str, float] = {}  # simulated time the file became dirty
        self.written = dict.fromkeys(STORE_FILES, 0)
        self.counting = counts_dirty_pages()

    def write_back(self, name: str) -> None:
        """Write the file ``name`` back now, counting what that cleaned if the kernel can."""
        path = self.data_dir / name
        if self.counting:
            self.written[name] += write_back(path)
        else:
            fsync_file(path)

    def tick(self) -> None:
        """One wake-up of the flusher."""
        now = self.clock.now()
        for name in STORE_FILES:
            path = self.data_dir / name
            with contextlib.suppress(FileNotFoundError):
                mtime = path.stat().st_mtime_ns
                if mtime != self.seen.get(name) and name not in self.dirtied:
                    wall = mtime / 1e9
                    self.dirtied[name] = self.clock.origin + (wall - self.clock.anchor) * (
                        self.clock.speed
                    )
                self.seen[name] = mtime
                if name in self.dirtied and now - self.dirtied[name] >= DIRTY_EXPIRE_S:
                    self.write_back(name)
                    del self.dirtied[name]

    def settle(self) -> None:
        """Write every file back now (the start and the end of the measured day)."""
        for name in STORE_FILES:
            self.write_back(name)
        self.dirtied.clear()


def stored_readings(data_dir: Path) -> int:
    """The highest reading seq the gateway has committed."""
    return gateway_marks(data_dir)["readings"][0]


class Gateway:
    """``edge run`` as a subprocess whose log goes through a pipe into ``log``."""

    def __init__(
        self,
        site: Path,
        data_dir: Path,
        log: Path,
        clock: ScaledClock | None,
        stage_dir: Path | None = None,
    ) -> None:
        self.site, self.data_dir, self.log, self.clock = site, data_dir, log, clock
        self.stage_dir = stage_dir  # as the systemd unit runs it: /run/hazardwatch
        self.process: asyncio.subprocess.Process | None = None
        self._copy: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        """The agent's process id."""
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        """Start ``edge run`` (on ``clock`` when given, else on the real clock)."""
        timing: list[str] = []
        if self.clock is not None:
            timing = ["--speed", repr(self.clock.speed), "--origin", iso(self.clock.origin),
                      "--anchor", repr(self.clock.anchor)]  # fmt: skip
        env = {**os.environ, "NUMBA_CACHE_DIR": str(NUMBA_CACHE), "PYTHONUNBUFFERED": "1"}
        env.pop("HAZARDWATCH_STAGE_DIR", None)
        if self.stage_dir is not None:
            env["HAZARDWATCH_STAGE_DIR"] = str(self.stage_dir)
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "run", "--config", str(self.site),
            "--data-dir", str(self.data_dir), "--log-level", "WARNING", *timing,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip
        self._copy = asyncio.create_task(self._copy_log())

    async def _copy_log(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        with self.log.open("ab") as out:
            while line := await self.process.stdout.readline():
                out.write(line)

    async def stop(self) -> int:
        """SIGTERM, then wait (SIGKILL after 30 s); the exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._copy is not None:
            await self._copy
        return self.process.returncode or 0


async def _until_sim(clock: ScaledClock, t: float) -> None:
    """Sleep until simulated time ``t``."""
    await asyncio.sleep(max(0.0, (t - clock.now()) / clock.speed))


async def simulated_day(
    tmp: Path, broker: BrokerProcess, args: argparse.Namespace
) -> dict[str, Any]:
    """Run the day; return its figures."""
    data_dir = tmp / "gw"
    day_s = args.day_h * 3600
    clock = ScaledClock(args.speed, origin=ORIGIN - START_S * args.speed, anchor=time.time())
    storm = DesignStorm(ORIGIN + STORM_START * day_s, 3600.0, args.storm_mm_h, seed=16)
    async with serve_tcp(devices(clock, storm)) as bus:
        site = tmp / "site.toml"
        site.write_text(SITE.format(port=bus.port))
        gateway = Gateway(site, data_dir, tmp / "gw-day.log", clock, args.stage_dir)
        await gateway.start()
        broker_down = False
        try:
            await wait_for(lambda: stored_readings(data_dir) > 0, 120, "the first reading")
            if clock.now() > ORIGIN:
                msg = f"the agent took more than {START_S:g} s to start"
                raise RuntimeError(msg)
            await _until_sim(clock, ORIGIN)
            flusher = Flusher(data_dir, clock)
            flusher.settle()
            flusher.written = dict.fromkeys(STORE_FILES, 0)
            first_seq, before = stored_readings(data_dir), write_bytes(gateway.pid)
            outage_start = ORIGIN + OUTAGE_START * day_s
            outage = (outage_start, outage_start + args.outage_h * 3600)
            end = ORIGIN + day_s
            next_tick = ORIGIN + FLUSHER_S
            while (now := clock.now()) < end:
                if not broker_down and outage[0] <= now < outage[1]:
                    broker.stop()
                    broker_down = True
                elif broker_down and now >= outage[1]:
                    broker.start()
                    broker_down = False
                if now >= next_tick:
                    flusher.tick()
                    next_tick += FLUSHER_S
                await _until_sim(clock, min(next_tick, end))
            flusher.settle()
            written = write_bytes(gateway.pid) - before
            last_seq = stored_readings(data_dir)
            alarms = _events(data_dir, "alarm")
        finally:
            await gateway.stop()
            if broker_down:  # a day shorter than its outage (--day-h): the live phase needs it
                broker.start()
    readings = last_seq - first_seq
    return {
        "hours": args.day_h,
        "speed": args.speed,
        "readings": readings,
        "alarm_events": alarms,
        "write_bytes": written,
        "bytes_per_reading": round(written / max(readings, 1), 1),
        "mb_per_day": round(written / 1e6 * DAY_S / day_s, 2),
        "by_file": _by_file(flusher, written, max(readings, 1)),
    }


def _by_file(flusher: Flusher, written: int, readings: int) -> dict[str, float] | None:
    """Bytes a reading per store file, as the played writeback counted them.

    None when the kernel cannot say (no cachestat). What SQLite fsynced itself is the rest.
    """
    if not flusher.counting:
        return None
    by_file = {
        name.removeprefix("store.sqlite-"): round(b / readings, 1)
        for name, b in flusher.written.items()
        if name != "store.sqlite"  # checkpoints fsync it: its pages are in the rest
    }
    by_file["db_and_sqlite_fsyncs"] = round((written - sum(flusher.written.values())) / readings, 1)
    return by_file


def _events(data_dir: Path, kind: str) -> int:
    db = sqlite3.connect(f"file:{data_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=10)
    with contextlib.closing(db):
        return int(db.execute("SELECT count(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0])


async def live(
    tmp: Path, fleet: FleetProcess, gateway_id: str, seconds: float, stage_dir: Path | None
) -> dict[str, Any]:
    """The same gateway at real speed: latency to the fleet's commit, and its writes."""
    data_dir = tmp / "gw"
    clock = ScaledClock(1.0)
    storm = DesignStorm(clock.now() + 1e6, 3600.0, 0.0)
    async with serve_tcp(devices(clock, storm)) as bus:
        site = tmp / "site.toml"
        site.write_text(SITE.format(port=bus.port))
        gateway = Gateway(site, data_dir, tmp / "gw-live.log", None, stage_dir)
        fleet_db = sqlite3.connect(
            f"file:{fleet.data_dir / 'fleet.sqlite'}?mode=ro", uri=True, timeout=10
        )
        await gateway.start()
        try:
            gw = fleet_db.execute("SELECT num FROM gateways WHERE id = ?", (gateway_id,))
            num = int(gw.fetchone()[0])

            def fleet_max() -> int:
                query = "SELECT ifnull(max(seq), 0) FROM readings WHERE gw = ?"
                return int(fleet_db.execute(query, (num,)).fetchone()[0])

            # Past the start-up (replay, connecting, first uploads), then measure.
            start_seq = stored_readings(data_dir)
            await wait_for(lambda: fleet_max() > start_seq, 120, "live readings at the fleet")
            seen = max_seq = fleet_max()
            before, first_seq = write_bytes(gateway.pid), stored_readings(data_dir)
            latencies: list[float] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rows = fleet_db.execute(
                    "SELECT seq, ts FROM readings WHERE gw = ? AND seq > ?", (num, max_seq)
                ).fetchall()
                now = time.time()
                for seq, ts in rows:
                    max_seq = max(max_seq, seq)
                    if seq > seen:
                        latencies.append(now - ts)
                await asyncio.sleep(0.005)
            written = write_bytes(gateway.pid) - before
            readings = stored_readings(data_dir) - first_seq
        finally:
            fleet_db.close()
            await gateway.stop()
    return {
        "seconds": seconds,
        "readings": readings,
        "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1) if latencies else None,
        "latency_p95_ms": round(percentile(latencies, 95) * 1000, 1) if latencies else None,
        "latency_max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "latency_samples": len(latencies),
        "write_bytes": written,
        "bytes_per_reading": round(written / max(readings, 1), 1),
        "mb_per_day_at_this_rate": round(written / seconds * DAY_S / 1e6, 2),
    }


@contextlib.contextmanager
def work_dir(keep: bool) -> Iterator[Path]:
    """A directory on a real disk (write_bytes counts nothing on tmpfs)."""
    folder = Path(tempfile.mkdtemp(prefix="hw-sdwear-", dir="/var/tmp"))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def ram_stage(wanted: bool) -> Iterator[Path | None]:
    """The readings' stage on tmpfs, as the systemd unit gives it (``/run/hazardwatch``)."""
    if not wanted:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="hw-sdwear-stage-", dir="/dev/shm"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with (
        ram_stage(args.stage) as args.stage_dir,
        work_dir(args.keep) as tmp,
        running_broker(tmp / "fleet", tmp / "mosquitto") as broker,
        running_fleet(tmp / "fleet", broker) as fleet,
    ):
        gateway_id = enroll(tmp / "gw", fleet)
        print(f"simulated day at {args.speed:g}x ...", file=sys.stderr)
        day = await simulated_day(tmp, broker, args)
        print(f"day: {day}", file=sys.stderr)
        print(f"{args.live_s:g} s at real speed ...", file=sys.stderr)
        real = await live(tmp, fleet, gateway_id, args.live_s, args.stage_dir)
        print(f"live: {real}", file=sys.stderr)
    factor = day["bytes_per_reading"] / RAW_ROW_BYTES
    return {
        "bench": "sd_wear",
        "channels": 20,
        "poll_s": POLL_S,
        "time": (
            f"SIMULATED: {args.day_h:g} h at {args.speed:g}x, scaled to a day; the kernel's "
            "writeback emulated on the simulated clock (a file dirty for 30 s is fsynced "
            "at the next 5 s tick)"
        ),
        "raw_row_bytes": RAW_ROW_BYTES,
        "stage": "tmpfs (edge run --stage-dir, as the systemd unit)" if args.stage else None,
        "day": day,
        "write_factor": round(factor, 2),
        "live": real,
        "targets": {
            "write_factor": WRITE_FACTOR_TARGET,
            "mb_per_day": MB_PER_DAY_TARGET,
            "latency_p50_ms": P50_TARGET_S * 1000,
            "latency_p95_ms": P95_TARGET_S * 1000,
        },
        "met": {
            "write_factor": factor <= WRITE_FACTOR_TARGET,
            "mb_per_day": day["mb_per_day"] < MB_PER_DAY_TARGET,
            "latency": real["latency_p50_ms"] is not None
            and real["latency_p50_ms"] <= P50_TARGET_S * 1000
            and real["latency_p95_ms"] <= P95_TARGET_S * 1000,
        },
    }


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=240.0, help="simulated s per real s")
    parser.add_argument("--day-h", type=float, default=24.0, help="simulated hours")
    parser.add_argument("--outage-h", type=float, default=2.0, help="uplink outage, hours")
    parser.add_argument("--storm-mm-h", type=float, default=60.0, help="storm peak, mm/h")
    parser.add_argument(
        "--live-s", type=float, default=620.0,
        help="real-speed window, s (two of the stage's 5-minute moves)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--no-stage", dest="stage", action="store_false",
        help="commit each round on the card (no --stage-dir), as a bare `edge run` does",
    )  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    emit(asyncio.run(main(parse())))
