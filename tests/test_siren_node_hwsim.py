"""``hwsim siren-node``: the node's firmware logic behind a pty, its bucket in a station's storm."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType
from typer.testing import CliRunner

from drivers.siren_node.registers import (
    DEFAULT_UNIT_ID,
    FIRMWARE_VERSION,
    REG_FIRMWARE_VERSION,
    REG_RAIN_TIPS,
)
from hardware_sim.cli import app

ROOT = Path(__file__).resolve().parents[1]


def test_a_station_without_a_storm_is_refused_with_the_reason() -> None:
    result = CliRunner().invoke(app, ["siren-node", "slope"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "station slope has no [scenario.storm]" in result.output


async def test_the_node_answers_on_its_pty_counts_the_storms_rain_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    agent_end = tmp_path / "siren"
    # Twelve real seconds before now at 600x: two simulated hours in, mid-storm.
    anchor = round(time.time() - 12.0, 3)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hardware_sim.cli",
        "siren-node",
        "creek_village",
        "--path",
        str(agent_end),
        "--speed",
        "600",
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
        async with asyncio.timeout(10):
            while b"serving" not in (line := await process.stdout.readline()):
                assert line, "hwsim exited before serving"
        client = AsyncModbusSerialClient(
            str(agent_end), framer=FramerType.RTU, baudrate=9600, timeout=1, retries=0
        )
        assert await client.connect()
        version = await client.read_holding_registers(
            REG_FIRMWARE_VERSION, count=1, device_id=DEFAULT_UNIT_ID
        )
        tips = 0
        async with asyncio.timeout(10):
            while tips == 0:
                reply = await client.read_holding_registers(
                    REG_RAIN_TIPS, count=2, device_id=DEFAULT_UNIT_ID
                )
                tips = (reply.registers[0] << 16) | reply.registers[1]
        client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=10)
    assert version.registers == [FIRMWARE_VERSION]
    assert tips > 0
    assert process.returncode == 0
    assert b"stopped" in output
