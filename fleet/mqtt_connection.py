"""How to reach a broker: ``mqtt://`` or ``mqtts://`` URL, credentials and CA, as aiomqtt clients.

Every client made here logs through a logger held at ERROR: aiomqtt warns on each burst
of concurrent publishes, which at fleet rates would flood the log. This module only makes
clients; when to reconnect is ``protocol.reconnect``'s, as for the gateways.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from protocol.broker_url import BrokerAddress, parse_broker_url

MQTT_LOGGER = logging.getLogger("fleet.mqtt")
MQTT_LOGGER.setLevel(logging.ERROR)


@dataclass(frozen=True, slots=True)
class BrokerConnection:
    """A broker address with the credentials to use there.

    ``ca_file`` pins the CA for ``mqtts``; without it the system CAs are trusted. The
    broker's certificate must name the host in the URL.
    """

    url: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    @property
    def host(self) -> str:
        """Host name or address from the URL."""
        return self.address.host

    @property
    def port(self) -> int:
        """Port from the URL (1883 for mqtt, 8883 for mqtts by default)."""
        return self.address.port

    @property
    def tls(self) -> bool:
        """True for ``mqtts://``."""
        return self.address.tls

    @property
    def address(self) -> BrokerAddress:
        """Scheme, host and port from the URL; ValueError if it is no broker URL."""
        return parse_broker_url(self.url)

    def client(
        self,
        identifier: str | None = None,
        *,
        clean_session: bool = True,
        will: aiomqtt.Will | None = None,
        timeout: float = 10.0,
    ) -> aiomqtt.Client:
        """A new (not yet connected) aiomqtt client for this broker."""
        tls_context = None
        if self.tls:
            tls_context = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file else None
            )
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            clean_session=clean_session,
            will=will,
            logger=MQTT_LOGGER,
            tls_context=tls_context,
            timeout=timeout,
            max_inflight_messages=100,
        )
        client.pending_calls_threshold = 1_000_000
        return client
