"""The SQLite repository's ingest rules: contiguous acks, dedup, alarm episodes (real SQLite)."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet.credentials import token_hash
from fleet.repository import (
    API_TOKEN_TTL_S,
    ConflictError,
    EnrollmentRefusedError,
    NewGateway,
    Received,
)
from fleet.sqlite_connections import WRITE_LOCK, ThreadConnections
from fleet.sqlite_ingest import ROWS_PER_STATEMENT, insert_readings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.waiting import wait_until
from protocol import DataBatch, EventBatch, EventRow, Stream

T0 = 1_750_000_000.0
GW = "gw-0123456789"


@pytest.fixture
def repository(tmp_path: Path) -> SQLiteRepository:
    repo = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
    _token, secret = repo.create_enrollment_token("site", T0 + 60, None, None, T0)
    repo.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), T0)
    return repo


def data(first: int, last: int, seqs: list[int] | None = None) -> Received:
    seqs = list(range(first, last + 1)) if seqs is None else seqs
    rows = [(s, T0 + s, "rain", 1.0, 0) for s in seqs]
    return Received(GW, T0, DataBatch(gateway_id=GW, first_seq=first, last_seq=last, rows=rows))


def ack(repository: SQLiteRepository, *batches: Received) -> int:
    return repository.commit(batches).acks[(GW, Stream.READINGS)]


def test_the_ack_is_the_end_of_the_contiguous_ranges(repository: SQLiteRepository) -> None:
    assert ack(repository, data(1, 10)) == 10
    assert ack(repository, data(21, 30)) == 10  # a gap 11..20
    assert ack(repository, data(41, 50)) == 10
    assert ack(repository, data(11, 20)) == 30  # joins 21..30, not 41..50
    assert ack(repository, data(31, 40)) == 50
    assert repository.get_gateway(GW).streams == {"readings": 50, "events": 0}


def test_resends_with_other_boundaries_are_stored_once(repository: SQLiteRepository) -> None:
    repository.commit([data(1, 100)])
    result = repository.commit([data(51, 150)])
    assert (result.rows_stored, result.rows_duplicate) == (50, 50)
    result = repository.commit([data(1, 150)])
    assert (result.rows_stored, result.rows_duplicate, result.acks) == (
        0,
        150,
        {(GW, Stream.READINGS): 150},
    )
    stored = repository.readings(GW, "rain", 0, T0 + 1000, 1000)
    assert [p.seq for p in stored] == list(range(1, 151))


def mixed(first: int, last: int, names: tuple[str, ...] = ("rain", "level", "tilt")) -> Received:
    rows = [(s, T0 + s, names[s % len(names)], s * 0.5, s % 2) for s in range(first, last + 1)]
    return Received(GW, T0, DataBatch(gateway_id=GW, first_seq=first, last_seq=last, rows=rows))


def test_a_partial_resend_stores_the_new_rows_with_their_channels_and_values(
    repository: SQLiteRepository,
) -> None:
    repository.commit([mixed(1, 10)])
    result = repository.commit([mixed(6, 15)])  # 6..10 held: skipped, 11..15 stored
    assert (result.rows_stored, result.rows_duplicate) == (5, 5)
    for index, channel in enumerate(("rain", "level", "tilt")):
        stored = repository.readings(GW, channel, 0, T0 + 1000, 1000)
        expected = [s for s in range(1, 16) if s % 3 == index]
        assert [p.seq for p in stored] == expected
        assert [(p.ts, p.value, p.quality) for p in stored] == [
            (T0 + s, s * 0.5, s % 2) for s in expected
        ]


def test_a_second_writer_binds_the_channels_the_first_one_created(
    repository: SQLiteRepository,
) -> None:
    # Two ingest processes share the file: the second must bind the first one's channel
    # ids (looked up before its write lock), and give ids to a channel new to both.
    other = SQLiteRepository(repository.path, durable=False)
    repository.commit([mixed(1, 9)])
    result = other.commit([mixed(10, 18), mixed(19, 27, ("rain", "level", "tilt", "crack"))])
    assert (result.rows_stored, result.acks) == (18, {(GW, Stream.READINGS): 27})
    with sqlite3.connect(repository.path) as conn:
        names = conn.execute("SELECT name FROM channels ORDER BY id").fetchall()
    assert sorted(name for (name,) in names) == ["crack", "level", "rain", "tilt"]
    stored = {c: other.readings(GW, c, 0, T0 + 100, 100) for c in ("rain", "level", "tilt")}
    for index, channel in enumerate(("rain", "level", "tilt")):
        expected = [s for s in range(1, 19) if s % 3 == index]
        expected += [s for s in range(19, 28) if s % 4 == index]
        assert [(p.seq, p.value, p.quality) for p in stored[channel]] == [
            (s, s * 0.5, s % 2) for s in expected
        ]
    assert [p.seq for p in other.readings(GW, "crack", 0, T0 + 100, 100)] == [19, 23, 27]
    other.close()


WAL_WRITER = """
import sys
import time
from pathlib import Path

import fleet.sqlite_repository as storage
from fleet.repository import Received
from protocol import DataBatch

path, gateway, ready, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
storage.WAL_RESTART_FRAMES = 64
repository = storage.SQLiteRepository(path, durable=False)
ready.touch()
deadline = time.monotonic() + 60
while not go.exists():  # both writers start together
    assert time.monotonic() < deadline, "never told to go"
    time.sleep(0.001)
wal = path.with_name(path.name + "-wal")
largest = 0
for first in range(1, 200_001, 5000):
    repository.commit([
        Received(gateway, 0.0, DataBatch(
            gateway_id=gateway, first_seq=start, last_seq=start + 999,
            rows=[(s, 1.75e9 + s, "rain", 1.0, 0) for s in range(start, start + 1000)],
        ))
        for start in range(first, first + 5000, 1000)
    ])
    largest = max(largest, wal.stat().st_size)
print(largest)
"""


def test_the_wal_stays_short_while_two_ingest_processes_commit_in_turn(
    repository: SQLiteRepository, tmp_path: Path
) -> None:
    # Each process checkpoints outside the write lock, while the other writes; without
    # restarting it now and then, the WAL would grow for as long as the load lasts.
    second = "gw-1111111111"
    _token, secret = repository.create_enrollment_token("site", T0 + 60, None, None, T0)
    repository.redeem_enrollment_token(secret, NewGateway(second, "k" * 44, "$7$x", None, None), T0)
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WAL_WRITER,
                str(repository.path),
                gw,
                str(tmp_path / gw),
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for gw in (GW, second)
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / gw).exists() for gw in (GW, second)):
            assert time.monotonic() < deadline, "the writers did not start"
            time.sleep(0.01)
        go.touch()
        largest = [int(w.communicate(timeout=120)[0]) for w in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    assert all(w.returncode == 0 for w in writers)
    assert repository.get_gateway(GW).streams["readings"] == 200_000
    assert repository.get_gateway(second).streams["readings"] == 200_000
    # Each commit adds about 60 pages of 4 KB; without restarts the WAL reaches 7 MB here.
    assert max(largest) < 3_000_000, f"the WAL grew to {max(largest):,} bytes"


def test_insert_readings_splits_what_one_statement_cannot_bind(
    repository: SQLiteRepository,
) -> None:
    rows = ROWS_PER_STATEMENT * 2 + 7
    with sqlite3.connect(repository.path, isolation_level=None) as conn:
        values: list[object] = [1]
        for seq in range(1, rows + 1):
            values += (seq, T0 + seq, 1, 0.0, 0)
        assert insert_readings(conn, values) == rows
        assert insert_readings(conn, values) == 0  # every row already held
        assert insert_readings(conn, [1]) == 0
        assert conn.execute("SELECT count(*), max(seq) FROM readings").fetchone() == (rows, rows)


def test_a_group_commit_acks_each_gateway_once_with_its_final_mark(
    repository: SQLiteRepository,
) -> None:
    result = repository.commit([data(1, 10), data(11, 20, seqs=[11, 15]), data(21, 22)])
    assert result.acks == {(GW, Stream.READINGS): 22}
    assert result.rows_stored == 14


def test_messages_from_unknown_gateways_are_rejected_not_stored(
    repository: SQLiteRepository,
) -> None:
    batch = DataBatch(gateway_id="gw-9999999999", first_seq=1, last_seq=1, rows=[])
    result = repository.commit([Received("gw-9999999999", T0, batch), data(1, 1)])
    assert result.rejected == [("gw-9999999999", "unknown_gateway", "not enrolled")]
    assert result.acks == {(GW, Stream.READINGS): 1}


OTHER = "gw-abcdefabcd"


def enroll_other(repository: SQLiteRepository) -> None:
    _token, secret = repository.create_enrollment_token("site", T0 + 60, None, None, T0)
    repository.redeem_enrollment_token(secret, NewGateway(OTHER, "o" * 44, "$7$y", None, None), T0)


def other_data(first: int, last: int) -> Received:
    rows = [(s, T0 + s, "rain", 2.0, 0) for s in range(first, last + 1)]
    batch = DataBatch(gateway_id=OTHER, first_seq=first, last_seq=last, rows=rows)
    return Received(OTHER, T0, batch)


def unvalidated(first: int, last: int, rows: list[tuple[object, ...]]) -> Received:
    """A batch that skipped validation: what a gap in the wire models would let through."""
    batch = DataBatch.model_construct(gateway_id=GW, first_seq=first, last_seq=last, rows=rows)
    return Received(GW, T0, batch)


def test_a_message_that_raises_in_a_commit_costs_only_itself(
    repository: SQLiteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    # OverflowError is no sqlite3.Error: it used to drop the whole group, OTHER's batch too.
    enroll_other(repository)
    poisoned = unvalidated(2**63, 2**63, [])
    result = repository.commit([other_data(1, 5), poisoned, other_data(6, 8)])
    assert result.acks == {(OTHER, Stream.READINGS): 8}
    assert result.rows_stored == 8
    [(gateway, reason, detail)] = result.rejected
    assert (gateway, reason) == (GW, "internal_error")
    assert "OverflowError" in detail
    assert "could not store a DataBatch from gw-0123456789" in caplog.text
    assert [p.seq for p in repository.readings(OTHER, "rain", 0, T0 + 100, 100)] == list(
        range(1, 9)
    )
    assert repository.get_gateway(GW).streams == {"readings": 0, "events": 0}


def test_a_message_that_raises_before_the_transaction_costs_only_itself(
    repository: SQLiteRepository,
) -> None:
    # An unhashable channel fails while the rows are bound, before the write lock.
    enroll_other(repository)
    poisoned = unvalidated(1, 1, [(1, T0, ["not", "a", "name"], 1.0, 0)])
    result = repository.commit([poisoned, other_data(1, 3)])
    assert result.acks == {(OTHER, Stream.READINGS): 3}
    assert [(g, reason) for g, reason, _detail in result.rejected] == [(GW, "internal_error")]
    assert "TypeError" in result.rejected[0][2]


def test_a_row_the_store_cannot_hold_is_refused_never_acked_as_stored(
    repository: SQLiteRepository,
) -> None:
    # A NaN binds as NULL: INSERT OR IGNORE skipped the row and the batch was acked in full.
    enroll_other(repository)
    rows = [(1, T0, "rain", 1.0, 0), (2, math.nan, "rain", 1.0, 0), (3, T0, "rain", 1.0, 0)]
    bad_event = EventRow.model_construct(seq=1, ts=math.nan, kind="fault", detail={})
    bad_events = EventBatch.model_construct(
        gateway_id=GW, first_seq=1, last_seq=1, rows=[bad_event]
    )
    result = repository.commit(
        [unvalidated(1, 3, rows), other_data(1, 2), Received(GW, T0, bad_events)]
    )
    assert result.acks == {(OTHER, Stream.READINGS): 2}
    assert [(g, reason) for g, reason, _detail in result.rejected] == [
        (GW, "storage_error"),
        (GW, "storage_error"),
    ]
    assert "NOT NULL constraint failed: readings.ts" in result.rejected[0][2]
    with sqlite3.connect(repository.path) as conn:
        held = conn.execute(
            "SELECT count(*) FROM readings r JOIN gateways g ON g.num = r.gw WHERE g.id = ?", (GW,)
        ).fetchone()
    assert held == (0,)
    assert repository.get_gateway(GW).streams == {"readings": 0, "events": 0}


def event(seq: int, level: int, kind: str = "alarm", **detail: object) -> EventRow:
    return EventRow(seq=seq, ts=T0 + seq, kind=kind, subject="slope", level=level, detail=detail)


def events(*rows: EventRow) -> Received:
    batch = EventBatch(gateway_id=GW, first_seq=rows[0].seq, last_seq=rows[-1].seq, rows=rows)
    return Received(GW, T0, batch)


def test_alarm_events_open_raise_acknowledge_and_close_one_episode(
    repository: SQLiteRepository,
) -> None:
    repository.commit([events(event(1, 2), event(2, 4), event(3, 0, "ack", by="button"))])
    [alarm] = repository.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    assert (alarm.level, alarm.peak_level, alarm.raised_at) == (4, 4, T0 + 1)
    assert alarm.acknowledged_by == "button (at the gateway)"
    assert repository.get_gateway(GW).alarm_level == 4
    # A resend of old events changes nothing; the fall to normal ends the episode.
    repository.commit([events(event(1, 2), event(2, 4))])
    repository.commit([events(event(4, 1), event(5, 0))])
    assert repository.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10) == []
    [ended] = repository.alarms(active=False, gateway_ids=[GW], since=None, until=None, limit=10)
    assert (ended.id, ended.peak_level, ended.cleared_at) == (alarm.id, 4, T0 + 5)
    assert repository.get_gateway(GW).alarm_level == 0


def writers_waiting(database: Path) -> int:
    """How many writers wait for the database's write lock (``flock`` waiters, /proc/locks)."""
    inode = os.stat(database.with_name(f"{database.name}.{WRITE_LOCK}")).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and line.split()[-3].endswith(f":{inode}"))


def test_two_operators_acknowledging_at_once_get_one_success_and_one_conflict(
    repository: SQLiteRepository,
) -> None:
    repository.commit([events(event(1, 3))])
    [alarm] = repository.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    outcomes: list[str] = []

    def acknowledge(by: str) -> None:
        try:
            repository.acknowledge_alarm(alarm.id, by, None, T0 + 10)
            outcomes.append("acknowledged")
        except ConflictError:
            outcomes.append("conflict")

    other = ThreadConnections(repository.path)  # another writer (an ingest worker, say)
    operators = [threading.Thread(target=acknowledge, args=(by,)) for by in ("ops-a", "ops-b")]
    with other.write_lock():  # both consoles' requests arrive while it writes
        for operator in operators:
            operator.start()
        wait_until(lambda: writers_waiting(repository.path) == 2, 10, "both to wait to write")
    for operator in operators:
        operator.join(timeout=10)
    other.close()
    assert sorted(outcomes) == ["acknowledged", "conflict"]
    assert repository.get_alarm(alarm.id).acknowledged_by in {"ops-a", "ops-b"}


def test_alarm_events_of_any_gateway_release_are_tracked(repository: SQLiteRepository) -> None:
    older = event(1, 3, detail="level 2.4 m >= 2.2")  # no from/to/kind/metric/at yet
    garbled = event(2, 4).model_copy(
        update={"detail": {"detail": ["not", "text"], "kind": "sideways", "metric": "?"}}
    )
    repository.commit([events(older)])
    [raised] = repository.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    assert (raised.level, raised.detail) == (3, "level 2.4 m >= 2.2")
    repository.commit([events(garbled, event(3, 4, "ack"))])
    [alarm] = repository.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    assert (alarm.id, alarm.peak_level, alarm.detail) == (raised.id, 4, "level 2.4 m >= 2.2")
    assert alarm.acknowledged_by == "local (at the gateway)"


OLD_API_TOKENS = """
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
"""


def test_a_database_from_before_token_expiry_gives_its_tokens_90_days(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    secret = "hwt_" + "s" * 43
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_API_TOKENS)
        conn.execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?)",
            ("old-script", "viewer", token_hash(secret), T0),
        )
    conn.close()
    before = time.time()
    repository = SQLiteRepository(path, durable=False)
    again = SQLiteRepository(path, durable=False)  # a second process opening it: no change
    token = repository.api_token_for_secret(secret, time.time())
    assert token is not None
    assert token.expires_at is not None
    assert before + API_TOKEN_TTL_S <= token.expires_at <= time.time() + API_TOKEN_TTL_S
    assert again.api_token_for_secret(secret, token.expires_at) is None
    repository.close()
    again.close()


def test_a_token_cannot_be_redeemed_twice_even_concurrently_written(
    repository: SQLiteRepository,
) -> None:
    _token, secret = repository.create_enrollment_token("site", time.time() + 60, None, None, T0)
    repository.redeem_enrollment_token(
        secret, NewGateway("gw-aaaaaaaaaa", "k" * 44, "$7$x", None, None), time.time()
    )
    with pytest.raises(EnrollmentRefusedError, match="already used") as refused:
        repository.redeem_enrollment_token(
            secret, NewGateway("gw-bbbbbbbbbb", "j" * 44, "$7$x", None, None), time.time()
        )
    assert refused.value.gone
    assert [user for user, _ in repository.broker_accounts()] == [GW, "gw-aaaaaaaaaa"]


def test_the_enrolled_gateway_may_redeem_its_token_again_until_it_expires(
    repository: SQLiteRepository,
) -> None:
    # Its first answer was lost: same key, so same gateway, and only the new password.
    _token, secret = repository.create_enrollment_token("site", T0 + 60, None, None, T0)
    first = NewGateway("gw-aaaaaaaaaa", "k" * 44, "$7$first", "pi", None)
    repository.redeem_enrollment_token(secret, first, T0)
    again = NewGateway("gw-cccccccccc", "k" * 44, "$7$again", None, "1.2.0")
    assert repository.redeem_enrollment_token(secret, again, T0 + 30).id == "gw-aaaaaaaaaa"
    assert dict(repository.broker_accounts())["gw-aaaaaaaaaa"] == "$7$again"
    gateway = repository.get_gateway("gw-aaaaaaaaaa")
    assert (gateway.hostname, gateway.agent_version) == ("pi", "1.2.0")
    with pytest.raises(EnrollmentRefusedError, match="already used"):
        repository.redeem_enrollment_token(secret, again, T0 + 60)  # expired now
    assert dict(repository.broker_accounts())["gw-aaaaaaaaaa"] == "$7$again"
    assert [user for user, _ in repository.broker_accounts()] == [GW, "gw-aaaaaaaaaa"]
