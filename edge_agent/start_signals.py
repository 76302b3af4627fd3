"""SIGTERM and SIGINT while ``edge run`` is still starting, before its event loop takes them.

``edge run`` spends a second or more (much longer on a first start, when the alarm
kernels compile) importing, loading kernels and reading its site file before its event
loop installs the handlers that stop the agent cleanly. Without a handler before that, a
stop (``systemctl stop``, a restart) in that window killed the process by the signal.
``StartSignals`` is installed first thing and makes such a stop end ``edge run`` the way
a stop after start-up does: exit status 0, nothing stored touched.

While the start only reads (imports, kernels, the site file), a signal ends it at once by
raising ``StoppedWhileStarting``. Around a write (``writing``) it is only noted and acted
on when the write is done. From ``hand_over`` on, a signal is only noted: the event loop
installs its own handlers and asks ``requested`` for one that came in between. A stop
whose exception some library's broad ``except`` swallowed is still noted, and
``hand_over`` ends the start for it.

This module must never swallow a stop, never raise while a write is under way or once
the event loop owns the signals, and imports nothing but the standard library's small
modules (it loads before the alarm kernels).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals that stop the agent, before start-up as after.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppedWhileStarting(BaseException):
    """A stop signal arrived while ``edge run`` was starting; it ends the start."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StartSignals:
    """Stop signals from the first line of ``edge run`` until the event loop takes them."""

    def __init__(self) -> None:
        self.requested: int | None = None  # the stop signal received, if any
        self._writes = 0
        self._handed_over = False

    def install(self) -> None:
        """Take SIGINT and SIGTERM from their default action (which kills the process)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        first = self.requested is None  # a second signal must not cut the first's stop short
        self.requested = signum
        if first and not self._writes and not self._handed_over:
            raise StoppedWhileStarting(signum)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """A step that writes: a stop waits for it (the outermost one), then ends the start."""
        self._writes += 1
        try:
            yield
        finally:
            self._writes -= 1
        if not self._writes:
            self.check()

    def check(self) -> None:
        """End the start here if a stop came in while it could not be acted on."""
        if self.requested is not None and not self._handed_over:
            raise StoppedWhileStarting(self.requested)

    def hand_over(self) -> None:
        """From now on only note a stop: the event loop is about to install its handlers."""
        self.check()
        self._handed_over = True
