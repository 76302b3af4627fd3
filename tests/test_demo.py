"""The quickstart demo end to end: a storm on the simulator, the real agent sounding the siren."""

import subprocess
import sys


def test_demo_storm_raises_levels_and_the_agent_switches_the_siren_on():
    result = subprocess.run(
        [sys.executable, "-m", "hardware_sim.cli", "demo", "--duration", "25", "--speed", "600"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "alarm rain_county: normal -> blue" in out
    assert "site level orange -> red" in out or "-> red" in out
    summary = out[out.index("relay coil changes") :]
    assert "relay1" in summary  # the siren (warble) switched
    assert "relay2" in summary  # the strobe switched
    assert "Traceback" not in out + result.stderr
    assert ">>>>>" not in out + result.stderr  # no raw frame dumps from pymodbus
