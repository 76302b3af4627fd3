"""How a client of the county broker comes back after losing it: one backoff for all.

Gateways (the uplink) and the fleet's ingest connections reconnect with the same
schedule. A failed MQTT session waits a jittered exponential backoff (``Backoff``, up to
its ``high``) before the next full session, so a broker that answers but refuses or chokes
is not hammered. While it waits, ``ReconnectWait`` probes the broker's port with a bare
TCP connect every ``probe_interval_s`` or so; a broker it saw down that answers again cuts
the wait to a short jittered spread, so a county's gateways return within seconds of the
broker, however long the outage, without all arriving in the same instant. Part of the
contract because the broker relies on its clients not reconnecting in lockstep.

This module never opens an MQTT session and never waits longer than the backoff; the
clock, sleep, probe and random source are passed in. It imports nothing of the project.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


class Backoff:
    """Exponential delays between ``low`` and ``high`` seconds, each drawn from its upper half.

    The jitter keeps a county's gateways from reconnecting in lockstep after a broker
    restart.
    """

    def __init__(self, low: float, high: float, rng: random.Random) -> None:
        self.low, self.high, self.rng = low, high, rng
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.high, self.low * 2.0**self.attempt)
        if ceiling < self.high and self.attempt < 64:
            # once at the ceiling, stop counting: 2.0**1024 would overflow after a day offline
            self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from ``low`` (after a success)."""
        self.attempt = 0


#: Answers True when the broker's port accepts a TCP connection.
Probe = Callable[[], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class ReconnectTiming:
    """How often to probe and how widely to spread the return, in seconds.

    Each probe interval is drawn from 0.5..1.5 times ``probe_interval_s``; the session
    after a broker's return starts 0..``return_spread_s`` after the probe that saw it.
    A thousand gateways thus arrive over about ``probe_interval_s + return_spread_s``.
    """

    probe_interval_s: float = 1.0
    return_spread_s: float = 2.5
    probe_timeout_s: float = 2.0


async def tcp_probe(host: str, port: int, within_s: float) -> bool:
    """True when ``host:port`` accepts a TCP connection within ``within_s`` (closed at once)."""
    try:
        async with asyncio.timeout(within_s):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class ReconnectWait:
    """The wait between two full sessions; ``probes`` and ``returns`` count what it saw."""

    def __init__(
        self,
        backoff: Backoff,
        rng: random.Random,
        timing: ReconnectTiming | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff = backoff
        self.rng = rng
        self.timing = timing or ReconnectTiming()
        self.sleep = sleep
        self.clock = clock
        self.probes = 0
        self.returns = 0

    async def wait(self, probe: Probe) -> None:
        """Wait the backoff, or less once a broker seen down answers again."""
        deadline = self.clock() + self.backoff.next()
        seen_down = False
        while (left := deadline - self.clock()) > 0:
            self.probes += 1
            if await probe():
                left = deadline - self.clock()
                if seen_down:
                    # The failures were the outage, not this gateway: start the backoff
                    # afresh and return soon, spread so the county does not arrive at once.
                    self.returns += 1
                    self.backoff.reset()
                    left = min(left, self.rng.uniform(0.0, self.timing.return_spread_s))
                # Up all along (a refusal, an overloaded broker): the full backoff applies.
                await self.sleep(max(0.0, left))
                return
            seen_down = True
            interval = self.timing.probe_interval_s * self.rng.uniform(0.5, 1.5)
            await self.sleep(max(0.0, min(interval, deadline - self.clock())))
