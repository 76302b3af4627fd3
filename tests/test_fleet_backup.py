"""``fleet backup`` of both backends, run as the real command, restored and read back.

SQLite through its online backup API; PostgreSQL through pg_dump into a real cluster the
session starts, restored with pg_restore into a new database.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import psycopg

from fleet.backup import postgres_tool
from fleet.postgres_repository import PostgresRepository
from fleet.repository import CoreStore, NewGateway, Received
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from protocol import DataBatch

T0 = 1_750_000_000.0
GW = "gw-0123456789"


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args], capture_output=True, text=True, check=False
    )


def fill(store: CoreStore) -> None:
    """One gateway with 500 readings."""
    _token, secret = store.create_enrollment_token("site", T0 + 60, None, None, T0)
    store.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), T0)
    rows = [(s, T0 + s, "rain", s * 0.5, 0) for s in range(1, 501)]
    store.commit([Received(GW, T0, DataBatch(gateway_id=GW, first_seq=1, last_seq=500, rows=rows))])


def test_a_sqlite_backup_is_a_private_readable_copy_and_never_replaces_a_file(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "fleet"
    store = SQLiteRepository(data_dir / "fleet.sqlite")
    fill(store)
    out = tmp_path / "copies" / "fleet-backup.sqlite"
    done = fleet("backup", "--data-dir", str(data_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with sqlite3.connect(out) as copy:
        assert copy.execute("SELECT count(*) FROM readings").fetchone() == (500,)
        assert copy.execute("SELECT id FROM gateways").fetchall() == [(GW,)]
    before = out.read_bytes()
    again = fleet("backup", "--data-dir", str(data_dir), "--out", str(out))
    assert again.returncode == 1
    assert "exists" in again.stderr
    assert out.read_bytes() == before
    store.close()


def test_a_postgresql_backup_restores_with_pg_restore(
    tmp_path: Path, postgres: PostgresCluster
) -> None:
    out = tmp_path / "fleet.pgdump"
    with postgres.fresh_schema() as url:
        store = PostgresRepository(url)
        fill(store)
        store.close()
        done = fleet("backup", "--database", url, "--out", str(out))
        assert done.returncode == 0, done.stderr
        schema = url.rsplit("%3D", 1)[1]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    postgres.psql("CREATE DATABASE restored", database="postgres")
    restore = postgres_tool("pg_restore")
    subprocess.run(
        [restore, f"--dbname={postgres.database_url('restored')}", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    with psycopg.connect(postgres.database_url("restored")) as conn:
        assert conn.execute(f"SELECT count(*) FROM {schema}.readings").fetchone() == (500,)
        hours = conn.execute(f"SELECT sum(good) FROM {schema}.readings_hour").fetchone()
        assert hours == (500,)


def test_a_failed_postgresql_backup_says_why_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://fleet:s3cret@127.0.0.1:1/hazardwatch"  # nothing listens on port 1
    done = fleet("backup", "--database", url, "--out", str(tmp_path / "x.pgdump"))
    assert done.returncode == 1
    assert "pg_dump of postgresql://fleet@127.0.0.1:1/hazardwatch failed" in done.stderr
    assert "Connection refused" in done.stderr
    assert "s3cret" not in done.stderr
    assert not (tmp_path / "x.pgdump").exists()
