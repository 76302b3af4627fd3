"""When the uplink tries the broker again: cheap probes often, full sessions with backoff.

A failed MQTT session makes the uplink wait a jittered exponential backoff (up to
``reconnect_max_s``) before the next full session, so a broker that answers but refuses
or chokes is not hammered. While it waits it probes the broker's port with a bare TCP
connect every second or so; a broker it saw down that answers again cuts the wait to a
short jittered spread, so a county's gateways return within seconds of the broker, however
long the outage, without all arriving in the same instant. This module never opens an MQTT
session and never waits longer than the backoff; the clock, sleep and probe are passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge_agent.upload_progress import Backoff

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
