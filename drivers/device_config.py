"""One device on one bus, as the site file describes it: address, schedule, channels.

Plain settings shared by the poller (``drivers.poller``) and the site-file schema
(``site_schema``). This module never opens a port and never polls; it imports nothing
that does.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.profiles import DeviceProfile


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """One device on one bus, as the site configuration describes it."""

    name: str
    bus: str
    profile: DeviceProfile
    unit_id: int
    poll_interval_s: float
    timeout_s: float
    retries: int = 1
    backoff_max_s: float = 60.0
    channels: tuple[str, ...] | None = None

    def channel_id(self, channel: str) -> str:
        """Return the site-wide id of one of this device's channels."""
        return f"{self.name}.{channel}"

    def polled_channels(self) -> tuple[str, ...]:
        """The channels each poll reads: those named in the site file, else every readable one."""
        if self.channels is not None:
            return self.channels
        return tuple(c.name for c in self.profile.readable_channels)
