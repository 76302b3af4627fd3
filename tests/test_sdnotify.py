"""What the agent makes of systemd's watchdog setting, including values systemd never sends."""

from __future__ import annotations

import pytest

from edge_agent.sdnotify import STARTING_NOTE_S, starting_note_interval_s, watchdog_interval_s


@pytest.mark.parametrize(
    ("usec", "interval"),
    [(None, None), ("30000000", 15.0), ("0", None), ("-5", None), ("1e6", None), ("", None)],
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
