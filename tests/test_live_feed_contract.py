"""The console's live feed (``Repository.live_cursor``/``live_changes``) on every backend.

SQLite in a temporary file and PostgreSQL (a real cluster the session starts, a fresh
schema per test). What any backend must keep: a new cursor reports nothing already
stored, then each level change, health change and 叫应 step once, whichever process
committed it. The SSE stream on top is in ``tests/test_console_api.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.escalation_policy import DEFAULT_POLICY
from fleet.postgres_repository import PostgresRepository
from fleet.repository import NewGateway, Received
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from protocol import EventBatch, EventRow, GatewayState, Health

T0 = 1_750_000_000.0
GW = "gw-0123456789"
SITE = "creek"


@pytest.fixture(params=("sqlite", "postgresql"))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A store of each backend with gateway GW enrolled at SITE."""
    if request.param == "sqlite":
        store: Any = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
        yield from _enrolled(store)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        yield from _enrolled(PostgresRepository(url))


def _enrolled(store: Any) -> Iterator[Any]:
    try:
        _token, secret = store.create_enrollment_token(SITE, T0 + 60, None, None, T0)
        store.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), T0)
        yield store
    finally:
        store.close()


def alarm(store: Any, seq: int, level: int) -> None:
    row = EventRow(seq=seq, ts=T0 + seq, kind="alarm", subject="slope", level=level, detail={})
    batch = EventBatch(gateway_id=GW, first_seq=seq, last_seq=seq, rows=[row])
    store.commit([Received(GW, T0 + seq, batch)])


def test_a_new_cursor_reports_only_what_changes_after_it(repo: Any) -> None:
    alarm(repo, 1, 3)  # stored before the console opened its feed
    cursor = repo.live_cursor()
    assert repo.live_changes(cursor) == []
    alarm(repo, 2, 4)
    (change,) = repo.live_changes(cursor)
    assert change.kind == "level"
    assert {k: change.data[k] for k in ("gateway_id", "site_id", "rule", "level")} == {
        "gateway_id": GW,
        "site_id": SITE,
        "rule": "slope",
        "level": 4,
    }
    assert repo.live_changes(cursor) == []  # once per cursor


def test_health_and_escalation_steps_are_reported_once(repo: Any) -> None:
    alarm(repo, 1, 4)
    cursor = repo.live_cursor()
    health = Health(gateway_id=GW, ts=T0 + 5, agent_version="1.3.0", uptime_s=60)
    online = GatewayState(state="online", ts=T0 + 6)
    repo.commit([Received(GW, T0 + 7, health), Received(GW, T0 + 8, online)])
    (state,) = repo.escalation.alarm_states()
    escalation = repo.escalation.start_escalation(state, DEFAULT_POLICY.levels[4], T0 + 9)
    changes = repo.live_changes(cursor)
    assert [c.kind for c in changes] == ["health", "escalation"]
    assert (changes[0].data["gateway_id"], changes[0].data["state"]) == (GW, "online")
    assert changes[1].data["alarm_id"] == escalation.alarm_id
    assert changes[1].data["kind"] == "started"
    assert repo.live_changes(cursor) == []
