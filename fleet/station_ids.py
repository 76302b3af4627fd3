"""Which gateway records are SL 651 telemetry stations, and when one counts as offline.

A registered station is a gateway-like record (``sl651-<address>``) so that it is listed,
charted and alarmed like a gateway. It runs no agent: it cannot take a signed config or a
release, and it reports every few minutes to an hour, not a health message a minute.
This module only names things; it must never reach a station or the store.
"""

from __future__ import annotations

from typing import Literal

#: Gateway ids of stations: enrolled gateways are ``gw-<hex>``, so these never collide.
GATEWAY_PREFIX = "sl651-"
#: What a station's gateway record says where a gateway says its agent version.
STATION_AGENT = "SL 651-2014 station"
#: A station is offline once it has sent nothing (report or keep-alive) this long: two
#: hourly reports (34) missed. Gateways are offline after three missed health messages.
STATION_OFFLINE_AFTER_S = 2 * 3600.0

DeviceKind = Literal["gateway", "sl651_station"]


def is_station(gateway_id: str) -> bool:
    """Whether the record ``gateway_id`` is an SL 651 station's (no agent, no OTA)."""
    return gateway_id.startswith(GATEWAY_PREFIX)


def device_kind(gateway_id: str) -> DeviceKind:
    """``sl651_station`` for a station's record, ``gateway`` for an enrolled gateway's."""
    return "sl651_station" if is_station(gateway_id) else "gateway"
