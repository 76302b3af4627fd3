"""The small data model every layer shares: quality flags and readings.

``drivers`` owns it because it sits at the bottom of the one-way data flow; nothing here
may import the rest of the project.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Quality(enum.IntFlag):
    """Quality bits carried by every reading; ``OK`` (no bit set) means a good sample."""

    OK = 0
    TIMEOUT = 1 << 0
    CRC_ERROR = 1 << 1
    EXCEPTION = 1 << 2
    OUT_OF_RANGE = 1 << 3
    STUCK = 1 << 4
    SPIKE = 1 << 5
    CLOCK_UNSYNCED = 1 << 6
    SIMULATED = 1 << 7
    NO_CONNECTION = 1 << 8

    def names(self) -> list[str]:
        """Return the names of the set bits in lower case, ``["ok"]`` for a good sample."""
        if self == Quality.OK:
            return ["ok"]
        return [str(flag.name).lower() for flag in Quality if flag.value and self & flag]


#: Quality bits that mean the value is not a trustworthy measurement of the process.
BAD_QUALITY = (
    Quality.TIMEOUT
    | Quality.CRC_ERROR
    | Quality.EXCEPTION
    | Quality.OUT_OF_RANGE
    | Quality.STUCK
    | Quality.SPIKE
    | Quality.NO_CONNECTION
)


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one channel as the poller produced it.

    ``value`` is NaN when the device gave nothing usable; the quality says why.
    ``seq`` is assigned later, when the local store commits the reading. ``mono`` is the
    monotonic time of the sample, kept for readings taken before the wall clock was
    synchronised so their timestamps can be corrected later.
    """

    timestamp: float
    channel_id: str
    value: float
    unit: str
    quality: Quality
    mono: float | None = None

    @property
    def good(self) -> bool:
        """Return True when no bad-quality bit is set."""
        return not (self.quality & BAD_QUALITY)
