"""What only the PostgreSQL backend has: day partitions, retention, rollups, shared writers.

Runs on a real PostgreSQL cluster the session starts in a temporary directory
(``hardware_sim/harness/postgres.py``), a fresh schema per test. The rules every backend
shares are in ``tests/test_storage_contract.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from fleet import cli as fleet_cli
from fleet.ota_tables import STALE_CLAIM_S
from fleet.postgres_ingest import GATEWAY_LOCK, ROLLUPS
from fleet.postgres_repository import PostgresRepository, cover
from fleet.postgres_schema import (
    DAY_S,
    DEFAULT_PARTITION,
    SCHEMA_LOCK,
    create_schema,
    ensure_partitions,
    partition_name,
    partitions,
)
from fleet.repository import NewGateway, NewSiteConfig, Received
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.harness.waiting import wait_until
from ota.document import DocumentKind
from protocol import BAD_QUALITY_MASK, DataBatch, EventBatch, EventRow, Quality, Stream

DAY0 = 1_750_032_000  # a UTC midnight
GW = "gw-0123456789"


@pytest.fixture
def url(postgres: PostgresCluster) -> Iterator[str]:
    with postgres.fresh_schema() as schema_url:
        yield schema_url


@pytest.fixture
def store(url: str) -> Iterator[PostgresRepository]:
    repository = PostgresRepository(url)
    _token, secret = repository.create_enrollment_token("site", DAY0 + 60, None, None, DAY0)
    repository.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), DAY0)
    yield repository
    repository.close()


def batch(first: int, last: int, start: float, every_s: float) -> Received:
    rows = [(s, start + (s - first) * every_s, "rain", 1.0, 0) for s in range(first, last + 1)]
    return Received(GW, start, DataBatch(gateway_id=GW, first_seq=first, last_seq=last, rows=rows))


def raw_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert row is not None
    return int(row[0])


def test_readings_go_to_one_partition_per_utc_day(store: PostgresRepository, url: str) -> None:
    # 3 days of one reading an hour, in one batch.
    store.commit([batch(1, 72, DAY0, 3600)])
    with psycopg.connect(url) as conn:
        assert partitions(conn) == [DAY0, DAY0 + DAY_S, DAY0 + 2 * DAY_S]
        per_day = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert per_day == [(partition_name(DAY0 + d * DAY_S), 24) for d in range(3)]


def test_retention_drops_whole_old_days_and_the_chart_still_draws_them(
    store: PostgresRepository, url: str
) -> None:
    store.commit([batch(1, 72, DAY0, 3600)])
    before = store.reading_buckets(GW, "rain", DAY0, DAY0 + 3 * DAY_S, DAY_S)
    # The cut-off is inside the second day: only the first day is all older.
    dropped = store.drop_readings_before(DAY0 + DAY_S + 3600)
    assert dropped == [partition_name(DAY0)]
    assert raw_rows(url) == 48
    assert [p.seq for p in store.readings(GW, "rain", DAY0, DAY0 + DAY_S, 100)] == []
    # Whole-day buckets read the hour rollups, which retention keeps.
    assert store.reading_buckets(GW, "rain", DAY0, DAY0 + 3 * DAY_S, DAY_S) == before
    assert [b.count for b in before] == [24, 24, 24]
    # A resend of the dropped day is still recognised: the marks, not the rows, decide.
    result = store.commit([batch(1, 24, DAY0, 3600)])
    assert (result.rows_stored, result.acks) == (0, {(GW, Stream.READINGS): 72})
    assert raw_rows(url) == 48


def test_late_readings_of_a_day_another_worker_dropped_are_stored_not_refused(
    store: PostgresRepository, url: str
) -> None:
    store.commit([batch(1, 10, DAY0 + 100, 1)])  # this worker knows the day's partition
    other = PostgresRepository(url)
    assert other.drop_readings_before(DAY0 + DAY_S) == [partition_name(DAY0)]
    other.close()
    late = batch(11, 12, DAY0 + 200, 1)  # same day, after retention took it
    result = store.commit([late])
    assert (result.rows_stored, result.rejected) == (2, [])
    assert result.acks == {(GW, Stream.READINGS): 12}
    assert raw_rows(url) == 2


def test_the_thirty_day_chart_reads_rollups_and_at_most_a_minute_of_raw_rows_a_bucket() -> None:
    # The console asks for 720 hourly buckets back from "now", on no boundary: each bucket
    # is 59 whole minutes from the minute rollup and under a minute of raw rows.
    now = DAY0 + 30 * DAY_S + 1234.5
    plan = cover(now - 30 * DAY_S, now, 3600)
    assert (len(plan.hours), len(plan.minutes)) == (0, 720)
    assert sum(hi - lo for lo, hi in plan.raw) == pytest.approx(720 * 60)
    covered = sum(hi - lo for lo, hi in [*plan.hours, *plan.minutes, *plan.raw])
    assert covered == pytest.approx(30 * DAY_S)
    # On the hour, it is 720 hour rows and nothing else.
    aligned = cover(DAY0, DAY0 + 30 * DAY_S, 3600)
    assert (len(aligned.hours), aligned.minutes, aligned.raw) == (720, [], [])


def test_workers_sharing_a_gateway_store_each_row_once_in_any_order(url: str) -> None:
    # Three ingest workers get one gateway's batches out of order, with resends, at once.
    workers = [PostgresRepository(url, pool_size=2) for _ in range(3)]
    _token, secret = workers[0].create_enrollment_token("site", DAY0 + 60, None, None, DAY0)
    workers[0].redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), DAY0)
    batches = [batch(first, first + 9, DAY0 + first, 1) for first in range(1, 300, 10)]
    shares = [batches[2::3] + batches[:5], batches[1::3][::-1], batches[0::3] + batches[10:12]]
    start = threading.Barrier(len(workers))
    acks: list[int] = []
    stored: list[int] = []

    def work(index: int) -> None:
        start.wait()
        for one in shares[index]:
            result = workers[index].commit([one])
            acks.append(result.acks[(GW, Stream.READINGS)])
            stored.append(result.rows_stored)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(stored) == 300
    assert raw_rows(url) == 300
    assert workers[0].get_gateway(GW).streams["readings"] == 300
    held = workers[1].readings(GW, "rain", 0, DAY0 + 1000, 1000)
    assert [p.seq for p in held] == list(range(1, 301))
    for worker in workers:
        worker.close()


def waiting_for_a_lock(
    url: str, locktype: str, classid: int | None = None, pid: int | None = None
) -> bool:
    """Whether a session (``pid``, if given) waits for a lock of ``locktype`` (``classid``)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = %s AND NOT granted "
            "AND (%s::bigint IS NULL OR classid = %s::bigint) "
            "AND (%s::integer IS NULL OR pid = %s::integer)",
            (locktype, classid, classid, pid, pid),
        ).fetchone()
    return row is not None and int(row[0]) > 0


def waiting_for_a_gateway_lock(url: str) -> bool:
    return waiting_for_a_lock(url, "advisory", GATEWAY_LOCK)


def test_rows_copied_before_the_locks_are_rolled_back_when_another_commit_took_them(
    store: PostgresRepository, url: str
) -> None:
    # The channel exists, so the next commit copies its rows before it takes the lock.
    store.commit([batch(1, 10, DAY0, 1)])
    results = []
    with psycopg.connect(url) as other:
        other.execute(
            "SELECT pg_advisory_xact_lock((%s::bigint << 32) | num) FROM gateways WHERE id = %s",
            (GATEWAY_LOCK, GW),
        )
        committing = threading.Thread(
            target=lambda: results.append(store.commit([batch(11, 20, DAY0 + 10, 1)]))
        )
        committing.start()
        wait_until(lambda: waiting_for_a_gateway_lock(url), 10, "the commit to wait for the lock")
        # Meanwhile another worker committed seqs 11..20 (its mark says so).
        other.execute(
            "UPDATE stream_marks SET contiguous = 20 FROM gateways g "
            "WHERE g.id = %s AND stream_marks.gw = g.num AND stream = 'readings'",
            (GW,),
        )
    committing.join(timeout=30)
    (result,) = results
    assert (result.rows_stored, result.rows_duplicate) == (0, 10)
    assert result.acks == {(GW, Stream.READINGS): 20}
    assert raw_rows(url) == 10  # the copied rows went back, and no rollup counts them
    with psycopg.connect(url) as conn:
        for table, _step in ROLLUPS:
            counted = conn.execute(f"SELECT sum(good) FROM {table}").fetchone()
            assert counted is not None
            assert int(counted[0]) == 10


def waiting_for_a_row_another_commit_copied(url: str) -> bool:
    return waiting_for_a_lock(url, "transactionid")


def test_a_resend_copied_while_its_original_commits_is_done_again_and_stored_once(
    store: PostgresRepository, url: str
) -> None:
    # The race the copy before the locks has: the same batch in two commits at once.
    store.commit([batch(1, 10, DAY0, 1)])
    results = []

    def commit_it() -> None:
        results.append(store.commit([batch(11, 20, DAY0 + 10, 1)]))

    original, resend = threading.Thread(target=commit_it), threading.Thread(target=commit_it)
    with psycopg.connect(url) as other:
        other.execute(
            "SELECT pg_advisory_xact_lock((%s::bigint << 32) | num) FROM gateways WHERE id = %s",
            (GATEWAY_LOCK, GW),
        )
        original.start()  # copies its rows, then waits for the lock
        wait_until(lambda: waiting_for_a_gateway_lock(url), 10, "the original to wait")
        resend.start()  # its copy waits on the original's uncommitted rows
        wait_until(lambda: waiting_for_a_row_another_commit_copied(url), 10, "the resend to wait")
    original.join(timeout=30)
    resend.join(timeout=30)
    assert sorted((r.rows_stored, r.rows_duplicate) for r in results) == [(0, 10), (10, 0)]
    assert [r.acks for r in results] == [{(GW, Stream.READINGS): 20}] * 2
    assert [r.rejected for r in results] == [[], []]
    assert raw_rows(url) == 20
    with psycopg.connect(url) as conn:
        for table, _step in ROLLUPS:
            counted = conn.execute(f"SELECT sum(good) FROM {table}").fetchone()
            assert counted is not None
            assert int(counted[0]) == 20


def test_the_rollups_a_worker_sums_are_the_ones_sql_sums_from_the_raw_rows(
    store: PostgresRepository, url: str
) -> None:
    bad = int(Quality.TIMEOUT)
    assert bad & BAD_QUALITY_MASK
    names = ("rain", "level")
    values = [0.25, -3.5, None, 7.0, 2.75, 1.5, None, -0.25]
    qualities = [0, 0, 0, bad, 0, bad, bad, 0]

    def mixed(first: int, count: int) -> Received:
        # One reading every 23 s from a minute before an hour, across both boundaries.
        rows = [
            (s, DAY0 + 3600 - 60 + 23 * s, names[s % 2], values[s % 8], qualities[s % 8])
            for s in range(first, first + count)
        ]
        last = first + count - 1
        payload = DataBatch(gateway_id=GW, first_seq=first, last_seq=last, rows=rows)
        return Received(GW, DAY0, payload)

    store.commit([mixed(1, 200), mixed(201, 150)])
    store.commit([mixed(351, 250)])  # adds to the buckets the first commit made
    with psycopg.connect(url) as conn:
        # A minute has a row per commit that summed readings of it; an hour has one.
        split = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM readings_minute GROUP BY channel, start "
            "HAVING count(*) > 1) AS m"
        ).fetchone()
        assert split is not None
        assert split[0] >= 1
        for table, step in ROLLUPS:
            held = conn.execute(
                f"SELECT channel, start, sum(good), sum(bad), sum(total), min(low), max(high) "
                f"FROM {table} GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            if table == "readings_hour":
                count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                assert count == (len(held),)
            summed = conn.execute(
                f"SELECT channel, floor(ts / {step}) * {step} AS start, "
                "count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok), "
                "coalesce(sum(value) FILTER (WHERE ok), 0), min(value) FILTER (WHERE ok), "
                "max(value) FILTER (WHERE ok) FROM (SELECT channel, ts, value, "
                "value IS NOT NULL AND (quality & %s) = 0 AS ok FROM readings) AS r "
                "GROUP BY 1, 2 ORDER BY 1, 2",
                (BAD_QUALITY_MASK,),
            ).fetchall()
            assert held == summed
            assert len(held) > 2


def test_rows_of_one_statement_share_one_class_and_read_by_name_and_position(
    store: PostgresRepository,
) -> None:
    read = "SELECT id, site_id FROM gateways WHERE id = ?"
    first, again = store._sql.row(read, [GW]), store._sql.row(read, [GW])
    assert first is not None
    assert again is not None
    assert type(first) is type(again)  # made once, not at every execute
    assert (first["site_id"], first[0], dict(first)) == ("site", GW, {"id": GW, "site_id": "site"})
    other = store._sql.row("SELECT site_id, id FROM gateways WHERE id = ?", [GW])
    assert other is not None
    assert (other["id"], other[0]) == (GW, "site")


def issue_config(store: PostgresRepository, document: bytes) -> int:
    """Sign a config for the gateway and queue it, as ``fleet config push`` does; its version."""
    config = NewSiteConfig("[site]\n", GW, None, None, "operator")
    version = store.ota.create_config(config, DAY0, lambda _version, _ids: document).version
    assert version is not None
    return version


def test_workers_claim_each_document_once_and_a_failed_or_abandoned_one_comes_back(
    store: PostgresRepository, url: str
) -> None:
    other = PostgresRepository(url)
    version = issue_config(store, b"signed-1")
    first = store.ota.claim_documents(DAY0 + 1)
    assert [(d.gateway_id, d.kind, d.version, d.document) for d in first] == [
        (GW, DocumentKind.CONFIG, version, b"signed-1")
    ]
    assert other.ota.claim_documents(DAY0 + 1) == []  # one worker publishes it
    store.ota.finish_documents([], first, DAY0 + 2)  # its publish failed: queued again
    again = other.ota.claim_documents(DAY0 + 3)
    assert [d.version for d in again] == [version]
    other.ota.finish_documents(again, [], DAY0 + 4)
    assert store.ota.claim_documents(DAY0 + 5) == []
    # A worker that claims and dies: the claim is taken again after a minute.
    newer = issue_config(store, b"signed-2")
    assert [d.version for d in store.ota.claim_documents(DAY0 + 10)] == [newer]
    assert other.ota.claim_documents(DAY0 + 10 + STALE_CLAIM_S - 1) == []
    assert [d.version for d in other.ota.claim_documents(DAY0 + 11 + STALE_CLAIM_S)] == [newer]
    other.close()


def test_a_newer_document_claimed_meanwhile_is_published_again_after_the_older_one(
    store: PostgresRepository,
) -> None:
    issue_config(store, b"one")
    [older] = store.ota.claim_documents(DAY0 + 1)
    issue_config(store, b"two")  # issued while version 1 was being published
    store.ota.finish_documents([older], [], DAY0 + 2)
    # The broker must end up retaining version 2, whichever publish finished last.
    assert [d.document for d in store.ota.claim_documents(DAY0 + 3)] == [b"two"]


def test_a_time_no_day_partition_could_hold_is_stored_in_the_default_partition(
    store: PostgresRepository, url: str
) -> None:
    # The wire models refuse such a time (year 33658); if one slipped through, it is
    # stored and acked, and no partition is made for it.
    rows = [(1, 1e12, "rain", 1.0, 0)]
    far = DataBatch.model_construct(gateway_id=GW, first_seq=1, last_seq=1, rows=rows)
    result = store.commit([Received(GW, DAY0, far)])
    assert (result.rows_stored, result.rejected) == (1, [])
    assert result.acks == {(GW, Stream.READINGS): 1}
    assert store.commit([batch(2, 3, DAY0, 1)]).acks == {(GW, Stream.READINGS): 3}
    assert where_rows_are(url) == {DEFAULT_PARTITION: 1, partition_name(DAY0): 2}


def where_rows_are(url: str) -> dict[str, int]:
    """How many readings each partition holds (the ones holding any)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM readings GROUP BY 1"
        ).fetchall()
    return {str(name).rsplit(".", 1)[-1]: int(count) for name, count in rows}


def test_readings_stamped_days_ahead_of_the_fleets_clock_make_no_partition_until_their_day(
    store: PostgresRepository, url: str
) -> None:
    # A gateway whose clock runs a year fast sends 400 readings, a day apart: before, each
    # made a day partition that retention would not reach for a year and more.
    year_ahead = DAY0 + 366 * DAY_S
    fast = batch(1, 400, year_ahead, DAY_S)
    fast = Received(GW, DAY0, fast.payload)  # received now, by the fleet's clock
    result = store.commit([fast])
    assert (result.rows_stored, result.acks) == (400, {(GW, Stream.READINGS): 400})
    with psycopg.connect(url) as conn:
        assert partitions(conn) == []
    assert where_rows_are(url) == {DEFAULT_PARTITION: 400}
    # They are readings like any other: the gateway's chart shows them.
    shown = store.readings(GW, "rain", year_ahead, year_ahead + 3 * DAY_S, 10)
    assert [p.seq for p in shown] == [1, 2, 3]
    # A day 7 days ahead gets its partition; a day 8 days ahead does not.
    store.commit([Received(GW, DAY0, batch(401, 401, DAY0 + 7 * DAY_S, 1).payload)])
    store.commit([Received(GW, DAY0, batch(402, 402, DAY0 + 8 * DAY_S, 1).payload)])
    with psycopg.connect(url) as conn:
        assert partitions(conn) == [DAY0 + 7 * DAY_S]
    # A year on, the first fast reading's day is made, and its reading moves into it.
    now = year_ahead + 3600
    result = store.commit([Received(GW, now, batch(403, 403, now, 1).payload)])
    assert (result.rows_stored, result.rejected) == (1, [])
    assert where_rows_are(url) == {
        DEFAULT_PARTITION: 400,  # 399 fast ones left, and the one 8 days ahead
        partition_name(DAY0 + 7 * DAY_S): 1,
        partition_name(year_ahead): 2,
    }
    assert raw_rows(url) == 403
    # A resend of the fast batch stores nothing: the marks, not the rows, decide.
    again = store.commit([Received(GW, now, fast.payload)])
    assert (again.rows_stored, again.rows_duplicate) == (0, 400)
    # Retention deletes the waiting rows older than its cut-off with the old days.
    store.drop_readings_before(year_ahead + 10 * DAY_S)
    assert raw_rows(url) == 390  # the fast rows from 10 days after the first on


def test_a_batch_stamped_days_ahead_is_stored_while_another_worker_holds_the_schema_lock(
    store: PostgresRepository, url: str
) -> None:
    # Retention, or a worker making a day partition, holds the schema lock. A gateway whose
    # clock runs a month fast needs no partition, so its batches do not queue behind it.
    store.commit([batch(1, 1, DAY0, 1)])  # today's partition, made and known
    ahead = Received(GW, DAY0 + 60, batch(2, 50, DAY0 + 30 * DAY_S, 3600).payload)
    results = []
    with psycopg.connect(url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        committing = threading.Thread(target=lambda: results.append(store.commit([ahead])))
        committing.start()
        committing.join(timeout=20)
        assert not committing.is_alive(), "the batch waited for the schema lock"
    (result,) = results
    assert (result.rows_stored, result.acks) == (49, {(GW, Stream.READINGS): 50})
    assert where_rows_are(url) == {partition_name(DAY0): 1, DEFAULT_PARTITION: 49}


def test_a_day_made_while_its_reading_waits_uncommitted_in_the_default_partition_takes_it(
    store: PostgresRepository, url: str
) -> None:
    # A worker whose group was received before the day was due wrote a reading of that day
    # to readings_default and has not committed yet, while another worker makes the day.
    # The maker waits for it, then moves the reading in; had it moved the rows first, the
    # new partition would meet that reading in the default one and fail.
    day = DAY0 + 2 * DAY_S
    made: list[set[int]] = []
    failed: list[Exception] = []
    maker_pid: list[int] = []

    def make_the_day() -> None:
        with psycopg.connect(url) as conn:
            maker_pid.append(conn.info.backend_pid)
            try:
                made.append(ensure_partitions(conn, {day}, now=day))
            except psycopg.Error as exc:
                failed.append(exc)

    with psycopg.connect(url) as writer:
        writer.execute("INSERT INTO readings VALUES (1, 1, %s, 1, 2.5, 0)", (day + 60,))
        maker = threading.Thread(target=make_the_day)
        maker.start()
        wait_until(
            lambda: bool(maker_pid) and waiting_for_a_lock(url, "relation", pid=maker_pid[0]),
            10,
            "the maker to wait for the writer",
        )
    maker.join(timeout=30)
    assert (failed, made) == ([], [{day}])
    assert where_rows_are(url) == {partition_name(day): 1}


def test_the_alarm_watch_hears_alarms_raised_raised_again_answered_and_cleared(
    store: PostgresRepository,
) -> None:
    # The same looks as the SQLite watch's test (tests/test_callans.py), on NOTIFY.
    watch = store.open_alarm_watch()
    seq = 0

    def report(kind: str, level: int, detail: dict[str, object] | None = None) -> None:
        nonlocal seq
        seq += 1
        row = EventRow(seq=seq, ts=DAY0 + seq, kind=kind, subject="slope", level=level,
                       detail=detail or {})  # fmt: skip
        events = EventBatch(gateway_id=GW, first_seq=seq, last_seq=seq, rows=[row])
        store.commit([Received(GW, DAY0 + seq, events)])

    try:
        assert watch.changed() is False  # the first look only learns how things are
        assert watch.changed() is False  # nothing committed since
        store.commit([batch(1, 10, DAY0, 1)])
        assert watch.changed() is False  # a commit, but no alarm changed
        report("alarm", 2)
        assert watch.changed() is True  # raised (yellow)
        assert watch.changed() is False
        report("alarm", 4)
        assert watch.changed() is True  # the same alarm, raised to red
        answer = {"alarm_seq": 2, "person": "甲 (village)", "via": "confirm button", "at": DAY0}
        report("village_answer", 4, answer)
        assert watch.changed() is True  # answered at the gateway
        alarm = store.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=1)[0]
        store.acknowledge_alarm(alarm.id, "operator", None, DAY0 + 9)
        assert watch.changed() is False  # acknowledged: nothing the engine acts on
        report("alarm", 0)
        assert watch.changed() is True  # cleared
    finally:
        watch.close()


def test_a_minute_table_with_an_older_releases_primary_key_loses_it_and_takes_commits(
    url: str,
) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE readings_minute (channel BIGINT NOT NULL, start DOUBLE PRECISION "
            "NOT NULL, good BIGINT NOT NULL, bad BIGINT NOT NULL, total DOUBLE PRECISION NOT "
            "NULL, low DOUBLE PRECISION, high DOUBLE PRECISION, PRIMARY KEY (channel, start))"
        )
        create_schema(conn)
        keys = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'readings_minute'::regclass"
        ).fetchone()
        assert keys == (0,)
    store = PostgresRepository(url)
    try:
        _token, secret = store.create_enrollment_token("site", DAY0 + 60, None, None, DAY0)
        store.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), DAY0)
        # Both batches end mid-minute: the second commit's share of a minute is a row too.
        store.commit([batch(1, 7, DAY0, 10.0)])
        store.commit([batch(8, 14, DAY0 + 70.0, 10.0)])
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*), sum(good) FROM readings_minute").fetchone()
    assert rows == (4, 14)  # minutes 0 and 2 once, minute 1 from each commit


def test_fleet_prune_readings_drops_days_older_than_asked_and_the_chart_keeps_them(
    store: PostgresRepository, url: str
) -> None:
    store.commit([batch(1, 72, DAY0, 3600)])  # three days of June 2025
    now = time.time()
    store.commit([Received(GW, now, batch(73, 74, now - 120, 60).payload)])
    before = store.reading_buckets(GW, "rain", DAY0, DAY0 + 3 * DAY_S, DAY_S)
    pruned = CliRunner().invoke(
        fleet_cli.app, ["prune-readings", "--older-than", "90d", "--database", url]
    )
    assert pruned.exit_code == 0, pruned.output
    assert "3 day partitions dropped" in pruned.output
    assert partition_name(DAY0) in pruned.output
    assert raw_rows(url) == 2  # today's two are kept
    assert store.reading_buckets(GW, "rain", DAY0, DAY0 + 3 * DAY_S, DAY_S) == before
    # Under a day is refused, and so is SQLite, whose charts read the raw rows.
    slip = CliRunner().invoke(
        fleet_cli.app, ["prune-readings", "--older-than", "30m", "--database", url]
    )
    assert slip.exit_code == 2
    assert "under a day" in slip.output
    assert raw_rows(url) == 2
    sqlite = CliRunner().invoke(fleet_cli.app, ["prune-readings", "--older-than", "90d"])
    assert sqlite.exit_code == 2
    assert "for PostgreSQL" in sqlite.output
