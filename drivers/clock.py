"""Injectable clocks shared by the poller, the agent and the simulator.

A clock answers "what time is it" in simulated UTC seconds and sleeps in simulated
seconds, so a 24-hour storm can replay in minutes. Two processes that are given the same
``origin``, ``anchor`` and ``speed`` agree on the simulated time without talking.

``sleep_until`` sleeps to a simulated time but ends early when an ``asyncio.Event`` is
set (new work arrived), in the sleeping task itself: no helper tasks to start and reap.
A clock never sets or clears the caller's event, and refuses a NaN time (``ValueError``)
on every clock alike: a wall clock would return at once (a caller's loop would spin), the
manual one never.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Protocol


class Clock(Protocol):
    """Source of time for everything that schedules or timestamps."""

    @property
    def speed(self) -> float:
        """How many simulated seconds pass per real second."""
        ...

    def now(self) -> float:
        """Simulated UTC time in seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for ``seconds`` of simulated time."""
        ...

    async def sleep_until(self, t: float, wake: asyncio.Event) -> bool:
        """Sleep until simulated time ``t`` or until ``wake`` is set; True if it was set."""
        ...


def _sleep_to(t: float) -> float:
    """``t``, the time a ``sleep_until`` sleeps to, once it is known to be a time."""
    if math.isnan(t):
        raise ValueError("sleep_until needs a time to sleep to, not NaN")
    return t


async def _wait_at_most(wake: asyncio.Event, real_s: float) -> bool:
    """Wait for ``wake`` at most ``real_s`` real seconds; whether it is set."""
    if real_s > 0 and not wake.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(real_s):
                await wake.wait()
    return wake.is_set()


class SystemClock:
    """The real wall clock, at real speed."""

    speed = 1.0

    def now(self) -> float:
        """Return the wall clock time."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep in real seconds."""
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, t: float, wake: asyncio.Event) -> bool:
        """Sleep until wall-clock time ``t`` or until ``wake`` is set; True if it was set."""
        return await _wait_at_most(wake, _sleep_to(t) - self.now())


class ScaledClock:
    """Simulated time running ``speed`` times faster than the wall clock.

    Simulated time is ``origin + (wall - anchor) * speed``. It is derived from the wall
    clock on every call, so separate processes given the same three numbers stay in step.
    """

    def __init__(self, speed: float, origin: float | None = None, anchor: float | None = None):
        if not 0 < speed < math.inf:  # NaN and infinity too: time would stop or not be one
            msg = f"clock speed must be a positive finite number, got {speed}"
            raise ValueError(msg)
        for name, value in (("origin", origin), ("anchor", anchor)):
            if value is not None and not math.isfinite(value):
                msg = f"clock {name} must be a finite time, got {value}"
                raise ValueError(msg)
        wall = time.time()
        self._speed = float(speed)
        self.anchor = wall if anchor is None else anchor
        self.origin = self.anchor if origin is None else origin

    @property
    def speed(self) -> float:
        """Return simulated seconds per real second."""
        return self._speed

    def now(self) -> float:
        """Return the simulated time."""
        return self.origin + (time.time() - self.anchor) * self._speed

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) / self._speed)

    async def sleep_until(self, t: float, wake: asyncio.Event) -> bool:
        """Sleep until simulated time ``t`` or until ``wake`` is set; True if it was set."""
        return await _wait_at_most(wake, (_sleep_to(t) - self.now()) / self._speed)


class ManualClock:
    """A clock that only moves when told to; for deterministic unit tests."""

    speed = 1.0

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._changed = asyncio.Event()
        # Each ``sleep_until`` under way: its time and the timeout that ends it.
        self._deadlines: dict[asyncio.Timeout, float] = {}

    def now(self) -> float:
        """Return the current manual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self._now += seconds
        self._changed.set()
        for timeout, t in list(self._deadlines.items()):
            if t <= self._now:
                del self._deadlines[timeout]
                timeout.reschedule(0.0)  # a time already past: it ends at the next turn

    async def sleep(self, seconds: float) -> None:
        """Wait until another task has advanced the clock by ``seconds``."""
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            self._changed.clear()
            await self._changed.wait()

    async def sleep_until(self, t: float, wake: asyncio.Event) -> bool:
        """Wait until the clock is advanced to ``t`` or ``wake`` is set; True if it was set."""
        if self._now >= _sleep_to(t) or wake.is_set():
            return wake.is_set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None) as timeout:
                self._deadlines[timeout] = t
                try:
                    await wake.wait()
                finally:
                    self._deadlines.pop(timeout, None)
        return wake.is_set()
