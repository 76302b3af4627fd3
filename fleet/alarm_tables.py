"""Alarms and events written once: the reads and the two operator writes both backends share.

``AlarmTables`` is the part of ``SQLiteRepository`` and ``PostgresRepository`` that reads
stored events and alarm episodes (with their receipts), records an acknowledgement or
a confirmed receipt, and hands the console's live feed (``fleet.live_changes``) one
snapshot per look; its statements run through the repository's
``fleet.statements.Statements``. Episodes themselves are written by the ingest commit of
each backend (``fleet.sqlite_ingest``, ``fleet.postgres_ingest``), not here.

This module must never know a database driver, and never acknowledge an alarm twice: a
second acknowledgement is a ConflictError naming the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleet import store_rows
from fleet.live_changes import LiveChange, LiveCursor, changes_since, start_cursor
from fleet.repository import Alarm, ConflictError, NotFoundError, StoredEvent
from fleet.statements import Statements, marks
from fleet.timestamps import iso


class AlarmTables:
    """Events and alarm episodes of the repository's database (``AlarmStore``'s reads)."""

    _sql: Statements

    def live_cursor(self) -> LiveCursor:
        """A cursor at the present for ``live_changes``."""
        with self._sql.snapshot() as db:
            return start_cursor(db.tuples)

    def live_changes(self, cursor: LiveCursor) -> list[LiveChange]:
        """Level changes, health and 叫应 steps stored after ``cursor`` (moved past them)."""
        with self._sql.snapshot() as db:
            return changes_since(db.tuples, cursor)

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
        if not gateway_ids or (kinds is not None and not kinds):
            return []
        clauses = [f"g.id IN ({marks(len(gateway_ids))})"]
        params: list[Any] = list(gateway_ids)
        if kinds is not None:
            clauses.append(f"e.kind IN ({marks(len(kinds))})")
            params.extend(kinds)
        if subject is not None:
            clauses.append("e.subject = ?")
            params.append(subject)
        if since is not None:
            clauses.append("e.ts >= ?")
            params.append(since)
        if until is not None:
            clauses.append("e.ts < ?")
            params.append(until)
        params.append(limit)
        rows = self._sql.rows(
            "SELECT g.id, e.seq, e.ts, e.kind, e.subject, e.level, e.detail FROM events e "
            f"JOIN gateways g ON g.num = e.gw WHERE {' AND '.join(clauses)} "
            "ORDER BY e.ts DESC, e.seq DESC LIMIT ?",
            params,
        )
        return [
            StoredEvent(gateway_id, seq, ts, kind, subject, level, store_rows.json_object(detail))
            for gateway_id, seq, ts, kind, subject, level, detail in rows
        ]

    def alarms(
        self,
        *,
        active: bool | None,
        gateway_ids: Sequence[str] | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[Alarm]:
        """Alarms, newest first, in one query; ``active`` True for those not back to normal."""
        clauses: list[str] = []
        params: list[Any] = []
        if active is not None:
            clauses.append("a.cleared_at IS NULL" if active else "a.cleared_at IS NOT NULL")
        if gateway_ids is not None:
            if not gateway_ids:
                return []
            clauses.append(f"g.id IN ({marks(len(gateway_ids))})")
            params.extend(gateway_ids)
        if since is not None:
            clauses.append("coalesce(a.cleared_at, 1e300) >= ?")
            params.append(since)
        if until is not None:
            clauses.append("a.raised_at < ?")
            params.append(until)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit)
        return self._alarms(f"{where} ORDER BY a.raised_at DESC, a.id DESC LIMIT ?", params)

    def _alarms(self, tail: str, params: Sequence[Any]) -> list[Alarm]:
        with self._sql.snapshot() as db:
            rows = db.rows(
                "SELECT a.*, g.id AS gateway_id FROM alarms a "
                f"JOIN gateways g ON g.num = a.gw {tail}",
                list(params),
            )
            receipts = db.grouped(
                "SELECT * FROM alarm_receipts WHERE alarm_id IN ({keys}) ORDER BY confirmed_at, id",
                [r["id"] for r in rows],
                "alarm_id",
            )
        return [
            store_rows.alarm(r, [store_rows.receipt(c) for c in receipts.get(r["id"], ())])
            for r in rows
        ]

    def get_alarm(self, alarm_id: int) -> Alarm:
        """One alarm with its receipts; raises NotFoundError."""
        found = self._alarms("WHERE a.id = ?", [alarm_id])
        if not found:
            raise NotFoundError(f"no alarm with id {alarm_id}")
        return found[0]

    def acknowledge_alarm(self, alarm_id: int, by: str, note: str | None, now: float) -> Alarm:
        """Record who acknowledged an alarm; raises NotFoundError or ConflictError."""
        with self._sql.writing() as db:
            taken = db.row(
                "UPDATE alarms SET acknowledged_at = ?, acknowledged_by = ?, ack_note = ?, "
                "ack_origin = 'fleet' WHERE id = ? AND acknowledged_at IS NULL RETURNING id",
                [now, by, note, alarm_id],
            )
        alarm = self.get_alarm(alarm_id)
        if taken is None:
            assert alarm.acknowledged_at is not None
            msg = (
                f"alarm {alarm_id} was already acknowledged by {alarm.acknowledged_by} "
                f"at {iso(alarm.acknowledged_at)}"
            )
            raise ConflictError(msg)
        return alarm

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
        self.get_alarm(alarm_id)
        with self._sql.writing() as db:
            db.execute(
                "INSERT INTO alarm_receipts (alarm_id, person, via, note, confirmed_at, "
                "recorded_by) VALUES (?, ?, ?, ?, ?, ?)",
                [alarm_id, person, via, note, now, recorded_by],
            )
        return self.get_alarm(alarm_id)
