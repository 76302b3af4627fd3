"""What changed in the fleet's store since the last look: level changes, health, 叫应 steps.

The console's live feed polls this; it works the same whether ingest runs in this
process or another (``fleet ingest`` beside ``fleet serve``), because it reads the store,
not the ingest's memory. Read only; a change is reported once per cursor, never lost
between two looks (the cursors are ids and times the store wrote).

It knows no database: it is handed a ``Read`` (a query with ``?`` placeholders and its
parameters, to rows as tuples) on one consistent snapshot of either backend
(``fleet.alarm_tables.AlarmTables.live_changes``, through the repository's statement
runner); both keep the same tables. It must never write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.events import ACK_EVENT_KIND, ALARM_EVENT_KIND, VILLAGE_ANSWER_EVENT_KIND
from protocol.levels import LEVEL_NAMES

#: Events that change what an alarm shows: a level, an acknowledgement, an answer.
LEVEL_EVENT_KINDS = (ALARM_EVENT_KIND, ACK_EVENT_KIND, VILLAGE_ANSWER_EVENT_KIND)
#: One query (``?`` placeholders) with its parameters, to its rows as tuples.
Read = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
#: A batch committed a little after another may carry an earlier receipt time: look back.
_RECEIPT_SLACK_S = 5.0


@dataclass
class LiveCursor:
    """Where the last look ended."""

    received_at: float = 0.0
    seen_events: set[tuple[int, int]] = field(default_factory=set)
    record_id: int = 0
    gateways: dict[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LiveChange:
    """One thing the console shows at once: ``kind`` is level, health or escalation."""

    kind: str
    data: dict[str, Any]


def start_cursor(db: Read) -> LiveCursor:
    """A cursor at the present: only what changes from now on is reported."""
    cursor = LiveCursor()
    (row,) = db("SELECT max(received_at), (SELECT max(id) FROM escalation_record) FROM events", [])
    received_at, record_id = row
    cursor.received_at = float(received_at or 0.0)
    cursor.record_id = int(record_id or 0)
    _levels(db, cursor)  # what the look-back would return is already known
    _health(db, cursor)  # remember every gateway as it is
    return cursor


def changes_since(db: Read, cursor: LiveCursor) -> list[LiveChange]:
    """Every change after ``cursor``, which is moved past them (``db``: one snapshot)."""
    return [*_levels(db, cursor), *_health(db, cursor), *_escalation(db, cursor)]


def _levels(db: Read, cursor: LiveCursor) -> list[LiveChange]:
    rows = db(
        "SELECT e.gw, e.seq, e.ts, e.subject, e.received_at, g.id, g.site_id, "
        "(SELECT a.id FROM alarms a WHERE a.gw = e.gw AND a.rule = e.subject "
        " ORDER BY a.id DESC LIMIT 1), "
        "(SELECT a.level FROM alarms a WHERE a.gw = e.gw AND a.rule = e.subject "
        " ORDER BY a.id DESC LIMIT 1) "
        "FROM events e JOIN gateways g ON g.num = e.gw "
        "WHERE e.kind IN (?, ?, ?) AND e.received_at > ? "
        "ORDER BY e.received_at, e.gw, e.seq",
        [*LEVEL_EVENT_KINDS, cursor.received_at - _RECEIPT_SLACK_S],
    )
    changes = []
    newest = cursor.received_at
    seen = set(cursor.seen_events)
    for gw, seq, ts, rule, received_at, gateway_id, site_id, alarm_id, stored_level in rows:
        newest = max(newest, received_at)
        if (gw, seq) in seen:
            continue
        seen.add((gw, seq))
        level = int(stored_level or 0)
        changes.append(
            LiveChange(
                "level",
                {
                    "alarm_id": alarm_id,
                    "gateway_id": gateway_id,
                    "site_id": site_id,
                    "rule": rule,
                    "level": level,
                    "level_name": LEVEL_NAMES[level],
                    "at": ts,
                },
            )
        )
    cursor.received_at = newest
    # keep only what the look-back can still return
    cursor.seen_events = seen & {(r[0], r[1]) for r in rows}
    return changes


def _health(db: Read, cursor: LiveCursor) -> list[LiveChange]:
    changes = []
    for gateway_id, site_id, state, state_at, health_at, last_seen in db(
        "SELECT id, site_id, state, state_at, health_at, last_seen FROM gateways", []
    ):
        key = (state, state_at, health_at)
        if cursor.gateways.get(gateway_id) == key:
            continue
        cursor.gateways[gateway_id] = key
        changes.append(
            LiveChange(
                "health",
                {
                    "gateway_id": gateway_id,
                    "site_id": site_id,
                    "state": state,
                    "last_seen": last_seen,
                    "health_at": health_at,
                },
            )
        )
    return changes


def _escalation(db: Read, cursor: LiveCursor) -> list[LiveChange]:
    rows = db(
        "SELECT r.id, e.alarm_id, e.site_id, r.kind, r.tier, r.person, r.channel, r.at "
        "FROM escalation_record r JOIN escalations e ON e.id = r.escalation_id "
        "WHERE r.id > ? ORDER BY r.id LIMIT 1000",
        [cursor.record_id],
    )
    changes = []
    for record_id, alarm_id, site_id, kind, tier, person, channel, at in rows:
        cursor.record_id = record_id
        changes.append(
            LiveChange(
                "escalation",
                {
                    "alarm_id": alarm_id,
                    "site_id": site_id,
                    "kind": kind,
                    "tier": tier,
                    "person": person,
                    "channel": channel,
                    "at": at,
                },
            )
        )
    return changes
