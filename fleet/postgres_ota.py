"""Over-the-air updates on PostgreSQL: the tables of groups, configs, releases and rollouts.

The store itself is ``fleet.ota_tables`` (written once for both backends, so both pass
``tests/test_ota_store_contract.py``); this module holds PostgreSQL's ``SCHEMA`` (beside the
outbox tables of ``fleet.postgres_schema``) and what only PostgreSQL does. Every OTA write
takes one advisory lock (``OTA_LOCK``), so OTA writes from several API replicas and ingest
workers take turns as they do on SQLite's one writer; a rollout's row is also locked
(``FOR UPDATE``) before its revision is compared. Ingest workers claim documents to publish
with ``FOR UPDATE SKIP LOCKED``, outside the OTA lock: each document goes to one of them.
``record_ota_report`` is called by the PostgreSQL ingest (on a ``Conn``) in the transaction
that stores an ``ota`` event, holding ``OTA_LOCK``. Release files live under ``files_dir``
(a directory every API replica must share).

This module must never hold a statement the SQLite store shares: those are written once, in
``fleet.ota_tables``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from psycopg_pool import ConnectionPool

from fleet.ota_tables import OtaTables, record_ota_report
from fleet.postgres_statements import PostgresStatements
from fleet.postgres_statements import PostgresTransaction as Conn

__all__ = ["OTA_LOCK", "SCHEMA", "Conn", "PostgresOta", "record_ota_report"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS ota_counters (kind TEXT PRIMARY KEY, last_version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS gateway_groups (
    name TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL,
    gw BIGINT NOT NULL,
    PRIMARY KEY (grp, gw)
);
CREATE TABLE IF NOT EXISTS site_configs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    revision INTEGER NOT NULL,
    site_toml TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    gateways TEXT NOT NULL,
    note TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT,
    version BIGINT,
    UNIQUE (scope, target, revision)
);
CREATE TABLE IF NOT EXISTS releases (
    version TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS release_files (
    version TEXT NOT NULL,
    name TEXT NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (version, name)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    release_version TEXT,
    config_id BIGINT,
    grp TEXT,
    success_threshold DOUBLE PRECISION NOT NULL,
    error_threshold DOUBLE PRECISION NOT NULL,
    device_timeout_s DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    current_wave INTEGER NOT NULL,
    reason TEXT,
    revision INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_waves (
    rollout_id BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    spec TEXT NOT NULL,
    doc_version BIGINT,
    started_at DOUBLE PRECISION,
    PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE IF NOT EXISTS rollout_devices (
    rollout_id BIGINT NOT NULL,
    gw BIGINT NOT NULL,
    wave INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    state TEXT NOT NULL,
    doc_version BIGINT,
    sent_at DOUBLE PRECISION,
    deadline DOUBLE PRECISION,
    reported TEXT,
    reason TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (rollout_id, gw)
);
CREATE INDEX IF NOT EXISTS rollout_devices_by_document ON rollout_devices (gw, doc_version);
"""

#: Advisory lock key of every OTA write (and of this schema's creation).
OTA_LOCK = 0x4857_0003


class PostgresOta(OtaTables):
    """``OtaRepository`` on the fleet's PostgreSQL database and a ``releases/`` directory."""

    #: Each pending document to one worker: rows another worker is claiming are skipped.
    claim_statement = (
        "UPDATE ota_outbox o SET status = 'publishing', claimed_at = ? "
        "FROM gateways g WHERE g.num = o.gw AND (o.gw, o.kind) IN ("
        "  SELECT gw, kind FROM ota_outbox WHERE status = 'pending' "
        "  OR (status = 'publishing' AND claimed_at < ?) FOR UPDATE SKIP LOCKED"
        ") RETURNING g.id, o.kind, o.version"
    )

    def __init__(self, pool: ConnectionPool[Any], files_dir: Path | None) -> None:
        statements = PostgresStatements(pool, write_lock=OTA_LOCK)
        statements.create_schema(SCHEMA, OTA_LOCK)
        super().__init__(statements, files_dir, outbox=PostgresStatements(pool))
