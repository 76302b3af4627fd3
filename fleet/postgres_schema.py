"""The PostgreSQL schema of the fleet's core stores, and the readings' time partitions.

Readings are partitioned by time (declarative range partitioning on ``ts``, seconds since
the epoch), one partition per UTC day, made on demand before a batch that needs it is
written; retention drops whole partitions. A day is given a partition only once it starts
within ``PARTITION_AHEAD_S`` of the fleet's clock: a reading stamped further ahead (a
gateway whose clock runs days or years fast) goes to the default partition,
``readings_default``, and moves to its day's partition when that day is made, so a wrong
clock can never make partitions, one a day or thousands a batch, that retention would
not reach for decades. Late readings of a day that retention dropped go there too, and
the next retention run deletes them with the other rows older than its cut-off.

``readings_minute`` and ``readings_hour`` hold each channel's good-reading count, sum, min
and max (and the bad-reading count) per minute and per hour, kept current in the
transaction that stores the rows, so a chart over 30 days reads rollups instead of raw
rows. An hour has one row; a minute has one row per commit that stored readings of it
(each commit copies its own sums, with no lookup), so a reader of ``readings_minute``
adds a minute's rows up. A minute table made with a primary key by an earlier release
loses it when the schema is next created.

A partitioned table cannot have a unique key without the partition key, so (gateway, seq)
is made unique by the ingest rule (``stream_marks`` and ``stream_ranges``, see
``fleet.postgres_ingest``), and the key ``(gw, seq, ts)`` is the safety net in each day.

This module must never drop a partition that still holds a reading younger than the
retention cut-off, never create a partition for a non-finite time or for a day further
ahead of the fleet's clock than ``PARTITION_AHEAD_S``, and never lose a reading moved out
of ``readings_default``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from fleet.repository import ACK_ORIGIN_FROM_WORDS

DAY_S = 86400
#: A day gets its partition once it starts no later than this after the fleet's clock;
#: readings stamped later wait in ``readings_default`` (the default partition).
PARTITION_AHEAD_S = 7 * DAY_S
#: The default partition: readings of days that have no partition of their own.
DEFAULT_PARTITION = "readings_default"
_DAY_PARTITION = re.compile(r"readings_(\d{8})")

#: Advisory lock key (first half) of schema changes: creating or dropping partitions.
SCHEMA_LOCK = 0x4857_0001

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
    num BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    site_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    mqtt_password_hash TEXT NOT NULL,
    hostname TEXT,
    agent_version TEXT,
    enrolled_at DOUBLE PRECISION NOT NULL,
    state TEXT,
    state_at DOUBLE PRECISION,
    last_seen DOUBLE PRECISION,
    health TEXT,
    health_at DOUBLE PRECISION,
    site_summary TEXT
);
CREATE INDEX IF NOT EXISTS gateways_by_site ON gateways (site_id);
CREATE TABLE IF NOT EXISTS stream_marks (
    gw BIGINT NOT NULL,
    stream TEXT NOT NULL,
    contiguous BIGINT NOT NULL,
    PRIMARY KEY (gw, stream)
);
CREATE TABLE IF NOT EXISTS stream_ranges (
    gw BIGINT NOT NULL,
    stream TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (gw, stream, first_seq)
);
CREATE TABLE IF NOT EXISTS channels (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gw BIGINT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (gw, name)
);
CREATE TABLE IF NOT EXISTS readings (
    gw BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
        CHECK (ts > '-Infinity' AND ts < 'Infinity' AND ts <> 'NaN'),
    channel BIGINT NOT NULL,
    value DOUBLE PRECISION,
    quality INTEGER NOT NULL,
    PRIMARY KEY (gw, seq, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE IF NOT EXISTS readings_default PARTITION OF readings DEFAULT;
CREATE INDEX IF NOT EXISTS readings_by_channel ON readings (channel, ts);
CREATE TABLE IF NOT EXISTS readings_minute (
    channel BIGINT NOT NULL,
    start DOUBLE PRECISION NOT NULL,
    good BIGINT NOT NULL,
    bad BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION,
    high DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS readings_minute_by_channel ON readings_minute (channel, start);
CREATE TABLE IF NOT EXISTS readings_hour (
    channel BIGINT NOT NULL,
    start DOUBLE PRECISION NOT NULL,
    good BIGINT NOT NULL,
    bad BIGINT NOT NULL,
    total DOUBLE PRECISION NOT NULL,
    low DOUBLE PRECISION,
    high DOUBLE PRECISION,
    PRIMARY KEY (channel, start)
);
CREATE TABLE IF NOT EXISTS events (
    gw BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL
        CHECK (ts > '-Infinity' AND ts < 'Infinity' AND ts <> 'NaN'),
    kind TEXT NOT NULL,
    subject TEXT,
    level INTEGER,
    detail TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (gw, seq)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (gw, ts);
CREATE TABLE IF NOT EXISTS alarms (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gw BIGINT NOT NULL,
    rule TEXT NOT NULL,
    level INTEGER NOT NULL,
    peak_level INTEGER NOT NULL,
    raised_at DOUBLE PRECISION NOT NULL,
    cleared_at DOUBLE PRECISION,
    last_seq BIGINT NOT NULL,
    detail TEXT,
    acknowledged_at DOUBLE PRECISION,
    acknowledged_by TEXT,
    ack_note TEXT,
    -- where the acknowledgement was taken (fleet.repository.AckOrigin); NULL: not yet
    ack_origin TEXT CHECK (ack_origin IN ('gateway', 'fleet'))
);
CREATE INDEX IF NOT EXISTS alarms_by_rule ON alarms (gw, rule, cleared_at);
CREATE INDEX IF NOT EXISTS alarms_active ON alarms (id, level, last_seq)
    WHERE cleared_at IS NULL;
CREATE TABLE IF NOT EXISTS alarm_receipts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id BIGINT NOT NULL REFERENCES alarms(id),
    person TEXT NOT NULL,
    via TEXT,
    note TEXT,
    confirmed_at DOUBLE PRECISION NOT NULL,
    recorded_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_by_alarm ON alarm_receipts (alarm_id);
CREATE TABLE IF NOT EXISTS gateway_answers (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id BIGINT NOT NULL REFERENCES alarms(id),
    level INTEGER NOT NULL,
    person TEXT NOT NULL,
    via TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_answers_by_alarm ON gateway_answers (alarm_id);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    site_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    created_by TEXT,
    note TEXT,
    used_at DOUBLE PRECISION,
    gateway_id TEXT,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL,
    revoked_at DOUBLE PRECISION,
    expires_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    gw BIGINT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    issued_at DOUBLE PRECISION NOT NULL,
    issued_by TEXT,
    status TEXT NOT NULL,
    sent_at DOUBLE PRECISION,
    result_at DOUBLE PRECISION,
    result_detail TEXT
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (status, issued_at);
CREATE TABLE IF NOT EXISTS ota_documents (
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    gateways TEXT NOT NULL,
    issued_at DOUBLE PRECISION NOT NULL,
    document BYTEA NOT NULL,
    PRIMARY KEY (kind, version)
);
CREATE TABLE IF NOT EXISTS ota_outbox (
    gw BIGINT NOT NULL,
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    status TEXT NOT NULL,
    queued_at DOUBLE PRECISION NOT NULL,
    claimed_at DOUBLE PRECISION,
    published_at DOUBLE PRECISION,
    PRIMARY KEY (gw, kind)
);
CREATE INDEX IF NOT EXISTS ota_outbox_waiting ON ota_outbox (status, claimed_at);
CREATE TABLE IF NOT EXISTS config_deliveries (
    gw BIGINT NOT NULL,
    version BIGINT NOT NULL,
    config_id BIGINT NOT NULL,
    rollout_id BIGINT,
    state TEXT NOT NULL,
    reason TEXT,
    issued_at DOUBLE PRECISION NOT NULL,
    published_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (gw, version)
);
CREATE OR REPLACE FUNCTION hazardwatch_alarm_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('hazardwatch_alarms', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER alarms_changed
    AFTER INSERT OR UPDATE OF level, last_seq, cleared_at ON alarms
    FOR EACH STATEMENT EXECUTE FUNCTION hazardwatch_alarm_changed();
CREATE OR REPLACE TRIGGER gateway_answers_changed
    AFTER INSERT ON gateway_answers
    FOR EACH STATEMENT EXECUTE FUNCTION hazardwatch_alarm_changed();
"""


def create_schema(conn: psycopg.Connection[Any]) -> None:
    """Create every table that is missing (one transaction, under the schema lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(SCHEMA.encode())
        _migrate_ack_origin(conn)
        _migrate_minute_key(conn)


def _migrate_ack_origin(conn: psycopg.Connection[Any]) -> None:
    """Give an older ``alarms`` its ``ack_origin``, derived once from the words of its rows."""
    found = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'alarms' AND column_name = 'ack_origin'"
    ).fetchone()
    if found is not None:
        return
    conn.execute(
        "ALTER TABLE alarms ADD COLUMN ack_origin TEXT CHECK (ack_origin IN ('gateway', 'fleet'))"
    )
    conn.execute(ACK_ORIGIN_FROM_WORDS.encode())


def _migrate_minute_key(conn: psycopg.Connection[Any]) -> None:
    """Drop an older ``readings_minute``'s primary key: a minute now has a row per commit."""
    found = conn.execute(
        "SELECT 1 FROM pg_constraint WHERE conname = 'readings_minute_pkey' "
        "AND conrelid = 'readings_minute'::regclass"
    ).fetchone()
    if found is not None:
        conn.execute("ALTER TABLE readings_minute DROP CONSTRAINT readings_minute_pkey")


def day_of(ts: float) -> int:
    """The start of the UTC day holding ``ts``, in seconds since the epoch."""
    return int(ts // DAY_S) * DAY_S


def partition_name(day: int) -> str:
    """``readings_YYYYMMDD`` for the day starting at ``day``."""
    return "readings_" + datetime.fromtimestamp(day, UTC).strftime("%Y%m%d")


def days_needed(timestamps: list[float]) -> set[int]:
    """The days of the finite timestamps (a non-finite one is left to the CHECK to refuse)."""
    return {day_of(ts) for ts in timestamps if math.isfinite(ts)}


def partition_due(day: int, now: float) -> bool:
    """Whether the day starting at ``day`` may have its partition by the fleet's clock ``now``."""
    return day <= now + PARTITION_AHEAD_S


def ensure_partitions(conn: psycopg.Connection[Any], days: set[int], now: float) -> set[int]:
    """Create the readings partitions of ``days`` that are missing (own transaction).

    Only days that start within ``PARTITION_AHEAD_S`` of ``now`` (the fleet's clock) get
    one; the rows of a later day go to ``readings_default``. Rows of a day that waited there
    are moved into its partition as it is made, in the same transaction. Several ingest
    workers may need the same day at once: the schema lock makes them take turns, and a
    partition another one made meanwhile is left alone. Returns the days of ``days`` that
    have their partition now.
    """
    due = {day for day in days if partition_due(day, now)}
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        existing = set(partitions(conn))
        missing = sorted(due - existing)
        if missing:
            # Making a partition scans the default one for rows that belong to it, so no
            # writer may put one there between the move below and the partition.
            conn.execute(
                sql.SQL("LOCK TABLE ONLY readings, ONLY {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(DEFAULT_PARTITION)
                )
            )
        for day in missing:
            _make_day(conn, day)
    return due


def _make_day(conn: psycopg.Connection[Any], day: int) -> None:
    """Make the partition of ``day``, moving in the rows that waited in ``readings_default``."""
    conn.execute("CREATE TEMPORARY TABLE waiting (LIKE readings)")
    conn.execute(
        sql.SQL(
            "WITH moved AS (DELETE FROM {} WHERE ts >= {} AND ts < {} RETURNING *) "
            "INSERT INTO waiting SELECT * FROM moved"
        ).format(sql.Identifier(DEFAULT_PARTITION), sql.Literal(day), sql.Literal(day + DAY_S))
    )
    conn.execute(
        sql.SQL("CREATE TABLE {} PARTITION OF readings FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(partition_name(day)), sql.Literal(day), sql.Literal(day + DAY_S)
        )
    )
    conn.execute("INSERT INTO readings SELECT * FROM waiting")
    conn.execute("DROP TABLE waiting")


def partitions(conn: psycopg.Connection[Any]) -> list[int]:
    """The day starts of the readings' day partitions in this schema, oldest first."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'readings'::regclass"
        )
        .fetchall()
    )
    days = []
    for row in rows:
        named = _DAY_PARTITION.fullmatch(str(row[0]))
        if named is None:
            continue  # the default partition
        stamp = datetime.strptime(named.group(1), "%Y%m%d").replace(tzinfo=UTC)
        days.append(int(stamp.timestamp()))
    return sorted(days)


def drop_partitions_before(conn: psycopg.Connection[Any], cutoff: float) -> list[str]:
    """Drop the readings partitions whose every reading is older than ``cutoff``.

    Rows older than ``cutoff`` that wait in ``readings_default`` (their day was never made)
    are deleted too. The per-minute and per-hour rollups stay: charts over older times
    still draw. Returns the names of the partitions dropped.
    """
    dropped = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for day in partitions(conn):
            if day + DAY_S <= cutoff:
                name = partition_name(day)
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                dropped.append(name)
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(DEFAULT_PARTITION)),
            (cutoff,),
        )
    return dropped
