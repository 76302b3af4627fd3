"""Where the fleet keeps its files and how it reaches (or runs) the MQTT broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fleet.channels import KannelSettings, SmtpSettings
from fleet.escalation_policy import DEFAULT_POLICY, EscalationPolicy
from fleet.leases import LEASE_S
from fleet.robot_pace import RobotLimit
from protocol.county_clock import CHINA_STANDARD_TIME_H

DB_FILE = "fleet.sqlite"


@dataclass(frozen=True, slots=True)
class EscalationSettings:
    """叫应: the default policy, the channels, and how often the engine looks.

    ``smtp`` / ``kannel`` None: that channel is off (webhooks need nothing configured).
    ``sms_callback_key`` guards the routes Kannel calls back (delivery reports, replies).
    ``tick_s`` None: the engine does not run by itself (tests tick it with their clock).
    ``robot_limit``: the posts a work-chat robot takes (20 a minute; tests shorten it).
    ``utc_offset_h``: the county's clock, in which calls tell a failure forecast's times.
    """

    policy: EscalationPolicy = DEFAULT_POLICY
    smtp: SmtpSettings | None = None
    kannel: KannelSettings | None = None
    webhooks: bool = True
    sms_callback_key: str | None = None
    tick_s: float | None = 1.0
    robot_limit: RobotLimit = field(default_factory=RobotLimit)
    utc_offset_h: float = CHINA_STANDARD_TIME_H


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """Everything ``fleet serve`` and ``fleet ingest`` need to start.

    ``broker="embedded"`` runs amqtt in-process on ``embedded_host:embedded_port``;
    ``"external"`` connects to ``mqtt_url`` (a mosquitto using the files in
    ``broker_dir``, reloaded through ``mosquitto_pid_file``). Gateways are told
    ``public_broker_url`` (default: the URL the fleet itself uses) and, for mqtts,
    the CA in ``public_broker_ca`` (default: ``mqtt_ca``).
    """

    data_dir: Path
    broker: Literal["embedded", "external"] = "embedded"
    mqtt_url: str | None = None
    mqtt_ca: Path | None = None
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 1883
    public_broker_url: str | None = None
    public_broker_ca: Path | None = None
    fleet_url: str = "http://127.0.0.1:8080"
    mosquitto_pid_file: Path | None = None
    ingest: bool = True
    ingest_connections: int = 1
    durable: bool = True
    #: A ``postgresql://`` URL; None: the SQLite file ``db_path`` (one county's default).
    database: str | None = None
    escalation: EscalationSettings = field(default_factory=EscalationSettings)
    #: How long a replica's lease on a singleton loop lasts unless renewed (``fleet.leases``):
    #: after a replica is killed, another takes its 叫应 and rollouts over within this.
    lease_s: float = LEASE_S

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / DB_FILE

    @property
    def broker_dir(self) -> Path:
        """Where the broker's password file and ACL are written."""
        return self.data_dir / "broker"

    @property
    def broker_url(self) -> str:
        """The URL the fleet's own ingest connects to."""
        if self.broker == "external":
            if not self.mqtt_url:
                msg = "an external broker needs mqtt_url (e.g. mqtt://127.0.0.1:1884)"
                raise ValueError(msg)
            return self.mqtt_url
        return f"mqtt://{self.embedded_host}:{self.embedded_port}"

    @property
    def gateway_broker_url(self) -> str:
        """The broker URL handed to gateways at enrollment."""
        return self.public_broker_url or self.broker_url

    @property
    def gateway_broker_ca(self) -> Path | None:
        """The CA file handed to gateways for mqtts, if any."""
        return self.public_broker_ca or self.mqtt_ca
