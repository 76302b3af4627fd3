"""``edge doctor`` on site: real subprocesses against simulated devices over Modbus TCP.

A healthy station, a dead device, a serial adapter that is not plugged in, a siren relay
that must only be read back, and a gateway that is not enrolled. The machine's own state
that a test cannot arrange (an unsynchronised kernel clock, a nearly full SD card) is
given to ``doctor.examine`` through its ``Surroundings``: the real kernel clock and disk
cannot be put in those states here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alarm_engine.kernel_cache import engine_cache_dir
from drivers.clock import ScaledClock, SystemClock
from drivers.profiles import builtin_profiles
from edge_agent.doctor import (
    Finding,
    Surroundings,
    check_numba,
    check_slope_polling,
    check_stage,
    examine,
    verdict_of,
)
from edge_agent.store import LocalStore
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import sim_site
from hardware_sim.harness.waiting import wait_for
from site_schema.site_config import parse_site_text
from tests.wire import served

PROFILES = builtin_profiles()
EDGE = [sys.executable, "-m", "edge_agent.cli"]

STATION = """
[site]
id = "creek-doctor"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = {port}

[[device]]
name = "rain"
bus = "field"
profile = "dfrobot_sen0575"
channels = ["rain_total", "tips"]
poll_interval_s = 10

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"
unit_id = 10
channels = ["relay1", "relay2"]
poll_interval_s = 10

[[actuator]]
id = "siren"
device = "relays"
patterns = { siren = ["relay1", "relay2"] }
"""

FAULTS = """
[[device]]
name = "tilt"
bus = "field"
profile = "inclinometer_dual_axis"
unit_id = 7
timeout_s = 0.2
retries = 0

[[bus]]
name = "rs485"
kind = "serial"
device = "{tmp}/ttyUSB9"

[[device]]
name = "gauge"
bus = "rs485"
profile = "dfrobot_sen0575"
"""


def devices() -> list[SimulatedDevice]:
    clock = SystemClock()
    return [
        SimulatedDevice(PROFILES["dfrobot_sen0575"], 192, clock, values={"rain_total": 4.5}),
        SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock),
    ]


async def doctor(*args: str) -> tuple[int, list[dict[str, Any]], str]:
    process = await asyncio.create_subprocess_exec(
        *EDGE, "doctor", *args, "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return (
        process.returncode,
        [json.loads(line) for line in out.decode().splitlines()],
        err.decode(),
    )


def by_check(findings: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {f["check"]: (f["verdict"], f["detail"]) for f in findings}


async def test_a_dead_device_and_a_missing_adapter_fail_and_the_siren_is_only_read_back(
    tmp_path: Path,
) -> None:
    served_devices = devices()
    relays = served_devices[1]
    relays.set_value("relay2", 1.0)  # a light left on: read back, not switched off
    async with served("tcp", served_devices) as (bus, _):
        site = tmp_path / "site.toml"
        text = STATION.replace("{port}", str(bus.port)) + FAULTS.replace("{tmp}", str(tmp_path))
        site.write_text(text)
        code, findings, err = await doctor("-c", str(site), "-d", str(tmp_path / "data"))
    assert code == 1, err
    seen = by_check(findings)
    assert seen["device rain"][0] == "ok"
    assert seen["device relays"][0] == "ok"
    # unit 7 is not on the line: the station answers with an exception, named
    verdict, detail = seen["device tilt"]
    assert verdict == "fail"
    assert "tilt (unit 7) did not answer" in detail
    # the adapter that is not plugged in: its path, what to look at, and its devices
    port = f"port {tmp_path}/ttyUSB9"
    assert seen[port][0] == "fail"
    assert "no such device" in seen[port][1]
    assert "/dev/serial/by-id" in seen[port][1]
    assert seen["device gauge"] == (
        "fail",
        "not probed: its serial port cannot be opened (see above)",
    )
    # the siren relay: read back, nothing switched
    verdict, detail = seen["siren siren"]
    assert verdict == "ok"
    assert "on: relay2" in detail
    assert "not switched" in detail
    assert relays.value("relay1") == 0.0
    assert relays.value("relay2") == 1.0
    assert relays.requests[1] > 0  # its coils were read (FC01)...
    assert relays.requests[5] == relays.requests[15] == 0  # ...and never written
    # not enrolled: it warns locally, nothing reaches the county
    assert seen["county"][0] == "warn"
    assert "not enrolled" in seen["county"][1]
    assert {"clock", "store", "disk", "numba"} <= set(seen)


async def test_a_healthy_station_passes_and_the_table_says_the_gateway_can_warn(
    tmp_path: Path,
) -> None:
    async with served("tcp", devices()) as (bus, _):
        site = tmp_path / "site.toml"
        site.write_text(STATION.replace("{port}", str(bus.port)))
        code, findings, err = await doctor("-c", str(site), "-d", str(tmp_path / "data"))
        assert code == 0, err
        assert {f["verdict"] for f in findings} <= {"ok", "warn"}
        process = await asyncio.create_subprocess_exec(
            *EDGE, "doctor", "-c", str(site), "-d", str(tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert "the gateway can warn" in out.decode()
    assert "probed (the agent is not running)" in out.decode()


def test_a_port_this_user_may_not_open_names_the_dialout_group(tmp_path: Path) -> None:
    # A serial port as udev makes it for another group: there, but closed to this user.
    port = tmp_path / "ttyUSB0"
    port.write_bytes(b"")
    port.chmod(0o600)
    check = (
        "from edge_agent.doctor import check_port; import json, dataclasses; "
        f"print(json.dumps(dataclasses.asdict(check_port({str(port)!r}, 'bus rs485'))))"
    )
    command = [sys.executable, "-c", check]
    if os.geteuid() == 0:
        # Root opens anything: the port belongs to another user, and the check runs as
        # root without the capabilities that override file permissions.
        os.chown(port, 65534, 65534)
        command = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    finding = json.loads(done.stdout)
    assert finding["verdict"] == "fail"
    assert "permission denied" in finding["detail"]
    assert "sudo usermod -aG dialout" in finding["detail"]


async def test_an_unsynced_clock_a_full_card_and_no_numba_are_each_reported(
    tmp_path: Path,
) -> None:
    site = parse_site_text(STATION.replace("{port}", str(1)), "site.toml")
    data = tmp_path / "data"
    data.mkdir()
    mounts = f"/dev/mmcblk0p2 / ext4 rw,relatime 0 0\n/dev/mmcblk0p2 {tmp_path} ext4 rw 0 0\n"

    async def run(free: int) -> dict[str, tuple[str, str]]:
        # The kernel clock's state and the SD card's free space cannot be arranged in a
        # test: the machine's answers are given instead (see Surroundings).
        surroundings = Surroundings(
            clock_synced=lambda: False,
            disk_usage=lambda _path: (2**34, 2**34 - free, free),
            numba_installed=lambda: False,
            mounts=lambda: mounts,
        )
        # no device is reachable on port 1: the bus part fails, the machine part is judged
        findings = await examine(site, data, None, surroundings)
        assert verdict_of(findings) == "fail"
        return {f.check: (f.verdict, f.detail) for f in findings}

    seen = await run(free=200 * 2**20)
    assert seen["clock"][0] == "warn"
    assert "timedatectl set-ntp true" in seen["clock"][1]
    assert seen["disk"][0] == "warn"
    assert "less than the store quota" in seen["disk"][1]
    assert "on the SD card (/dev/mmcblk0p2)" in seen["disk"][1]
    assert "noatime" in seen["disk"][1]
    assert seen["numba"][0] == "warn"
    assert "pure-Python engine" in seen["numba"][1]
    seen = await run(free=10 * 2**20)
    assert seen["disk"] == ("fail", "10 MB free: the store cannot keep readings")


async def test_the_doctor_says_whether_readings_are_staged_in_ram(tmp_path: Path) -> None:
    data, ram = tmp_path / "data", tmp_path / "ram"
    mounts = f"/dev/mmcblk0p2 / ext4 rw,noatime 0 0\ntmpfs {ram} tmpfs rw 0 0\n"
    surroundings = Surroundings(mounts=lambda: mounts)
    assert check_stage(data, surroundings) == Finding(
        "stage", "ok", "the agent has not run here yet"
    )
    with contextlib.closing(LocalStore(data).open()):  # a bare `edge run`: no stage
        pass
    plain = check_stage(data, surroundings)
    with contextlib.closing(LocalStore(data, stage_dir=ram).open()):  # as the systemd unit
        pass
    staged = check_stage(data, surroundings)
    on_disk = check_stage(data, Surroundings(mounts=lambda: "/dev/mmcblk0p2 / ext4 rw 0 0\n"))
    assert plain.verdict == "warn"
    assert "--stage-dir /run/hazardwatch" in plain.detail
    assert staged == Finding(
        "stage", "ok", f"readings staged in RAM ({ram}), moved to the store every 5 minutes"
    )
    assert on_disk.verdict == "warn"
    assert "not tmpfs" in on_disk.detail


async def test_with_the_agent_running_devices_are_judged_from_its_own_polls(
    tmp_path: Path,
) -> None:
    clock = ScaledClock(1.0)
    async with sim_site(tmp_path, devices(), STATION, clock) as station:
        agent = await station.start_agent()
        await wait_for(
            lambda: (agent.data_dir / "control.sock").exists() or None, 60, "the agent to listen"
        )

        async def polled() -> dict[str, tuple[str, str]] | None:
            code, findings, _ = await doctor(
                "-c", str(station.site_path), "-d", str(agent.data_dir)
            )
            seen = by_check(findings)
            ready = seen.get("device rain", ("", ""))[0] == "ok" and seen["siren siren"][0] == "ok"
            return seen if code == 0 and ready else None

        # the agent's first poll and read-back come within seconds of its start
        seen = await wait_for(polled, 60, "the running agent's polls to show in doctor")
        assert "answering the running agent" in seen["device rain"][1]
        assert seen["siren siren"] == ("ok", "the running agent reads it back")
        assert await agent.stop() == 0


async def test_an_agent_that_runs_but_cannot_be_read_keeps_its_lines(tmp_path: Path) -> None:
    # A refusal, an odd answer or a slow agent (compiling its kernels) still owns the lines:
    # the doctor must not open them beside it, and says why the devices are not judged.
    station = devices()
    async with served("tcp", station) as (bus, _):
        site = parse_site_text(STATION.replace("{port}", str(bus.port)), "site.toml")
        findings = await examine(site, tmp_path, "it did not answer within 5 s")
    assert all(not device.requests for device in station)  # no line was opened
    seen = {f.check: (f.verdict, f.detail) for f in findings}
    why = (
        "not probed: an agent runs but its status could not be read (it did not answer within 5 s)"
    )
    assert seen["device rain"] == ("warn", why)
    assert seen["siren siren"] == ("warn", why)


SLOPE_EXAMPLE = Path(__file__).resolve().parents[1] / "edge_agent" / "examples" / "slope_road.toml"


def test_a_slope_forecast_polled_hourly_is_a_warning_naming_the_rule_and_the_fix() -> None:
    text = SLOPE_EXAMPLE.read_text()
    shipped = check_slope_polling(parse_site_text(text, "slope_road.toml"))
    assert [(f.check, f.verdict) for f in shipped] == [("forecast slope_forecast", "ok")]
    assert "polled every 300 s" in shipped[0].detail
    hourly_text = text.replace(
        "unit_id = 3\npoll_interval_s = 300", "unit_id = 3\npoll_interval_s = 3600"
    )
    assert hourly_text != text
    hourly = check_slope_polling(parse_site_text(hourly_text, "slope_road.toml"))
    assert [(f.check, f.verdict) for f in hourly] == [("forecast slope_forecast", "warn")]
    assert "scarp_extensometer.extension polled every 3600 s" in hourly[0].detail
    assert "set poll_interval_s = 600 or less" in hourly[0].detail
    # The figure it quotes is the README's measured one for hourly readings.
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    hourly_row = next(line for line in readme.splitlines() if line.startswith("| hourly, noise"))
    day_ahead = hourly_row.split("|")[2].strip()
    assert f"a day ahead of {day_ahead} of the corpus's failures hourly" in hourly[0].detail
    rain_only = parse_site_text(STATION.replace("{port}", "1"), "site.toml")
    assert check_slope_polling(rain_only) == []


PROBE_KERNEL = """
from alarm_engine.kernels import jit


@jit
def probe() -> float:
    return 1.0
"""


def test_the_numba_check_counts_only_this_versions_kernels(
    tmp_path: Path, monkeypatch: Any
) -> None:
    data = tmp_path / "data"
    base = data / "numba-cache"
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    # an older engine's kernels, left for a rollback: never loaded by this version
    older = base / "engine-0123456789abcdef"
    older.mkdir(parents=True)
    (older / "kernels.probe-1.py311.nbi").write_bytes(b"")
    (base / "engine-notes").mkdir()  # not a version's: an operator's, say
    # this version's directory, made but holding no kernel yet (a first start cut short)
    Path(engine_cache_dir(str(base))).mkdir()
    finding = check_numba(data, Surroundings(numba_installed=lambda: True))
    assert finding.verdict == "warn"
    assert "keeps 1 other version(s)' kernels, not this one's" in finding.detail
    # this engine compiles a kernel into the cache, as the agent's first start does
    (tmp_path / "probe_kernel.py").write_text(PROBE_KERNEL)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{root}", "NUMBA_CACHE_DIR": str(base)}
    subprocess.run(
        [sys.executable, "-c", "from probe_kernel import probe; print(probe())"],
        env=env, cwd=tmp_path, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert list(Path(engine_cache_dir(str(base))).rglob("*.nbi"))
    finding = check_numba(data, Surroundings(numba_installed=lambda: True))
    assert finding.verdict == "ok"
    assert engine_cache_dir(str(base)) in finding.detail
