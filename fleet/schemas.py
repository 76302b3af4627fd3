"""REST request and response bodies of the county console (they make the OpenAPI schema).

Times are UTC seconds since the epoch, like the wire protocol; a gateway's health is the
protocol's own ``Health`` model, so MQTT and REST share one definition.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleet.repository import API_TOKEN_TTL_S, Alarm, ApiToken, EnrollmentToken, Gateway, Role
from fleet.station_ids import STATION_OFFLINE_AFTER_S, DeviceKind, device_kind, is_station
from protocol import OFFLINE_AFTER_S, Health
from protocol.levels import LEVEL_NAMES

SITE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SiteId = Annotated[str, Field(pattern=SITE_ID_PATTERN, examples=["creek-village"])]
GatewayStatus = Literal["online", "offline", "never_seen"]


class Out(BaseModel):
    """Base of every response model: immutable."""

    model_config = ConfigDict(frozen=True)


def gateway_status(gateway: Gateway, now: float) -> GatewayStatus:
    """Online while its state says so and it spoke within ``OFFLINE_AFTER_S``.

    An SL 651 station has no health message: it is online while it reported (or sent a
    keep-alive) within ``STATION_OFFLINE_AFTER_S``.
    """
    if gateway.last_seen is None:
        return "never_seen"
    quiet = STATION_OFFLINE_AFTER_S if is_station(gateway.id) else OFFLINE_AFTER_S
    if gateway.state == "offline" or now - gateway.last_seen > quiet:
        return "offline"
    return "online"


class GatewaySummary(Out):
    """One row of the gateway list."""

    id: str
    kind: DeviceKind = Field(description="gateway, or sl651_station (reports only; no OTA)")
    site_id: str
    hostname: str | None
    status: GatewayStatus
    last_seen: float | None
    alarm_level: int = Field(description="highest level among active alarms, 0..4")
    alarm_level_name: str
    backlog: int | None = Field(description="readings + events not yet uploaded (from health)")
    agent_version: str | None

    @classmethod
    def of(cls, gateway: Gateway, now: float) -> GatewaySummary:
        """Summarise a gateway as of ``now``."""
        health = gateway.health or {}
        backlog = None
        if health:
            backlog = int(health.get("backlog_readings", 0)) + int(health.get("backlog_events", 0))
        return cls(
            id=gateway.id,
            kind=device_kind(gateway.id),
            site_id=gateway.site_id,
            hostname=gateway.hostname,
            status=gateway_status(gateway, now),
            last_seen=gateway.last_seen,
            alarm_level=gateway.alarm_level,
            alarm_level_name=LEVEL_NAMES[gateway.alarm_level],
            backlog=backlog,
            agent_version=gateway.agent_version,
        )


class GatewayDetail(GatewaySummary):
    """A gateway with its last health and upload progress."""

    public_key: str
    enrolled_at: float
    state: str | None
    state_at: float | None
    health: Health | None
    health_at: float | None
    streams: dict[str, int] = Field(description="highest contiguous seq stored, per stream")
    channels: list[str]

    @classmethod
    def build(cls, gateway: Gateway, channels: list[str], now: float) -> GatewayDetail:
        """Detail view of a gateway as of ``now``."""
        return cls(
            **GatewaySummary.of(gateway, now).model_dump(),
            public_key=gateway.public_key,
            enrolled_at=gateway.enrolled_at,
            state=gateway.state,
            state_at=gateway.state_at,
            health=_health(gateway.health),
            health_at=gateway.health_at,
            streams=gateway.streams,
            channels=channels,
        )


def _health(stored: dict[str, object] | None) -> Health | None:
    """The stored health message, or None if it breaks today's rules.

    A version before the wire refused non-finite numbers may have stored an infinite
    uptime; the gateway page must still load.
    """
    if not stored:
        return None
    try:
        return Health.model_validate(stored)
    except ValidationError:
        return None


class ReadingOut(Out):
    """One stored reading; ``quality`` holds the protocol's quality bits (0 = good)."""

    seq: int
    ts: float
    value: float | None
    quality: int


class BucketOut(Out):
    """Good readings in ``[start, start + step)``: count, min, avg, max; ``bad`` the others."""

    start: float
    count: int
    bad: int
    min: float | None
    avg: float | None
    max: float | None


class ReadingsOut(Out):
    """Readings of one channel: raw (``readings``) or downsampled (``buckets``, with ``step``)."""

    gateway_id: str
    channel: str
    since: float
    until: float
    step: float | None = None
    readings: list[ReadingOut] | None = None
    buckets: list[BucketOut] | None = None
    truncated: bool = Field(default=False, description="more than `limit`: narrow the range")


class ReceiptOut(Out):
    """A confirmation that a responsible person got the warning."""

    person: str
    via: str | None
    note: str | None
    confirmed_at: float
    recorded_by: str


class AlarmOut(Out):
    """An alarm episode; active while ``cleared_at`` is null."""

    id: int
    gateway_id: str
    rule: str
    level: int
    level_name: str
    peak_level: int
    raised_at: float
    cleared_at: float | None
    active: bool
    detail: str | None
    acknowledged_at: float | None
    acknowledged_by: str | None
    ack_note: str | None
    receipts: list[ReceiptOut]

    @classmethod
    def of(cls, alarm: Alarm) -> AlarmOut:
        """The REST view of an alarm."""
        return cls(
            id=alarm.id,
            gateway_id=alarm.gateway_id,
            rule=alarm.rule,
            level=alarm.level,
            level_name=LEVEL_NAMES[alarm.level],
            peak_level=alarm.peak_level,
            raised_at=alarm.raised_at,
            cleared_at=alarm.cleared_at,
            active=alarm.cleared_at is None,
            detail=alarm.detail,
            acknowledged_at=alarm.acknowledged_at,
            acknowledged_by=alarm.acknowledged_by,
            ack_note=alarm.ack_note,
            receipts=[
                ReceiptOut(
                    person=r.person,
                    via=r.via,
                    note=r.note,
                    confirmed_at=r.confirmed_at,
                    recorded_by=r.recorded_by,
                )
                for r in alarm.receipts
            ],
        )


class AcknowledgeIn(BaseModel):
    """Acknowledge an alarm (also sent to the gateway to release a latched siren)."""

    note: Annotated[str, Field(max_length=500)] | None = None


class ReceiptIn(BaseModel):
    """The responsible person confirmed they received the warning."""

    person: Annotated[str, Field(min_length=1, max_length=200, examples=["village head"])]
    via: Annotated[str, Field(max_length=50, examples=["phone", "sms", "radio"])] | None = None
    note: Annotated[str, Field(max_length=500)] | None = None


class EnrollmentTokenIn(BaseModel):
    """Create a one-time enrollment token for a site."""

    site_id: SiteId
    # strict: JSON true is not 1 s (an int still is a number of seconds)
    ttl_s: Annotated[float, Field(strict=True, gt=0, le=365 * 24 * 3600)] = 24 * 3600.0
    note: Annotated[str, Field(max_length=500)] | None = None


class EnrollmentTokenOut(Out):
    """An enrollment token (without its secret)."""

    id: int
    site_id: str
    status: Literal["unused", "used", "expired", "revoked"]
    created_at: float
    expires_at: float
    created_by: str | None
    note: str | None
    used_at: float | None
    gateway_id: str | None
    revoked_at: float | None

    @classmethod
    def of(cls, token: EnrollmentToken, now: float) -> EnrollmentTokenOut:
        """The REST view of a token as of ``now``."""
        status: Literal["unused", "used", "expired", "revoked"] = "unused"
        if token.revoked_at is not None:
            status = "revoked"
        elif token.used_at is not None:
            status = "used"
        elif now >= token.expires_at:
            status = "expired"
        return cls(
            id=token.id,
            site_id=token.site_id,
            status=status,
            created_at=token.created_at,
            expires_at=token.expires_at,
            created_by=token.created_by,
            note=token.note,
            used_at=token.used_at,
            gateway_id=token.gateway_id,
            revoked_at=token.revoked_at,
        )


class EnrollmentTokenCreated(EnrollmentTokenOut):
    """A new token with its secret, shown this once."""

    token: str


#: Longest lifetime an API token may be given: a token is a password, rotate it.
MAX_API_TOKEN_TTL_S = 2 * 365 * 86400.0
ApiTokenTtl = Annotated[
    float,
    Field(
        strict=True,
        gt=0,
        le=MAX_API_TOKEN_TTL_S,
        description="seconds the token works (default 90 days, at most 2 years)",
    ),
]


class ApiTokenIn(BaseModel):
    """Create an API token for a console user or script."""

    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Role
    ttl_s: ApiTokenTtl = API_TOKEN_TTL_S


class ApiTokenRotateIn(BaseModel):
    """Give an API token a new secret and a new expiry; the old secret stops at once."""

    ttl_s: ApiTokenTtl = API_TOKEN_TTL_S


class ApiTokenOut(Out):
    """An API token (without its secret); it works until ``expires_at`` unless revoked."""

    id: int
    name: str
    role: Role
    created_at: float
    revoked_at: float | None
    expires_at: float | None

    @classmethod
    def of(cls, token: ApiToken) -> ApiTokenOut:
        """The REST view of an API token."""
        return cls(
            id=token.id,
            name=token.name,
            role=token.role,
            created_at=token.created_at,
            revoked_at=token.revoked_at,
            expires_at=token.expires_at,
        )


class ApiTokenCreated(ApiTokenOut):
    """A new API token with its secret, shown this once."""

    token: str


class IngestOut(Out):
    """The in-process ingest worker's counters since start."""

    running: bool
    ready: bool
    messages: int = 0
    batches: int = 0
    rows_stored: int = 0
    rows_duplicate: int = 0
    commits: int = 0
    acks_sent: int = 0
    commands_sent: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
