"""The gateway warns the village with no network: the real agent against simulated hardware.

Each test runs ``edge run`` as a subprocess on a shared fast clock; assertions read the
simulator's coil log and the agent's own SQLite file.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import math
import socket
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.clock import ScaledClock
from drivers.profiles import builtin_profiles
from edge_agent.control import SOCKET_NAME, ControlRefusedError, ask
from edge_agent.control_messages import (
    AckReply,
    AckRequest,
    ControlRequest,
    ReplyT,
    SirenTestReply,
    SirenTestRequest,
    StatusReply,
    StatusRequest,
)
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import events, readings, sim_site
from hardware_sim.harness.site_toml import (
    CREEK_LEVEL_RULE,
    CREEK_RADAR,
    RAIN_1H_RULE,
    RAIN_GAUGE,
    SIREN_RELAYS,
    siren_actuator,
    tcp_site,
)
from hardware_sim.harness.waiting import wait_for
from hardware_sim.scenarios import DesignStorm

PROFILES = builtin_profiles()
ORIGIN = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
POLL_S = 60.0
THRESHOLDS = {"blue": 5.0, "yellow": 12.0, "orange": 20.0, "red": 30.0}
LEVELS = ["normal", "blue", "yellow", "orange", "red"]

SITE = tcp_site(
    "test-village",
    [RAIN_GAUGE, CREEK_RADAR, SIREN_RELAYS],
    poll_s=POLL_S,
    before_bus=["[agent]\nreassert_s = 1\ntest_duration_s = 0.5"],
    after_devices=[
        RAIN_1H_RULE,
        CREEK_LEVEL_RULE,
        siren_actuator(test_pattern="warble"),
        '[player]\nname = "cliplog"',
        """[actions]
blue = { siren = "strobe" }
yellow = { siren = "strobe", clip = "prepare_to_evacuate" }
orange = { siren = "warble", clip = "prepare_to_evacuate" }
red = { siren = "warble", clip = "evacuate_now" }""",
    ],
)


#: The gateway's own settings: a player that logs each clip it is given to CLIPLOG.
AGENT_TOML = """
[players.cliplog]
command = [
    PYTHON, "-c", "import sys; open(sys.argv[2], 'a').write(sys.argv[1] + chr(10))",
    "{clip}", CLIPLOG,
]
"""


def site_text(tmp: Path) -> str:
    """The site file; also writes the agent.toml that allows its player into ``tmp/gw``."""
    (tmp / "gw").mkdir(exist_ok=True)
    (tmp / "gw" / "agent.toml").write_text(
        AGENT_TOML.replace("PYTHON", json.dumps(sys.executable)).replace(
            "CLIPLOG", json.dumps(str(tmp / "clips.log"))
        )
    )
    return SITE


def station(clock: ScaledClock, storm: DesignStorm | None, level_mm: float = 800.0):
    rain = SimulatedDevice(
        PROFILES["dfrobot_sen0575"],
        192,
        clock,
        {"rain_total": storm.cumulative_mm} if storm else None,
        values={"window_hours": 1},
    )
    # A few millimetres of ripple: a perfectly constant level would be flagged as stuck.
    creek = SimulatedDevice(
        PROFILES["hlk_ld8001h"],
        1,
        clock,
        {"water_level": lambda t: level_mm + 3 * math.sin(t / 97)},
    )
    relays = SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock)
    return rain, creek, relays


def make_clock(speed: float) -> ScaledClock:
    return ScaledClock(speed, origin=ORIGIN, anchor=round(time.time(), 3))


def rises(data_dir: Path, rule: str) -> dict[str, float]:
    return {
        e["to"]: e["at"]
        for e in events(data_dir, "alarm")
        if e["subject"] == rule and e["kind"] == "rise"
    }


def window_sum_at(samples: list[float], storm: DesignStorm, t: float, window_s: float) -> float:
    """Rain in (t - W, t] as a gauge sampled at ``samples`` shows it, from the scenario."""
    before = [s for s in samples if s <= t - window_s]
    base = before[-1] if before else samples[0]
    return storm.cumulative_mm(t) - storm.cumulative_mm(base)


def window_sum_read(gauge: list[tuple[float, float]], t: float, window_s: float) -> float:
    """Rain in (t - W, t] as the gauge's stored readings show it.

    The counter moves in steps of its register's resolution; the scenario's continuous
    rain can cross a threshold between two steps, where the gauge does not yet show it.
    """
    value_at = dict(gauge)
    before = [s for s, _ in gauge if s <= t - window_s]
    base = before[-1] if before else gauge[0][0]
    return value_at[t] - value_at[base]


def coil_on_times(relays: SimulatedDevice, address: int) -> list[float]:
    return [c.sim_time for c in relays.coil_log if c.address == address and c.value]


async def test_storm_raises_each_level_at_the_first_crossing_sample_and_switches_the_siren(
    tmp_path,
):
    clock = make_clock(400)
    storm = DesignStorm(ORIGIN + 600, 7200, 60.0, step_s=300, seed=3)
    rain, creek, relays = station(clock, storm)
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: "red" in rises(agent.data_dir, "rain_1h"), 90, "a red rain alarm")
        await wait_for(lambda: coil_on_times(relays, 0), 10, "the siren coil")
        # The agent stops the clip playing when it stops: let the red one start first.
        clip_log = tmp_path / "clips.log"
        await wait_for(lambda: "evacuate_now" in clip_log.read_text(), 10, "the red clip")
        await agent.stop()
    levels = rises(agent.data_dir, "rain_1h")
    gauge = [(t, v) for t, v, q in readings(agent.data_dir, "rain.rain_total") if q == 0]
    samples = [t for t, _ in gauge]
    for name, threshold in THRESHOLDS.items():
        t = levels[name]
        previous = max(s for s in samples if s < t)
        # the scenario agrees to the gauge's resolution; the gauge's steps decide the sample
        assert window_sum_at(samples, storm, t, 3600) == pytest.approx(
            window_sum_read(gauge, t, 3600), abs=0.01
        )
        assert window_sum_read(gauge, t, 3600) >= threshold, name
        assert window_sum_read(gauge, previous, 3600) < threshold, name
    # Strobe (relay2) from blue, warble (relay1) from orange: each within one poll interval.
    strobe_on = coil_on_times(relays, 1)[0]
    siren_on = coil_on_times(relays, 0)[0]
    assert levels["blue"] <= strobe_on < levels["blue"] + POLL_S
    assert levels["orange"] <= siren_on < levels["orange"] + POLL_S
    clips = [Path(p).stem for p in (tmp_path / "clips.log").read_text().split()]
    assert clips == ["prepare_to_evacuate", "prepare_to_evacuate", "evacuate_now"]
    # What-if replay over the stored history gives the same rises at the same samples.
    replay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.cli", "replay", "--config", str(site.site_path),
        "--data-dir", str(agent.data_dir), "--json", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(replay.communicate(), 120)
    assert replay.returncode == 0
    replayed = [json.loads(line) for line in out.decode().splitlines()]
    replay_rises = {
        c["to"]: c["t"] for c in replayed if c["rule"] == "rain_1h" and c["kind"] == "rise"
    }
    assert replay_rises == levels


async def test_dead_or_faulty_sensors_are_events_not_sirens_and_never_lower_an_alarm(tmp_path):
    clock = make_clock(600)
    rain, creek, relays = station(clock, None, level_mm=2200.0)  # creek at yellow
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: "yellow" in rises(agent.data_dir, "creek"), 60, "the creek alarm")
        await wait_for(lambda: relays.coil(1), 10, "the strobe on")
        strobe_before = list(relays.coil_log)
        rain.faults.dead = True
        creek.faults.dead = True
        faults = lambda: {e["subject"] for e in events(agent.data_dir, "sensor_fault")}  # noqa: E731
        await wait_for(lambda: {"rain.rain_total", "creek.water_level"} <= faults(), 30, "faults")
        dead_since = clock.now()
        # Longer than the rule's hold time: bad samples must not let the level fall.
        await wait_for(lambda: clock.now() > dead_since + 1200, 30, "twenty simulated minutes")
        creek.faults.dead = False
        await wait_for(
            lambda: any(
                e["subject"] == "creek.water_level" for e in events(agent.data_dir, "sensor_ok")
            ),
            30,
            "the creek gauge back",
        )
        falls = [e for e in events(agent.data_dir, "alarm") if e["kind"] == "fall"]
        coils_after_outage = list(relays.coil_log)
        # Far beyond what the level can do between two polls (max_rate 100 mm/s), while
        # the bus is slowed by the dead rain gauge's timeouts.
        creek.faults.spike_magnitude = 30_000.0
        creek.faults.spike_probability = 1.0
        await wait_for(
            lambda: any("spike" in e["quality"] for e in events(agent.data_dir, "sensor_fault")),
            30,
            "a spike fault",
        )
        creek.faults.spike_probability = 0.0
        relay_polls = relays.requests[1]
        await wait_for(lambda: relays.requests[1] > relay_polls + 3, 30, "the relay module polled")
        await agent.stop()
    assert falls == []  # twenty dead minutes, longer than the hold time, lowered nothing
    assert coils_after_outage == strobe_before  # the outage switched nothing
    assert relays.coil(1) is True  # the strobe stayed on through every fault
    rain_faults = [
        e for e in events(agent.data_dir, "sensor_fault") if e["subject"] == "rain.rain_total"
    ]
    assert rain_faults[0]["quality"] == ["timeout"]
    spikes = [e for e in events(agent.data_dir, "alarm") if e["metric"] > 10_000]
    assert spikes == []  # a spike is a fault, never an alarm


async def test_sigkill_mid_storm_keeps_the_latch_the_window_sums_and_reasserts_the_siren(tmp_path):
    clock = make_clock(400)
    storm = DesignStorm(ORIGIN + 600, 7200, 60.0, step_s=300, seed=3)
    rain, creek, relays = station(clock, storm)
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: "red" in rises(agent.data_dir, "rain_1h"), 90, "a red rain alarm")
        await wait_for(lambda: relays.coil(0), 10, "the siren coil")
        agent.kill()
        await agent.process.wait()
        relays.power_cycle()  # the relay module browned out while the agent was dead
        assert not relays.coil(0)
        polls_before = rain.requests[4]
        restarted = await site.start_agent()
        # Re-asserted before the restarted agent's second poll of the gauge.
        await wait_for(lambda: relays.coil(0) and relays.coil(1), 30, "the siren re-asserted")
        assert rain.requests[4] <= polls_before + 2
        await wait_for(lambda: rain.requests[4] > polls_before + 3, 30, "polling after restart")
        status = await control(restarted.data_dir, StatusRequest(), StatusReply)
        await restarted.stop()
    assert status.alarms["rain_1h"].level == "red"  # still latched
    samples = [t for t, _, q in readings(restarted.data_dir, "rain.rain_total") if q == 0]
    metrics = status.alarms["rain_1h"].metrics
    last = max(s for s in samples if s <= status.now)
    expected = window_sum_at(samples, storm, last, 3600)
    assert metrics["1h_mm"] == pytest.approx(expected, abs=0.01)
    conn = sqlite3.connect(restarted.data_dir / "store.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_sigterm_while_starting_exits_as_after_start_up_and_keeps_the_store(tmp_path):
    clock = make_clock(600)
    rain, creek, relays = station(clock, None, level_mm=2200.0)  # creek at yellow
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: "yellow" in rises(agent.data_dir, "creek"), 60, "the creek alarm")
        await wait_for(
            lambda: len(readings(agent.data_dir, "creek.water_level")) >= 3, 30, "three polls"
        )
        after_start_up = await agent.stop()
        stored = (events(agent.data_dir), readings(agent.data_dir, "creek.water_level"))
        log_before = agent.log.stat().st_size
        starting = await site.start_agent()  # same data directory and log

        def own_log() -> str:
            return starting.log.read_bytes()[log_before:].decode()

        # The first thing the agent logs, once its stop signals are in hand.
        await wait_for(lambda: "starting: site file" in own_log(), 30, "the first log line")
        while_starting = await starting.stop()
    assert after_start_up == 0
    assert while_starting == after_start_up
    assert "stopped by SIGTERM while starting; the agent did not run" in own_log()
    # It stopped before opening the store: not even an agent_start event, nothing lost.
    assert (events(agent.data_dir), readings(agent.data_dir, "creek.water_level")) == stored
    conn = sqlite3.connect(agent.data_dir / "store.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


async def test_power_cycled_relay_module_is_restored_within_the_reassert_period(tmp_path):
    clock = make_clock(600)
    rain, creek, relays = station(clock, None, level_mm=2700.0)  # creek at orange: warble
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: relays.coil(0) and relays.coil(1), 60, "the siren on")
        relays.power_cycle()
        cut = time.monotonic()
        await wait_for(lambda: relays.coil(0) and relays.coil(1), 5, "the siren restored")
        restored = time.monotonic() - cut
        await agent.stop()
    assert restored <= 1.0 + 0.5  # reassert_s = 1 in the site file, plus scheduling slack


async def control(data_dir: Path, message: ControlRequest, reply: type[ReplyT]) -> ReplyT:
    return await ask(data_dir / SOCKET_NAME, message, reply)


async def test_control_socket_acks_a_latched_alarm_and_refuses_an_unknown_rule(tmp_path):
    clock = make_clock(400)
    storm = DesignStorm(ORIGIN + 600, 7200, 60.0, step_s=300, seed=3)
    rain, creek, relays = station(clock, storm)
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: "red" in rises(agent.data_dir, "rain_1h"), 90, "a red rain alarm")
        sock = agent.data_dir / "control.sock"
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        with pytest.raises(ControlRefusedError, match="no rule 'nope'"):
            await control(agent.data_dir, AckRequest(rule="nope"), AckReply)
        acked = await control(agent.data_dir, AckRequest(rule="rain_1h", by="technician"), AckReply)
        await agent.stop()
    assert acked.rule == "rain_1h"
    assert [e["by"] for e in events(agent.data_dir, "ack")] == ["technician"]


async def test_siren_test_reads_back_silently_and_sounds_briefly_when_audible(tmp_path):
    clock = make_clock(60)
    rain, creek, relays = station(clock, None)
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: relays.requests[1] > 0, 30, "the relay module polled")
        await wait_for((agent.data_dir / "control.sock").exists, 30, "the agent")
        silent = await control(agent.data_dir, SirenTestRequest(audible=False), SirenTestReply)
        audible = await control(agent.data_dir, SirenTestRequest(audible=True), SirenTestReply)
        await wait_for(lambda: not relays.coil(0), 10, "the siren off after the test")
        await agent.stop()
    assert silent.wire() == {"ok": True, "results": {"siren": True}}
    assert audible.ok is True
    switched = [(c.address, c.value) for c in relays.coil_log]
    assert switched == [(0, True), (1, True), (0, False), (1, False)]  # warble, then off
    kinds = [e["kind"] for e in events(agent.data_dir) if e["kind"] in ("self_test", "broadcast")]
    assert kinds == ["self_test", "broadcast", "self_test"]


async def test_agent_tells_systemd_it_is_ready_and_feeds_the_watchdog(tmp_path):
    clock = make_clock(60)
    rain, creek, relays = station(clock, None)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    extra = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    try:
        async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
            agent = await site.start_agent("gw", env=extra)
            messages: list[bytes] = []
            while messages.count(b"WATCHDOG=1") < 2:
                messages.append(await asyncio.wait_for(loop.sock_recv(sock, 256), 30))
            await agent.stop()
    finally:
        sock.close()
    # A slow start's replay asks for more start-up time first (test_agent_slope_e2e.py);
    # this one has no history, but a loaded machine may still take a note's interval.
    ready = messages.index(b"READY=1")
    assert all(m.startswith(b"EXTEND_TIMEOUT_USEC=") for m in messages[:ready])
    assert messages[ready:] == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1"]


def test_systemd_unit_restarts_always_and_uses_the_watchdog():
    unit = configparser.ConfigParser(strict=False)
    unit.read(Path(__file__).parent.parent / "edge_agent/systemd/hazardwatch-edge.service")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert "edge run" in service["ExecStart"]
    # readings are staged in RAM that outlives a restart (a killed agent's are moved later)
    text = (
        Path(__file__).parent.parent / "edge_agent/systemd/hazardwatch-edge.service"
    ).read_text()
    assert "Environment=HAZARDWATCH_STAGE_DIR=/run/hazardwatch" in text.splitlines()
    assert (service["RuntimeDirectory"], service["RuntimeDirectoryPreserve"]) == (
        "hazardwatch",
        "yes",
    )


async def test_edge_status_names_the_alarm_kernels(tmp_path):
    """`edge status` says which backend evaluates the rules (Pi OS 32-bit has no numba)."""
    clock = make_clock(60)
    rain, creek, relays = station(clock, None)
    async with sim_site(tmp_path, [rain, creek, relays], site_text(tmp_path), clock) as site:
        agent = await site.start_agent("gw", "--backend", "reference")
        await wait_for((agent.data_dir / SOCKET_NAME).exists, 30, "the agent's control socket")
        edge = [sys.executable, "-m", "edge_agent.cli", "status", "-d", str(agent.data_dir)]
        shown = await asyncio.create_subprocess_exec(*edge, stdout=asyncio.subprocess.PIPE)
        as_json = await asyncio.create_subprocess_exec(
            *edge, "--json", stdout=asyncio.subprocess.PIPE
        )
        text, _ = await asyncio.wait_for(shown.communicate(), 60)
        data, _ = await asyncio.wait_for(as_json.communicate(), 60)
        await agent.stop()
    assert (shown.returncode, as_json.returncode) == (0, 0)
    assert "alarm kernels reference" in text.decode()
    assert json.loads(data)["alarm_backend"] == "reference"
    assert "alarm kernels reference" in agent.log.read_text()
