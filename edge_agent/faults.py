"""Sensor faults as events: a channel going bad (dead, stuck, spiking, out of range) and back.

A fault is its own event: it never sounds a siren and never clears an alarm; it only
reports. One event when a fault starts or changes kind, one when the channel is good again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.model import BAD_QUALITY, Quality, Reading

FaultSink = Callable[[str, str, dict[str, Any]], None]


class FaultTracker:
    """Remembers each channel's current fault and reports transitions."""

    def __init__(self, emit: FaultSink) -> None:
        self.emit = emit
        self.active: dict[str, Quality] = {}
        self.counts: dict[str, int] = {}

    def update(self, reading: Reading) -> None:
        """Look at one reading's quality and report a change of fault state."""
        bad = reading.quality & BAD_QUALITY
        previous = self.active.get(reading.channel_id)
        if bad:
            self.counts[reading.channel_id] = self.counts.get(reading.channel_id, 0) + 1
            if previous != bad:
                self.active[reading.channel_id] = bad
                self.emit(
                    "sensor_fault",
                    reading.channel_id,
                    {
                        "quality": bad.names(),
                        "value": None if reading.value != reading.value else reading.value,
                    },
                )
        elif previous is not None:
            del self.active[reading.channel_id]
            self.emit("sensor_ok", reading.channel_id, {"was": previous.names()})
