"""A fleet database made before ``alarms.ack_origin`` gets the column, derived once.

Before the column, a gateway's acknowledgement was told only by the words ingest wrote
(``acknowledged_by`` ending in ``(at the gateway)``). Each test runs on both backends: it
stores alarms with the current code, drops the column as an older version never had it,
and opens the store again, as an upgraded fleet does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from fleet.postgres_repository import PostgresRepository
from fleet.repository import CoreStore, NewGateway, Received
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from protocol import EventBatch, EventRow

T0 = 1_750_000_000.0
GW = "gw-0123456789"

#: Opens the store; runs one SQL statement on its database without the store.
Backend = tuple[Callable[[], CoreStore], Callable[[str], None]]


@pytest.fixture(params=("sqlite", "postgresql"))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "fleet.sqlite"

        def sqlite_sql(statement: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute(statement)
            db.close()

        yield (lambda: SQLiteRepository(path, durable=False)), sqlite_sql
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:

        def postgres_sql(statement: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(statement.encode())

        yield (lambda: PostgresRepository(url)), postgres_sql


def alarm(seq: int, rule: str) -> EventRow:
    return EventRow(seq=seq, ts=T0 + seq, kind="alarm", subject=rule, level=3, detail={})


def origins(store: CoreStore) -> dict[str, tuple[str | None, str | None]]:
    found = store.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    return {a.rule: (a.ack_origin, a.acknowledged_by) for a in found}


def test_older_acknowledgements_get_their_origin_from_the_words_once(backend: Backend) -> None:
    open_store, sql = backend
    store = open_store()
    _token, secret = store.create_enrollment_token("site", T0 + 60, None, None, T0)
    store.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), T0)
    button = EventRow(seq=4, ts=T0 + 4, kind="ack", subject="slope", level=3, detail={})
    rows = (alarm(1, "slope"), alarm(2, "creek"), alarm(3, "rain"), button)
    store.commit([Received(GW, T0, EventBatch(gateway_id=GW, first_seq=1, last_seq=4, rows=rows))])
    creek = next(
        a
        for a in store.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
        if a.rule == "creek"
    )
    store.acknowledge_alarm(creek.id, "duty-officer", None, T0 + 5)
    store.close()
    sql("ALTER TABLE alarms DROP COLUMN ack_origin")  # as a database of an older version

    upgraded = open_store()
    assert origins(upgraded) == {
        "slope": ("gateway", "local (at the gateway)"),
        "creek": ("fleet", "duty-officer"),
        "rain": (None, None),
    }
    upgraded.close()
    # once: opening again never reads the words (these are an operator's, and stay fleet)
    sql("UPDATE alarms SET acknowledged_by = 'ops (at the gateway)' WHERE rule = 'creek'")
    again = open_store()
    assert origins(again)["creek"] == ("fleet", "ops (at the gateway)")
    again.close()
