"""What a site file may make a gateway run or read: players by name, clips by name.

The commands live in the gateway's own agent.toml; a site file (local or pushed) that asks
for anything else is refused naming the file, the item and the problem. A pushed
configuration may also name only shipped profiles and serial ports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.local_settings import (
    LocalSettings,
    LocalSettingsError,
    bind_player,
    load_local_settings,
)
from edge_agent.site_file import load_site
from hardware_sim.harness.relay_site import relay_site
from site_schema.site_config import parse_site_text
from site_schema.site_errors import SiteConfigError


def site_text(player: str = "", clip: str = "evacuate_now") -> str:
    return relay_site(clips={"red": clip}, player=player)


def local_site(tmp_path: Path, player: str = "", clip: str = "evacuate_now") -> Path:
    path = tmp_path / "site" / "site.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(site_text(player, clip))
    return path


def agent_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_without_agent_toml_the_site_gets_aplay_and_the_shipped_clips(tmp_path: Path) -> None:
    settings = load_local_settings(tmp_path / "agent.toml")
    player = bind_player(load_site(local_site(tmp_path)), settings)
    assert player.command == ("aplay", "-q", "{clip}")
    assert set(player.clips) == {"evacuate_now", "prepare_to_evacuate", "siren_test"}
    assert all(p.is_file() for p in player.clips.values())


def test_a_local_recording_in_the_clips_folder_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "evacuate_now.wav").write_bytes(b"RIFF")
    (tmp_path / "clips" / "not a name.wav").write_bytes(b"RIFF")  # never a clip name
    settings = load_local_settings(tmp_path / "agent.toml")  # no agent.toml needed
    player = bind_player(load_site(local_site(tmp_path)), settings)
    assert player.clips["evacuate_now"] == tmp_path / "clips" / "evacuate_now.wav"
    assert set(player.clips) == {"evacuate_now", "prepare_to_evacuate", "siren_test"}


def test_a_player_named_in_agent_toml_is_the_one_that_runs(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "dialect_evacuate.wav").write_bytes(b"RIFF")
    settings = load_local_settings(
        agent_toml(
            tmp_path,
            '[players.usb_speaker]\ncommand = ["aplay", "-q", "-D", "plughw:1,0", "{clip}"]\n',
        )
    )
    site = load_site(
        local_site(tmp_path, '[player]\nname = "usb_speaker"\n', clip="dialect_evacuate")
    )
    player = bind_player(site, settings)
    assert player.command == ("aplay", "-q", "-D", "plughw:1,0", "{clip}")
    assert player.clips["dialect_evacuate"] == tmp_path / "clips" / "dialect_evacuate.wav"
    # The built-in player stays allowed beside the local ones.
    assert set(settings.players) == {"aplay", "usb_speaker"}


def test_an_older_site_file_whose_command_is_an_allowed_player_still_loads(
    tmp_path: Path,
) -> None:
    site = load_site(local_site(tmp_path, '[player]\ncommand = ["aplay", "-q", "{clip}"]\n'))
    assert bind_player(site, LocalSettings()).command == ("aplay", "-q", "{clip}")


def test_a_site_file_asking_for_any_other_command_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    attack = f'[player]\ncommand = ["sh", "-c", "id > {marker}; echo {{clip}}"]\n'
    site = load_site(local_site(tmp_path, attack))
    with pytest.raises(SiteConfigError) as refused:
        bind_player(site, LocalSettings())
    message = str(refused.value)
    assert message.startswith(f"{site.source}: [player]: command ['sh', '-c', ")
    assert "is not one of this gateway's players (aplay; built-in defaults)" in message
    unknown = load_site(local_site(tmp_path, '[player]\nname = "shell"\n'))
    with pytest.raises(SiteConfigError, match=r"\[player\]: player 'shell' is not one of"):
        bind_player(unknown, LocalSettings())


def test_edge_run_refuses_a_site_file_with_a_command_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "owned"
    attack = f'[player]\ncommand = ["sh", "-c", "id > {marker}; echo {{clip}}"]\n'
    site = local_site(tmp_path, attack)
    data_dir = tmp_path / "data"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(site), "-d", str(data_dir),
         "--backend", "reference"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert f"{site}: [player]: command ['sh', '-c', " in said
    assert "is not one of this gateway's players (aplay; " in said
    assert not marker.exists()
    assert not (data_dir / "store.sqlite").exists()  # refused before it started


@pytest.mark.parametrize(
    ("player", "clip", "item", "problem"),
    [
        ("", "../../../etc/shadow", "[actions.red]", "clip must be a clip's name"),
        ("", "/etc/shadow", "[actions.red]", "clip must be a clip's name"),
        (
            '[player]\nclips = { evacuate_now = "../secret.wav" }\n',
            "evacuate_now",
            "[player]",
            "'clips' is not read from a site file",
        ),
        ('[player]\nname = "../../bin/sh"\n', "evacuate_now", "[player]", "'name' must name"),
        (
            '[player]\nname = "aplay"\ncommand = ["aplay", "{clip}"]\n',
            "evacuate_now",
            "[player]",
            "give 'name' or 'command', not both",
        ),
    ],
)
def test_a_clip_or_player_is_a_name_never_a_path(
    tmp_path: Path, player: str, clip: str, item: str, problem: str
) -> None:
    (tmp_path / "secret.wav").write_text("not for the speaker")
    path = local_site(tmp_path, player, clip)
    with pytest.raises(SiteConfigError) as refused:
        load_site(path)
    assert str(refused.value).startswith(f"{path}: {item}: {problem}")


def test_an_unknown_clip_name_is_refused_listing_the_gateways_clips(tmp_path: Path) -> None:
    site = load_site(local_site(tmp_path, clip="evacuate_later"))
    with pytest.raises(SiteConfigError) as refused:
        bind_player(site, LocalSettings())
    assert str(refused.value) == (
        f"{site.source}: [actions.red]: unknown clip 'evacuate_later' (clips on this gateway: "
        "evacuate_now, prepare_to_evacuate, siren_test)"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[players.x]\ncommand = ["sh", "-c", "id"]\n', "[players.x]: 'command' must contain"),
        ("[players.x]\ncommand = []\n", "[players.x]: 'command' needs at least 1 item(s)"),
        ('[players.x]\ncommand = ["x", ""]\n', "[players.x]: 'command[1]' must be a non-empty"),
        ("[players]\nx = 1\n", "[players.x]: must be a table"),
        ("players = 1\n", "'players' must be a table, got 1"),
        ("clips_dir = 3\n", "'clips_dir' must be a string, got 3"),
        ('[players."../x"]\ncommand = ["x", "{clip}"]\n', "a player's name takes letters"),
        (
            '[players.x]\ncmd = ["x", "{clip}"]\n',
            "[players.x]: missing 'command'; unknown key(s): cmd (allowed: command)",
        ),
        ('clips_dir = "nowhere"\n', "'clips_dir': no folder"),
        ("sirens = 1\n", "unknown key(s): sirens"),
        ("[players\n", "not valid TOML"),
    ],
)
def test_a_bad_agent_toml_is_refused_naming_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = agent_toml(tmp_path, text)
    with pytest.raises(LocalSettingsError) as refused:
        load_local_settings(path)
    assert str(refused.value).startswith(f"{path}: ")
    assert problem in str(refused.value)


# --- what a pushed configuration may name ----------------------------------------------------


def pushed(text: str) -> str:
    """The refusal of a pushed configuration's text, as the gateway and the fleet word it."""
    with pytest.raises(SiteConfigError) as refused:
        parse_site_text(text, "configuration v7")
    return str(refused.value)


def test_a_pushed_configuration_never_names_a_command() -> None:
    text = site_text('[player]\ncommand = ["aplay", "-q", "{clip}"]\n')
    assert pushed(text).startswith(
        "configuration v7: [player]: a pushed configuration names its player"
    )
    assert parse_site_text(site_text('[player]\nname = "aplay"\n'), "v8").site_id


def test_a_pushed_configuration_names_shipped_profiles_only(tmp_path: Path) -> None:
    (tmp_path / "custom.toml").write_text("")
    for ref in (str(tmp_path / "custom.toml"), "../../var/lib/hazardwatch/enrollment.json"):
        text = site_text().replace('profile = "relay_module_8ch"', f'profile = "{ref}"')
        assert pushed(text) == (
            f"configuration v7: device 'relays': profile '{ref}': a pushed configuration may "
            "use shipped profiles only (dfrobot_sen0575, generic_rs485_rain, gnss_displacement, "
            "hlk_ld8001h, inclinometer_dual_axis, pressure_level_transmitter, relay_module_8ch, "
            "siren_node, wire_extensometer)"
        )


@pytest.mark.parametrize(
    ("device", "allowed"),
    [
        ("/dev/ttyUSB0", True),
        ("/dev/ttyAMA0", True),
        ("/dev/ttyS1", True),
        ("/dev/serial0", True),
        ("/dev/serial/by-id/usb-FTDI_FT232R_A50285BI-if00-port0", True),
        ("/dev/sda", False),
        ("/dev/tty1", False),  # a console
        ("/dev/ttyUSB0/../../sda", False),
        ("/var/lib/hazardwatch/store.sqlite", False),
        ("ttyUSB0", False),
    ],
)
def test_a_pushed_configuration_opens_serial_ports_only(device: str, allowed: bool) -> None:
    text = site_text().replace(
        'kind = "tcp"\nhost = "127.0.0.1"\nport = 5020', f'kind = "serial"\ndevice = "{device}"'
    )
    if allowed:
        assert parse_site_text(text, "configuration v7").buses[0].name == "field"
    else:
        assert pushed(text).startswith(
            f"configuration v7: bus 'field': device '{device}': a pushed configuration may "
            "open serial ports only"
        )
