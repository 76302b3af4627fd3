"""叫应 storage written once: the roster, per-site policies, and the record of every escalation.

``EscalationTables`` is the ``EscalationStore`` of both backends: its statements run through
a ``fleet.statements.Statements``, which owns what differs between SQLite and PostgreSQL
(placeholders, connections, transactions, savepoints). ``fleet.sqlite_escalation`` and
``fleet.postgres_escalation`` hold each backend's ``SCHEMA`` and open the store on it.
A call is written as ``planned`` (committed) before any channel sends it, which is what
lets a restarted fleet finish an escalation without losing a call.

This module must never send anything, never commit a write of an open ``batch`` on its own,
and never write a contact detail into the record (``escalation_record`` names persons by
label, never by number or address).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from fleet.escalation_policy import LevelPolicy, parse_level
from fleet.escalation_store import AlarmState, Call, DeliveryReport, Escalation, PlannedCall
from fleet.repository import NotFoundError
from fleet.roster import Person, PersonIn, Tier
from fleet.statements import Row, Statements, Transaction, marks


class EscalationTables:
    """``EscalationStore`` on the fleet's database, through ``statements``."""

    def __init__(self, statements: Statements) -> None:
        self._sql = statements

    def batch(
        self, before_commit: Callable[[Transaction], None] | None = None
    ) -> AbstractContextManager[None]:
        """Make the writes of this thread inside the block one transaction: one commit.

        The transaction begins at the first write, so a block that writes nothing takes no
        lock. Each write stays all-or-nothing on its own (a savepoint); an error escaping
        the block rolls back every write in it. ``before_commit`` runs last in the
        transaction if the block wrote (``fleet.leases.HeldTerm.check``); raising there rolls
        the block back.
        """
        return self._sql.batch(before_commit)

    # --- roster ---------------------------------------------------------------------------

    def replace_roster(self, site_id: str, persons: Sequence[PersonIn], now: float) -> None:
        """Make ``persons`` the whole roster of ``site_id`` (one transaction)."""
        with self._sql.writing() as db:
            db.execute("DELETE FROM roster_persons WHERE site_id = ?", [site_id])
            for p in persons:
                self._insert_person(db, site_id, p, now)

    def add_person(self, site_id: str, person: PersonIn, now: float) -> Person:
        """Add one person to a site's roster."""
        with self._sql.writing() as db:
            person_id = self._insert_person(db, site_id, person, now)
        return self.person(person_id)

    @staticmethod
    def _insert_person(db: Transaction, site_id: str, p: PersonIn, now: float) -> int:
        return db.insert(
            "INSERT INTO roster_persons (site_id, tier, name, role, mobile, email, webhook, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            [site_id, p.tier.value, p.name, p.role, p.mobile, p.email, p.webhook, now],
        )

    def delete_person(self, site_id: str, person_id: int) -> None:
        """Remove a person; raises NotFoundError."""
        with self._sql.writing() as db:
            cursor = db.execute(
                "DELETE FROM roster_persons WHERE id = ? AND site_id = ?", [person_id, site_id]
            )
        if cursor.rowcount == 0:
            raise NotFoundError(f"site {site_id!r} has no person with id {person_id}")

    def persons_by_id(self, ids: Iterable[int]) -> dict[int, Person]:
        """The persons of these ids that are still on a roster."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self._sql.rows(
            f"SELECT * FROM roster_persons WHERE id IN ({marks(len(wanted))})", wanted
        )
        return {r["id"]: _person(r) for r in rows}

    def person(self, person_id: int) -> Person:
        """One person; raises NotFoundError."""
        rows = self._sql.rows("SELECT * FROM roster_persons WHERE id = ?", [person_id])
        if not rows:
            raise NotFoundError(f"no person with id {person_id}")
        return _person(rows[0])

    def site_known(self, site_id: str) -> bool:
        """Whether the fleet knows the site: a gateway, an enrollment token or a roster there."""
        row = self._sql.row(
            "SELECT 1 FROM gateways WHERE site_id = ? UNION ALL "
            "SELECT 1 FROM enrollment_tokens WHERE site_id = ? UNION ALL "
            "SELECT 1 FROM roster_persons WHERE site_id = ? LIMIT 1",
            [site_id, site_id, site_id],
        )
        return row is not None

    def roster(self, site_id: str) -> list[Person]:
        """A site's persons, by tier then name."""
        rows = self._sql.rows(
            "SELECT * FROM roster_persons WHERE site_id = ? ORDER BY "
            "CASE tier WHEN 'village' THEN 0 WHEN 'township' THEN 1 ELSE 2 END, name, id",
            [site_id],
        )
        return [_person(r) for r in rows]

    def persons_with_mobile(self, mobile: str) -> list[Person]:
        """Every person reached at ``mobile`` (E.164)."""
        rows = self._sql.rows("SELECT * FROM roster_persons WHERE mobile = ?", [mobile])
        return [_person(r) for r in rows]

    # --- policies -------------------------------------------------------------------------

    def site_policy(self, site_id: str) -> dict[str, Any] | None:
        """The site's own policy document, or None (the fleet default applies)."""
        row = self._sql.row("SELECT policy FROM escalation_policies WHERE site_id = ?", [site_id])
        return json.loads(row["policy"]) if row else None

    def set_site_policy(self, site_id: str, policy: dict[str, Any], by: str, now: float) -> None:
        """Store a (validated) policy document for a site."""
        with self._sql.writing() as db:
            db.execute(
                "INSERT INTO escalation_policies (site_id, policy, set_by, set_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (site_id) DO UPDATE SET "
                "policy = excluded.policy, set_by = excluded.set_by, set_at = excluded.set_at",
                [site_id, json.dumps(policy), by, now],
            )

    def delete_site_policy(self, site_id: str) -> bool:
        """Return the site to the fleet default; False if it had none of its own."""
        with self._sql.writing() as db:
            cursor = db.execute("DELETE FROM escalation_policies WHERE site_id = ?", [site_id])
        return cursor.rowcount > 0

    # --- the engine's view ----------------------------------------------------------------

    def alarm_states(self) -> list[AlarmState]:
        """Active alarms, and alarms whose escalation is still open (whatever their state)."""
        rows = self._sql.rows(
            "SELECT a.id, g.site_id, a.rule, a.level, a.cleared_at, a.acknowledged_at, "
            "a.acknowledged_by, a.ack_note, "
            "(SELECT max(level) FROM escalations e WHERE e.alarm_id = a.id) AS highest, "
            "(SELECT id FROM escalations e WHERE e.alarm_id = a.id AND e.ended_at IS NULL) "
            "AS open_id FROM alarms a JOIN gateways g ON g.num = a.gw "
            "WHERE a.cleared_at IS NULL OR a.id IN "
            "(SELECT alarm_id FROM escalations WHERE ended_at IS NULL)"
        )
        return [
            AlarmState(
                r["id"],
                r["site_id"],
                r["rule"],
                r["level"],
                r["cleared_at"] is not None,
                r["acknowledged_at"],
                r["acknowledged_by"],
                r["ack_note"],
                r["highest"] or 0,
                r["open_id"],
            )
            for r in rows
        ]

    def start_escalation(self, alarm: AlarmState, policy: LevelPolicy, now: float) -> Escalation:
        """Open an escalation at ``level`` with the policy as it is now (kept as it was)."""
        stored = json.dumps(policy.to_json())
        with self._sql.writing() as db:
            escalation_id = db.insert(
                "INSERT INTO escalations (alarm_id, site_id, rule, level, policy, started_at, "
                "step, step_since) VALUES (?, ?, ?, ?, ?, ?, 0, ?) RETURNING id",
                [alarm.alarm_id, alarm.site_id, alarm.rule, alarm.level, stored, now, now],
            )
            self._record(
                db,
                escalation_id,
                now,
                "started",
                policy.steps[0].tier.value,
                detail=f"level {alarm.level}",
            )
        return Escalation(
            escalation_id,
            alarm.alarm_id,
            alarm.site_id,
            alarm.rule,
            alarm.level,
            _stored_policy(stored),
            now,
            0,
            now,
            None,
            None,
        )

    def escalation(self, escalation_id: int) -> Escalation:
        """One escalation; raises NotFoundError."""
        rows = self._sql.rows("SELECT * FROM escalations WHERE id = ?", [escalation_id])
        if not rows:
            raise NotFoundError(f"no escalation with id {escalation_id}")
        return _escalation(rows[0])

    def escalations_by_id(self, ids: Iterable[int]) -> dict[int, Escalation]:
        """The escalations of these ids."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self._sql.rows(
            f"SELECT * FROM escalations WHERE id IN ({marks(len(wanted))})", wanted
        )
        return {r["id"]: _escalation(r) for r in rows}

    def escalations_of(self, alarm_id: int) -> list[Escalation]:
        """An alarm's escalations, oldest first."""
        rows = self._sql.rows(
            "SELECT * FROM escalations WHERE alarm_id = ? ORDER BY id", [alarm_id]
        )
        return [_escalation(r) for r in rows]

    def end_escalation(self, escalation_id: int, reason: str, now: float) -> None:
        """Stop calling, with the reason on the record (a second end is ignored)."""
        with self._sql.writing() as db:
            cursor = db.execute(
                "UPDATE escalations SET ended_at = ?, end_reason = ? "
                "WHERE id = ? AND ended_at IS NULL",
                [now, reason, escalation_id],
            )
            if cursor.rowcount:
                self._record(db, escalation_id, now, "ended", detail=reason)

    def advance(self, escalation_id: int, step: int, since: float, tier: Tier, why: str) -> None:
        """Move to the policy's ``step`` (the next tier), as of ``since``."""
        with self._sql.writing() as db:
            db.execute(
                "UPDATE escalations SET step = ?, step_since = ? WHERE id = ? AND ended_at IS NULL",
                [step, since, escalation_id],
            )
            self._record(db, escalation_id, since, "escalated", tier.value, detail=why)

    def note(self, escalation_id: int, now: float, kind: str, detail: str) -> None:
        """Put a free-text step on the record (e.g. nobody on the roster for a tier)."""
        with self._sql.writing() as db:
            self._record(db, escalation_id, now, kind, detail=detail)

    # --- calls ----------------------------------------------------------------------------

    def last_calls(self, escalation_id: int) -> dict[tuple[int, str], Call]:
        """The latest call to each (person, channel) in an escalation."""
        rows = self._sql.rows(
            "SELECT * FROM escalation_calls WHERE id IN (SELECT max(id) FROM escalation_calls "
            "WHERE escalation_id = ? GROUP BY person_id, channel)",
            [escalation_id],
        )
        return {(r["person_id"], r["channel"]): _call(r) for r in rows}

    def plan_calls(self, planned: Sequence[PlannedCall], now: float) -> list[Call]:
        """Store calls as ``planned`` (committed before anything is sent)."""
        if not planned:
            return []
        ids: list[int] = []
        with self._sql.writing() as db:
            for p in planned:
                call_id = db.insert(
                    "INSERT INTO escalation_calls (escalation_id, person_id, person, tier, "
                    "channel, planned_at, status) VALUES (?, ?, ?, ?, ?, ?, 'planned') "
                    "RETURNING id",
                    [
                        p.escalation_id,
                        p.person.id,
                        p.person.label,
                        p.person.tier.value,
                        p.channel,
                        now,
                    ],
                )
                ids.append(call_id)
        return self.calls_by_id(ids)

    def calls_by_id(self, ids: Sequence[int]) -> list[Call]:
        """Calls by id, in id order."""
        if not ids:
            return []
        rows = self._sql.rows(
            f"SELECT * FROM escalation_calls WHERE id IN ({marks(len(ids))}) ORDER BY id",
            list(ids),
        )
        return [_call(r) for r in rows]

    def unsent_calls(self) -> list[Call]:
        """Calls planned but not known to be sent (a fleet that stopped in between)."""
        rows = self._sql.rows(
            "SELECT c.* FROM escalation_calls c JOIN escalations e ON e.id = c.escalation_id "
            "WHERE c.status = 'planned' AND e.ended_at IS NULL ORDER BY c.id"
        )
        return [_call(r) for r in rows]

    def call_done(self, call: Call, sent: bool, detail: str, now: float) -> None:
        """Record a channel's answer to a send: ``sent`` or ``failed`` (retried later)."""
        self.calls_done([(call, sent, detail, now)])

    def calls_done(self, done: Sequence[tuple[Call, bool, str, float]]) -> None:
        """Record many channels' answers (call, sent, detail, at) in one transaction.

        A delivery report can come back before the send's answer is written: a call it
        already settled (delivered, or failed and so to be retried) keeps that status.
        """
        if not done:
            return
        with self._sql.writing() as db:
            for call, sent, detail, now in done:
                status = "sent" if sent else "failed"
                db.execute(
                    "UPDATE escalation_calls SET status = CASE WHEN status = 'planned' "
                    "THEN ? ELSE status END, sent_at = ?, detail = ? WHERE id = ?",
                    [status, now if sent else None, detail, call.id],
                )
                self._record(
                    db,
                    call.escalation_id,
                    now,
                    f"call_{status}",
                    call.tier.value,
                    call.person,
                    call.channel,
                    call.id,
                    detail,
                )

    def delivery_report(
        self, call_id: int, outcome: Literal["delivered", "failed"] | None, detail: str, now: float
    ) -> bool:
        """One delivery report (see ``delivery_reports``); False if the call is unknown."""
        return self.delivery_reports([DeliveryReport(call_id, outcome, detail, now)])[0]

    def delivery_reports(self, reports: Sequence[DeliveryReport]) -> list[bool]:
        """Delivery reports (e.g. Kannel's DLRs) in one transaction; per report, call known.

        ``failed`` (the network could not deliver it) marks the call failed, so the engine
        retries it like a send that failed; None (buffered, accepted) only goes on the
        record. A report the record already holds (a network that reports again) changes
        nothing, and no write is made for reports of unknown calls alone.
        """
        calls = {c.id: c for c in self.calls_by_id(sorted({r.call_id for r in reports}))}
        known = [r.call_id in calls for r in reports]
        if not any(known):
            return known
        with self._sql.writing() as db:
            for report in reports:
                call = calls.get(report.call_id)
                if (
                    call is None
                    or db.execute(
                        "SELECT 1 FROM escalation_record WHERE escalation_id = ? AND call_id = ? "
                        "AND kind = 'delivery' AND detail = ?",
                        [call.escalation_id, call.id, report.detail],
                    ).fetchone()
                ):
                    continue
                if report.outcome == "delivered":
                    db.execute(
                        "UPDATE escalation_calls SET status = 'delivered', delivered_at = ? "
                        "WHERE id = ? AND status IN ('sent', 'planned')",
                        [report.at, call.id],
                    )
                elif report.outcome == "failed":
                    db.execute(
                        "UPDATE escalation_calls SET status = 'failed' "
                        "WHERE id = ? AND status IN ('sent', 'planned')",
                        [call.id],
                    )
                self._record(
                    db,
                    call.escalation_id,
                    report.at,
                    "delivery",
                    call.tier.value,
                    call.person,
                    call.channel,
                    call.id,
                    report.detail,
                )
        return known

    # --- answers --------------------------------------------------------------------------

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
        with self._sql.writing() as db:
            if call_id is not None:
                used = db.execute(
                    "SELECT 1 FROM escalation_answers WHERE call_id = ?", [call_id]
                ).fetchone()
                if used:
                    return False
            db.execute(
                "INSERT INTO escalation_answers (escalation_id, person, tier, via, at, call_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [escalation_id, person, tier.value, via, now, call_id],
            )
            self._record(db, escalation_id, now, "answer", tier.value, person, via, call_id)
        return True

    def take_gateway_answers(self, escalation: Escalation) -> int:
        """Record the village answers gateways sent for this alarm at (or above) its level.

        Each is recorded once per escalation; returns how many were new.
        """
        new = (
            "SELECT person, via, at FROM gateway_answers g WHERE alarm_id = ? AND level >= ? "
            "AND NOT EXISTS (SELECT 1 FROM escalation_answers a WHERE a.escalation_id = ? "
            "AND a.person = g.person AND a.via = g.via AND a.at = g.at) ORDER BY id"
        )
        which = [escalation.alarm_id, escalation.level, escalation.id]
        # Looked at every round for every open escalation: take the write lock only for news.
        if self._sql.row(new, which) is None:
            return 0
        taken = 0
        with self._sql.writing() as db:
            for person, via, at in db.rows(new, which):
                db.execute(
                    "INSERT INTO escalation_answers (escalation_id, person, tier, via, at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [escalation.id, person, Tier.VILLAGE.value, via, at],
                )
                self._record(db, escalation.id, at, "answer", Tier.VILLAGE.value, person, via)
                taken += 1
        return taken

    def answers(self, escalation_id: int) -> list[tuple[str, Tier, str, float]]:
        """(person, tier, via, at) of each answer, oldest first."""
        rows = self._sql.rows(
            "SELECT person, tier, via, at FROM escalation_answers WHERE escalation_id = ? "
            "ORDER BY at, id",
            [escalation_id],
        )
        return [(r["person"], Tier(r["tier"]), r["via"], r["at"]) for r in rows]

    def recent_sms_escalations(self, person_id: int) -> list[int]:
        """Open escalations that texted this person, latest call first."""
        rows = self._sql.rows(
            "SELECT c.escalation_id FROM escalation_calls c JOIN escalations e "
            "ON e.id = c.escalation_id WHERE c.person_id = ? AND c.channel = 'sms' "
            "AND e.ended_at IS NULL GROUP BY c.escalation_id ORDER BY max(c.id) DESC",
            [person_id],
        )
        return [r["escalation_id"] for r in rows]

    # --- the record -----------------------------------------------------------------------

    def record(self, escalation_id: int) -> list[dict[str, Any]]:
        """Every step of an escalation in time order, as stored."""
        rows = self._sql.rows(
            "SELECT at, kind, tier, person, channel, call_id, detail FROM escalation_record "
            "WHERE escalation_id = ? ORDER BY at, id",
            [escalation_id],
        )
        return [dict(r) for r in rows]

    def calls(self, escalation_id: int) -> list[Call]:
        """An escalation's calls, in order."""
        rows = self._sql.rows(
            "SELECT * FROM escalation_calls WHERE escalation_id = ? ORDER BY id", [escalation_id]
        )
        return [_call(r) for r in rows]

    @staticmethod
    def _record(
        db: Transaction,
        escalation_id: int,
        at: float,
        kind: str,
        tier: str | None = None,
        person: str | None = None,
        channel: str | None = None,
        call_id: int | None = None,
        detail: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO escalation_record (escalation_id, at, kind, tier, person, channel, "
            "call_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [escalation_id, at, kind, tier, person, channel, call_id, detail],
        )


def _person(r: Row) -> Person:
    return Person(
        r["id"],
        r["site_id"],
        Tier(r["tier"]),
        r["name"],
        r["role"],
        r["mobile"],
        r["email"],
        r["webhook"],
    )


@functools.lru_cache(maxsize=256)
def _stored_policy(text: str) -> LevelPolicy:
    """A stored policy, parsed once per distinct text (a LevelPolicy is immutable).

    Every open escalation is read every round, and a thousand of them hold a handful of
    distinct policies.
    """
    return parse_level(json.loads(text), "stored policy")


def _escalation(r: Row) -> Escalation:
    return Escalation(
        r["id"],
        r["alarm_id"],
        r["site_id"],
        r["rule"],
        r["level"],
        _stored_policy(r["policy"]),
        r["started_at"],
        r["step"],
        r["step_since"],
        r["ended_at"],
        r["end_reason"],
    )


def _call(r: Row) -> Call:
    return Call(
        r["id"],
        r["escalation_id"],
        r["person_id"],
        r["person"],
        Tier(r["tier"]),
        r["channel"],
        r["planned_at"],
        r["sent_at"],
        r["status"],
    )
