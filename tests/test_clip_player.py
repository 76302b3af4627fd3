"""The broadcast player owns its clips: a failure is an event, a newer clip cuts one off.

Real player processes (``/bin/sh`` writing its pid, then ``sleep``); the player runs as
the actuation loop runs it, one task whose TaskGroup holds each clip's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from edge_agent.actuation import ClipPlayer, PlayerSpec
from hardware_sim.harness.waiting import wait_for

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
