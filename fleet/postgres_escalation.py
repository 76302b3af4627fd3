"""叫应 storage on PostgreSQL: the tables of the roster, policies and escalation record.

The store itself is ``fleet.escalation_tables`` (written once for both backends, so both pass
``tests/test_escalation_store_contract.py``); this module holds PostgreSQL's ``SCHEMA`` and
opens the store on the repository's pool. Contact details are stored here and nowhere else.

This module must never hold a statement of the store: those are written once, in
``fleet.escalation_tables``.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

from fleet.escalation_tables import EscalationTables
from fleet.postgres_statements import PostgresStatements

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


class PostgresEscalation(EscalationTables):
    """``EscalationStore`` on the fleet's PostgreSQL database (the repository's pool)."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        statements = PostgresStatements(pool)
        statements.create_schema(SCHEMA, _SCHEMA_LOCK)
        super().__init__(statements)
