"""Station files: the shipped stations, and errors that name the file, device and problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drivers.clock import ManualClock
from edge_agent.replay_csv import backtest
from edge_agent.site_file import load_site
from hardware_sim.scenarios import CreepingSlope, DesignStorm, ExtensometerProjection
from hardware_sim.station import (
    StationError,
    builtin_stations,
    load_station,
    resolve_station,
)

ORIGIN = 1_726_552_800.0
SLOPE_EXAMPLE = Path(__file__).resolve().parents[1] / "edge_agent" / "examples" / "slope_road.toml"

GOOD = """
[station]
name = "test"
seed = 3

[scenario.storm]
start_s = 600
duration_s = 3600
peak_mm_h = 30

[[link]]
name = "gw"
kind = "tcp"
port = 0

[[device]]
name = "rain"
link = "gw"
profile = "generic_rs485_rain"
unit_id = 2
signals = { rain_total = "storm.cumulative_mm" }
values = { device_address = 2 }
faults = { outages = [[100, 200]] }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_stations_load_and_build() -> None:
    shipped = builtin_stations()
    assert {"creek_village", "slope"} <= set(shipped)
    for path in shipped.values():
        spec = load_station(path)
        station = spec.build(ManualClock(ORIGIN), ORIGIN)
        assert set(station.devices) == {d.name for d in spec.devices}
        assert sum(len(station.devices_on(link.name)) for link in spec.links) == len(spec.devices)


def test_creek_village_is_one_tcp_gateway_with_a_storm_of_about_60_mm_per_hour() -> None:
    spec = load_station(resolve_station("creek_village"))
    station = spec.build(ManualClock(ORIGIN), ORIGIN)
    storm = station.scenarios["storm"]
    assert isinstance(storm, DesignStorm)
    assert [(link.kind, link.port) for link in spec.links] == [("tcp", 5020)]
    assert storm.start == ORIGIN + 1800
    assert storm.duration_s == 6 * 3600
    assert storm.peak_mm_h == 60
    profiles = {d.profile.name for d in spec.devices}
    assert profiles == {
        "dfrobot_sen0575",
        "generic_rs485_rain",
        "hlk_ld8001h",
        "pressure_level_transmitter",
        "relay_module_8ch",
    }


def test_creek_village_gauges_agree_with_each_other_through_the_storm() -> None:
    clock = ManualClock(ORIGIN)
    station = load_station(resolve_station("creek_village")).build(clock, ORIGIN)
    radar = station.devices["creek_radar"]
    pressure = station.devices["creek_pressure"]
    sen0575 = station.devices["rain_sen0575"]
    generic = station.devices["rain_generic"]
    install_height_mm = radar.value("install_height") * 10
    levels = []
    for _ in range(12):
        clock.advance(1800.0)
        level = radar.value("water_level")
        levels.append(level)
        assert radar.value("air_gap") + level == pytest.approx(install_height_mm)
        # Two instruments on one section: equal up to their noise (2 mm and 3 mm std).
        assert pressure.value("level_mm") == pytest.approx(level, abs=20)
        assert pressure.value("water_level") * 1000 == pytest.approx(level, abs=20)
        assert pressure.value("water_level") * 1000 == pytest.approx(pressure.value("level_mm"))
        assert sen0575.value("rain_total") == pytest.approx(generic.value("rain_total"))
        assert sen0575.value("tips") * 0.2794 == pytest.approx(sen0575.value("rain_total"))
    assert max(levels) > levels[0] + 300
    assert sen0575.value("rain_total") > 100


def test_slope_station_serves_its_instruments_on_one_pty_link() -> None:
    spec = load_station(resolve_station("slope"))
    assert [link.kind for link in spec.links] == ["pty"]
    assert {d.profile.name for d in spec.devices} == {
        "gnss_displacement",
        "wire_extensometer",
        "inclinometer_dual_axis",
        "relay_module_8ch",
    }


def test_outages_are_counted_from_the_origin(tmp_path: Path) -> None:
    clock = ManualClock(ORIGIN + 150)
    station = load_station(write(tmp_path, GOOD)).build(clock, ORIGIN)
    assert station.devices["rain"].silent()


def test_seed_override_changes_the_storm(tmp_path: Path) -> None:
    spec = load_station(write(tmp_path, GOOD))
    end = ORIGIN + 600 + 3600
    clock = ManualClock(end)
    totals = {
        seed: spec.build(clock, ORIGIN, seed).devices["rain"].value("rain_total") for seed in (3, 4)
    }
    assert spec.build(clock, ORIGIN).devices["rain"].value("rain_total") == totals[3]
    assert totals[3] != totals[4]


@pytest.mark.parametrize(
    ("change", "device", "problem"),
    [
        (
            ('profile = "generic_rs485_rain"', 'profile = "no_such_gauge"'),
            "rain",
            "no such profile",
        ),
        (('link = "gw"', 'link = "field"'), "rain", "unknown link 'field'"),
        (("rain_total = ", "rainfall = "), "rain", "unknown channel(s) rainfall"),
        (('"storm.cumulative_mm"', '"storm.volume"'), "rain", "unknown signal 'storm.volume'"),
        (('"storm.cumulative_mm"', '"creek.level_m"'), "rain", "needs a [scenario.creek]"),
        (
            ('"storm.cumulative_mm"', '{ signal = "storm.window_sum_mm" }'),
            "rain",
            "takes 1 argument(s) after the time, got 0",
        ),
        (("device_address = 2", "device_address = 70000"), "rain", "does not fit its uint16"),
        (("device_address = 2", "rain_total = 5"), "rain", "both a signal and a value"),
        (("[[100, 200]]", "[[200, 100]]"), "rain", "must start before it ends"),
        (("outages = [[100, 200]]", "corrupt_crc = true"), "rain", "corrupt_crc needs a serial"),
        (("outages = [[100, 200]]", "exception_code = 99"), "rain", "exception_code must be"),
        (("outages = [[100, 200]]", "stuck = 1"), "rain", "faults: 'stuck' must be true or false"),
        (("outages = [[100, 200]]", "dead_on = true"), "rain", "faults: unknown key(s): dead_on"),
        (("[[100, 200]]", "[[100]]"), "rain", "faults: 'outages[0]' needs at least 2 item(s)"),
        (("unit_id = 2", "unit_id = 300"), "rain", "'unit_id' = 300 is outside 1..247"),
    ],
)
def test_device_errors_name_the_file_the_device_and_the_problem(
    tmp_path: Path, change: tuple[str, str], device: str, problem: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(StationError) as caught:
        load_station(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: device '{device}': ")
    assert problem in message
    assert caught.value.device == device


def test_duplicate_unit_ids_on_one_link_are_refused(tmp_path: Path) -> None:
    second = GOOD.split("[[device]]")[1].replace('name = "rain"', 'name = "rain2"')
    path = write(tmp_path, GOOD + "[[device]]" + second)
    with pytest.raises(StationError, match=r"device 'rain2': unit id 2 is already used by"):
        load_station(path)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("peak_mm_h = 30", ""), "[scenario.storm]: missing 'peak_mm_h'"),
        (
            ("peak_mm_h = 30", "peak_mm_h = true"),
            "[scenario.storm]: 'peak_mm_h' must be a finite number, got True",
        ),
        (
            ("peak_mm_h = 30", "peak_mm_h = 30\npeak = 40"),
            "[scenario.storm]: unknown key(s): peak (allowed: duration_s, peak_mm_h,",
        ),
        (("peak_mm_h = 30", "peak_mm_h = 30\npeak_position = 2"), "peak_position must be within"),
        (("[scenario.storm]", "[scenario.hail]"), "unknown key(s) in [scenario]: hail"),
        (('kind = "tcp"', 'kind = "udp"'), "link 'gw': 'kind' must be 'tcp' or 'pty', got 'udp'"),
        (("[station]", "[stations]"), "unknown key(s) in the top level: stations"),
    ],
)
def test_file_level_errors_name_the_file_and_the_problem(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(StationError) as caught:
        load_station(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


def test_missing_and_malformed_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(StationError, match="cannot read station file"):
        load_station(tmp_path / "absent.toml")
    with pytest.raises(StationError, match="not valid TOML"):
        load_station(write(tmp_path, "[station\n"))
    with pytest.raises(StationError, match="no such station file or shipped station"):
        resolve_station("atlantis")


def test_level_gauges_at_rest_show_sensor_noise_not_a_frozen_value() -> None:
    clock = ManualClock(ORIGIN)
    radar = (
        load_station(resolve_station("creek_village")).build(clock, ORIGIN).devices["creek_radar"]
    )
    readings = set()
    for _ in range(20):  # before the storm: the creek is at its base level
        clock.advance(30.0)
        readings.add(round(radar.value("water_level")))
    assert len(readings) > 1
    assert max(readings) - min(readings) < 20


def test_the_demo_slope_is_warned_a_day_ahead_by_its_gateways_failure_forecast() -> None:
    """The demo's slope station, read every 5 minutes and backtested with the example rules.

    It creeps for a day, then accelerates for 72 h: enough record after the onset for the
    failure forecast to go red more than a day ahead, with the failure inside its interval.
    """
    station = load_station(resolve_station("slope")).build(ManualClock(ORIGIN), ORIGIN)
    slope = station.scenarios["slope"]
    extensometer = station.scenarios["extensometer"]
    assert isinstance(slope, CreepingSlope)
    assert isinstance(extensometer, ExtensometerProjection)
    t = np.arange(ORIGIN, slope.failure_time - 60.0, 300.0)
    x = np.array([extensometer.extension_mm(ti) for ti in t])
    site = load_site(SLOPE_EXAMPLE)
    result = backtest(site, "scarp_extensometer.extension", t, x)
    reds = [c for c in result.changes if c.rule_id == "slope_forecast" and c.new == 4]
    assert reds, [(c.rule_id, c.new) for c in result.changes]
    red = reds[0]
    assert slope.failure_time - red.t >= 24 * 3600.0
    assert red.values["failure_t_low"] <= slope.failure_time <= red.values["failure_t_high"]
