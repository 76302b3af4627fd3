"""Per-channel plausibility checks: valid range, spikes and stuck values.

Turns a decoded value into quality bits using only that channel's history and the limits
in its profile; it never drops or alters the value itself.
"""

from __future__ import annotations

import math

from drivers.model import Quality
from drivers.profiles import ChannelSpec

#: Samples in a row that must agree at a new level before a jump is believed.
SPIKE_CONFIRM_SAMPLES = 3
#: Slack for timestamp jitter when judging a rate of change.
RATE_SLACK_S = 1.0


class PlausibilityCheck:
    """Judge successive samples of one channel.

    A jump faster than the profile's ``max_rate`` is a spike until
    ``SPIKE_CONFIRM_SAMPLES`` samples in a row agree with each other at the new level;
    then the level is accepted as real. A value that has not changed for the profile's
    ``stuck_after_s`` is stuck.
    """

    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        self._base: tuple[float, float] | None = None
        self._candidates: list[tuple[float, float]] = []
        self._run: tuple[float, float] | None = None

    def assess(self, t: float, value: float) -> Quality:
        """Return the quality bits for ``value`` sampled at time ``t``.

        A value that is no finite number (a float32 register holding an infinity, or a
        scaling that overflowed) is out of range whatever the limits: an alarm rule must
        never see it as a measurement.
        """
        if not math.isfinite(value) or not self.spec.in_range(value):
            return Quality.OUT_OF_RANGE
        quality = self._spike(t, value)
        return quality | self._stuck(t, value)

    def _allowed(self, since: tuple[float, float], t: float) -> float:
        rate = self.spec.max_rate or math.inf
        return rate * (max(0.0, t - since[0]) + RATE_SLACK_S)

    def _spike(self, t: float, value: float) -> Quality:
        if self.spec.max_rate is None or self._base is None:
            self._base = (t, value)
            return Quality.OK
        if abs(value - self._base[1]) <= self._allowed(self._base, t):
            self._base = (t, value)
            self._candidates.clear()
            return Quality.OK
        if self._candidates and abs(value - self._candidates[-1][1]) > self._allowed(
            self._candidates[-1], t
        ):
            self._candidates.clear()
        self._candidates.append((t, value))
        if len(self._candidates) >= SPIKE_CONFIRM_SAMPLES:
            self._base = (t, value)
            self._candidates.clear()
            return Quality.OK
        return Quality.SPIKE

    def _stuck(self, t: float, value: float) -> Quality:
        if self.spec.stuck_after_s is None:
            return Quality.OK
        if self._run is None or self._run[1] != value:
            self._run = (t, value)
            return Quality.OK
        return Quality.STUCK if t - self._run[0] >= self.spec.stuck_after_s else Quality.OK
