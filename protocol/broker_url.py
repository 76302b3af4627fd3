"""Broker URLs: the one parser of ``mqtt://host[:port]`` and ``mqtts://host[:port]``.

The fleet hands gateways this URL at enrollment and connects to it itself, so both sides
must read it the same way. Pure parsing: it never resolves a name nor opens a socket,
and nothing here may import anything of the project.
"""

from __future__ import annotations

from typing import Literal, NamedTuple
from urllib.parse import urlsplit

#: The port of each scheme when the URL gives none (the IANA ports of MQTT and MQTT/TLS).
DEFAULT_PORTS: dict[str, int] = {"mqtt": 1883, "mqtts": 8883}


class BrokerAddress(NamedTuple):
    """Where a broker listens: ``mqtts`` means TLS; ``port`` is always set."""

    scheme: Literal["mqtt", "mqtts"]
    host: str
    port: int

    @property
    def tls(self) -> bool:
        """True for ``mqtts://``."""
        return self.scheme == "mqtts"


def parse_broker_url(url: str) -> BrokerAddress:
    """Split ``mqtt(s)://host[:port]`` into scheme, host and port.

    Raises:
        ValueError: naming the URL, when it is not such a URL or its port is no port.
    """
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        msg = f"broker URL {url!r} must look like mqtt://host:port or mqtts://host:port"
        raise ValueError(msg)
    try:
        port = parts.port
    except ValueError as exc:  # urllib names neither the URL nor what a port must be
        msg = f"broker URL {url!r} has no usable port ({exc}); ports are 1 to 65535"
        raise ValueError(msg) from None
    if port == 0:
        msg = f"broker URL {url!r} has no usable port (0); ports are 1 to 65535"
        raise ValueError(msg)
    scheme: Literal["mqtt", "mqtts"] = "mqtts" if parts.scheme == "mqtts" else "mqtt"
    return BrokerAddress(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])
