"""Map work over items on daemon threads, for the engine's replay of several channels.

Not an executor: the interpreter joins every executor thread at exit, so a replay that a
stopping gateway abandons would hold up its exit for as long as the replay has left
(minutes without numba). Daemon threads end with the process. Never swallows an
exception: the first one raised by the work is raised to the caller, after every thread
has finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


def map_on_daemon_threads(
    work: Callable[[_Item], _Result], items: Sequence[_Item], threads: int
) -> list[_Result]:
    """``work`` of each item, in the items' order, on at most ``threads`` daemon threads."""
    if len(items) <= 1 or threads <= 1:
        return [work(item) for item in items]
    results: list[_Result | None] = [None] * len(items)
    failures: list[tuple[int, BaseException]] = []
    taken = iter(range(len(items)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                index = next(taken, None)
            if index is None:
                return
            try:
                results[index] = work(items[index])
            except BaseException as exc:  # raised again by the caller below
                with lock:
                    failures.append((index, exc))

    pool = [
        threading.Thread(target=worker, name=f"alarm-replay-{n}", daemon=True)
        for n in range(min(threads, len(items)))
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]
    return results  # type: ignore[return-value] # every index was filled
