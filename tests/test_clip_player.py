"""The broadcast player owns its clips: a failure is an event, a newer clip cuts one off.

Real player processes (``/bin/sh`` writing its pid, then ``sleep``); the player runs as
the actuation loop runs it, one task whose TaskGroup holds each clip's task. A missing or
damaged clip goes to a real WAV reader beside a simulated relay board over Modbus TCP: the
failure is logged and an event, and the siren relay sounds all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from drivers.bus import ModbusBus
from drivers.clock import ManualClock
from drivers.profiles import builtin_profiles
from edge_agent.actuation import Actuation, ClipPlayer, PlayerSpec
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.relay_site import relay_site, running_actuation
from hardware_sim.harness.waiting import wait_for
from hardware_sim.server import serve_tcp
from site_schema.site_config import parse_site_text

#: Writes the player's pid next to the clip, then plays "forever" (until cut off).
COMMAND = ("/bin/sh", "-c", "echo $$ > {clip}.pid; exec sleep 60")


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_of(clip: Path) -> int | None:
    """The pid the clip's player wrote, once it has written it whole."""
    pid_file = clip.with_name(clip.name + ".pid")
    text = pid_file.read_text() if pid_file.exists() else ""
    return int(text) if text.endswith("\n") else None


async def test_a_clip_that_fails_is_an_actuator_fault_and_the_next_clip_still_plays(
    tmp_path: Path,
) -> None:
    siren = tmp_path / "siren"
    siren.touch()
    clips = {"broken": tmp_path / "no\0such", "siren": siren}
    events: list[tuple[Any, ...]] = []
    player = ClipPlayer(PlayerSpec(COMMAND, clips), lambda *event: events.append(event))
    playing = asyncio.create_task(player.run())
    try:
        player.play("broken", 3)
        await wait_for(lambda: events, 10, "the broken clip's event")
        player.play("siren", 4)
        await wait_for(lambda: len(events) == 2, 10, "the next clip")
    finally:
        playing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await playing
    fault, started = events
    assert fault == (
        "actuator_fault",
        "player",
        3,
        {"detail": "clip 'broken' failed: ValueError: embedded null byte"},
    )
    assert started[:3] == ("broadcast", "siren", 4)


async def test_a_newer_clip_cuts_off_the_playing_one_and_stopping_stops_the_last(
    tmp_path: Path,
) -> None:
    (first := tmp_path / "first").touch()
    (second := tmp_path / "second").touch()
    events: list[tuple[Any, ...]] = []
    spec = PlayerSpec(COMMAND, {"first": first, "second": second})
    player = ClipPlayer(spec, lambda *event: events.append(event))
    playing = asyncio.create_task(player.run())
    try:
        player.play("first", 3)
        first_pid = await wait_for(lambda: pid_of(first), 10, "the first clip playing")
        player.play("second", 4)
        second_pid = await wait_for(lambda: pid_of(second), 10, "the second clip playing")
        assert not running(first_pid)  # cut off (and reaped) before the second started
        assert running(second_pid)
    finally:
        playing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await playing
    assert not running(second_pid)  # the player's stop took its clip with it
    assert [e[:3] for e in events] == [("broadcast", "first", 3), ("broadcast", "second", 4)]
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("broadcast")]


#: A real clip player for the failure paths: reads the WAV file through, as aplay would;
#: a missing file or one that is no WAV makes it exit 1 with Python's traceback.
WAV_PLAYER = (
    sys.executable,
    "-c",
    "import sys, wave; w = wave.open(sys.argv[1]); w.readframes(w.getnframes())",
    "{clip}",
)


@pytest.mark.parametrize(("level", "clip"), [(3, "missing"), (4, "corrupt")])
async def test_a_clip_the_player_cannot_play_is_logged_and_the_siren_still_sounds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, level: int, clip: str
) -> None:
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00not a wave at all")
    clips = {"missing": tmp_path / "missing.wav", "corrupt": tmp_path / "corrupt.wav"}
    relays = SimulatedDevice(builtin_profiles()["relay_module_8ch"], 10, ManualClock(0.0))
    events: list[tuple[Any, ...]] = []
    async with serve_tcp([relays]) as server:
        text = relay_site(server.port, {"orange": "missing", "red": "corrupt"})
        site = parse_site_text(text, "site.toml")
        buses = {b.name: ModbusBus(b) for b in site.buses}
        actuation = Actuation(
            site.actuation, buses, lambda *e: events.append(e), PlayerSpec(WAV_PLAYER, clips)
        )
        async with running_actuation(actuation, buses):
            actuation.set_level(level, "test")
            await wait_for(lambda: relays.coil(0), 10, "the siren relay on")
            await wait_for(lambda: any(e[0] == "actuator_fault" for e in events), 10, "the fault")
    kinds = [e[0] for e in events]
    assert kinds == ["actuation", "broadcast", "actuator_fault"]
    assert events[-1] == ("actuator_fault", "player", level, {"detail": "player exited 1"})
    assert f"clip {clip!r}: player exited 1" in caplog.text
    assert relays.coil(0)  # the siren sounds though its clip could not be played
