"""What the agent makes of systemd's watchdog setting, including values systemd never sends."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest

from edge_agent.sdnotify import (
    MIN_WATCHDOG_NOTE_S,
    STARTING_NOTE_S,
    notify,
    starting_note_interval_s,
    watchdog_interval_s,
)


@pytest.mark.parametrize(
    ("usec", "interval"),
    [
        (None, None),
        ("30000000", 15.0),
        ("0", None),
        ("-5", None),
        ("1e6", None),
        ("", None),
        ("1", MIN_WATCHDOG_NOTE_S),  # a microsecond: fed at the floor, not in a spin
        ("9" * 40, int("9" * 40) / 2_000_000),  # absurdly long is only rarely fed
    ],
)
def test_the_watchdog_interval_is_half_the_timeout_or_none(monkeypatch, usec, interval) -> None:
    if usec is None:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    else:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert watchdog_interval_s() == interval
    # Start-up notes: every 20 s, sooner only for a real, shorter watchdog; never 0.
    assert starting_note_interval_s() == min(STARTING_NOTE_S, interval or STARTING_NOTE_S)
    assert starting_note_interval_s() > 0


def _notify_in_thread(state: str, times: int) -> list[bool]:
    """``notify`` called ``times`` times on a daemon thread; its answers, if it finished."""
    answers: list[bool] = []

    def send() -> None:
        answers.extend(notify(state) for _ in range(times))

    worker = threading.Thread(target=send, daemon=True)
    worker.start()
    worker.join(timeout=10.0)
    assert not worker.is_alive(), "notify blocked"
    return answers


def test_a_notify_socket_nobody_reads_never_blocks_the_agent(
    monkeypatch, tmp_path: Path, caplog
) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unread:
        unread.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        with caplog.at_level(logging.WARNING, logger="edge_agent.sdnotify"):
            answers = _notify_in_thread("WATCHDOG=1", 5000)
        # The first notes queue up; once the queue is full they are dropped, not waited on.
        assert answers[0] is True
        assert answers[-1] is False
        unread.setblocking(False)
        assert unread.recv(64) == b"WATCHDOG=1"
    # One warning for the socket, not one per dropped note.
    warnings = [r for r in caplog.records if "note not sent" in r.getMessage()]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()


def test_a_notify_socket_that_is_gone_is_not_an_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "no-such-socket"))
    assert _notify_in_thread("READY=1", 3) == [False, False, False]
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False
