"""The small data model every layer shares: the reading, with its quality flags.

``drivers`` owns the reading because it sits at the bottom of the one-way data flow; the
quality bits are wire vocabulary, so they come from ``protocol.quality`` and are
re-exported here as the type of ``Reading.quality``. Nothing here may import the rest of
the project but ``protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.quality import BAD_QUALITY, Quality

__all__ = ["BAD_QUALITY", "Quality", "Reading"]


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
