"""``fleet migrate --from fleet.sqlite --to postgresql://…``: a SQLite fleet copied, resumably.

A SQLite fleet with gateways, tokens, readings over two days, alarm events and a receipt is
copied into a fresh PostgreSQL schema (a real cluster the session starts). One copy is
SIGKILLed midway and run again; its result equals a clean run's, table by table, and the
copy works as a store afterwards.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fleet.escalation_policy import DEFAULT_POLICY
from fleet.escalation_store import PlannedCall
from fleet.migrate import TABLES, MigrateError, run_migration
from fleet.postgres_repository import PostgresRepository
from fleet.repository import NewGateway, NewSiteConfig, Received, Role
from fleet.roster import PersonIn, Tier
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.harness.uplink import FLEET
from hardware_sim.harness.waiting import wait_until
from protocol import BAD_QUALITY_MASK, DataBatch, EventBatch, EventRow

T0 = 1_750_032_000.0  # a UTC midnight
GATEWAYS = ("gw-0000000001", "gw-0000000002")
READINGS = 12_000  # per gateway: 400 s apart, so the readings span two UTC days and more


def sqlite_fleet(path: Path) -> None:
    """A small but whole fleet: two gateways, tokens, readings, alarms, a receipt, a command."""
    store = SQLiteRepository(path, durable=False)
    try:
        for n, gid in enumerate(GATEWAYS):
            _token, secret = store.create_enrollment_token("creek", T0 + 60, "cli", None, T0)
            store.redeem_enrollment_token(
                secret, NewGateway(gid, f"{n}" * 44, "$7$x", None, None), T0
            )
            for first in range(1, READINGS + 1, 1000):
                rows = [
                    (
                        s,
                        T0 + s * 4.0,
                        ("rain", "tilt")[s % 2],
                        s * 0.5,
                        BAD_QUALITY_MASK * (s % 7 == 0),
                    )
                    for s in range(first, first + 1000)
                ]
                batch = DataBatch(gateway_id=gid, first_seq=first, last_seq=first + 999, rows=rows)
                store.commit([Received(gid, T0, batch)])
            alarms = (
                EventRow(seq=1, ts=T0 + 10, kind="alarm", subject="slope", level=2, detail={}),
                EventRow(seq=2, ts=T0 + 20, kind="alarm", subject="slope", level=0, detail={}),
                EventRow(seq=3, ts=T0 + 30, kind="alarm", subject="rain", level=1, detail={}),
            )
            events = EventBatch(gateway_id=gid, first_seq=1, last_seq=3, rows=alarms)
            store.commit([Received(gid, T0 + 40, events)])
            store.queue_command(gid, "reboot", {}, "cli", T0 + 50)
        store.create_api_token("console", Role.OPERATOR, T0)
        store.ota.set_group("north", list(GATEWAYS), T0)
        store.ota.create_config(
            NewSiteConfig('[site]\nid = "creek"\n', None, "north", None, "ana"), T0, sign
        )
        alarm = store.alarms(active=True, gateway_ids=None, since=None, until=None, limit=1)[0]
        store.confirm_receipt(alarm.id, "village head", "phone", None, "operator", T0 + 60)
        person = store.escalation.add_person(
            "creek", PersonIn(Tier.VILLAGE, "甲", "monitor", mobile="+8613800000001"), T0
        )
        state = next(s for s in store.escalation.alarm_states() if s.alarm_id == alarm.id)
        escalation = store.escalation.start_escalation(state, DEFAULT_POLICY.levels[4], T0 + 61)
        (call,) = store.escalation.plan_calls([PlannedCall(escalation.id, person, "sms")], T0 + 62)
        store.escalation.record_answer(
            escalation.id, person.label, Tier.VILLAGE, "sms", T0 + 63, call.id
        )
    finally:
        store.close()


def sign(version: int, gateways: tuple[str, ...]) -> bytes:
    """A stand-in signer (the copy keeps the bytes as they are)."""
    return f"{version}:{','.join(gateways)}".encode()


def contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every copied table and both rollups, each in key order."""
    tables = [(t.name, t.key) for t in TABLES]
    tables += [(r, ("channel", "start")) for r in ("readings_minute", "readings_hour")]
    out = {}
    with psycopg.connect(url) as conn:
        for name, key in tables:
            query = sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                sql.Identifier(name), sql.SQL(", ").join(map(sql.Identifier, key))
            )
            out[name] = conn.execute(query).fetchall()
    return out


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "fleet.sqlite"
    sqlite_fleet(path)
    return path


@pytest.fixture
def url(postgres: PostgresCluster) -> Iterator[str]:
    with postgres.fresh_schema() as schema_url:
        yield schema_url


@pytest.fixture
def clean(postgres: PostgresCluster, source: Path) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The contents of one clean, uninterrupted run."""
    with postgres.fresh_schema() as schema_url:
        result = run_migration(source, schema_url)
        assert result.copied["readings"] == len(GATEWAYS) * READINGS
        yield contents(schema_url)


def progress_rows(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        try:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def test_a_migration_killed_midway_and_run_again_equals_one_clean_run(
    source: Path, url: str, clean: dict[str, list[tuple[Any, ...]]], tmp_path: Path
) -> None:
    command = [*FLEET, "migrate", "--from", str(source), "--to", url, "--chunk", "100"]
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: progress_rows(url, "readings") >= 1000, 120, "readings being copied")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    cut_short = progress_rows(url, "readings")
    assert 0 < cut_short < len(GATEWAYS) * READINGS  # killed midway, not after the end

    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert "migration finished" in again.stdout
    assert contents(url) == clean

    third = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert third.returncode == 0, third.stderr
    assert "already copied" in third.stdout
    assert contents(url) == clean


def test_the_copy_serves_as_the_fleet_store_and_new_rows_take_new_ids(
    source: Path, url: str
) -> None:
    run_migration(source, url)
    store = PostgresRepository(url)
    try:
        assert [g.id for g in store.list_gateways()] == list(GATEWAYS)
        gateway = store.get_gateway(GATEWAYS[0])
        assert gateway.streams["readings"] == READINGS
        active = store.alarms(active=True, gateway_ids=None, since=None, until=None, limit=10)
        assert sorted((a.gateway_id, a.rule) for a in active) == [(g, "rain") for g in GATEWAYS]
        points = store.readings(GATEWAYS[0], "rain", T0, T0 + READINGS * 4.0 + 1, 100_000)
        assert len(points) == READINGS // 2
        # The rebuilt rollups draw the same chart as SQLite does from its raw rows.
        sqlite = SQLiteRepository(source, durable=False)
        try:
            for channel in ("rain", "tilt"):
                until = T0 + READINGS * 4.0 + 3600
                expected = sqlite.reading_buckets(GATEWAYS[0], channel, T0, until, 3600)
                assert store.reading_buckets(GATEWAYS[0], channel, T0, until, 3600) == expected
        finally:
            sqlite.close()
        # A new token takes an id past the copied ones, not a copied one's.
        copied_ids = {t.id for t in store.list_api_tokens()}
        token, _secret = store.create_api_token("new", Role.VIEWER, T0 + 100)
        assert token.id > max(copied_ids)
        (person,) = store.escalation.roster("creek")
        assert person.mobile == "+8613800000001"
        (group,) = store.ota.list_groups()
        assert group.gateways == GATEWAYS
        (config,) = store.ota.list_configs(gateway_id=None, group="north", limit=10)
        again = NewSiteConfig(config.site_toml, None, "north", None, "ana")
        newer = store.ota.create_config(again, T0 + 200, sign)  # counters copied: no reuse
        assert config.version is not None
        assert newer.version is not None
        assert newer.version > config.version
        assert newer.id > config.id
        (open_id,) = [
            s.open_escalation for s in store.escalation.alarm_states() if s.open_escalation
        ]
        assert [r["kind"] for r in store.escalation.record(open_id)] == ["started", "answer"]
    finally:
        store.close()


def test_a_database_holding_another_fleet_is_refused(source: Path, url: str) -> None:
    store = PostgresRepository(url)
    try:
        store.create_api_token("someone else's", Role.ADMIN, T0)
    finally:
        store.close()
    with pytest.raises(MigrateError, match="already holds a fleet"):
        run_migration(source, url)


def test_a_missing_source_or_an_unreachable_database_is_said_plainly(
    tmp_path: Path, source: Path
) -> None:
    with pytest.raises(MigrateError, match="no such SQLite file"):
        run_migration(tmp_path / "nowhere.sqlite", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(MigrateError, match=r"postgresql://nobody:\*\*\*@127\.0\.0\.1:1/none"):
        run_migration(source, "postgresql://nobody:secret@127.0.0.1:1/none")


def test_a_file_an_older_release_wrote_is_brought_up_to_date_before_it_is_copied(
    tmp_path: Path, url: str
) -> None:
    """An older fleet.sqlite has no ``ack_origin``; the copy still says where each ack was taken.

    It is derived from the acknowledgement's words, as the store derives it.
    """
    path = tmp_path / "fleet.sqlite"
    sqlite_fleet(path)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE alarms SET acknowledged_at = ?, acknowledged_by = 'button (at the gateway)'"
            " WHERE acknowledged_at IS NULL",
            (T0 + 70,),
        )
        db.execute("ALTER TABLE alarms DROP COLUMN ack_origin")  # as an older release wrote it
    db.close()
    run_migration(path, url)
    with psycopg.connect(url) as conn:
        origins = conn.execute(
            "SELECT acknowledged_by, ack_origin FROM alarms WHERE acknowledged_at IS NOT NULL"
        ).fetchall()
    assert origins, "the fleet has acknowledged alarms"
    assert set(origins) == {("button (at the gateway)", "gateway")}, origins
