"""叫应 storage interface: the roster, per-site policies, and the record of every escalation.

The escalation engine, the call outbox, delivery reports and the routers see only
``EscalationStore`` and the records below; ``fleet.escalation_tables`` implements it.
A call is stored as ``planned`` (committed) before any channel sends it, which is what lets
a restarted fleet finish an escalation without losing a call.

This module must never know a database, and a store must never write a contact detail
(number, address) into the escalation record: the record names persons by label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from fleet.escalation_policy import LevelPolicy
from fleet.roster import Person, PersonIn, Tier

if TYPE_CHECKING:
    from fleet.statements import Transaction


@dataclass(frozen=True, slots=True)
class AlarmState:
    """What the engine needs to know of an active alarm (or one with an open escalation)."""

    alarm_id: int
    site_id: str
    rule: str
    level: int
    cleared: bool
    acknowledged_at: float | None
    acknowledged_by: str | None
    ack_note: str | None
    highest_escalated: int
    open_escalation: int | None


@dataclass(frozen=True, slots=True)
class Escalation:
    """One escalation of an alarm at one level."""

    id: int
    alarm_id: int
    site_id: str
    rule: str
    level: int
    policy: LevelPolicy
    started_at: float
    step: int
    step_since: float
    ended_at: float | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class Call:
    """One message to one person over one channel."""

    id: int
    escalation_id: int
    person_id: int
    person: str
    tier: Tier
    channel: str
    planned_at: float
    sent_at: float | None
    status: str


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A call the engine decided to make, before it is stored."""

    escalation_id: int
    person: Person
    channel: str


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A network's word on a sent call (Kannel's DLR): ``outcome`` None only goes on the record."""

    call_id: int
    outcome: Literal["delivered", "failed"] | None
    detail: str
    at: float


class AlarmWatcher(Protocol):
    """Says, cheaply, whether the active alarms may have changed since its last look.

    It wakes the engine sooner; it must never be what an alarm depends on (the engine's
    regular tick stays the guarantee).
    """

    def changed(self) -> bool:
        """Whether an alarm changed since the last call (False on the first)."""
        ...

    def close(self) -> None:
        """Release what it holds."""
        ...


class EscalationStore(Protocol):
    """Roster, policies and escalation record (``Repository.escalation``)."""

    def batch(
        self, before_commit: Callable[[Transaction], None] | None = None
    ) -> AbstractContextManager[None]:
        """Make the writes of this thread inside the block one transaction: one commit, one sync.

        The transaction begins at the first write, so a block that writes nothing takes no
        lock. Each write stays all-or-nothing on its own (a savepoint); an error escaping
        the block rolls back every write in it. ``before_commit`` runs last in the
        transaction if the block wrote (``fleet.leases.HeldTerm.check``); raising there rolls
        the block back.
        """
        ...

    def replace_roster(self, site_id: str, persons: Sequence[PersonIn], now: float) -> None:
        """Make ``persons`` the whole roster of ``site_id`` (one transaction)."""
        ...

    def add_person(self, site_id: str, person: PersonIn, now: float) -> Person:
        """Add one person to a site's roster."""
        ...

    def delete_person(self, site_id: str, person_id: int) -> None:
        """Remove a person; raises NotFoundError."""
        ...

    def persons_by_id(self, ids: Iterable[int]) -> dict[int, Person]:
        """The persons of these ids that are still on a roster."""
        ...

    def person(self, person_id: int) -> Person:
        """One person; raises NotFoundError."""
        ...

    def site_known(self, site_id: str) -> bool:
        """Whether the fleet knows the site: a gateway, an enrollment token or a roster there."""
        ...

    def roster(self, site_id: str) -> list[Person]:
        """A site's persons, by tier then name."""
        ...

    def persons_with_mobile(self, mobile: str) -> list[Person]:
        """Every person reached at ``mobile`` (E.164)."""
        ...

    def site_policy(self, site_id: str) -> dict[str, Any] | None:
        """The site's own policy document, or None (the fleet default applies)."""
        ...

    def set_site_policy(self, site_id: str, policy: dict[str, Any], by: str, now: float) -> None:
        """Store a (validated) policy document for a site."""
        ...

    def delete_site_policy(self, site_id: str) -> bool:
        """Return the site to the fleet default; False if it had none of its own."""
        ...

    def alarm_states(self) -> list[AlarmState]:
        """Active alarms, and alarms whose escalation is still open (whatever their state)."""
        ...

    def start_escalation(self, alarm: AlarmState, policy: LevelPolicy, now: float) -> Escalation:
        """Open an escalation at ``level`` with the policy as it is now (kept as it was)."""
        ...

    def escalation(self, escalation_id: int) -> Escalation:
        """One escalation; raises NotFoundError."""
        ...

    def escalations_by_id(self, ids: Iterable[int]) -> dict[int, Escalation]:
        """The escalations of these ids."""
        ...

    def escalations_of(self, alarm_id: int) -> list[Escalation]:
        """An alarm's escalations, oldest first."""
        ...

    def end_escalation(self, escalation_id: int, reason: str, now: float) -> None:
        """Stop calling, with the reason on the record (a second end is ignored)."""
        ...

    def advance(self, escalation_id: int, step: int, since: float, tier: Tier, why: str) -> None:
        """Move to the policy's ``step`` (the next tier), as of ``since``."""
        ...

    def note(self, escalation_id: int, now: float, kind: str, detail: str) -> None:
        """Put a free-text step on the record (e.g. nobody on the roster for a tier)."""
        ...

    def last_calls(self, escalation_id: int) -> dict[tuple[int, str], Call]:
        """The latest call to each (person, channel) in an escalation."""
        ...

    def plan_calls(self, planned: Sequence[PlannedCall], now: float) -> list[Call]:
        """Store calls as ``planned`` (committed before anything is sent)."""
        ...

    def calls_by_id(self, ids: Sequence[int]) -> list[Call]:
        """Calls by id, in id order."""
        ...

    def unsent_calls(self) -> list[Call]:
        """Calls planned but not known to be sent (a fleet that stopped in between)."""
        ...

    def call_done(self, call: Call, sent: bool, detail: str, now: float) -> None:
        """Record a channel's answer to a send: ``sent`` or ``failed`` (retried later)."""
        ...

    def calls_done(self, done: Sequence[tuple[Call, bool, str, float]]) -> None:
        """Record many channels' answers (call, sent, detail, at) in one transaction.

        A delivery report can come back before the send's answer is written: a call it
        already settled (delivered, or failed and so to be retried) keeps that status.
        """
        ...

    def delivery_report(
        self, call_id: int, outcome: Literal["delivered", "failed"] | None, detail: str, now: float
    ) -> bool:
        """One delivery report (see ``delivery_reports``); False if the call is unknown."""
        ...

    def delivery_reports(self, reports: Sequence[DeliveryReport]) -> list[bool]:
        """Delivery reports (e.g. Kannel's DLRs) in one transaction; per report, call known.

        ``failed`` (the network could not deliver it) marks the call failed, so the engine
        retries it like a send that failed; None (buffered, accepted) only goes on the
        record. A report the record already holds (a network that reports again) changes
        nothing, and no write is made for reports of unknown calls alone.
        """
        ...

    def record_answer(
        self,
        escalation_id: int,
        person: str,
        tier: Tier,
        via: str,
        now: float,
        call_id: int | None = None,
    ) -> bool:
        """Record an answer; False if this call's one-time answer was already used."""
        ...

    def take_gateway_answers(self, escalation: Escalation) -> int:
        """Record the village answers gateways sent for this alarm at (or above) its level.

        Each is recorded once per escalation; returns how many were new.
        """
        ...

    def answers(self, escalation_id: int) -> list[tuple[str, Tier, str, float]]:
        """(person, tier, via, at) of each answer, oldest first."""
        ...

    def recent_sms_escalations(self, person_id: int) -> list[int]:
        """Open escalations that texted this person, latest call first."""
        ...

    def record(self, escalation_id: int) -> list[dict[str, Any]]:
        """Every step of an escalation in time order, as stored."""
        ...

    def calls(self, escalation_id: int) -> list[Call]:
        """An escalation's calls, in order."""
        ...
