"""Await work done on a daemon thread from the event loop.

For work that may run for minutes while the loop must stay responsive (the alarm replay at
start): the loop goes on feeding systemd, and a stop cancels the waiting task without
waiting for the work, which ends with the process. Never cancels or interrupts the work
itself, and never hands its outcome to a loop that has closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def in_daemon_thread(work: Callable[[], _T]) -> asyncio.Future[_T]:
    """Run ``work`` on a daemon thread; the future gets its result or its exception.

    Not the loop's executor: the interpreter joins executor threads at exit, daemon
    threads it does not.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def hand_over(outcome: Callable[[], None]) -> None:
        # After a stop the loop may be closed: nobody waits for the outcome any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting task, which raises it
            hand_over(functools.partial(future.set_exception, exc))
        else:
            hand_over(functools.partial(future.set_result, result))

    threading.Thread(target=run, name="daemon-work", daemon=True).start()
    return future
