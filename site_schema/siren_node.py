"""A ``[[siren_node]]`` of the site file: which device is a siren node, and its fallback.

Validated data only, shared by the site-file parser and the gateway's link to the node
(``edge_agent.siren_node_link``). Nothing here talks to the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.device_config import DeviceConfig

#: The node's fallback settings the gateway writes, as the node's channels name them.
SETTINGS = ("heartbeat_timeout_s", "fallback_rain", "fallback_window_s", "mm_per_tip")


@dataclass(frozen=True, slots=True)
class SirenNodeSpec:
    """A siren node on one of the site's buses and the fallback settings it is given."""

    device: DeviceConfig
    heartbeat_timeout_s: float = 120.0
    fallback_rain_mm: float = 30.0
    fallback_window_s: float = 3600.0
    mm_per_tip: float = 0.2
    fallback_level: int = 4

    @property
    def alarm_id(self) -> str:
        """The id under which the node's fallback shows among the alarms (for ``edge ack``)."""
        return f"siren_node:{self.device.name}"
