"""Either broker for access-control tests: a real mosquitto or the embedded amqtt broker.

Both use the fleet's generated access files with the fleet's account and the gateway
accounts given; ``log()`` returns what the broker logged (mosquitto's log file, or the
embedded broker's own log records), so a test can check what an operator would see.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fleet.broker_files import FleetAccount, write_access_files
from fleet.credentials import mosquitto_hash
from fleet.embedded_broker import EmbeddedBroker
from fleet.mqtt_connection import BrokerConnection
from hardware_sim.harness.mosquitto import running_mosquitto
from hardware_sim.harness.ports import free_port

BrokerKind = Literal["mosquitto", "embedded"]
BROKERS: tuple[BrokerKind, ...] = ("mosquitto", "embedded")


@dataclass(frozen=True, slots=True)
class GatewayAccount:
    """A gateway's broker credentials (its user name is its id)."""

    gateway_id: str
    password: str


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@dataclass
class BrokerUnderTest:
    """A running broker: where gateways and the fleet connect, and the broker's log."""

    kind: BrokerKind
    url: str
    fleet_url: str
    fleet: FleetAccount
    gateways: dict[str, GatewayAccount]
    _log: _Records | Path = field(repr=False)

    @property
    def port(self) -> int:
        """The gateways' port."""
        return int(self.url.rsplit(":", 1)[1])

    def log(self) -> str:
        """Everything the broker logged so far."""
        if isinstance(self._log, Path):
            return self._log.read_text(errors="replace")
        return "\n".join(self._log.lines)

    def gateway(self, name: str, password: str | None = None) -> BrokerConnection:
        """A connection as gateway ``name`` (with its own password unless told otherwise)."""
        account = self.gateways[name]
        secret = account.password if password is None else password
        return BrokerConnection(self.url, account.gateway_id, secret)

    def fleet_connection(self) -> BrokerConnection:
        """A connection as the fleet, on the fleet's listener."""
        return BrokerConnection(self.fleet_url, self.fleet.username, self.fleet.password)


@contextlib.asynccontextmanager
async def running_broker(
    kind: BrokerKind, tmp_path: Path, names: tuple[str, ...] = ("a", "b")
) -> AsyncIterator[BrokerUnderTest]:
    """Start ``kind`` with the fleet's account and one gateway account per name."""
    fleet = FleetAccount.load_or_create(tmp_path / "fleet")
    gateways = {name: GatewayAccount(f"gw-{name * 10}", f"secret-{name}") for name in names}
    broker_dir = tmp_path / "broker"
    accounts = [(g.gateway_id, mosquitto_hash(g.password)) for g in gateways.values()]
    write_access_files(broker_dir, fleet, accounts)
    if kind == "mosquitto":
        with running_mosquitto(broker_dir, tmp_path / "mosquitto") as mosquitto:
            yield BrokerUnderTest(
                kind, mosquitto.url, mosquitto.fleet_url, fleet, gateways, mosquitto.log_file
            )
        return
    records = _Records()
    logger = logging.getLogger("fleet.embedded_broker")
    logger.addHandler(records)
    try:
        port = free_port()
        async with EmbeddedBroker(broker_dir, port=port):
            url = f"mqtt://127.0.0.1:{port}"
            yield BrokerUnderTest(kind, url, url, fleet, gateways, records)
    finally:
        logger.removeHandler(records)
