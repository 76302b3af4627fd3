"""叫应 storage on SQLite: the tables of the roster, policies and escalation record.

The store itself is ``fleet.escalation_tables`` (written once for both backends); this module
holds SQLite's ``SCHEMA`` and opens the store on the repository's file, its per-thread
connection and its write lock. Contact details are stored here and nowhere else.

This module must never hold a statement of the store: those are written once, in
``fleet.escalation_tables``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from fleet.escalation_tables import EscalationTables
from fleet.sqlite_statements import SQLiteStatements

SCHEMA = """
CREATE TABLE IF NOT EXISTS roster_persons (
    id INTEGER PRIMARY KEY,
    site_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    mobile TEXT,
    email TEXT,
    webhook TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS roster_by_site ON roster_persons (site_id, tier);
CREATE INDEX IF NOT EXISTS roster_by_mobile ON roster_persons (mobile);
CREATE TABLE IF NOT EXISTS escalation_policies (
    site_id TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS escalations (
    id INTEGER PRIMARY KEY,
    alarm_id INTEGER NOT NULL REFERENCES alarms(id),
    site_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    level INTEGER NOT NULL,
    policy TEXT NOT NULL,
    started_at REAL NOT NULL,
    step INTEGER NOT NULL,
    step_since REAL NOT NULL,
    ended_at REAL,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS escalations_open ON escalations (ended_at, alarm_id);
CREATE TABLE IF NOT EXISTS escalation_calls (
    id INTEGER PRIMARY KEY,
    escalation_id INTEGER NOT NULL REFERENCES escalations(id),
    person_id INTEGER NOT NULL,
    person TEXT NOT NULL,
    tier TEXT NOT NULL,
    channel TEXT NOT NULL,
    planned_at REAL NOT NULL,
    sent_at REAL,
    status TEXT NOT NULL,
    detail TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS calls_by_escalation ON escalation_calls (escalation_id, person_id);
CREATE INDEX IF NOT EXISTS calls_planned ON escalation_calls (status);
CREATE TABLE IF NOT EXISTS escalation_record (
    id INTEGER PRIMARY KEY,
    escalation_id INTEGER NOT NULL REFERENCES escalations(id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    tier TEXT,
    person TEXT,
    channel TEXT,
    call_id INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS record_by_escalation ON escalation_record (escalation_id, at);
CREATE TABLE IF NOT EXISTS escalation_answers (
    id INTEGER PRIMARY KEY,
    escalation_id INTEGER NOT NULL REFERENCES escalations(id),
    person TEXT NOT NULL,
    tier TEXT NOT NULL,
    via TEXT NOT NULL,
    at REAL NOT NULL,
    call_id INTEGER UNIQUE
);
"""


class SQLiteEscalation(EscalationTables):
    """``EscalationStore`` on the repository's SQLite file."""

    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        db().executescript(SCHEMA)
        super().__init__(SQLiteStatements(db, write))
