"""A full data directory: the sirens keep switching and no alarm or actuation event is lost.

The disk is really full (a tiny tmpfs, filled until the kernel says ENOSPC; see
``tests/full_disk.py``), so SQLite's own refusals are what the store and the agent meet.
A tmpfs rather than ``PRAGMA max_page_count``: with the limit, a small row still fits in
a page's free space while a big one is refused, so what is refused depends on page
layout; a full file system refuses every commit, because each one appends to the WAL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.model import Quality, Reading
from edge_agent.control import SOCKET_NAME, ask
from edge_agent.control_messages import StatusReply, StatusRequest
from edge_agent.store import LocalStore
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import events, sim_site
from hardware_sim.harness.waiting import wait_for
from tests.full_disk import SmallDisk, small_disk
from tests.test_agent_e2e import PROFILES, make_clock, site_text


def reading(t: float) -> Reading:
    return Reading(t, "rain.total", t, "mm", Quality.OK)


async def fill(store: LocalStore, disk: SmallDisk) -> None:
    """Fill the disk and check the store is refused at once."""
    disk.fill()
    assert await store.write_events() == 0
    assert await store.flush() == 0
    store.add_readings([reading(-1)])  # a probe that really needs the disk
    assert await store.flush() == 0
    assert store.condition().unwritable == "database or disk is full"


async def stored_times(store: LocalStore) -> list[float]:
    return [t for (t,) in store.conn.execute("SELECT ts FROM readings ORDER BY seq")]


async def test_events_wait_while_the_disk_is_full_and_are_stored_once_in_order_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge_agent")
    with small_disk(tmp_path / "disk") as disk:
        async with LocalStore(disk.path) as store:
            store.add_readings([reading(t) for t in range(100)])
            await store.flush()
            await fill(store, disk)
            happened = []
            for i in range(30):  # a storm's worth of alarms and actuations, one a second
                kind = "alarm" if i % 2 == 0 else "actuation"
                store.add_event(2000.0 + i, kind, "rain_1h", i % 5, {"n": i})
                happened.append((2000.0 + i, kind, i))
                assert await store.write_events() == 0
                store.add_readings([reading(2000 + i)])
                assert await store.flush() == 0
            while_full = store.condition()
            stored_while_full = store.events()
            # A caller that must know (an update report) is told, and nothing is held for it.
            with pytest.raises(sqlite3.OperationalError, match="full"):
                await store.record_event(3000.0, "ota", "config", None, {})
            assert store.condition().held_events == 30

            disk.free()
            await store.flush()
            after = store.condition()
            stored = store.events()
            times = await stored_times(store)
    assert stored_while_full == []
    assert while_full.held_events == 30
    assert while_full.refused_writes >= 60  # every attempt counted ...
    assert [(e.ts, e.kind, e.detail["n"]) for e in stored] == happened  # ... each event once
    assert [e.seq for e in stored] == sorted(e.seq for e in stored)
    assert after.unwritable is None
    assert after.held_events == after.held_readings == after.events_lost == 0
    # Readings too: each once, in order, the probe included.
    assert times == [*range(100), -1, *range(2000, 2030)]
    # ... and said once, without a traceback per retry.
    refusals = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(refusals) == 1
    assert [r for r in caplog.records if r.exc_info] == []
    assert sum("writes again" in r.getMessage() for r in caplog.records) == 1


async def test_held_readings_are_thinned_oldest_first_to_make_room_for_events(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        async with LocalStore(disk.path, max_held_readings=1001, max_held_events=10) as store:
            await fill(store, disk)  # holds the probe reading, t = -1
            store.add_readings([reading(t) for t in range(1000)])
            assert await store.flush() == 0
            for i in range(5):  # an event takes the room of 100 readings here
                store.add_event(5000 + i, "alarm", "rain_1h", 3, {"n": i})
            held = store.condition()
            disk.free()
            await store.flush()
            times = await stored_times(store)
            stored = [e.detail["n"] for e in store.events()]
    assert held.held_readings + 5 * 100 <= 1001
    assert held.readings_thinned == 1001 - held.held_readings
    assert stored == [0, 1, 2, 3, 4]  # every event
    assert times[-282:] == list(range(718, 1000))  # the recent past at full resolution ...
    assert times[:3] == [-1, 7, 15]  # ... the oldest thinned most
    assert len(times) == held.held_readings


async def test_an_event_is_lost_only_when_no_held_reading_is_left(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        async with LocalStore(disk.path, max_held_readings=1000, max_held_events=10) as store:
            await fill(store, disk)
            store.add_readings([reading(t) for t in range(1000)])
            for i in range(11):
                store.add_event(5000 + i, "actuation", "site", 4, {"n": i})
                await store.flush()
                if i == 9:
                    ten = store.condition()
            eleven = store.condition()
            disk.free()
            await store.flush()
            stored = [e.detail["n"] for e in store.events()]
            readings_stored = store.reading_count()
    assert (ten.held_events, ten.held_readings, ten.events_lost) == (10, 0, 0)
    assert (eleven.held_events, eleven.events_lost) == (10, 1)
    assert stored == list(range(1, 11))  # the oldest event went, the rest in order
    assert readings_stored == 0  # every held reading gave way first


async def test_events_the_disk_still_refuses_at_stop_are_written_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edge_agent")
    with small_disk(tmp_path / "disk") as disk:
        store = LocalStore(disk.path).open()
        await fill(store, disk)
        store.add_event(4000.0, "alarm", "creek", 4, {"to": "red"})
        await asyncio.to_thread(store.close)
    unstored = [r.getMessage() for r in caplog.records if "unstored event" in r.getMessage()]
    assert unstored == [
        'unstored event: ts=4000.0 kind=alarm subject=creek level=4 detail={"to": "red"}'
    ]


def test_an_event_time_must_be_a_number(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ValueError, match="not a number"):
        store.add_event(math.nan, "alarm", "rain_1h", 2, {})


async def status_when(data_dir: Path, check: Callable[[dict[str, Any]], bool], what: str) -> Any:
    """Ask the running agent's status until ``check`` holds (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        status = (await ask(data_dir / SOCKET_NAME, StatusRequest(), StatusReply)).wire()
        if check(status):
            return status
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {status['store']}"
        await asyncio.sleep(0.05)


async def test_a_full_disk_keeps_the_sirens_switching_and_stores_every_event_once_after(
    tmp_path: Path,
) -> None:
    clock = make_clock(400)
    creek_mm = [800.0]
    rain = SimulatedDevice(PROFILES["dfrobot_sen0575"], 192, clock, values={"window_hours": 1})
    creek = SimulatedDevice(
        PROFILES["hlk_ld8001h"],
        1,
        clock,
        {"water_level": lambda t: creek_mm[0] + 3 * math.sin(t / 97)},  # ripple: not stuck
    )
    relays = SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock)
    with small_disk(tmp_path / "disk") as disk:
        async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
            # site_text allowed its player in tmp_path/gw; this gateway's data dir is on the
            # small disk, so its agent.toml goes there.
            (disk.path / "gw").mkdir(exist_ok=True)
            (disk.path / "gw" / "agent.toml").write_bytes(
                (tmp_path / "gw" / "agent.toml").read_bytes()
            )
            agent = await site.start_agent(data_dir=disk.path / "gw")
            await wait_for((agent.data_dir / SOCKET_NAME).exists, 60, "the agent")
            await status_when(agent.data_dir, lambda s: s["store"]["readings"] > 0, "readings")
            disk.fill()
            await status_when(agent.data_dir, lambda s: s["store"]["unwritable"], "a refusal")
            full_at = clock.now()
            creek_mm[0] = 2700.0  # orange: warble
            await wait_for(lambda: relays.coil(0) and relays.coil(1), 30, "the siren, disk full")
            creek_mm[0] = 3600.0
            await status_when(agent.data_dir, lambda s: s["level"] == "red", "red")
            creek_mm[0] = 800.0  # falls after the rule's hold time (600 simulated s)
            await wait_for(lambda: not relays.coil(0) and not relays.coil(1), 30, "siren off")
            while_full = await status_when(agent.data_dir, lambda s: True, "status")
            edge_status = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "edge_agent.cli", "status", "-d", str(agent.data_dir),
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            shown, _ = await asyncio.wait_for(edge_status.communicate(), 60)
            on_disk_while_full = [e for e in events(agent.data_dir) if e["ts"] >= full_at]
            freed_at = clock.now()
            disk.free()
            await status_when(
                agent.data_dir,
                lambda s: s["store"]["unwritable"] is None and s["store"]["held_events"] == 0,
                "the held events written",
            )
            assert await agent.stop() == 0
            stored = events(agent.data_dir)
            alarms = events(agent.data_dir, "alarm")
            actuations = events(agent.data_dir, "actuation")
    log = agent.log.read_text()
    assert while_full["store"]["held_events"] > 0
    assert while_full["store"]["refused_writes"] > 0
    assert while_full["store"]["events_lost"] == 0
    assert "store cannot write (database or disk is full)" in " ".join(shown.decode().split())
    assert on_disk_while_full == []  # nothing could be written: every event below was held
    # The creek's alarms and the sirens' switching, all while the disk was full, each
    # stored once, with the time it happened (before the space came back).
    creek = [(e["from"], e["to"]) for e in alarms if full_at <= e["ts"] <= freed_at]
    assert creek == [("normal", "orange"), ("orange", "red"), ("red", "normal")]
    site = [(e["from"], e["to"]) for e in actuations if full_at <= e["ts"] <= freed_at]
    assert site == [("normal", "orange"), ("orange", "red"), ("red", "normal")]
    assert [e for e in alarms if e["ts"] > freed_at] == []
    # Every event in the order it happened, none twice.
    assert [e["ts"] for e in stored] == sorted(e["ts"] for e in stored)
    keys = [json.dumps(e, sort_keys=True) for e in ({**e, "seq": 0} for e in stored)]
    assert len(keys) == len(set(keys))
    # Said once, then counted; no traceback per retry.
    assert log.count("the store cannot write") == 1
    assert log.count("the store writes again") == 1
    assert "Traceback" not in log
