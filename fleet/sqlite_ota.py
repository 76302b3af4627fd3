"""Over-the-air updates on SQLite: the tables of groups, configs, releases, rollouts, outbox.

The store itself is ``fleet.ota_tables`` (written once for both backends); this module holds
SQLite's ``SCHEMA`` and opens the store on the repository's file, its per-thread connection
and its write lock. ``SQLiteRepository.ota`` is a ``SQLiteOta``; the SQLite ingest writer
calls ``record_ota_report`` on its own connection, in the transaction that stores the event.

This module must never hold a statement of the store: those are written once, in
``fleet.ota_tables``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from fleet import ota_tables
from fleet.ota_tables import OtaTables
from fleet.sqlite_statements import SQLiteStatements, SQLiteTransaction
from protocol import EventRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS ota_counters (kind TEXT PRIMARY KEY, last_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ota_documents (
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    gateways TEXT NOT NULL,
    issued_at REAL NOT NULL,
    document BLOB NOT NULL,
    PRIMARY KEY (kind, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ota_outbox (
    gw INTEGER NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    queued_at REAL NOT NULL,
    claimed_at REAL,
    published_at REAL,
    PRIMARY KEY (gw, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gateway_groups (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS group_members (
    grp TEXT NOT NULL,
    gw INTEGER NOT NULL,
    PRIMARY KEY (grp, gw)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_configs (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    revision INTEGER NOT NULL,
    site_toml TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    gateways TEXT NOT NULL,
    note TEXT,
    created_at REAL NOT NULL,
    created_by TEXT,
    version INTEGER,
    UNIQUE (scope, target, revision)
);
CREATE TABLE IF NOT EXISTS config_deliveries (
    gw INTEGER NOT NULL,
    version INTEGER NOT NULL,
    config_id INTEGER NOT NULL,
    rollout_id INTEGER,
    state TEXT NOT NULL,
    reason TEXT,
    issued_at REAL NOT NULL,
    published_at REAL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (gw, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS releases (
    version TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS release_files (
    version TEXT NOT NULL,
    name TEXT NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (version, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    release_version TEXT,
    config_id INTEGER,
    grp TEXT,
    success_threshold REAL NOT NULL,
    error_threshold REAL NOT NULL,
    device_timeout_s REAL NOT NULL,
    state TEXT NOT NULL,
    current_wave INTEGER NOT NULL,
    reason TEXT,
    revision INTEGER NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_waves (
    rollout_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    spec TEXT NOT NULL,
    doc_version INTEGER,
    started_at REAL,
    PRIMARY KEY (rollout_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollout_devices (
    rollout_id INTEGER NOT NULL,
    gw INTEGER NOT NULL,
    wave INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    state TEXT NOT NULL,
    doc_version INTEGER,
    sent_at REAL,
    deadline REAL,
    reported TEXT,
    reason TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (rollout_id, gw)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rollout_devices_by_document ON rollout_devices (gw, doc_version);
"""


def record_ota_report(
    conn: sqlite3.Connection, gw: int, event: EventRow, received_at: float
) -> None:
    """Apply a newly stored ``ota`` event to configs and rollouts, in ``conn``'s transaction."""
    ota_tables.record_ota_report(SQLiteTransaction(conn), gw, event, received_at)


class SQLiteOta(OtaTables):
    """``OtaRepository`` on the repository's SQLite file and its ``releases/`` directory."""

    files_dir: Path

    def __init__(
        self,
        db: Callable[[], sqlite3.Connection],
        write: Callable[[], AbstractContextManager[sqlite3.Connection]],
        files_dir: Path,
    ) -> None:
        db().executescript(SCHEMA)
        super().__init__(SQLiteStatements(db, write), files_dir)
