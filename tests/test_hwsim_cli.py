"""The ``hwsim`` command line: help, profile listing, serving a shipped station, SL 651 settings."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from typer.testing import CliRunner

from drivers.clock import ScaledClock
from drivers.codec import decode
from drivers.profiles import builtin_profiles
from hardware_sim.cli import app
from hardware_sim.station import load_station, resolve_station

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output
    assert "profiles" in result.output


@pytest.mark.parametrize("columns", ["40", "200"])
def test_profiles_lists_every_shipped_profile_never_cutting_a_name(columns: str) -> None:
    # A subprocess: the command's console takes its width when it is imported, so an
    # in-process run would see whichever width the first import saw.
    done = subprocess.run(
        [sys.executable, "-m", "hardware_sim.cli", "profiles"],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "COLUMNS": columns},
    )  # fmt: skip
    rows = [line.split("\u2502")[1].strip() for line in done.stdout.splitlines()[3:-1]]
    assert {row for row in rows if row} == set(builtin_profiles())


def test_serve_rejects_an_invalid_station_with_its_error(tmp_path: Path) -> None:
    station = tmp_path / "broken.toml"
    station.write_text('[station]\nname = "x"\n', encoding="utf-8")
    result = runner.invoke(app, ["serve", str(station)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "needs at least one [[link]]" in result.output


async def test_serve_answers_on_tcp_with_the_shared_clock_and_stops_on_sigterm() -> None:
    origin, speed = 1_726_552_800.0, 60.0
    # Two real minutes before now at 60x: two simulated hours into the station, mid-storm.
    anchor = round(time.time() - 120.0, 3)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hardware_sim.cli",
        "serve",
        "creek_village",
        "--tcp-port",
        "0",
        "--speed",
        str(speed),
        "--origin",
        "2024-09-17T06:00:00Z",
        "--anchor",
        str(anchor),
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        port = None
        async with asyncio.timeout(10):
            while port is None:
                line = (await process.stdout.readline()).decode()
                assert line, "hwsim exited before listening"
                if found := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                    port = int(found.group(1))
        truth = (
            load_station(resolve_station("creek_village"))
            .build(ScaledClock(speed, origin, anchor), origin)
            .devices["rain_sen0575"]
        )
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        low = truth.value("rain_total")
        reply = await client.read_input_registers(8, count=2, device_id=192)
        high = truth.value("rain_total")
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=10)
    served = decode(reply.registers, "uint32", "little") * 0.0001
    assert 0 < low - 0.0001 <= served <= high + 0.0001
    assert process.returncode == 0
    assert b"stopped" in output


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--centre", "127.0.0.1", "HOST:PORT"),
        ("--address", "12345", "10 hex digits"),
        ("--password", "secret", "4 hex digits"),
        ("--every", "0", "must be positive"),
    ],
)
def test_sl651_station_refuses_bad_settings_with_the_reason(
    option: str, value: str, said: str
) -> None:
    result = runner.invoke(app, ["sl651-station", option, value])
    assert result.exit_code == 2
    assert said in result.output
