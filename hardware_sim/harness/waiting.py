"""Waiting on a condition in tests and benches: the one way, never a bare sleep.

``wait_for`` polls on the event loop (the condition may be a plain function or return an
awaitable) and returns the condition's first truthy value; ``wait_until`` is the same for
code outside an event loop (threads, plain tests). Both fail with an AssertionError that
names what was awaited and for how long.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: How often a condition is looked at.
POLL_S = 0.02


def _timed_out(within_s: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {within_s} s waiting for {what}")


async def wait_for(
    condition: Callable[[], Any | Awaitable[Any]], within_s: float, what: str = "the condition"
) -> Any:
    """Poll ``condition`` until it gives something truthy; return that value."""
    deadline = time.monotonic() + within_s
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise _timed_out(within_s, what)
        await asyncio.sleep(POLL_S)


def wait_until(condition: Callable[[], Any], within_s: float, what: str = "the condition") -> Any:
    """``wait_for`` for code outside an event loop: blocks this thread while it polls."""
    deadline = time.monotonic() + within_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _timed_out(within_s, what)
        time.sleep(POLL_S)
