"""Injectable clocks shared by the poller, the agent and the simulator.

A clock answers "what time is it" in simulated UTC seconds and sleeps in simulated
seconds, so a 24-hour storm can replay in minutes. Two processes that are given the same
``origin``, ``anchor`` and ``speed`` agree on the simulated time without talking.
"""

from __future__ import annotations

import asyncio
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


class SystemClock:
    """The real wall clock, at real speed."""

    speed = 1.0

    def now(self) -> float:
        """Return the wall clock time."""
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Sleep in real seconds."""
        await asyncio.sleep(max(0.0, seconds))


class ScaledClock:
    """Simulated time running ``speed`` times faster than the wall clock.

    Simulated time is ``origin + (wall - anchor) * speed``. It is derived from the wall
    clock on every call, so separate processes given the same three numbers stay in step.
    """

    def __init__(self, speed: float, origin: float | None = None, anchor: float | None = None):
        if speed <= 0:
            msg = f"clock speed must be positive, got {speed}"
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


class ManualClock:
    """A clock that only moves when told to; for deterministic unit tests."""

    speed = 1.0

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._changed = asyncio.Event()

    def now(self) -> float:
        """Return the current manual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        self._now += seconds
        self._changed.set()

    async def sleep(self, seconds: float) -> None:
        """Wait until another task has advanced the clock by ``seconds``."""
        deadline = self._now + max(0.0, seconds)
        while self._now < deadline:
            self._changed.clear()
            await self._changed.wait()
