"""叫应 storage on PostgreSQL: the roster, per-site policies, and the record of escalations.

The PostgreSQL form of ``fleet.sqlite_escalation``, the same statements on the same
tables (``SCHEMA``), so both pass ``tests/test_escalation_store_contract.py``. A call is
written as ``planned`` (committed) before any channel sends it, which is what lets a
restarted fleet finish an escalation without losing a call. Contact details are stored
here and nowhere else: the record (``escalation_record``) names persons by label, never by
number or address.

This module must never send anything, and never commit a write of an open ``batch`` on
its own: the batch's transaction commits or rolls back whole.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg_pool import ConnectionPool

from fleet.escalation_policy import LevelPolicy
from fleet.escalation_store import AlarmState, Call, DeliveryReport, Escalation, PlannedCall
from fleet.repository import NotFoundError
from fleet.roster import Person, PersonIn, Tier
from fleet.sqlite_escalation import _call, _escalation, _person, _stored_policy

Row = dict[str, Any]
Conn = psycopg.Connection[Row]

SCHEMA = """
CREATE TABLE IF NOT EXISTS roster_persons (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    mobile TEXT,
    email TEXT,
    webhook TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS roster_by_site ON roster_persons (site_id, tier);
CREATE INDEX IF NOT EXISTS roster_by_mobile ON roster_persons (mobile);
CREATE TABLE IF NOT EXISTS escalation_policies (
    site_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id BIGINT NOT NULL REFERENCES alarms(id),
    site_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    level INTEGER NOT NULL,
    policy TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    step INTEGER NOT NULL,
    step_since DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS escalations_open ON escalations (ended_at, alarm_id);
CREATE TABLE IF NOT EXISTS escalation_calls (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id BIGINT NOT NULL REFERENCES escalations(id),
    person_id BIGINT NOT NULL,
    person TEXT NOT NULL,
    tier TEXT NOT NULL,
    channel TEXT NOT NULL,
    planned_at DOUBLE PRECISION NOT NULL,
    sent_at DOUBLE PRECISION,
    status TEXT NOT NULL,
    detail TEXT,
    delivered_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS calls_by_escalation ON escalation_calls (escalation_id, person_id);
CREATE INDEX IF NOT EXISTS calls_planned ON escalation_calls (status);
CREATE TABLE IF NOT EXISTS escalation_record (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id BIGINT NOT NULL REFERENCES escalations(id),
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    tier TEXT,
    person TEXT,
    channel TEXT,
    call_id BIGINT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS record_by_escalation ON escalation_record (escalation_id, at);
CREATE TABLE IF NOT EXISTS escalation_answers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    escalation_id BIGINT NOT NULL REFERENCES escalations(id),
    person TEXT NOT NULL,
    tier TEXT NOT NULL,
    via TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    call_id BIGINT UNIQUE
);
"""

#: Advisory lock key of this schema's creation (several processes may start at once).
_SCHEMA_LOCK = 0x4857_0002


@dataclass(slots=True)
class _Batch:
    """The one transaction a thread's writes share inside ``PostgresEscalation.batch``."""

    stack: ExitStack
    conn: Conn | None = None


class PostgresEscalation:
    """``EscalationStore`` on the fleet's PostgreSQL database (the repository's pool)."""

    def __init__(self, pool: ConnectionPool[Conn]) -> None:
        self._pool = pool
        self._batches = threading.local()
        with pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            conn.execute(SCHEMA.encode())

    def _read_all(self, query: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of one query; inside a batch, on its transaction (its writes seen)."""
        batch: _Batch | None = getattr(self._batches, "open", None)
        if batch is not None and batch.conn is not None:
            return batch.conn.execute(query.encode(), params).fetchall()
        with self._pool.connection() as conn:
            return conn.execute(query.encode(), params).fetchall()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make the writes of this thread inside the block one transaction: one commit.

        The transaction begins at the first write, so a block that writes nothing holds no
        connection. Each write stays all-or-nothing on its own (a savepoint); an error
        escaping the block rolls back every write in it.
        """
        if getattr(self._batches, "open", None) is not None:
            yield
            return
        with ExitStack() as stack:
            self._batches.open = _Batch(stack)
            try:
                yield
            finally:
                self._batches.open = None

    @contextmanager
    def _writing(self) -> Iterator[Conn]:
        """A write transaction of its own, or a savepoint in this thread's open batch."""
        batch: _Batch | None = getattr(self._batches, "open", None)
        if batch is None:
            with self._pool.connection() as conn, conn.transaction():
                yield conn
            return
        if batch.conn is None:
            conn = batch.stack.enter_context(self._pool.connection())
            batch.stack.enter_context(conn.transaction())
            batch.conn = conn
        with batch.conn.transaction():  # a savepoint
            yield batch.conn

    # --- roster ---------------------------------------------------------------------------

    def replace_roster(self, site_id: str, persons: Sequence[PersonIn], now: float) -> None:
        """Make ``persons`` the whole roster of ``site_id`` (one transaction)."""
        with self._writing() as db:
            db.execute("DELETE FROM roster_persons WHERE site_id = %s", [site_id])
            for p in persons:
                self._insert_person(db, site_id, p, now)

    def add_person(self, site_id: str, person: PersonIn, now: float) -> Person:
        """Add one person to a site's roster."""
        with self._writing() as db:
            person_id = self._insert_person(db, site_id, person, now)
        return self.person(person_id)

    @staticmethod
    def _insert_person(db: Conn, site_id: str, p: PersonIn, now: float) -> int:
        cursor = db.execute(
            "INSERT INTO roster_persons (site_id, tier, name, role, mobile, email, webhook, "
            "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            [site_id, p.tier.value, p.name, p.role, p.mobile, p.email, p.webhook, now],
        )
        return _new_id(cursor)

    def delete_person(self, site_id: str, person_id: int) -> None:
        """Remove a person; raises NotFoundError."""
        with self._writing() as db:
            cursor = db.execute(
                "DELETE FROM roster_persons WHERE id = %s AND site_id = %s", [person_id, site_id]
            )
        if cursor.rowcount == 0:
            raise NotFoundError(f"site {site_id!r} has no person with id {person_id}")

    def persons_by_id(self, ids: Iterable[int]) -> dict[int, Person]:
        """The persons of these ids that are still on a roster."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self._read_all(
            f"SELECT * FROM roster_persons WHERE id IN ({','.join(['%s'] * len(wanted))})", wanted
        )
        return {r["id"]: _person(r) for r in rows}

    def person(self, person_id: int) -> Person:
        """One person; raises NotFoundError."""
        rows = self._read_all("SELECT * FROM roster_persons WHERE id = %s", [person_id])
        if not rows:
            raise NotFoundError(f"no person with id {person_id}")
        return _person(rows[0])

    def site_known(self, site_id: str) -> bool:
        """Whether the fleet knows the site: a gateway, an enrollment token or a roster there."""
        rows = self._read_all(
            "SELECT 1 FROM gateways WHERE site_id = %s UNION ALL "
            "SELECT 1 FROM enrollment_tokens WHERE site_id = %s UNION ALL "
            "SELECT 1 FROM roster_persons WHERE site_id = %s LIMIT 1",
            [site_id, site_id, site_id],
        )
        return bool(rows)

    def roster(self, site_id: str) -> list[Person]:
        """A site's persons, by tier then name."""
        rows = self._read_all(
            "SELECT * FROM roster_persons WHERE site_id = %s ORDER BY "
            "CASE tier WHEN 'village' THEN 0 WHEN 'township' THEN 1 ELSE 2 END, name, id",
            [site_id],
        )
        return [_person(r) for r in rows]

    def persons_with_mobile(self, mobile: str) -> list[Person]:
        """Every person reached at ``mobile`` (E.164)."""
        rows = self._read_all("SELECT * FROM roster_persons WHERE mobile = %s", [mobile])
        return [_person(r) for r in rows]

    # --- policies -------------------------------------------------------------------------

    def site_policy(self, site_id: str) -> dict[str, Any] | None:
        """The site's own policy document, or None (the fleet default applies)."""
        rows = self._read_all(
            "SELECT policy FROM escalation_policies WHERE site_id = %s", [site_id]
        )
        return json.loads(rows[0]["policy"]) if rows else None

    def set_site_policy(self, site_id: str, policy: dict[str, Any], by: str, now: float) -> None:
        """Store a (validated) policy document for a site."""
        with self._writing() as db:
            db.execute(
                "INSERT INTO escalation_policies (site_id, policy, set_by, set_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (site_id) DO UPDATE SET "
                "policy = excluded.policy, set_by = excluded.set_by, set_at = excluded.set_at",
                [site_id, json.dumps(policy), by, now],
            )

    def delete_site_policy(self, site_id: str) -> bool:
        """Return the site to the fleet default; False if it had none of its own."""
        with self._writing() as db:
            cursor = db.execute("DELETE FROM escalation_policies WHERE site_id = %s", [site_id])
        return cursor.rowcount > 0

    # --- the engine's view ----------------------------------------------------------------

    def alarm_states(self) -> list[AlarmState]:
        """Active alarms, and alarms whose escalation is still open (whatever their state)."""
        rows = self._read_all(
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
        with self._writing() as db:
            cursor = db.execute(
                "INSERT INTO escalations (alarm_id, site_id, rule, level, policy, started_at, "
                "step, step_since) VALUES (%s, %s, %s, %s, %s, %s, 0, %s) RETURNING id",
                [alarm.alarm_id, alarm.site_id, alarm.rule, alarm.level, stored, now, now],
            )
            escalation_id = _new_id(cursor)
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
        rows = self._read_all("SELECT * FROM escalations WHERE id = %s", [escalation_id])
        if not rows:
            raise NotFoundError(f"no escalation with id {escalation_id}")
        return _escalation(rows[0])

    def escalations_by_id(self, ids: Iterable[int]) -> dict[int, Escalation]:
        """The escalations of these ids."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = self._read_all(
            f"SELECT * FROM escalations WHERE id IN ({','.join(['%s'] * len(wanted))})", wanted
        )
        return {r["id"]: _escalation(r) for r in rows}

    def escalations_of(self, alarm_id: int) -> list[Escalation]:
        """An alarm's escalations, oldest first."""
        rows = self._read_all(
            "SELECT * FROM escalations WHERE alarm_id = %s ORDER BY id", [alarm_id]
        )
        return [_escalation(r) for r in rows]

    def end_escalation(self, escalation_id: int, reason: str, now: float) -> None:
        """Stop calling, with the reason on the record (a second end is ignored)."""
        with self._writing() as db:
            cursor = db.execute(
                "UPDATE escalations SET ended_at = %s, end_reason = %s "
                "WHERE id = %s AND ended_at IS NULL",
                [now, reason, escalation_id],
            )
            if cursor.rowcount:
                self._record(db, escalation_id, now, "ended", detail=reason)

    def advance(self, escalation_id: int, step: int, since: float, tier: Tier, why: str) -> None:
        """Move to the policy's ``step`` (the next tier), as of ``since``."""
        with self._writing() as db:
            db.execute(
                "UPDATE escalations SET step = %s, step_since = %s "
                "WHERE id = %s AND ended_at IS NULL",
                [step, since, escalation_id],
            )
            self._record(db, escalation_id, since, "escalated", tier.value, detail=why)

    def note(self, escalation_id: int, now: float, kind: str, detail: str) -> None:
        """Put a free-text step on the record (e.g. nobody on the roster for a tier)."""
        with self._writing() as db:
            self._record(db, escalation_id, now, kind, detail=detail)

    # --- calls ----------------------------------------------------------------------------

    def last_calls(self, escalation_id: int) -> dict[tuple[int, str], Call]:
        """The latest call to each (person, channel) in an escalation."""
        rows = self._read_all(
            "SELECT * FROM escalation_calls WHERE id IN (SELECT max(id) FROM escalation_calls "
            "WHERE escalation_id = %s GROUP BY person_id, channel)",
            [escalation_id],
        )
        return {(r["person_id"], r["channel"]): _call(r) for r in rows}

    def plan_calls(self, planned: Sequence[PlannedCall], now: float) -> list[Call]:
        """Store calls as ``planned`` (committed before anything is sent)."""
        if not planned:
            return []
        ids: list[int] = []
        with self._writing() as db:
            for p in planned:
                cursor = db.execute(
                    "INSERT INTO escalation_calls (escalation_id, person_id, person, tier, "
                    "channel, planned_at, status) VALUES (%s, %s, %s, %s, %s, %s, 'planned') "
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
                ids.append(_new_id(cursor))
        return self.calls_by_id(ids)

    def calls_by_id(self, ids: Sequence[int]) -> list[Call]:
        """Calls by id, in id order."""
        if not ids:
            return []
        rows = self._read_all(
            f"SELECT * FROM escalation_calls WHERE id IN ({','.join(['%s'] * len(ids))}) "
            "ORDER BY id",
            list(ids),
        )
        return [_call(r) for r in rows]

    def unsent_calls(self) -> list[Call]:
        """Calls planned but not known to be sent (a fleet that stopped in between)."""
        rows = self._read_all(
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
        with self._writing() as db:
            for call, sent, detail, now in done:
                status = "sent" if sent else "failed"
                db.execute(
                    "UPDATE escalation_calls SET status = CASE WHEN status = 'planned' "
                    "THEN %s ELSE status END, sent_at = %s, detail = %s WHERE id = %s",
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
        with self._writing() as db:
            for report in reports:
                call = calls.get(report.call_id)
                if (
                    call is None
                    or db.execute(
                        "SELECT 1 FROM escalation_record WHERE escalation_id = %s AND call_id = %s "
                        "AND kind = 'delivery' AND detail = %s",
                        [call.escalation_id, call.id, report.detail],
                    ).fetchone()
                ):
                    continue
                if report.outcome == "delivered":
                    db.execute(
                        "UPDATE escalation_calls SET status = 'delivered', delivered_at = %s "
                        "WHERE id = %s AND status IN ('sent', 'planned')",
                        [report.at, call.id],
                    )
                elif report.outcome == "failed":
                    db.execute(
                        "UPDATE escalation_calls SET status = 'failed' "
                        "WHERE id = %s AND status IN ('sent', 'planned')",
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
        with self._writing() as db:
            if call_id is not None:
                used = db.execute(
                    "SELECT 1 FROM escalation_answers WHERE call_id = %s", [call_id]
                ).fetchone()
                if used:
                    return False
            db.execute(
                "INSERT INTO escalation_answers (escalation_id, person, tier, via, at, call_id) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [escalation_id, person, tier.value, via, now, call_id],
            )
            self._record(db, escalation_id, now, "answer", tier.value, person, via, call_id)
        return True

    def take_gateway_answers(self, escalation: Escalation) -> int:
        """Record the village answers gateways sent for this alarm at (or above) its level.

        Each is recorded once per escalation; returns how many were new.
        """
        new = (
            "SELECT person, via, at FROM gateway_answers g WHERE alarm_id = %s AND level >= %s "
            "AND NOT EXISTS (SELECT 1 FROM escalation_answers a WHERE a.escalation_id = %s "
            "AND a.person = g.person AND a.via = g.via AND a.at = g.at) ORDER BY id"
        )
        which = [escalation.alarm_id, escalation.level, escalation.id]
        # Looked at every round for every open escalation: take the write lock only for news.
        if not self._read_all(new, which):
            return 0
        taken = 0
        with self._writing() as db:
            rows = db.execute(new, which).fetchall()
            for row in rows:
                person, via, at = row["person"], row["via"], row["at"]
                db.execute(
                    "INSERT INTO escalation_answers (escalation_id, person, tier, via, at) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    [escalation.id, person, Tier.VILLAGE.value, via, at],
                )
                self._record(db, escalation.id, at, "answer", Tier.VILLAGE.value, person, via)
                taken += 1
        return taken

    def answers(self, escalation_id: int) -> list[tuple[str, Tier, str, float]]:
        """(person, tier, via, at) of each answer, oldest first."""
        rows = self._read_all(
            "SELECT person, tier, via, at FROM escalation_answers WHERE escalation_id = %s "
            "ORDER BY at, id",
            [escalation_id],
        )
        return [(r["person"], Tier(r["tier"]), r["via"], r["at"]) for r in rows]

    def recent_sms_escalations(self, person_id: int) -> list[int]:
        """Open escalations that texted this person, latest call first."""
        rows = self._read_all(
            "SELECT c.escalation_id FROM escalation_calls c JOIN escalations e "
            "ON e.id = c.escalation_id WHERE c.person_id = %s AND c.channel = 'sms' "
            "AND e.ended_at IS NULL GROUP BY c.escalation_id ORDER BY max(c.id) DESC",
            [person_id],
        )
        return [r["escalation_id"] for r in rows]

    # --- the record -----------------------------------------------------------------------

    def record(self, escalation_id: int) -> list[dict[str, Any]]:
        """Every step of an escalation in time order, as stored."""
        rows = self._read_all(
            "SELECT at, kind, tier, person, channel, call_id, detail FROM escalation_record "
            "WHERE escalation_id = %s ORDER BY at, id",
            [escalation_id],
        )
        return [dict(r) for r in rows]

    def calls(self, escalation_id: int) -> list[Call]:
        """An escalation's calls, in order."""
        rows = self._read_all(
            "SELECT * FROM escalation_calls WHERE escalation_id = %s ORDER BY id", [escalation_id]
        )
        return [_call(r) for r in rows]

    @staticmethod
    def _record(
        db: Conn,
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
            "call_id, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [escalation_id, at, kind, tier, person, channel, call_id, detail],
        )


def _new_id(cursor: psycopg.Cursor[Row]) -> int:
    """The id an ``INSERT … RETURNING id`` made."""
    row = cursor.fetchone()
    assert row is not None
    return int(row["id"])
