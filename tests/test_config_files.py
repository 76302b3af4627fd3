"""Configuration files the technician can get wrong at the door, and how the CLI says so.

Each kind of TOML file (site, profile, station, agent settings) saved in the wrong encoding
is named, not a traceback; a site without an id is refused; a serial device that is not
there is named; and an error reaches the terminal, a pipe or a log whole, on one line,
with its ``[[bus]]`` and ``[device]`` intact.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.profiles import ProfileError, load_profile
from edge_agent.config_probe import probe_site
from edge_agent.local_settings import LocalSettingsError, load_local_settings
from edge_agent.site_file import absent_serial_ports, load_site
from hardware_sim.station import StationError, load_station
from protocol.levels import LEVEL_NAMES
from site_schema.site_actuation import ActionsTable
from site_schema.site_config import parse_site_text
from site_schema.site_errors import SiteConfigError

REPO = Path(__file__).resolve().parent.parent
SITE = """
[site]
id = "creek"

[[bus]]
name = "rs485"
kind = "serial"
device = "{device}"

[[device]]
name = "level"
bus = "rs485"
profile = "hlk_ld8001h"
"""
# "名称" in GBK: what a Windows editor set to a Chinese locale saves.
GBK_LINE = 'name = "名称"\n'.encode("gbk")

LOADERS: dict[str, tuple[Callable[[Path], Any], type[Exception]]] = {
    "site file": (load_site, SiteConfigError),
    "profile": (load_profile, ProfileError),
    "station file": (load_station, StationError),
    "agent settings": (load_local_settings, LocalSettingsError),
}


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_file_not_saved_as_utf8_is_named_with_its_line(tmp_path: Path, kind: str) -> None:
    load, error = LOADERS[kind]
    path = tmp_path / "config.toml"
    path.write_bytes(b"# comment\n\n" + GBK_LINE)
    with pytest.raises(error) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "not UTF-8 text (byte 0xc3 on line 3): save it as UTF-8" in message


@pytest.mark.parametrize(
    "site_table",
    ["", '[site]\nname = "Creek"\n', '[site]\nid = ""\n', "[site]\nid = 7\n", 'site = "creek"\n'],
)
def test_a_site_without_an_id_is_refused_locally_and_when_pushed(
    tmp_path: Path, site_table: str
) -> None:
    text = site_table + SITE.replace('[site]\nid = "creek"\n', "").format(device="/dev/ttyS0")
    path = tmp_path / "site.toml"
    path.write_text(text)
    expected = "a [site] table with a non-empty string 'id' is required"
    with pytest.raises(SiteConfigError) as local:
        load_site(path)
    assert str(local.value) == f"{path}: {expected}"
    with pytest.raises(SiteConfigError) as pushed:
        parse_site_text(text, "site.toml")
    assert str(pushed.value) == f"site.toml: {expected}"


def test_the_shipped_example_sites_all_have_an_id() -> None:
    examples = sorted((REPO / "edge_agent" / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        assert load_site(path).site_id == path.stem.replace("_", "-")


def test_an_absent_serial_device_is_named_and_a_present_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(device="/dev/ttyUSB97"))
    site = load_site(path)  # parsing never looks at the machine: the fleet parses too
    assert absent_serial_ports(site) == [
        f"{path}: bus 'rs485': serial device /dev/ttyUSB97 does not exist"
    ]
    present = tmp_path / "ttyFAKE0"  # stands in for a device node: only existence counts
    present.touch()
    path.write_text(SITE.format(device=present))
    assert absent_serial_ports(load_site(path)) == []


def test_a_pushed_config_naming_an_absent_serial_device_fails_its_probe_saying_so() -> None:
    site = parse_site_text(SITE.format(device="/dev/ttyUSB97"), "configuration v2")
    problem = asyncio.run(probe_site(site, {}))
    assert problem == (
        "bus rs485 (/dev/ttyUSB97 at 9600 baud): serial device /dev/ttyUSB97 does not exist"
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # A narrow COLUMNS and a pipe: what a log collector or a script sees.
    env = {**os.environ, "COLUMNS": "40", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_edge_prints_a_long_error_on_one_line_with_its_brackets(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder-name-long-enough-to-pass-forty-columns"
    folder.mkdir()
    path = folder / "site.toml"
    path.write_text('[site]\nid = "creek"\n')
    done = _run("poll", "--once", "--config", str(path))
    assert done.returncode == 2
    assert done.stderr == f"error: {path}: a site needs at least one [[bus]]\n"


def test_edge_update_keeps_brackets_in_a_path(tmp_path: Path) -> None:
    root = tmp_path / "[device]" / "slots-that-do-not-exist-anywhere"
    done = _run("update", "status", "--root", str(root))
    assert done.returncode == 2
    assert done.stderr == f"error: no release slots under {root}\n"


def test_edge_enroll_keeps_brackets_in_a_refusal(tmp_path: Path) -> None:
    bundle = tmp_path / "[[bus]]" / "bundle.json"
    done = _run("enroll", "--data-dir", str(tmp_path / "data"), "--bundle", str(bundle))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")
    assert str(bundle) in done.stderr
    assert done.stderr.count("\n") == 1


def test_edge_poll_warns_of_an_absent_serial_device_and_carries_on(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(device="/dev/ttyUSB97"))
    done = _run("poll", "--once", "--json", "--config", str(path))
    assert (
        f"warning: {path}: bus 'rs485': serial device /dev/ttyUSB97 does not exist; "
        "its devices will read as no connection until it appears\n"
    ) in done.stderr
    assert done.returncode == 1  # it polled, and the device did not answer
    assert '"level.' in done.stdout


@pytest.mark.parametrize(
    ("old", "new", "item", "problem"),
    [
        ('kind = "serial"\n', "", "bus 'rs485'", "'kind' must be 'serial' or 'tcp', got None"),
        ('device = "{device}"', "device = 5", "bus 'rs485'",
         "'device' must be a string, got 5"),
        ('device = "{device}"', "", "bus 'rs485'", "missing 'device'"),
        ('device = "{device}"', 'device = "/dev/ttyS0"\nparity = "X"', "bus 'rs485'",
         "'parity' must be 'N', 'E' or 'O', got 'X'"),
        ('profile = "hlk_ld8001h"', 'profile = "hlk_ld8001h"\nretries = true', "device 'level'",
         "'retries' must be an integer, got True"),
        ('profile = "hlk_ld8001h"', 'profile = "hlk_ld8001h"\ntimeout_s = 31', "device 'level'",
         "'timeout_s' = 31 must be at most 30"),
        ('profile = "hlk_ld8001h"', 'profile = "hlk_ld8001h"\npoll_interval_s = nan',
         "device 'level'", "'poll_interval_s' must be a finite number, got nan"),
        ('profile = "hlk_ld8001h"', 'profile = "hlk_ld8001h"\nchannels = [1]', "device 'level'",
         "'channels[0]' must be a string, got 1"),
        ('id = "creek"', 'id = "creek"\nowner = "x"', "[site]",
         "unknown key(s): owner (allowed: description, id, lat, lon, name)"),
    ],
)  # fmt: skip
def test_the_site_schema_words_each_problem_naming_file_item_and_key(
    old: str, new: str, item: str, problem: str
) -> None:
    assert old in SITE
    text = SITE.replace(old, new).format(device="/dev/ttyS0")
    with pytest.raises(SiteConfigError) as caught:
        parse_site_text(text, "site.toml")
    assert str(caught.value) == f"site.toml: {item}: {problem}"


PROFILE = """
[device]
model = "Gauge"
[device.serial]
baudrate = 9600
[[channel]]
name = "level"
quantity = "water_level"
unit = "mm"
table = "holding"
address = 0
type = "uint16"
"""


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("baudrate = 9600", "baud = 9600",
         "unknown key(s) in [device.serial]: baud (allowed: baudrate, bytesize, parity, stopbits)"),
        ("baudrate = 9600", "baudrate = 12", "'serial.baudrate' = 12 is outside 300..4000000"),
        ("baudrate = 9600", 'parity = "X"', "'serial.parity' must be 'N', 'E' or 'O', got 'X'"),
        ("address = 0", "adress = 0", "channel 'level': missing 'address'; unknown key(s): adress"),
        ('unit = "mm"', "unit = 1", "channel 'level': 'unit' must be a string, got 1"),
    ],
)  # fmt: skip
def test_the_profile_schema_words_each_problem_naming_file_table_and_key(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    path = tmp_path / "gauge.toml"
    path.write_text(PROFILE.replace(old, new))
    with pytest.raises(ProfileError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(f"{path}: {problem}")


RELAY_SITE = """
[site]
id = "creek"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"

[[actuator]]
id = "siren"
device = "relays"
patterns = { warble = ["relay1"] }
"""


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('patterns = { warble = ["relay1"] }', 'patterns = { warble = ["relay1"] }\ncolour = 1',
         "unknown key(s): colour (allowed: device, id, patterns, test_pattern)"),
        ('= { warble = ["relay1"] }', "= {}", "'patterns' needs at least 1 item(s)"),
        ('["relay1"]', '"relay1"', "'patterns.warble' must be a list, got 'relay1'"),
        ('["relay1"]', '["relay1", 3]', "'patterns.warble[1]' must be a string, got 3"),
    ],
)  # fmt: skip
def test_the_actuator_schema_words_each_problem(old: str, new: str, problem: str) -> None:
    with pytest.raises(SiteConfigError) as caught:
        parse_site_text(RELAY_SITE.replace(old, new), "site.toml")
    assert str(caught.value) == f"site.toml: actuator 'siren': {problem}"


@pytest.mark.parametrize(
    ("added", "item", "problem"),
    [
        ('[actions.red]\nsiren = 1\n', "[actions.red]", "'siren' must be a string, got 1"),
        ('[actions.red]\nclip = ["x"]\n', "[actions.red]", "'clip' must be a string, got ['x']"),
        ('[actions.red]\nhorn = "warble"\n', "[actions.red]", "unknown actuator 'horn'"),
        ("[actions]\npurple = {}\n", "[actions]",
         "unknown key(s): purple (allowed: blue, orange, red, yellow)"),
        ("[actions]\nred = 1\n", "[actions]", "'red' must be a table, got 1"),
        ("[player]\nname = 5\n", "[player]", "'name' must be a string, got 5"),
        ("[player]\ncommand = []\n", "[player]", "'command' needs at least 1 item(s)"),
        ('[player]\ncommand = ["aplay", 1]\n', "[player]", "'command[1]' must be a string, got 1"),
        ('[player]\nnom = "aplay"\n', "[player]", "unknown key(s): nom (allowed: command, name)"),
        ("[player]\n", "[player]", "'name' must name a player of the gateway's agent.toml"),
    ],
)  # fmt: skip
def test_the_player_and_actions_schemas_word_each_problem(
    added: str, item: str, problem: str
) -> None:
    with pytest.raises(SiteConfigError) as caught:
        parse_site_text(RELAY_SITE + added, "site.toml")
    assert str(caught.value).startswith(f"site.toml: {item}: {problem}")


def test_the_actions_table_has_one_key_per_level_above_normal() -> None:
    assert tuple(ActionsTable.model_fields) == LEVEL_NAMES[1:]


def test_actions_name_actuators_and_clips_by_name() -> None:
    site = parse_site_text(
        RELAY_SITE + '[actions.red]\nsiren = "warble"\nclip = "evacuate_now"\n', "site.toml"
    )
    action = site.actuation.actions[LEVEL_NAMES.index("red")]
    assert (dict(action.patterns), action.clip) == ({"siren": "warble"}, "evacuate_now")


def test_an_unknown_table_of_a_site_file_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(SiteConfigError) as caught:
        parse_site_text(RELAY_SITE + "[players]\n", "site.toml")
    assert str(caught.value) == (
        "site.toml: unknown key(s) in the top level: players (allowed: actions, actuator, "
        "agent, bus, device, include, player, rule, siren_node, site, sl651_uplink, uplink, "
        "village_call)"
    )
