"""``fleet migrate``: copies a SQLite fleet's stores into PostgreSQL, resumably.

Each table is copied in key order, a chunk of rows per PostgreSQL transaction; the same
transaction records the last key copied (``migration_progress``). A run killed at any
point leaves whole chunks behind it, and the next run starts after the last one recorded,
so any number of interrupted runs followed by one that finishes leave the same database
as one clean run. The per-minute and per-hour rollups are rebuilt from the copied readings
at the end (one transaction), and each identity column's sequence is moved past the
copied ids, so rows made afterwards never take a copied id.

Every store's tables are copied (core, OTA, 叫应); release files stay where they are, in
the data directory's ``releases/``, which ``fleet serve --database`` reads too. A table
PostgreSQL has no store for (the SL 651 centre's, which stays on SQLite) is named to the
operator as left behind, never dropped silently. The fleet must be stopped while it runs.

This module must never write to the SQLite file, never copy into a database that holds
a fleet it did not copy from this source, and never record progress for rows it did not
commit.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fleet.database_url import redacted
from fleet.postgres_escalation import SCHEMA as ESCALATION_SCHEMA
from fleet.postgres_ingest import ROLLUPS
from fleet.postgres_ota import SCHEMA as OTA_SCHEMA
from fleet.postgres_schema import create_schema, days_needed, ensure_partitions
from fleet.sqlite_repository import SQLiteRepository
from protocol import BAD_QUALITY_MASK


class MigrateError(RuntimeError):
    """The migration cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Table:
    """One table copied as it is: its key (copy order) and whether ``key[0]`` is an identity."""

    name: str
    key: tuple[str, ...]
    identity: bool = False


#: In copy order (rows that others refer to first). Columns are the same on both sides.
TABLES = (
    Table("gateways", ("num",), identity=True),
    Table("enrollment_tokens", ("id",), identity=True),
    Table("api_tokens", ("id",), identity=True),
    Table("channels", ("id",), identity=True),
    Table("stream_marks", ("gw", "stream")),
    Table("stream_ranges", ("gw", "stream", "first_seq")),
    Table("readings", ("gw", "seq")),
    Table("events", ("gw", "seq")),
    Table("alarms", ("id",), identity=True),
    Table("alarm_receipts", ("id",), identity=True),
    Table("gateway_answers", ("id",), identity=True),
    Table("commands", ("id",)),
    Table("roster_persons", ("id",), identity=True),
    Table("escalation_policies", ("site_id",)),
    Table("escalations", ("id",), identity=True),
    Table("escalation_calls", ("id",), identity=True),
    Table("escalation_record", ("id",), identity=True),
    Table("escalation_answers", ("id",), identity=True),
    Table("ota_counters", ("kind",)),
    Table("gateway_groups", ("name",)),
    Table("group_members", ("grp", "gw")),
    Table("site_configs", ("id",), identity=True),
    Table("releases", ("version",)),
    Table("release_files", ("version", "name")),
    Table("rollouts", ("id",), identity=True),
    Table("rollout_waves", ("rollout_id", "idx")),
    Table("rollout_devices", ("rollout_id", "gw")),
    Table("ota_documents", ("kind", "version")),
    Table("ota_outbox", ("gw", "kind")),
    Table("config_deliveries", ("gw", "version")),
)

_PROGRESS = """
CREATE TABLE IF NOT EXISTS migration_progress (
    table_name TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    last_key TEXT[],
    done BOOLEAN NOT NULL DEFAULT false
)
"""
_FINISHED = "(finished)"  # the table_name of the row that says the whole copy finished


@dataclass(frozen=True)
class MigrateResult:
    """What one run did: rows copied per table, and the SQLite tables with rows left behind."""

    copied: dict[str, int]
    left_behind: dict[str, int]
    already_done: bool


def run_migration(
    source: Path,
    url: str,
    *,
    chunk: int = 5000,
    progress: Callable[[str, int], None] | None = None,
) -> MigrateResult:
    """Copy the fleet in ``source`` into the database at ``url`` (resuming a run cut short).

    ``progress`` is told each table's rows as each chunk commits.
    """
    if chunk < 1:
        raise MigrateError(f"chunk {chunk}: must be at least 1 row")
    if not source.is_file():
        raise MigrateError(f"{source}: no such SQLite file")
    # A file an older release wrote lacks what the store adds when it opens one (such as
    # alarms.ack_origin, derived from older rows): open it once as the fleet would.
    SQLiteRepository(source).close()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        return _run(src, source, url, chunk, progress)
    except psycopg.Error as exc:
        raise MigrateError(f"{redacted(url)}: {exc}") from exc
    finally:
        src.close()


def _run(
    src: sqlite3.Connection,
    source: Path,
    url: str,
    chunk: int,
    progress: Callable[[str, int], None] | None,
) -> MigrateResult:
    """One run over an open source; psycopg's errors are left to the caller."""
    with psycopg.connect(url, autocommit=True) as dst:
        create_schema(dst)
        with dst.transaction():
            dst.execute(ESCALATION_SCHEMA.encode())
            dst.execute(OTA_SCHEMA.encode())
        identity = str(source.resolve())
        already = _claim_target(dst, identity)
        copied = {}
        if not already:
            for table in TABLES:
                copied[table.name] = _copy_table(src, dst, table, identity, chunk, progress)
            _finish(dst, identity)
        return MigrateResult(copied, _left_behind(src), already)


def _claim_target(dst: psycopg.Connection[Any], identity: str) -> bool:
    """Refuse a target that holds another fleet; say whether this copy already finished."""
    with dst.transaction():
        dst.execute(_PROGRESS)
        sources = {row[0] for row in dst.execute("SELECT DISTINCT source FROM migration_progress")}
        if sources - {identity}:
            msg = f"the database holds a copy of {', '.join(sorted(sources))}, not of {identity}"
            raise MigrateError(msg)
        if not sources:
            for table in TABLES:
                query = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table.name))
                if dst.execute(query).fetchone() is not None:
                    msg = (
                        f"the database already holds a fleet ({table.name} has rows); "
                        "use an empty one"
                    )
                    raise MigrateError(msg)
        finished = dst.execute(
            "SELECT done FROM migration_progress WHERE table_name = %s", (_FINISHED,)
        ).fetchone()
        return bool(finished and finished[0])


def _copy_table(
    src: sqlite3.Connection,
    dst: psycopg.Connection[Any],
    table: Table,
    identity: str,
    chunk: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    """Copy the rows of ``table`` after its recorded last key, a chunk per transaction."""
    mark = dst.execute(
        "SELECT last_key, done FROM migration_progress WHERE table_name = %s", (table.name,)
    ).fetchone()
    if mark is not None and mark[1]:
        return 0
    last: list[Any] | None = _key_values(src, table, mark[0]) if mark and mark[0] else None
    columns = [row[1] for row in src.execute(f"PRAGMA table_info({table.name})")]
    if not columns:
        raise MigrateError(f"{table.name}: the SQLite file has no such table (not a fleet file?)")
    order = ", ".join(table.key)
    after = f"WHERE ({order}) > ({', '.join('?' * len(table.key))}) "
    select = f"SELECT {', '.join(columns)} FROM {table.name} {{}}ORDER BY {order} LIMIT ?"
    insert = sql.SQL("INSERT INTO {} ({}) {} VALUES ({})").format(
        sql.Identifier(table.name),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL("OVERRIDING SYSTEM VALUE" if table.identity else ""),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    positions = [columns.index(k) for k in table.key]
    total = 0
    while True:
        query = select.format(after if last else "")
        rows = src.execute(query, [*(last or []), chunk]).fetchall()
        if table.name == "readings" and rows:
            stamps = [float(r[columns.index("ts")]) for r in rows]
            ensure_partitions(dst, days_needed(stamps), time.time())
        with dst.transaction():
            if rows:
                with dst.cursor() as cur:
                    cur.executemany(insert, rows)
                last = [rows[-1][p] for p in positions]
            dst.execute(
                "INSERT INTO migration_progress (table_name, source, last_key, done) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (table_name) DO UPDATE "
                "SET last_key = excluded.last_key, done = excluded.done",
                (table.name, identity, [str(v) for v in last] if last else None, len(rows) < chunk),
            )
        total += len(rows)
        if progress is not None and rows:
            progress(table.name, total)
        if len(rows) < chunk:
            return total


def _key_values(src: sqlite3.Connection, table: Table, stored: Sequence[str]) -> list[Any]:
    """The recorded last key (kept as text) in the types SQLite compares it with."""
    types = {row[1]: str(row[2]).upper() for row in src.execute(f"PRAGMA table_info({table.name})")}
    return [
        int(value) if types[name] == "INTEGER" else value
        for name, value in zip(table.key, stored, strict=True)
    ]


def _finish(dst: psycopg.Connection[Any], identity: str) -> None:
    """Move identities past the copied ids, rebuild the rollups, record the copy as finished."""
    with dst.transaction():
        for table in TABLES:
            if table.identity:
                column = table.key[0]
                dst.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({t}, {c}), "
                        "coalesce((SELECT max({ci}) FROM {ti}), 0) + 1, false)"
                    ).format(
                        t=sql.Literal(table.name),
                        c=sql.Literal(column),
                        ci=sql.Identifier(column),
                        ti=sql.Identifier(table.name),
                    )
                )
        for rollup, step in ROLLUPS:
            dst.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(rollup)))
            dst.execute(
                sql.SQL(
                    "INSERT INTO {} (channel, start, good, bad, total, low, high) "
                    "SELECT channel, floor(ts / {s}) * {s}, count(*) FILTER (WHERE ok), "
                    "count(*) FILTER (WHERE NOT ok), coalesce(sum(value) FILTER (WHERE ok), 0), "
                    "min(value) FILTER (WHERE ok), max(value) FILTER (WHERE ok) FROM ("
                    "  SELECT channel, ts, value, value IS NOT NULL AND (quality & {m}) = 0 AS ok"
                    "  FROM readings) AS r GROUP BY 1, 2"
                ).format(
                    sql.Identifier(rollup), s=sql.Literal(step), m=sql.Literal(BAD_QUALITY_MASK)
                )
            )
        dst.execute(
            "INSERT INTO migration_progress (table_name, source, done) VALUES (%s, %s, true) "
            "ON CONFLICT (table_name) DO UPDATE SET done = true",
            (_FINISHED, identity),
        )


def _left_behind(src: sqlite3.Connection) -> dict[str, int]:
    """The SQLite tables with rows that PostgreSQL has no table for yet, with their counts."""
    copied = {table.name for table in TABLES}
    copied.add("leases")  # who ran 叫应 and rollouts: the new database's replicas take them anew
    names = [
        str(row[0])
        for row in src.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
    ]
    counts = {}
    for name in names:
        if name not in copied:
            rows = int(src.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
            if rows:
                counts[name] = rows
    return counts
