"""The engine's replay spreads channels over daemon threads: results in order, errors raised.

That an abandoned replay does not hold up a stopping agent is tested end to end in
``test_agent_slope_e2e.py`` (a stop during the replay at start).
"""

from __future__ import annotations

import threading

import pytest

from alarm_engine.daemon_threads import map_on_daemon_threads


def test_results_come_in_the_items_order_from_daemon_threads() -> None:
    seen: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def work(n: int) -> int:
        with lock:
            seen.append((threading.current_thread().name, threading.current_thread().daemon))
        return n * n

    assert map_on_daemon_threads(work, list(range(20)), 3) == [n * n for n in range(20)]
    assert {daemon for _, daemon in seen} == {True}
    assert len({name for name, _ in seen}) <= 3


def test_the_first_items_error_is_raised_once_every_item_was_tried() -> None:
    tried: list[int] = []

    def work(n: int) -> int:
        tried.append(n)
        if n in (3, 7):
            raise ValueError(f"item {n}")
        return n

    with pytest.raises(ValueError, match="item 3"):
        map_on_daemon_threads(work, list(range(10)), 2)
    assert sorted(tried) == list(range(10))


def test_one_thread_or_one_item_runs_in_the_callers_thread() -> None:
    caller = threading.current_thread().name
    assert map_on_daemon_threads(lambda _: threading.current_thread().name, [1, 2], 1) == [
        caller,
        caller,
    ]
