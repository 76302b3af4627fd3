"""The storage interface of the fleet: what routers, enrollment and ingest may ask of a store.

Routers and the ingest worker see only these protocols and the plain records below, so a
storage backend can replace ``fleet.sqlite_repository`` without touching them. The
interface is split by resource: ``TokenStore`` (API tokens), ``GatewayStore`` (gateways,
enrollment, broker accounts, commands), ``ReadingStore`` (the exactly-once ingest commit,
readings, events), ``AlarmStore`` (alarm episodes), ``OtaRepository`` (documents, releases
and rollouts) and ``fleet.escalation_store.EscalationStore`` (叫应); ``Repository`` is all
of them. Domain rules stay above the seam (``fleet.alarm_episodes``, ``fleet.ota_reports``):
a backend applies their decisions, it does not make them. Every method is synchronous and
may block on the disk or the network: call it from a worker thread.

This module must never import a database driver.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fleet.roster import Person
from ota.document import DocumentKind
from ota.manifest import ReleaseManifest
from protocol import CommandResult, DataBatch, EventBatch, GatewayState, Health, Stream

if TYPE_CHECKING:  # the live feed's cursor and 叫应's store; imported lazily (no cycles)
    from fleet.escalation_store import AlarmWatcher, EscalationStore
    from fleet.leases import LeaseStore
    from fleet.live_changes import LiveChange, LiveCursor


class Role(enum.StrEnum):
    """API token roles; each includes the rights of the ones before it.

    Signing a site configuration is the configurator's right, apart from the operator's
    (acknowledging alarms): a configuration decides what every siren does.
    """

    VIEWER = "viewer"
    OPERATOR = "operator"
    CONFIGURATOR = "configurator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Order of privilege: viewer 0, operator 1, configurator 2, admin 3."""
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


#: How long an API token works unless given another lifetime: a leaked token must not
#: work for ever. ``fleet apitoken rotate`` (or ``POST /api/v1/api-tokens/{id}/rotate``)
#: gives it a new secret and a new expiry.
API_TOKEN_TTL_S = 90 * 86400.0
#: A command claimed for delivery whose publisher has not recorded it as sent within this
#: (killed between claim and publish) is claimed again by another: at least once, never lost.
COMMAND_CLAIM_S = 60.0
#: A gateway's health reports are kept in the order of the gateway's own clock (a resent
#: older one changes nothing), unless the one stored is stamped more than this ahead of
#: the fleet's clock when the next arrives: a clock that once ran years ahead must not
#: hide every later health report (battery, backlog, faults) for good.
HEALTH_AHEAD_S = 86400.0


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A console user's API token (the secret itself is never stored).

    It works until ``expires_at`` unless revoked before.
    """

    id: int
    name: str
    role: Role
    created_at: float
    revoked_at: float | None = None
    expires_at: float | None = None


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
    ``streams`` maps each stream to the highest contiguous seq stored; ``site`` is the
    summary of its site file it sent with its last ``online`` state (a ``SiteSummary``).
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
    site: dict[str, Any] | None = None


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
class StoredEvent:
    """One event a gateway uploaded, as stored (``detail`` is its JSON object)."""

    gateway_id: str
    seq: int
    ts: float
    kind: str
    subject: str | None
    level: int | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Receipt:
    """A responsible person confirmed they received an alarm's warning."""

    person: str
    via: str | None
    note: str | None
    confirmed_at: float
    recorded_by: str


#: Where an alarm's acknowledgement was taken: ``gateway`` (its button, panel or ``edge
#: ack``, stored by ingest from the gateway's ``ack`` event) or ``fleet`` (the REST API:
#: the console or an API client). Stored as its own column, never read from the words.
AckOrigin = Literal["gateway", "fleet"]


def ack_origin_of(stored: str | None) -> AckOrigin | None:
    """The ``AckOrigin`` a backend stored (None: not acknowledged); raises on anything else."""
    if stored is None:
        return None
    if stored == "gateway":
        return "gateway"
    if stored == "fleet":
        return "fleet"
    raise ValueError(f"unknown acknowledgement origin {stored!r}: expected gateway or fleet")


#: The one migration of ``ack_origin`` that every SQL backend runs on alarms stored before
#: the column: ingest ended a gateway's ``acknowledged_by`` with ``(at the gateway)``, and
#: every other acknowledgement came through the REST API.
ACK_ORIGIN_FROM_WORDS = (
    "UPDATE alarms SET ack_origin = CASE WHEN acknowledged_by LIKE '%(at the gateway)' "
    "THEN 'gateway' ELSE 'fleet' END WHERE acknowledged_at IS NOT NULL"
)


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
    ack_origin: AckOrigin | None
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


#: A message a gateway sends the fleet, validated.
Uplink = DataBatch | EventBatch | Health | GatewayState | CommandResult


@dataclass(frozen=True, slots=True)
class Received:
    """A validated message from a gateway, waiting to be committed.

    ``retained`` messages are the broker's replay of an old state, so they do not count
    as the gateway being seen now.
    """

    gateway_id: str
    received_at: float
    payload: Uplink
    retained: bool = False


@dataclass(slots=True)
class CommitResult:
    """What one ingest commit did: acks to publish and rows stored or already held."""

    acks: dict[tuple[str, Stream], int] = field(default_factory=dict)
    rows_stored: int = 0
    rows_duplicate: int = 0
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # gateway, reason, detail


#: Builds the signed document of ``version`` for ``gateways``: storage allocates the version
#: (inside its transaction, so versions never repeat) and keeps the bytes it returns.
DocumentIssuer = Callable[[int, tuple[str, ...]], bytes]


class ConfigState(enum.StrEnum):
    """Where a signed configuration stands on one gateway (DESIGN section 7)."""

    PENDING = "pending"  # issued, the gateway has not confirmed receipt
    DELIVERED = "delivered"  # the gateway verified the document
    APPLIED = "applied"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"  # a newer configuration was issued before this one ended

    @property
    def final(self) -> bool:
        """Whether the gateway has said the last word on this version."""
        return self in (ConfigState.APPLIED, ConfigState.REJECTED, ConfigState.ROLLED_BACK)


class RolloutState(enum.StrEnum):
    """A rollout's state; halted, aborted and completed rollouts send nothing more."""

    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    ABORTED = "aborted"
    COMPLETED = "completed"

    @property
    def active(self) -> bool:
        """Whether the rollout still holds its gateways (a halted one does until aborted)."""
        return self in (RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.HALTED)


class DeviceState(enum.StrEnum):
    """One gateway's part in a rollout."""

    WAITING = "waiting"  # its wave has not started
    IN_PROGRESS = "in_progress"  # sent; no final report yet, deadline running
    SUCCEEDED = "succeeded"  # reported ``applied`` for this rollout's document
    FAILED = "failed"  # reported ``rejected`` or ``rolled_back``
    TIMED_OUT = "timed_out"  # no final report before its deadline: counts as a failure
    CANCELLED = "cancelled"  # the rollout was aborted before this device ended

    @property
    def final(self) -> bool:
        """Whether this device's outcome is settled."""
        return self not in (DeviceState.WAITING, DeviceState.IN_PROGRESS)


@dataclass(frozen=True, slots=True)
class GatewayGroup:
    """A named set of gateways that configs and rollouts can address."""

    name: str
    gateways: tuple[str, ...]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class NewSiteConfig:
    """A validated site file for one gateway (``gateway_id``) or a group (``group``)."""

    site_toml: str
    gateway_id: str | None
    group: str | None
    note: str | None
    created_by: str | None


@dataclass(frozen=True, slots=True)
class SiteConfigRecord:
    """A stored site configuration; ``revision`` counts per gateway or group.

    ``version`` is the signed document it was published with (None: stored only, to be
    sent by a rollout); ``gateways`` are the ones addressed when it was created.
    """

    id: int
    scope: str  # "gateway" or "group"
    target: str
    revision: int
    site_toml: str
    sha256: str
    gateways: tuple[str, ...]
    note: str | None
    created_at: float
    created_by: str | None
    version: int | None


@dataclass(frozen=True, slots=True)
class ConfigDelivery:
    """One signed configuration document on one gateway."""

    gateway_id: str
    version: int
    config_id: int
    revision: int
    rollout_id: int | None
    state: ConfigState
    reason: str | None
    issued_at: float
    published_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """A registered release; ``uploaded`` names the files stored and verified so far."""

    manifest: ReleaseManifest
    created_at: float
    created_by: str | None
    uploaded: frozenset[str]

    @property
    def version(self) -> str:
        """The release's PEP 440 version."""
        return self.manifest.version

    @property
    def missing(self) -> tuple[str, ...]:
        """Files of the manifest not uploaded yet, in manifest order."""
        return tuple(f.name for f in self.manifest.files if f.name not in self.uploaded)


@dataclass(frozen=True, slots=True)
class RolloutWave:
    """One wave: its spec as written (``1``, ``25%``), its gateways, its document."""

    index: int
    spec: str
    gateways: tuple[str, ...]
    doc_version: int | None
    started_at: float | None


@dataclass(frozen=True, slots=True)
class RolloutDevice:
    """One gateway in a rollout; ``reported`` is the gateway's last report for its document."""

    gateway_id: str
    wave: int
    state: DeviceState
    doc_version: int | None
    sent_at: float | None
    deadline: float | None
    reported: str | None
    reason: str | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class NewRollout:
    """A planned rollout of a release (``release_version``) or a config (``config_id``)."""

    kind: DocumentKind
    release_version: str | None
    config_id: int | None
    group: str | None
    waves: tuple[tuple[str, tuple[str, ...]], ...]  # (spec, gateways) per wave
    success_threshold: float
    error_threshold: float
    device_timeout_s: float
    created_by: str | None


@dataclass(frozen=True, slots=True)
class Rollout:
    """A rollout with its waves and devices; ``current_wave`` is -1 before the first.

    ``revision`` changes with every stored change (reports included), so a decision taken
    on one snapshot is applied only if nothing moved meanwhile.
    """

    id: int
    kind: DocumentKind
    release_version: str | None
    config_id: int | None
    group: str | None
    success_threshold: float
    error_threshold: float
    device_timeout_s: float
    state: RolloutState
    current_wave: int
    reason: str | None
    revision: int
    created_at: float
    created_by: str | None
    updated_at: float
    waves: tuple[RolloutWave, ...]
    devices: tuple[RolloutDevice, ...]


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """What the rollout logic decided for one snapshot (``revision``) of a rollout."""

    rollout_id: int
    revision: int
    timed_out: tuple[str, ...]
    start_wave: int | None
    state: RolloutState
    reason: str | None


@dataclass(frozen=True, slots=True)
class OutboxDocument:
    """A signed document to publish, retained, on a gateway's ``config`` or ``release`` topic."""

    gateway_id: str
    kind: DocumentKind
    version: int
    document: bytes


class DocumentOutbox(Protocol):
    """Signed documents waiting to be published on gateways' retained topics."""

    def claim_documents(self, now: float) -> list[OutboxDocument]:
        """Take the documents waiting to be published (and claims older than a minute)."""
        ...

    def finish_documents(
        self, published: Sequence[OutboxDocument], failed: Sequence[OutboxDocument], now: float
    ) -> None:
        """Record what was published; put failed ones back for the next attempt."""
        ...


class OtaRepository(DocumentOutbox, Protocol):
    """Storage of over-the-air configs, releases and rollouts (``Repository.ota``)."""

    # --- groups ---------------------------------------------------------------------------
    def set_group(self, name: str, gateway_ids: Sequence[str], now: float) -> GatewayGroup:
        """Create or replace a group; raises NotFoundError for an unknown gateway."""
        ...

    def get_group(self, name: str) -> GatewayGroup:
        """One group; raises NotFoundError."""
        ...

    def list_groups(self) -> list[GatewayGroup]:
        """All groups by name."""
        ...

    # --- configurations -------------------------------------------------------------------
    def create_config(
        self, config: NewSiteConfig, now: float, issue: DocumentIssuer | None
    ) -> SiteConfigRecord:
        """Store a config; with ``issue``, also sign and queue it for its gateways at once.

        Raises NotFoundError (gateway, group) or ConflictError (empty group, or a gateway
        held by an active config rollout).
        """
        ...

    def get_config(self, config_id: int) -> SiteConfigRecord:
        """One config; raises NotFoundError."""
        ...

    def list_configs(
        self, *, gateway_id: str | None, group: str | None, limit: int
    ) -> list[SiteConfigRecord]:
        """Configs newest first, optionally those addressing a gateway or a group."""
        ...

    def config_deliveries(self, gateway_id: str, limit: int) -> list[ConfigDelivery]:
        """A gateway's configuration documents, newest first; raises NotFoundError."""
        ...

    # --- releases -------------------------------------------------------------------------
    def add_release(self, manifest: ReleaseManifest, by: str | None, now: float) -> ReleaseRecord:
        """Register a release; the same manifest again is a no-op, another one ConflictError."""
        ...

    def get_release(self, version: str) -> ReleaseRecord:
        """One release; raises NotFoundError."""
        ...

    def list_releases(self) -> list[ReleaseRecord]:
        """All releases, newest registration first."""
        ...

    def release_upload_path(self, version: str, name: str) -> tuple[Path, int]:
        """A fresh temporary file for ``name`` of ``version`` and its size; NotFoundError."""
        ...

    def store_release_file(
        self, version: str, name: str, upload: Path, now: float
    ) -> ReleaseRecord:
        """Check ``upload`` against the manifest (size, sha256) and keep it, or raise ValueError."""
        ...

    def release_file(self, version: str, name: str) -> Path:
        """The stored, verified file; raises NotFoundError."""
        ...

    def gateway_password_hash(self, gateway_id: str) -> str | None:
        """The gateway's MQTT password hash (gateways download releases with it), or None."""
        ...

    # --- rollouts -------------------------------------------------------------------------
    def create_rollout(self, rollout: NewRollout, now: float) -> Rollout:
        """Store a rollout (running, no wave started); NotFoundError or ConflictError."""
        ...

    def get_rollout(self, rollout_id: int) -> Rollout:
        """One rollout with waves and devices; raises NotFoundError."""
        ...

    def list_rollouts(self, limit: int) -> list[Rollout]:
        """Rollouts, newest first."""
        ...

    def active_rollout_ids(self) -> list[int]:
        """Rollouts that may still change by themselves (running, paused, halted)."""
        ...

    def control_rollout(self, rollout_id: int, state: RolloutState, by: str, now: float) -> Rollout:
        """Pause, resume (``RUNNING``) or abort, by whom; ConflictError if the state forbids it."""
        ...

    def apply_rollout_step(
        self, step: RolloutStep, now: float, issue: DocumentIssuer | None
    ) -> bool:
        """Apply ``step`` if the rollout is still at ``step.revision``; False if it moved.

        Starting a wave signs one document (``issue``) for the wave's gateways and queues it.
        """
        ...


class TokenStore(Protocol):
    """API tokens of console users and scripts (the secret itself is never stored)."""

    def create_api_token(
        self, name: str, role: Role, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Store a new API token valid for ``ttl_s``; return it with its secret (shown once)."""
        ...

    def api_token_for_secret(self, secret: str, now: float) -> ApiToken | None:
        """The token with this secret if it is neither revoked nor expired at ``now``."""
        ...

    def rotate_api_token(
        self, token_id: int, now: float, ttl_s: float = API_TOKEN_TTL_S
    ) -> tuple[ApiToken, str]:
        """Give a token a new secret valid for ``ttl_s`` (the old one stops at once).

        Raises NotFoundError, or ConflictError for a revoked token.
        """
        ...

    def list_api_tokens(self) -> list[ApiToken]:
        """All API tokens, revoked ones included."""
        ...

    def api_token(self, token_id: int) -> ApiToken | None:
        """One API token by id (revoked and expired ones too), or None."""
        ...

    def revoke_api_token(self, token_id: int, now: float) -> ApiToken:
        """Revoke a token; raises NotFoundError."""
        ...


class GatewayStore(Protocol):
    """Gateways and their credentials: enrollment, broker accounts, commands to gateways."""

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

    def list_gateways(self) -> list[Gateway]:
        """All gateways with their last state, health and highest active alarm level."""
        ...

    def get_gateway(self, gateway_id: str) -> Gateway:
        """One gateway; raises NotFoundError."""
        ...

    def site_gateways(self, site_id: str) -> list[Gateway]:
        """The gateways of ``site_id`` (none for an unknown site), as ``list_gateways``."""
        ...

    def queue_command(
        self, gateway_id: str, name: str, args: dict[str, Any], by: str | None, now: float
    ) -> QueuedCommand:
        """Queue a command for delivery to a gateway."""
        ...

    def claim_commands(self, now: float) -> list[QueuedCommand]:
        """Atomically take the pending commands for delivery, oldest first.

        Claimed commands are ``publishing`` until ``command_sent``; a claim older than
        ``COMMAND_CLAIM_S`` (its publisher died) is claimable again.
        """
        ...

    def command_sent(self, command_id: str) -> None:
        """Record that the broker took a claimed command (``sent``: never claimed again)."""
        ...

    def release_command(self, command_id: str) -> None:
        """Put a claimed command back for the next delivery attempt."""
        ...


class ReadingStore(Protocol):
    """What gateways upload: readings and events, committed exactly once per (gateway, seq).

    ``commit`` is the one writer: each batch all-or-nothing in one transaction with its
    stream's watermark, so an ack computed from it is true after any crash; a batch already
    held (a resend after a lost ack) stores nothing and is acknowledged again. Alarm
    episodes (``fleet.alarm_episodes``) and OTA reports (``fleet.ota_reports``) follow
    from the events in the same transaction.
    """

    def commit(self, received: Sequence[Received]) -> CommitResult:
        """Store messages; each batch all-or-nothing, rows already held ignored."""
        ...

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

    def events(
        self,
        gateway_ids: Sequence[str],
        *,
        kinds: Sequence[str] | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int,
    ) -> list[StoredEvent]:
        """Events of these gateways with ``since <= ts < until``, newest first."""
        ...


class IngestStore(ReadingStore, Protocol):
    """What an ingest worker needs: the commit, and the outboxes it publishes from."""

    @property
    def ota(self) -> DocumentOutbox:
        """Signed documents to publish (configs, releases)."""
        ...

    def claim_commands(self, now: float) -> list[QueuedCommand]:
        """Atomically take the pending commands for delivery, oldest first.

        Claimed commands are ``publishing`` until ``command_sent``; a claim older than
        ``COMMAND_CLAIM_S`` (its publisher died) is claimable again.
        """
        ...

    def command_sent(self, command_id: str) -> None:
        """Record that the broker took a claimed command (``sent``: never claimed again)."""
        ...

    def release_command(self, command_id: str) -> None:
        """Put a claimed command back for the next delivery attempt."""
        ...

    def close(self) -> None:
        """Release connections."""


class AlarmStore(Protocol):
    """Alarm episodes as ingest follows them, with acknowledgements and receipts."""

    def alarms(
        self,
        *,
        active: bool | None,
        gateway_ids: Sequence[str] | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[Alarm]:
        """Alarms, newest first, in one query; ``active`` True for those not back to normal.

        ``gateway_ids`` None: of every gateway; a list: of those gateways only (empty: none).
        """
        ...

    def get_alarm(self, alarm_id: int) -> Alarm:
        """One alarm with its receipts; raises NotFoundError."""
        ...

    def acknowledge_alarm(self, alarm_id: int, by: str, note: str | None, now: float) -> Alarm:
        """Record who acknowledged an alarm at the fleet (``ack_origin`` ``fleet``).

        Raises NotFoundError or ConflictError.
        """
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


class CoreStore(TokenStore, GatewayStore, ReadingStore, AlarmStore, Protocol):
    """The stores of every backend: tokens, gateways, readings and events, alarms.

    ``tests/test_storage_contract.py`` runs the same tests on each backend through this.
    """

    def close(self) -> None:
        """Release connections."""


class Repository(CoreStore, Protocol):
    """Everything the fleet stores: each resource's store, OTA and 叫应 beside them.

    Implementations must make ``commit`` atomic per batch.
    """

    @property
    def ota(self) -> OtaRepository:
        """Over-the-air configs, releases and rollouts."""
        ...

    @property
    def escalation(self) -> EscalationStore:
        """叫应: roster, policies and the record of every escalation."""
        ...

    @property
    def leases(self) -> LeaseStore:
        """Leader leases of the singleton loops (``fleet.leases``), shared by every replica."""
        ...

    def open_alarm_watch(self) -> AlarmWatcher | None:
        """A cheap watch on the active alarms (any process's commits), or None if none."""
        ...

    def roster(self, site_id: str) -> list[Person]:
        """The responsible persons of ``site_id`` (叫应), every tier."""
        ...

    def live_cursor(self) -> LiveCursor:
        """A cursor at the present for ``live_changes``."""
        ...

    def live_changes(self, cursor: LiveCursor) -> list[LiveChange]:
        """Level changes, health and 叫应 steps stored after ``cursor`` (moved past them)."""
        ...
