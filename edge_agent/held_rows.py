"""Rows waiting in memory for the local store: bounded, and readings give way before events.

While the store cannot write (a full disk), events and readings wait here in arrival
order. Memory is one budget counted in reading slots, an event taking ``EVENT_SLOTS`` of
them. Over budget, the oldest held readings are thinned (every other one of the oldest
half, again and again) so the recent past keeps full resolution longest. An event is
dropped only when no reading is left to thin. This module never touches the disk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.model import Reading

log = logging.getLogger(__name__)

#: Readings held in memory at most (about 14 MB on a 64-bit gateway).
MAX_HELD_READINGS = 100_000
#: Events held in memory at most; each takes the room of EVENT_SLOTS readings.
MAX_HELD_EVENTS = 10_000


@dataclass(frozen=True, slots=True, eq=False)
class HeldEvent:
    """One event as it happened, waiting to be written; ``detail`` is already JSON.

    Compared by identity: two equal events that happened twice are two events.
    """

    ts: float
    kind: str
    subject: str | None
    level: int | None
    detail: str


class HeldRows:
    """Events and readings not yet committed, in arrival order, within a memory budget.

    Safe to use from the event loop and the store's writer thread at once. ``take_*``
    hands rows to the writer; ``put_back_*`` returns what it could not write, ahead of
    anything that arrived meanwhile.
    """

    def __init__(
        self, max_readings: int = MAX_HELD_READINGS, max_events: int = MAX_HELD_EVENTS
    ) -> None:
        if max_events < 1 or max_readings < max_events:
            msg = f"need 1 <= max_events <= max_readings, not {max_events} and {max_readings}"
            raise ValueError(msg)
        self.max_readings = max_readings
        self.max_events = max_events
        self.event_slots = max_readings // max_events
        self.readings_thinned = 0
        self.events_lost = 0
        self._readings: list[Reading] = []
        self._events: deque[HeldEvent] = deque()
        self._lock = threading.Lock()
        self._thinning_logged = False
        self._loss_logged = False

    @property
    def readings(self) -> int:
        """Readings held."""
        return len(self._readings)

    @property
    def events(self) -> int:
        """Events held."""
        return len(self._events)

    def add_readings(self, readings: Iterable[Reading]) -> None:
        """Hold readings (newest last)."""
        with self._lock:
            self._readings.extend(readings)
            self._fit()

    def add_event(self, event: HeldEvent) -> None:
        """Hold one event (newest last)."""
        with self._lock:
            self._events.append(event)
            self._fit()

    def take_readings(self) -> list[Reading]:
        """Hand every held reading to the writer, oldest first."""
        with self._lock:
            batch, self._readings = self._readings, []
        return batch

    def take_events(self) -> list[HeldEvent]:
        """Hand every held event to the writer, oldest first."""
        with self._lock:
            batch = list(self._events)
            self._events.clear()
        return batch

    def put_back_readings(self, batch: list[Reading]) -> None:
        """Return readings the writer could not commit, ahead of newer ones."""
        with self._lock:
            self._readings = batch + self._readings
            self._fit()

    def put_back_events(self, batch: list[HeldEvent]) -> None:
        """Return events the writer could not commit, ahead of newer ones."""
        with self._lock:
            self._events.extendleft(reversed(batch))
            self._fit()

    def withdraw_event(self, event: HeldEvent) -> None:
        """Forget ``event`` (its caller was told it is not stored and may try again)."""
        with self._lock:
            if event in self._events:
                self._events.remove(event)

    def condition_cleared(self) -> None:
        """The store writes again: the next thinning or loss is logged again."""
        self._thinning_logged = self._loss_logged = False

    def _fit(self) -> None:
        while len(self._readings) + self.event_slots * len(self._events) > self.max_readings:
            count = len(self._readings)
            if count >= 4:
                # Every other reading of the oldest half: what is left is spread evenly.
                half = count // 2
                thinned = self._readings[:half:2] + self._readings[half:]
                self.readings_thinned += count - len(thinned)
                self._readings = thinned
                if not self._thinning_logged:
                    self._thinning_logged = True
                    log.warning(
                        "held rows reached their memory budget (%d reading slots): "
                        "thinning the oldest held readings; further thinning is only counted",
                        self.max_readings,
                    )
            elif count:
                del self._readings[0]
                self.readings_thinned += 1
            else:
                lost = self._events.popleft()
                self.events_lost += 1
                if not self._loss_logged:
                    self._loss_logged = True
                    log.error(
                        "%d events held and no reading left to thin: dropping the oldest "
                        "(%s %s at %s); further losses are only counted",
                        self.max_events,
                        lost.kind,
                        lost.subject,
                        lost.ts,
                    )
