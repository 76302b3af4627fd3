"""``Clock.sleep_until``: to a time or until an event, in the sleeping task alone.

The manual clock moves only when the test advances it; the scaled and system clocks run
on the wall clock, so their waits here are fractions of a second of real time.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from drivers.clock import Clock, ManualClock, ScaledClock, SystemClock

START = 1_780_000_000.0


async def loop_turns(n: int = 5) -> None:
    """Let the event loop run what is ready, ``n`` times over; no time passes."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_the_manual_clock_wakes_the_sleeper_when_advanced_to_its_time() -> None:
    clock = ManualClock(START)
    wake = asyncio.Event()
    woke_at: list[float] = []

    async def sleeper() -> bool:
        woken = await clock.sleep_until(START + 300, wake)
        woke_at.append(clock.now())
        return woken

    task = asyncio.create_task(sleeper())
    await loop_turns()
    clock.advance(299)
    await loop_turns()
    assert not task.done()
    clock.advance(1)
    assert await asyncio.wait_for(task, 5) is False
    assert woke_at == [START + 300]
    assert not wake.is_set()  # a clock never touches the caller's event


async def test_an_event_cuts_the_manual_clocks_sleep_short_and_runs_no_helper_task() -> None:
    clock = ManualClock(START)
    wake = asyncio.Event()
    before = asyncio.all_tasks()
    task = asyncio.create_task(clock.sleep_until(START + 3600, wake))
    await loop_turns()
    assert asyncio.all_tasks() - before == {task}  # the sleeper itself, nothing beside it
    wake.set()
    assert await asyncio.wait_for(task, 5) is True
    assert clock.now() == START
    clock.advance(3600)  # the sleep is over: advancing past its time finds nothing to end
    await loop_turns()
    assert asyncio.all_tasks() - before == set()


async def test_a_time_already_past_or_an_event_already_set_returns_at_once() -> None:
    clock = ManualClock(START)
    unset, already = asyncio.Event(), asyncio.Event()
    already.set()
    assert await clock.sleep_until(START, unset) is False
    assert await clock.sleep_until(START - 60, unset) is False
    assert await clock.sleep_until(START + 60, already) is True
    assert clock.now() == START


async def test_a_cancelled_sleeper_is_cancelled_not_timed_out() -> None:
    clock = ManualClock(START)
    task = asyncio.create_task(clock.sleep_until(START + 60, asyncio.Event()))
    await loop_turns()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    clock.advance(60)  # its deadline went with it: nothing left to end (or to fail on)
    await loop_turns()


async def test_two_sleepers_on_the_manual_clock_wake_each_at_its_own_time() -> None:
    clock = ManualClock(START)
    early = asyncio.create_task(clock.sleep_until(START + 60, asyncio.Event()))
    late = asyncio.create_task(clock.sleep_until(START + 120, asyncio.Event()))
    await loop_turns()
    clock.advance(90)
    assert await asyncio.wait_for(early, 5) is False
    await loop_turns()
    assert not late.done()
    clock.advance(30)
    assert await asyncio.wait_for(late, 5) is False


@pytest.mark.parametrize(
    "clock", [SystemClock(), ScaledClock(3600.0, origin=START)], ids=["system", "scaled"]
)
async def test_a_wall_clock_sleeps_to_its_time_or_until_the_event(clock: Clock) -> None:
    # 0.1 s of real time at either speed
    to = clock.now() + 0.1 * clock.speed
    assert await asyncio.wait_for(clock.sleep_until(to, asyncio.Event()), 5) is False
    assert clock.now() >= to - 0.01 * clock.speed  # its timer runs on the loop's clock
    wake = asyncio.Event()
    hour_away = clock.now() + 3600 * clock.speed
    task = asyncio.create_task(clock.sleep_until(hour_away, wake))
    await loop_turns()
    wake.set()
    assert await asyncio.wait_for(task, 5) is True
    assert clock.now() < hour_away
    assert await clock.sleep_until(clock.now() - 1, asyncio.Event()) is False


@pytest.mark.parametrize(
    "clock",
    [SystemClock(), ScaledClock(3600.0, origin=START), ManualClock(START)],
    ids=["system", "scaled", "manual"],
)
async def test_every_clock_refuses_to_sleep_until_nan(clock: Clock) -> None:
    # A wall clock would return at once (a loop around it would spin), the manual one never.
    with pytest.raises(ValueError, match="not NaN"):
        await asyncio.wait_for(clock.sleep_until(math.nan, asyncio.Event()), 1)


@pytest.mark.parametrize(
    ("speed", "origin", "anchor"),
    [(math.nan, None, None), (math.inf, None, None), (0.0, None, None),
     (60.0, math.nan, None), (60.0, None, math.inf)],
)  # fmt: skip
def test_a_scaled_clock_refuses_a_speed_or_time_that_is_no_number(
    speed: float, origin: float | None, anchor: float | None
) -> None:
    with pytest.raises(ValueError, match=r"positive finite number|finite time"):
        ScaledClock(speed, origin=origin, anchor=anchor)
