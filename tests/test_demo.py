"""The quickstart demo end to end: fleet, three stations in a storm, three real gateways."""

import os
import re
import subprocess
import sys

import pytest


def row(out: str, *cells: str) -> str:
    """The first table line holding every one of ``cells``."""
    return next(line for line in out.splitlines() if all(c in line for c in cells))


# The storm takes 25 s; a red raised late in it reaches the township up to 40 s later.
@pytest.mark.timeout(240)
def test_demo_storm_sounds_sirens_reaches_the_fleet_and_every_reading_arrives_once():
    result = subprocess.run(
        [sys.executable, "-m", "hardware_sim.cli", "demo", "--duration", "25", "--speed", "600"],
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
        env={**os.environ, "COLUMNS": "160"},  # wide tables: one line per row
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr
    for station, site in (
        ("creek_village", "creek-village"),
        ("slope", "slope-road"),
        ("river_gauge", "river-gauge"),
    ):
        assert re.search(rf"enrolled {station} as gw-[0-9a-f]{{10}} \(site {site}\)", out)
    # The alarms reached the fleet through the gateways' event uploads.
    alarms = out[out.index("alarms at the fleet") :]
    assert "red" in row(alarms, "creek_village", "rain_county")
    assert "red" in row(alarms, "river_gauge", "river_stage")
    assert "slope_velocity" in alarms
    # The sirens (relay1) and strobes (relay2) switched on in the flooded places.
    coils = out[out.index("relay coil changes") :]
    for station in ("creek_village", "river_gauge"):
        assert "on" in row(coils, station, "relay1")
        assert "on" in row(coils, station, "relay2")
    # The closing check: each gateway's stored readings, exactly once at the fleet.
    check = out[out.index("readings: gateway store vs fleet") :]
    for station in ("creek_village", "slope", "river_gauge"):
        line = row(check, station, "gw-")
        assert line.rstrip(" │").endswith("exact"), line
    assert "exactly once: the fleet holds exactly the" in out
    # 叫应: the village did not answer by its deadline, the township answered by its link.
    assert re.search(r"roster imported \(creek-village: 3 person\(s\), ", out)
    # The county console: its address and a viewer sign-in, and every site on its map.
    assert re.search(r"county console: http://127\.0\.0\.1:\d+/ \(sign in with", out)
    placed = re.search(r"on the console's map: (.*)", out)
    assert placed, out[-2000:]
    for site in ("creek-village", "slope-road", "river-gauge"):
        assert re.search(rf"{site} \(25\.\d+, 111\.\d+\)", placed.group(1)), placed.group(1)
    record = out[out.index("叫应 at ") :]
    for step, person in (
        ("started", ""),
        ("call_sent", "王建国 (village)"),
        ("escalated", ""),
        ("call_sent", "李敏 (township)"),
        ("answer", "李敏 (township)"),
        ("ended", ""),
    ):
        assert row(record, step, person), (step, person)
    assert "nobody answered the village tier by its deadline" in row(record, "escalated")
    assert "answered by 李敏 (township) via link" in out
    assert "the village did not answer in 20 s so the township was called" in out
    assert "MISMATCH" not in out
    assert "Traceback" not in out + result.stderr
    assert ">>>>>" not in out + result.stderr  # no raw frame dumps from pymodbus
