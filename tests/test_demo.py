"""The quickstart demo runs end to end: simulator, site file, a separate ``edge poll``."""

import subprocess
import sys


def test_demo_serves_a_station_and_the_agent_polls_it_live():
    result = subprocess.run(
        [sys.executable, "-m", "hardware_sim.cli", "demo", "--duration", "6", "--speed", "600"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for channel in ("rain_sen0575.rain_total", "creek_radar.water_level", "siren_relays.relay1"):
        assert channel in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert ">>>>>" not in result.stdout + result.stderr  # no raw frame dumps from pymodbus
