"""The technician's ``edge`` commands, run as real subprocesses against simulated devices."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pty
import pwd
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from drivers.bus import ModbusBus, TransactionError
from drivers.bus_config import TcpBusConfig
from drivers.clock import Clock, SystemClock
from drivers.model import BAD_QUALITY, Quality
from drivers.profiles import Table, builtin_profiles
from edge_agent.scan import parse_id_range, scan_bus
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import EDGE, edge_cli
from hardware_sim.harness.site_toml import SiteDevice, tcp_site
from hardware_sim.pty_link import PtyPair
from tests.wire import served

PROFILES = builtin_profiles()

SITE = tcp_site(
    "test-site",
    [
        SiteDevice("rain", "dfrobot_sen0575", ("rain_total", "tips"), timeout_s=None),
        SiteDevice("tilt", "inclinometer_dual_axis", unit_id=3),
    ],
    name="Test site",
)


def stations() -> list[SimulatedDevice]:
    clock = SystemClock()
    return [
        SimulatedDevice(
            PROFILES["dfrobot_sen0575"],
            192,
            clock,
            values={"rain_total": 42.5, "tips": 152, "window_hours": 1},
        ),
        SimulatedDevice(
            PROFILES["inclinometer_dual_axis"], 3, clock, values={"tilt_x": 2.5, "tilt_y": -1.25}
        ),
        SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock),
    ]


async def test_poll_once_json_prints_every_channel_with_value_unit_and_quality(tmp_path: Path):
    async with served("tcp", stations()) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        site = tmp_path / "site.toml"
        site.write_text(SITE.format(port=bus.port))
        code, out, err = await edge_cli("poll", "--config", str(site), "--once", "--json")
    assert code == 0, err
    readings = {r["channel"]: r for r in map(json.loads, out.splitlines())}
    assert set(readings) == {"rain.rain_total", "rain.tips", "tilt.tilt_x", "tilt.tilt_y"}
    assert readings["rain.rain_total"]["value"] == 42.5
    assert readings["rain.rain_total"]["unit"] == "mm"
    assert readings["tilt.tilt_y"]["value"] == -1.25
    assert {q for r in readings.values() for q in r["quality"]} == {"ok"}
    # JSON lines, as the README promises: one compact object per reading, per line.
    lines = out.splitlines()
    assert len(lines) == 4
    assert all(line == json.dumps(json.loads(line), separators=(",", ":")) for line in lines)


async def test_poll_once_exits_1_and_flags_a_silent_device(tmp_path: Path):
    devices = stations()
    devices[1].faults.dead = True
    async with served("tcp", devices) as (bus, _):
        site = tmp_path / "site.toml"
        site.write_text(SITE.format(port=bus.port))
        code, out, _ = await edge_cli("poll", "--config", str(site), "--once", "--json")
    assert code == 1
    readings = {r["channel"]: r for r in map(json.loads, out.splitlines())}
    assert readings["tilt.tilt_x"]["quality"] == ["timeout"]
    assert readings["tilt.tilt_x"]["value"] is None
    assert readings["rain.rain_total"]["quality"] == ["ok"]


async def test_poll_refuses_a_bad_site_file_with_the_reason(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(SITE.format(port=502).replace("unit_id = 3", "unit_id = 0"))
    code, _, err = await edge_cli("poll", "--config", str(site), "--once")
    assert code == 2
    assert f"{site}: device 'tilt': 'unit_id' = 0 is outside 1..247" in " ".join(err.split())


async def test_scan_finds_who_answers_and_what_it_probably_is():
    async with served("tcp", stations()) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        hits = await scan_bus(bus, [*range(1, 12), 192, 200], PROFILES.values(), timeout_s=0.1)
        code, out, err = await edge_cli(
            "scan",
            "--tcp",
            f"127.0.0.1:{bus.port}",
            "--ids",
            "1-4,190-193",
            "--json",
            "--timeout",
            "0.1",
        )
    found = {h.unit_id: h for h in hits}
    assert set(found) == {3, 10, 192}
    assert found[192].matches[0] == "dfrobot_sen0575"
    # Now that the generic rain gauge reads only holding 0..2, the inclinometer's four
    # registers fit it too: both are named, the scan cannot tell them apart.
    assert set(found[3].matches) == {"inclinometer_dual_axis", "generic_rs485_rain"}
    assert found[10].matches == ("relay_module_8ch",)
    assert code == 0, err
    assert {(h["unit_id"], frozenset(h["matches"])) for h in json.loads(out)} == {
        (3, frozenset({"inclinometer_dual_axis", "generic_rs485_rain"})),
        (192, frozenset({"dfrobot_sen0575"})),
    }


GENERIC_GAUGE_SITE = tcp_site(
    "gauge-site", [SiteDevice("rain", "generic_rs485_rain", timeout_s=None)]
)


def gauge_as_its_manual_says(clock: Clock, rain_total: float) -> SimulatedDevice:
    """The generic RS485 gauge as its manual describes it, whatever our profile says.

    Its unit id at 0x1000 is a write target only: a read of it is answered with
    exception 02, as the gauge in issue 16 did.
    """
    profile = PROFILES["generic_rs485_rain"]
    manual = dataclasses.replace(
        profile,
        channels=tuple(
            dataclasses.replace(c, readable=c.address != 0x1000) for c in profile.channels
        ),
    )
    return SimulatedDevice(manual, 2, clock, values={"rain_total": rain_total})


async def test_a_healthy_generic_rain_gauge_polls_and_scans_clean(tmp_path: Path):
    # The gauge answers as its manual says: 0x1000 (its unit id) is a write target only,
    # and a read of it gets exception 02 (issue 16).
    gauge = gauge_as_its_manual_says(SystemClock(), 12.3)
    async with served("tcp", [gauge]) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        owner = ModbusBus(bus)
        try:
            with pytest.raises(TransactionError) as refused:
                await owner.read(2, Table.HOLDING, 0x1000, 1, 0.5)
        finally:
            await owner.close()
        site = tmp_path / "site.toml"
        site.write_text(GENERIC_GAUGE_SITE.format(port=bus.port))
        poll_code, out, err = await edge_cli("poll", "--config", str(site), "--once", "--json")
        scan_code, scan_out, scan_err = await edge_cli(
            "scan", "--tcp", f"127.0.0.1:{bus.port}", "--ids", "1-3", "--json", "--timeout", "0.1"
        )
    assert refused.value.exception_code == 2
    assert poll_code == 0, err
    readings = {r["channel"]: r for r in map(json.loads, out.splitlines())}
    assert set(readings) == {"rain.rain_total", "rain.rain_acc2", "rain.rain_acc3"}
    assert readings["rain.rain_total"]["value"] == pytest.approx(12.3)
    assert all(r["quality"] == ["ok"] for r in readings.values())
    assert (0x03, 0x1000, 1) not in gauge.request_log[1:]
    assert scan_code == 0, scan_err
    assert [(h["unit_id"], h["matches"][0]) for h in json.loads(scan_out)] == [
        (2, "generic_rs485_rain")
    ]


async def test_edge_run_reports_no_sensor_fault_for_a_healthy_generic_gauge(tmp_path: Path):
    from drivers.clock import ScaledClock  # noqa: PLC0415
    from hardware_sim.harness.agent import events, readings, sim_site  # noqa: PLC0415
    from hardware_sim.harness.waiting import wait_for  # noqa: PLC0415

    clock = ScaledClock(20.0, origin=1_780_000_000.0, anchor=round(time.time(), 3))
    gauge = gauge_as_its_manual_says(clock, 3)
    site_text = GENERIC_GAUGE_SITE + "poll_interval_s = 10\n"

    def polls(data_dir: Path) -> int:
        try:
            return len(readings(data_dir, "rain.rain_acc3"))
        except sqlite3.OperationalError:  # the agent has not created its store yet
            return 0

    async with sim_site(tmp_path, [gauge], site_text, clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: polls(agent.data_dir) >= 3, 90, "three polls")
        await agent.stop()
    qualities = [Quality(q) for _, _, q in readings(agent.data_dir, "rain.rain_total")]
    assert len(qualities) >= 3
    assert not any(q & BAD_QUALITY for q in qualities)
    assert events(agent.data_dir, "sensor_fault") == []
    assert (0x03, 0x1000, 1) not in gauge.request_log


async def test_a_site_file_may_not_poll_a_write_only_channel(tmp_path: Path):
    site = tmp_path / "site.toml"
    site.write_text(GENERIC_GAUGE_SITE.format(port=502) + 'channels = ["device_address"]\n')
    code, _, err = await edge_cli("poll", "--config", str(site), "--once")
    assert code == 2
    assert (
        f"{site}: device 'rain': channel(s) device_address of profile 'generic_rs485_rain' "
        "are write-only"
    ) in " ".join(err.split())


SERIAL_SITE = """
[site]
id = "serial-site"

[[bus]]
name = "rs485"
kind = "serial"
device = "{device}"

[[device]]
name = "rain"
bus = "rs485"
profile = "generic_rs485_rain"
"""


async def test_a_missing_serial_port_is_named_with_the_os_reason(tmp_path: Path):
    port = tmp_path / "ttyUSB7"
    site = tmp_path / "site.toml"
    site.write_text(SERIAL_SITE.format(device=port))
    code, out, _ = await edge_cli("poll", "--config", str(site), "--once")
    assert code == 1
    assert (
        f"rain: cannot open bus rs485: {port}: No such file or directory (errno ENOENT): is "
        "the USB-RS485 adapter plugged in? `ls /dev/serial/by-id` lists the adapters"
    ) in out.splitlines()


def test_a_serial_port_the_user_may_not_open_says_to_join_dialout():
    # A real pty; the poll runs as a user who may not open it (nobody, when the tests run
    # as root, who may open anything).
    folder = Path(tempfile.mkdtemp(prefix="hw-dialout-"))
    try:
        folder.chmod(0o755)
        with PtyPair(folder / "agent", folder / "device") as pty:
            tty = Path(os.path.realpath(pty.agent_end))
            site = folder / "site.toml"
            site.write_text(SERIAL_SITE.format(device=pty.agent_end))
            site.chmod(0o644)
            if os.geteuid() == 0:
                tty.chmod(0o600)
                user = "nobody"
                prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            else:
                tty.chmod(0o000)
                user = pwd.getpwuid(os.geteuid()).pw_name
                prefix = []
            done = subprocess.run(
                [*prefix, *EDGE, "poll", "--config", str(site), "--once"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 1, done.stderr
    assert (
        f"rain: cannot open bus rs485: {pty.agent_end}: Permission denied (errno EACCES): add "
        f"the user to the dialout group (`sudo usermod -aG dialout {user}`, then log in again "
        "or restart the service)"
    ) in done.stdout.splitlines()


def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run ``edge`` with stdout and stderr on a pseudo-terminal; return its status and text."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
    process = subprocess.Popen(
        [*EDGE, *args], stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL, env=env
    )
    os.close(terminal)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


async def test_scan_shows_progress_on_a_terminal_and_nothing_in_a_pipe():
    async with served("tcp", stations()) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        args = ["scan", "--tcp", f"127.0.0.1:{bus.port}", "--ids", "1-12", "--timeout", "0.1"]
        tty_code, screen = await asyncio.to_thread(run_on_a_terminal, args)
        pipe_code, out, err = await edge_cli(*args)
    assert tty_code == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert f"scanning tcp 127.0.0.1:{bus.port}" in plain
    assert "12/12 ids, 2 answered" in plain  # units 3 and 10 of 1-12
    assert "2 device(s) answered" in plain
    assert pipe_code == 0
    assert err == ""  # no bar and no pymodbus frame dumps in a pipe or a log
    assert "2 device(s) answered" in out


def test_id_ranges_parse_and_bad_ones_say_why():
    assert parse_id_range("1-3,10") == [1, 2, 3, 10]
    with pytest.raises(ValueError, match=r"within 1\.\.247"):
        parse_id_range("0-3")
    with pytest.raises(ValueError, match="bad unit id range 'a-b'"):
        parse_id_range("a-b")


async def test_edge_help_lists_the_commands():
    code, out, _ = await edge_cli("--help")
    assert code == 0
    for command in ("poll", "scan", "profiles"):
        assert command in out


@pytest.mark.parametrize("columns", ["80", "30"])
def test_edge_profiles_never_cuts_a_name(columns: str):
    done = subprocess.run(
        [*EDGE, "profiles"],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "COLUMNS": columns},
    )  # fmt: skip
    rows = [line.split("\u2502")[1].strip() for line in done.stdout.splitlines()[4:-1]]
    assert {row for row in rows if row} == set(PROFILES)
