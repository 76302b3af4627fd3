"""The storage interface of the fleet: what routers, enrollment and ingest may ask of a store.

Routers and the ingest worker see only ``Repository`` and the plain records below, so a
PostgreSQL backend can replace ``fleet.sqlite_repository`` without touching them. Every
method is synchronous and may block on the disk: call it from a worker thread.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import CommandResult, DataBatch, EventBatch, GatewayState, Health, Stream


class Role(enum.StrEnum):
    """API token roles; each includes the rights of the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order of privilege: viewer 0, operator 1, admin 2."""
        return list(Role).index(self)


class NotFoundError(LookupError):
    """The record asked for does not exist."""


class ConflictError(ValueError):
    """The request contradicts the record's state (e.g. an alarm already acknowledged)."""


class EnrollmentRefusedError(PermissionError):
    """An enrollment token cannot be redeemed; ``reason`` says why in the technician's words.

    ``gone`` is True when the token existed but expired, was used or was revoked.
    """

    def __init__(self, reason: str, *, gone: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.gone = gone


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A console user's API token (the secret itself is never stored)."""

    id: int
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentToken:
    """A one-time enrollment token scoped to a site."""

    id: int
    site_id: str
    created_at: float
    expires_at: float
    created_by: str | None
    note: str | None
    used_at: float | None = None
    gateway_id: str | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class NewGateway:
    """What enrollment knows about a gateway before it has an id."""

    gateway_id: str
    public_key: str
    mqtt_password_hash: str
    hostname: str | None
    agent_version: str | None


@dataclass(frozen=True, slots=True)
class Gateway:
    """An enrolled gateway with what the fleet last heard from it.

    ``alarm_level`` is the highest level among its active alarms (0 when none);
    ``streams`` maps each stream to the highest contiguous seq stored.
    """

    id: str
    site_id: str
    public_key: str
    hostname: str | None
    agent_version: str | None
    enrolled_at: float
    state: str | None
    state_at: float | None
    last_seen: float | None
    health: dict[str, Any] | None
    health_at: float | None
    alarm_level: int = 0
    streams: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReadingPoint:
    """One stored reading of a channel."""

    seq: int
    ts: float
    value: float | None
    quality: int


@dataclass(frozen=True, slots=True)
class ReadingBucket:
    """Good readings of one channel in ``[start, start + step)``; ``bad`` counts the others."""

    start: float
    count: int
    bad: int
    min: float | None
    avg: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A responsible person confirmed they received an alarm's warning."""

    person: str
    via: str | None
    note: str | None
    confirmed_at: float
    recorded_by: str


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm episode of a rule on a gateway: from the first raise until back to normal."""

    id: int
    gateway_id: str
    rule: str
    level: int
    peak_level: int
    raised_at: float
    cleared_at: float | None
    detail: str | None
    acknowledged_at: float | None
    acknowledged_by: str | None
    ack_note: str | None
    receipts: tuple[Receipt, ...] = ()


@dataclass(frozen=True, slots=True)
class QueuedCommand:
    """A command for a gateway, delivered on ``hw/v1/{id}/cmd`` by the ingest worker."""

    id: str
    gateway_id: str
    name: str
    args: dict[str, Any]
    issued_at: float
    issued_by: str | None
    status: str


@dataclass(frozen=True, slots=True)
class Received:
    """A validated message from a gateway, waiting to be committed.

    ``retained`` messages are the broker's replay of an old state, so they do not count
    as the gateway being seen now.
    """

    gateway_id: str
    received_at: float
    payload: DataBatch | EventBatch | Health | GatewayState | CommandResult
    retained: bool = False


@dataclass(slots=True)
class CommitResult:
    """What one ingest commit did: acks to publish and rows stored or already held."""

    acks: dict[tuple[str, Stream], int] = field(default_factory=dict)
    rows_stored: int = 0
    rows_duplicate: int = 0
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # gateway, reason, detail


class Repository(Protocol):
    """Everything the fleet stores. Implementations must make ``commit`` atomic per batch."""

    def close(self) -> None:
        """Release connections."""

    # --- API tokens ---------------------------------------------------------------------
    def create_api_token(self, name: str, role: Role, now: float) -> tuple[ApiToken, str]:
        """Store a new API token; return it with its secret (shown once)."""
        ...

    def api_token_for_secret(self, secret: str) -> ApiToken | None:
        """The active token with this secret, or None."""
        ...

    def list_api_tokens(self) -> list[ApiToken]:
        """All API tokens, revoked ones included."""
        ...

    def revoke_api_token(self, token_id: int, now: float) -> ApiToken:
        """Revoke a token; raises NotFoundError."""
        ...

    # --- enrollment ---------------------------------------------------------------------
    def create_enrollment_token(
        self, site_id: str, expires_at: float, created_by: str | None, note: str | None, now: float
    ) -> tuple[EnrollmentToken, str]:
        """Store a one-time token for ``site_id``; return it with its secret."""
        ...

    def list_enrollment_tokens(self) -> list[EnrollmentToken]:
        """All enrollment tokens, newest first."""
        ...

    def revoke_enrollment_token(self, token_id: int, now: float) -> EnrollmentToken:
        """Revoke an unused token; raises NotFoundError or ConflictError."""
        ...

    def redeem_enrollment_token(self, secret: str, gateway: NewGateway, now: float) -> Gateway:
        """Atomically use the token and register the gateway; raises EnrollmentRefusedError."""
        ...

    def broker_accounts(self) -> list[tuple[str, str]]:
        """``(username, mosquitto password hash)`` of every enrolled gateway."""
        ...

    # --- gateways and ingest ------------------------------------------------------------
    def list_gateways(self) -> list[Gateway]:
        """All gateways with their last state, health and highest active alarm level."""
        ...

    def get_gateway(self, gateway_id: str) -> Gateway:
        """One gateway; raises NotFoundError."""
        ...

    def commit(self, received: Sequence[Received]) -> CommitResult:
        """Store messages; each batch all-or-nothing, rows already held ignored."""
        ...

    # --- readings -----------------------------------------------------------------------
    def channels(self, gateway_id: str) -> list[str]:
        """Names of the channels a gateway has uploaded readings of."""
        ...

    def readings(
        self, gateway_id: str, channel: str, since: float, until: float, limit: int
    ) -> list[ReadingPoint]:
        """Readings of a channel with ``since <= ts < until``, oldest first."""
        ...

    def reading_buckets(
        self, gateway_id: str, channel: str, since: float, until: float, step: float
    ) -> list[ReadingBucket]:
        """Min/avg/max of good readings per ``step`` seconds; empty buckets are left out."""
        ...

    # --- alarms and commands ------------------------------------------------------------
    def alarms(
        self,
        *,
        active: bool | None,
        gateway_id: str | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[Alarm]:
        """Alarms, newest first; ``active`` True for those not back to normal."""
        ...

    def get_alarm(self, alarm_id: int) -> Alarm:
        """One alarm with its receipts; raises NotFoundError."""
        ...

    def acknowledge_alarm(self, alarm_id: int, by: str, note: str | None, now: float) -> Alarm:
        """Record who acknowledged an alarm; raises NotFoundError or ConflictError."""
        ...

    def confirm_receipt(
        self,
        alarm_id: int,
        person: str,
        via: str | None,
        note: str | None,
        recorded_by: str,
        now: float,
    ) -> Alarm:
        """Record that ``person`` confirmed receiving the warning; raises NotFoundError."""
        ...

    def queue_command(
        self, gateway_id: str, name: str, args: dict[str, Any], by: str | None, now: float
    ) -> QueuedCommand:
        """Queue a command for delivery to a gateway."""
        ...

    def claim_commands(self, now: float) -> list[QueuedCommand]:
        """Atomically take the pending commands for delivery, oldest first."""
        ...

    def release_command(self, command_id: str) -> None:
        """Put a claimed command back for the next delivery attempt."""
        ...
