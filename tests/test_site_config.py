"""Site files: a good one loads; each kind of mistake is refused naming file, item and problem."""

from pathlib import Path

import pytest

from drivers.bus_config import SerialBusConfig, TcpBusConfig
from edge_agent.site_file import load_site
from site_schema.site_errors import SiteConfigError

GOOD = """
[site]
id = "creek-village"
name = "Creek village"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = 5020

[[bus]]
name = "rs485"
kind = "serial"
device = "/dev/ttyUSB0"
baudrate = 9600

[[device]]
name = "rain1"
bus = "field"
profile = "dfrobot_sen0575"
poll_interval_s = 5
channels = ["rain_total"]

[[device]]
name = "level"
bus = "rs485"
profile = "hlk_ld8001h"
unit_id = 7
poll_interval_s = 2
timeout_s = 0.2
retries = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_good_site_loads_with_profile_defaults(tmp_path):
    site = load_site(write(tmp_path, GOOD))
    assert site.site_id == "creek-village"
    assert isinstance(site.buses[0], TcpBusConfig)
    assert isinstance(site.buses[1], SerialBusConfig)
    rain, level = site.devices
    assert rain.unit_id == 192  # the SEN0575 factory id
    assert rain.timeout_s == pytest.approx(0.3)
    assert rain.channels == ("rain_total",)
    assert (level.unit_id, level.retries, level.timeout_s) == (7, 2, 0.2)


def test_profile_path_relative_to_the_site_file(tmp_path):
    profile = (Path(__file__).parent.parent / "drivers/profiles/hlk_ld8001h.toml").read_text()
    (tmp_path / "my_radar.toml").write_text(profile)
    site = load_site(write(tmp_path, GOOD.replace('"hlk_ld8001h"', '"my_radar.toml"')))
    assert site.devices[1].profile.name == "my_radar"


@pytest.mark.parametrize(
    ("old", "new", "item", "problem"),
    [
        (
            'bus = "rs485"',
            'bus = "rs232"',
            "device 'level'",
            "unknown bus 'rs232' (buses: field, rs485)",
        ),
        ('"hlk_ld8001h"', '"no_such_radar"', "device 'level'", "no such profile"),
        ("unit_id = 7", "unit_id = 300", "device 'level'", "'unit_id' = 300 is outside 1..247"),
        ("poll_interval_s = 2", "poll_interval_s = 0", "device 'level'", "'poll_interval_s' = 0"),
        (
            "poll_interval_s = 2",
            "poll_interval_s = 0.5",
            "device 'level'",
            "exceeds poll_interval_s",
        ),
        (
            'channels = ["rain_total"]',
            'channels = ["rain"]',
            "device 'rain1'",
            "has no channel(s) rain",
        ),
        ('kind = "serial"', 'kind = "usb"', "bus 'rs485'", "'kind' must be 'serial' or 'tcp'"),
        ("baudrate = 9600", "baud = 9600", "bus 'rs485'", "unknown key(s): baud"),
        ('name = "level"', 'name = "rain1"', "device 'rain1'", "duplicate device name"),
        (
            "unit_id = 7",
            "unit_id = 7\nbus_speed = 1",
            "device 'level'",
            "unknown key(s): bus_speed",
        ),
        (
            'device = "/dev/ttyUSB0"',
            'device = ""',
            "bus 'rs485'",
            "'device' must be a non-empty string",
        ),
    ],
)
def test_bad_site_is_refused_naming_file_item_and_problem(tmp_path, old, new, item, problem):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SiteConfigError) as err:
        load_site(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {item}: ")
    assert problem in message


def test_two_devices_on_one_unit_id_are_refused(tmp_path):
    path = write(
        tmp_path,
        GOOD.replace('bus = "rs485"', 'bus = "field"').replace("unit_id = 7", "unit_id = 192"),
    )
    with pytest.raises(
        SiteConfigError, match="unit id 192 on bus 'field' is already taken by device 'rain1'"
    ):
        load_site(path)


def test_bad_profile_file_error_names_the_profile_file_and_channel(tmp_path):
    (tmp_path / "broken.toml").write_text(
        '[device]\nmodel = "x"\n[[channel]]\nname = "lvl"\nquantity = "water_level"\nunit = "mm"\n'
        'table = "holding"\naddress = 0\ntype = "uint16"\nscale = 0\n'
    )
    path = write(tmp_path, GOOD.replace('"hlk_ld8001h"', '"broken.toml"'))
    with pytest.raises(SiteConfigError) as err:
        load_site(path)
    message = str(err.value)
    assert str(path) in message
    assert "broken.toml: channel 'lvl': scale must not be zero" in message


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(SiteConfigError, match="not valid TOML"):
        load_site(write(tmp_path, "[[bus]\n"))
    with pytest.raises(SiteConfigError, match="cannot read site file"):
        load_site(tmp_path / "nope.toml")
