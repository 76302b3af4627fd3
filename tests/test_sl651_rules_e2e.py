"""A station given its rules by the CLI raises its alarm at the running fleet, end to end.

Real processes and real TCP, as in production: ``fleet sl651 add-station --rules`` keeps
the station's rules file, ``fleet sl651 serve`` (the gateway's numba kernels, from the
warmed cache) evaluates its readings, and ``hwsim sl651-station`` reports the shipped
creek village's storm on a fast clock. The alarm is read from the fleet's database.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hardware_sim.harness.agent import NUMBA_CACHE
from hardware_sim.harness.sl651_centre import FLEET, serving_centre
from hardware_sim.harness.waiting import wait_until

ADDRESS = "0012345678"
GATEWAY = "sl651-0012345678"
#: The county's 1-hour rain thresholds, scaled down so the design storm's first hour of
#: heavy rain (tens of mm/h) crosses blue and yellow within seconds at 600x.
RULES = """
[[rule]]
id = "station_rain"
kind = "rain_windows"
channel = "rainfall_accumulated"
[rule.windows]
"1h" = { blue = 5, yellow = 10 }

[[rule]]
id = "creek_level"
kind = "water_level"
channel = "water_level"
thresholds = { red = 50.0 }
"""


@contextmanager
def reporting_station(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``hwsim sl651-station``: the creek village's storm, a 5-minute report every 0.5 s."""
    station = [sys.executable, "-m", "hardware_sim.cli", "sl651-station", "creek_village"]
    options = ["--centre", f"127.0.0.1:{port}", "--address", ADDRESS, "--speed", "600"]
    process = subprocess.Popen([*station, *options], stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def station_alarms(data_dir: Path) -> list[tuple[str, int]]:
    """The station's open alarms, (rule, level), from the fleet's database."""
    with sqlite3.connect(data_dir / "fleet.sqlite", timeout=30) as conn:
        rows = conn.execute(
            "SELECT a.rule, a.level FROM alarms a JOIN gateways g ON g.num = a.gw "
            "WHERE g.id = ? AND a.cleared_at IS NULL ORDER BY a.rule",
            (GATEWAY,),
        )
        return [(rule, int(level)) for rule, level in rows]


def test_a_station_added_with_rules_raises_its_alarm_at_the_running_centre(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(NUMBA_CACHE))  # warmed by conftest (e2e)
    data_dir = tmp_path / "fleet"
    rules = tmp_path / "creek-station.toml"
    rules.write_text(RULES)
    add = [*FLEET, "sl651", "add-station", ADDRESS, "--password", "5A7C", "--site", "creek"]
    subprocess.run([*add, "--rules", str(rules), "--data-dir", str(data_dir)], check=True)
    with serving_centre(data_dir) as (port, _), reporting_station(port) as station:

        def yellow() -> list[tuple[str, int]]:
            assert station.poll() is None, "hwsim sl651-station ended"
            alarms = station_alarms(data_dir)
            return alarms if ("station_rain", 2) in alarms else []

        alarms = wait_until(yellow, 90, "the station's rain alarm at yellow")
    assert alarms == [("station_rain", 2)]  # the creek's red is far off: no alarm
