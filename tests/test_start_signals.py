"""Stop signals while ``edge run`` starts: at once while it reads, after a write, noted later.

Each test sends SIGTERM to this very process with its handlers installed, as systemd does
to the agent, and puts the previous handlers back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.daemon import _run_until_signal, _stop_stuck
from edge_agent.start_signals import STOP_SIGNALS, StartSignals, StoppedWhileStarting


@pytest.fixture
def signals() -> Iterator[StartSignals]:
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    held = StartSignals()
    held.install()
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_while_the_start_only_reads_ends_it_at_once(signals: StartSignals) -> None:
    reached: list[str] = []

    def start() -> None:
        sigterm_self()
        reached.append("the next step")

    with pytest.raises(StoppedWhileStarting) as stopped:
        start()
    assert reached == []
    assert stopped.value.signum == signal.SIGTERM
    assert str(stopped.value) == "SIGTERM"


def test_a_stop_during_a_write_waits_for_the_write_then_ends_the_start(
    signals: StartSignals,
) -> None:
    written: list[str] = []

    def start() -> None:
        with signals.writing():
            sigterm_self()
            written.append("the whole state file")
        written.append("the next step")

    with pytest.raises(StoppedWhileStarting):
        start()
    assert written == ["the whole state file"]


def test_a_second_signal_does_not_cut_the_first_stop_short(signals: StartSignals) -> None:
    with pytest.raises(StoppedWhileStarting):
        sigterm_self()
    sigterm_self()  # systemd's stop and a technician's Ctrl-C: only the first one raises
    assert signals.requested == signal.SIGTERM


def test_a_stop_a_library_swallowed_is_acted_on_at_the_hand_over(signals: StartSignals) -> None:
    with contextlib.suppress(BaseException):  # a library's broad except, deep in a preload
        sigterm_self()
    with pytest.raises(StoppedWhileStarting):
        signals.hand_over()


def test_after_the_hand_over_a_stop_is_noted_and_the_agent_never_runs(
    signals: StartSignals,
) -> None:
    signals.hand_over()
    sigterm_self()  # between the hand-over and the event loop's own handlers
    assert signals.requested == signal.SIGTERM
    started: list[str] = []

    async def agent() -> None:
        started.append("agent")

    asyncio.run(_run_until_signal(agent(), signals))
    assert started == []
    # The stop armed the grace timer that ends a stuck stop; here the process goes on.
    timers = [
        t
        for t in threading.enumerate()
        if isinstance(t, threading.Timer) and getattr(t, "function", None) is _stop_stuck
    ]
    for timer in timers:
        timer.cancel()
    assert len(timers) == 1


def test_a_stop_inside_nested_writes_waits_for_the_outermost_write(
    signals: StartSignals,
) -> None:
    written: list[str] = []

    def start() -> None:
        with signals.writing():
            with signals.writing():  # a step that writes, inside one that writes
                sigterm_self()
                written.append("the state file")
            written.append("the marker that says it is whole")
        written.append("the next step")

    with pytest.raises(StoppedWhileStarting):
        start()
    assert written == ["the state file", "the marker that says it is whole"]


def test_a_stop_while_edge_run_sets_up_its_log_ends_it_as_after_start_up(
    signals: StartSignals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stop comes the moment ``edge run`` has its handlers and sets up its log: the
    # earliest step after them, run in this process.
    from typer.testing import CliRunner  # noqa: PLC0415

    from edge_agent.cli import app  # noqa: PLC0415

    monkeypatch.setattr(logging, "basicConfig", lambda **_: sigterm_self())
    args = ["run", "--config", str(tmp_path / "site.toml"), "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "d").exists()  # it stopped before making its data directory
