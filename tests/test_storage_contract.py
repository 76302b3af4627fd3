"""The storage contract: what every backend of the fleet's stores must do, run on each one.

Each test runs once per backend (``sqlite``: a fresh file; ``postgresql``: a fresh schema
in a real PostgreSQL cluster that the session starts in a temporary directory). It speaks
only the protocols of ``fleet/repository.py`` (``TokenStore``, ``GatewayStore``,
``ReadingStore``, ``AlarmStore``), so a test that passes on one backend and fails on
another is a backend bug, never a test of one backend's internals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.postgres_repository import PostgresRepository
from fleet.repository import (
    COMMAND_CLAIM_S,
    ConflictError,
    CoreStore,
    EnrollmentRefusedError,
    NewGateway,
    NotFoundError,
    Received,
    Role,
)
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from protocol import (
    BAD_QUALITY_MASK,
    CommandResult,
    DataBatch,
    EventBatch,
    EventRow,
    GatewayState,
    Health,
    Stream,
)

T0 = 1_750_000_000.0
GW = "gw-0123456789"
OTHER = "gw-abcdefabcd"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CoreStore]:
    """An empty store of each backend, closed after the test."""
    if request.param == "sqlite":
        sqlite = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
        yield sqlite
        sqlite.close()
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        postgres = PostgresRepository(url)
        try:
            yield postgres
        finally:
            postgres.close()


@pytest.fixture
def enrolled(store: CoreStore) -> CoreStore:
    """``store`` with gateway GW enrolled at site ``site``."""
    enroll(store, GW, "k" * 44)
    return store


def enroll(store: CoreStore, gateway_id: str, key: str, site: str = "site") -> None:
    _token, secret = store.create_enrollment_token(site, T0 + 60, None, None, T0)
    store.redeem_enrollment_token(secret, NewGateway(gateway_id, key, "$7$x", None, None), T0)


def data(
    first: int, last: int, gateway: str = GW, channels: tuple[str, ...] = ("rain",)
) -> Received:
    rows = [(s, T0 + s, channels[s % len(channels)], s * 0.5, 0) for s in range(first, last + 1)]
    batch = DataBatch(gateway_id=gateway, first_seq=first, last_seq=last, rows=rows)
    return Received(gateway, T0, batch)


def ack(store: CoreStore, *batches: Received) -> int:
    return store.commit(batches).acks[(GW, Stream.READINGS)]


def event(seq: int, level: int | None, kind: str = "alarm", **detail: object) -> EventRow:
    return EventRow(seq=seq, ts=T0 + seq, kind=kind, subject="slope", level=level, detail=detail)


def events(*rows: EventRow, gateway: str = GW) -> Received:
    batch = EventBatch(gateway_id=gateway, first_seq=rows[0].seq, last_seq=rows[-1].seq, rows=rows)
    return Received(gateway, T0, batch)


def active(store: CoreStore) -> list[int]:
    found = store.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    return [a.level for a in found]


# --- TokenStore ------------------------------------------------------------------------------


def test_an_api_token_works_by_its_secret_until_it_expires_or_is_revoked(
    store: CoreStore,
) -> None:
    token, secret = store.create_api_token("console", Role.OPERATOR, T0, ttl_s=100)
    found = store.api_token_for_secret(secret, T0 + 99)
    assert found is not None
    assert (found.id, found.name, found.role, found.expires_at) == (
        token.id,
        "console",
        Role.OPERATOR,
        T0 + 100,
    )
    assert store.api_token_for_secret(secret, T0 + 100) is None
    assert store.api_token_for_secret("hwt_wrong", T0) is None
    revoked = store.revoke_api_token(token.id, T0 + 5)
    assert revoked.revoked_at == T0 + 5
    assert store.api_token_for_secret(secret, T0 + 6) is None
    assert [t.id for t in store.list_api_tokens()] == [token.id]
    with pytest.raises(NotFoundError):
        store.revoke_api_token(token.id + 1000, T0)


def test_rotating_a_token_stops_the_old_secret_at_once(store: CoreStore) -> None:
    token, old = store.create_api_token("script", Role.VIEWER, T0)
    rotated, new = store.rotate_api_token(token.id, T0 + 10, ttl_s=50)
    assert (rotated.id, rotated.expires_at) == (token.id, T0 + 60)
    assert store.api_token_for_secret(old, T0 + 11) is None
    assert store.api_token_for_secret(new, T0 + 11) == rotated
    store.revoke_api_token(token.id, T0 + 20)
    with pytest.raises(ConflictError, match="revoked"):
        store.rotate_api_token(token.id, T0 + 30)
    assert store.api_token(token.id + 1000) is None


# --- GatewayStore ----------------------------------------------------------------------------


def test_an_enrollment_token_redeems_once_and_gives_the_gateway_a_broker_account(
    store: CoreStore,
) -> None:
    token, secret = store.create_enrollment_token("creek", T0 + 60, "admin", "north", T0)
    gateway = store.redeem_enrollment_token(
        secret, NewGateway(GW, "k" * 44, "$7$pw", "pi", "1.0"), T0 + 1
    )
    assert (gateway.id, gateway.site_id, gateway.hostname, gateway.enrolled_at) == (
        GW,
        "creek",
        "pi",
        T0 + 1,
    )
    assert gateway.streams == {"readings": 0, "events": 0}
    assert store.broker_accounts() == [(GW, "$7$pw")]
    with pytest.raises(EnrollmentRefusedError, match="already used") as refused:
        store.redeem_enrollment_token(
            secret, NewGateway(OTHER, "j" * 44, "$7$x", None, None), T0 + 2
        )
    assert refused.value.gone
    [listed] = store.list_enrollment_tokens()
    assert (listed.id, listed.used_at, listed.gateway_id) == (token.id, T0 + 1, GW)
    with pytest.raises(ConflictError, match="already used"):
        store.revoke_enrollment_token(token.id, T0 + 3)


def test_the_enrolled_gateway_may_redeem_its_token_again_until_it_expires(
    store: CoreStore,
) -> None:
    _token, secret = store.create_enrollment_token("site", T0 + 60, None, None, T0)
    store.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$first", "pi", None), T0)
    again = NewGateway("gw-cccccccccc", "k" * 44, "$7$again", None, "1.2.0")
    assert store.redeem_enrollment_token(secret, again, T0 + 30).id == GW
    assert store.broker_accounts() == [(GW, "$7$again")]
    with pytest.raises(EnrollmentRefusedError, match="already used"):
        store.redeem_enrollment_token(secret, again, T0 + 60)


def test_unknown_revoked_and_expired_enrollment_tokens_are_refused(store: CoreStore) -> None:
    gateway = NewGateway(GW, "k" * 44, "$7$x", None, None)
    with pytest.raises(EnrollmentRefusedError, match="unknown") as unknown:
        store.redeem_enrollment_token("hwe_nothing", gateway, T0)
    assert not unknown.value.gone
    revoked, secret = store.create_enrollment_token("site", T0 + 60, None, None, T0)
    assert store.revoke_enrollment_token(revoked.id, T0 + 1).revoked_at == T0 + 1
    with pytest.raises(EnrollmentRefusedError, match="revoked"):
        store.redeem_enrollment_token(secret, gateway, T0 + 2)
    _expired, late = store.create_enrollment_token("site", T0 + 60, None, None, T0)
    with pytest.raises(EnrollmentRefusedError, match="expired"):
        store.redeem_enrollment_token(late, gateway, T0 + 60)
    assert store.list_gateways() == []
    with pytest.raises(NotFoundError):
        store.get_gateway(GW)


def test_gateways_are_listed_by_id_and_by_site(store: CoreStore) -> None:
    enroll(store, OTHER, "o" * 44, site="north")
    enroll(store, GW, "k" * 44, site="south")
    assert [g.id for g in store.list_gateways()] == [GW, OTHER]
    assert [g.id for g in store.site_gateways("north")] == [OTHER]
    assert store.site_gateways("nowhere") == []


def test_health_and_state_show_on_the_gateway_and_a_retained_state_is_not_seen_now(
    enrolled: CoreStore,
) -> None:
    health = Health(gateway_id=GW, ts=T0 + 5, agent_version="1.3.0", uptime_s=60)
    online = GatewayState(state="online", ts=T0 + 6)
    enrolled.commit([Received(GW, T0 + 7, health), Received(GW, T0 + 8, online, retained=True)])
    gateway = enrolled.get_gateway(GW)
    assert (gateway.state, gateway.state_at, gateway.agent_version) == ("online", T0 + 8, "1.3.0")
    assert gateway.health is not None
    assert gateway.health["uptime_s"] == 60
    assert (gateway.health_at, gateway.last_seen) == (T0 + 5, T0 + 7)
    older = Health(gateway_id=GW, ts=T0 + 1, agent_version="1.2.0", uptime_s=1)
    enrolled.commit([Received(GW, T0 + 9, older)])  # an older health changes nothing
    assert enrolled.get_gateway(GW).health_at == T0 + 5


def test_a_health_stamped_years_ahead_does_not_hide_the_reports_after_it(
    enrolled: CoreStore,
) -> None:
    # the gateway's clock ran to 2099 for a while (a bad time source), then was put right
    years = 74 * 365 * 86400.0
    ahead = Health(gateway_id=GW, ts=T0 + years, agent_version="1.3.0", uptime_s=60)
    enrolled.commit([Received(GW, T0 + 7, ahead)])
    assert enrolled.get_gateway(GW).health_at == T0 + years
    put_right = Health(gateway_id=GW, ts=T0 + 70, agent_version="1.3.0", uptime_s=120)
    enrolled.commit([Received(GW, T0 + 71, put_right)])
    gateway = enrolled.get_gateway(GW)
    assert gateway.health is not None
    assert (gateway.health_at, gateway.health["uptime_s"]) == (T0 + 70, 120)
    older = Health(gateway_id=GW, ts=T0 + 65, agent_version="1.3.0", uptime_s=115)
    enrolled.commit([Received(GW, T0 + 72, older)])  # order by the gateway's clock again
    assert enrolled.get_gateway(GW).health_at == T0 + 70


def test_a_state_received_earlier_but_committed_later_changes_nothing(
    enrolled: CoreStore,
) -> None:
    # A reconnect: the broker sends the old session's Last Will, then the new "online".
    # Committed side by side (two commit threads, two workers), the Will may land last.
    will = GatewayState(state="offline")
    online = GatewayState(state="online", ts=T0 + 2, agent_version="1.3.0")
    enrolled.commit([Received(GW, T0 + 2, online)])
    enrolled.commit([Received(GW, T0 + 1, will)])
    gateway = enrolled.get_gateway(GW)
    assert (gateway.state, gateway.state_at, gateway.agent_version) == ("online", T0 + 2, "1.3.0")


def test_a_command_is_claimed_by_one_delivery_and_may_be_put_back(enrolled: CoreStore) -> None:
    queued = enrolled.queue_command(GW, "ack_alarm", {"rule": "slope"}, "op", T0)
    assert queued.status == "pending"
    [claimed] = enrolled.claim_commands(T0 + 1)
    assert (claimed.id, claimed.gateway_id, claimed.args, claimed.status) == (
        queued.id,
        GW,
        {"rule": "slope"},
        "publishing",
    )
    assert enrolled.claim_commands(T0 + 2) == []
    enrolled.release_command(queued.id)
    assert [c.id for c in enrolled.claim_commands(T0 + 3)] == [queued.id]
    with pytest.raises(NotFoundError):
        enrolled.queue_command(OTHER, "ack_alarm", {}, None, T0)


def test_a_claim_whose_publisher_died_expires_and_a_sent_command_is_never_claimed_again(
    enrolled: CoreStore,
) -> None:
    lost = enrolled.queue_command(GW, "ack_alarm", {"rule": "slope"}, "op", T0)
    sent = enrolled.queue_command(GW, "ack_alarm", {"rule": "rain"}, "op", T0 + 1)
    assert [c.id for c in enrolled.claim_commands(T0 + 10)] == [lost.id, sent.id]
    enrolled.command_sent(sent.id)  # the broker took it; the other's publisher was killed
    assert enrolled.claim_commands(T0 + 10 + COMMAND_CLAIM_S) == []  # not expired yet
    [again] = enrolled.claim_commands(T0 + 10.001 + COMMAND_CLAIM_S)
    assert (again.id, again.args) == (lost.id, {"rule": "slope"})
    assert enrolled.claim_commands(T0 + 11 + COMMAND_CLAIM_S) == []  # its new claim is young


def test_a_result_before_the_sent_record_is_kept_and_a_late_release_changes_nothing(
    enrolled: CoreStore,
) -> None:
    queued = enrolled.queue_command(GW, "ack_alarm", {}, "op", T0)
    enrolled.claim_commands(T0 + 1)
    result = CommandResult(id=queued.id, ok=True, ts=T0 + 2, detail="done")
    enrolled.commit([Received(GW, T0 + 2, result)])  # the gateway answered first
    enrolled.command_sent(queued.id)
    enrolled.release_command(queued.id)
    assert enrolled.claim_commands(T0 + 10 * COMMAND_CLAIM_S) == []


# --- ReadingStore ----------------------------------------------------------------------------


def test_the_ack_is_the_end_of_the_contiguous_committed_ranges(enrolled: CoreStore) -> None:
    assert ack(enrolled, data(1, 10)) == 10
    assert ack(enrolled, data(21, 30)) == 10  # a gap 11..20
    assert ack(enrolled, data(41, 50)) == 10
    assert ack(enrolled, data(11, 20)) == 30  # joins 21..30, not 41..50
    assert ack(enrolled, data(31, 40)) == 50
    assert enrolled.get_gateway(GW).streams == {"readings": 50, "events": 0}


def test_a_resent_batch_is_recognised_and_stores_nothing(enrolled: CoreStore) -> None:
    enrolled.commit([data(1, 100)])
    result = enrolled.commit([data(51, 150)])
    assert (result.rows_stored, result.rows_duplicate) == (50, 50)
    result = enrolled.commit([data(1, 150)])
    assert (result.rows_stored, result.rows_duplicate, result.acks) == (
        0,
        150,
        {(GW, Stream.READINGS): 150},
    )
    stored = enrolled.readings(GW, "rain", 0, T0 + 1000, 1000)
    assert [p.seq for p in stored] == list(range(1, 151))


def test_a_resend_of_a_range_above_a_gap_stores_nothing_twice(enrolled: CoreStore) -> None:
    enrolled.commit([data(11, 20)])
    assert enrolled.commit([data(11, 20)]).rows_stored == 0
    assert ack(enrolled, data(1, 10)) == 20
    assert len(enrolled.readings(GW, "rain", 0, T0 + 100, 100)) == 20


def test_a_batch_whose_rows_were_all_thinned_is_acked_and_stores_nothing(
    enrolled: CoreStore,
) -> None:
    # A gateway thins rows under its disk quota; a range may be left with none at all.
    thinned = DataBatch(gateway_id=GW, first_seq=11, last_seq=20, rows=[])
    result = enrolled.commit([data(1, 10), Received(GW, T0, thinned)])
    assert (result.acks, result.rejected) == ({(GW, Stream.READINGS): 20}, [])
    assert (result.rows_stored, result.rows_duplicate) == (10, 0)
    assert ack(enrolled, Received(GW, T0, thinned)) == 20  # alone, and resent


def test_readings_keep_their_channel_time_value_and_quality(enrolled: CoreStore) -> None:
    names = ("rain", "level", "tilt")
    enrolled.commit([data(1, 12, channels=names)])
    enrolled.commit([data(13, 24, channels=(*names, "crack"))])
    assert enrolled.channels(GW) == ["crack", "level", "rain", "tilt"]
    level = enrolled.readings(GW, "level", T0 + 4, T0 + 16, 100)
    assert [(p.seq, p.ts, p.value, p.quality) for p in level] == [
        (s, T0 + s, s * 0.5, 0) for s in (4, 7, 10, 13)
    ]
    assert [p.seq for p in enrolled.readings(GW, "rain", 0, T0 + 100, 3)] == [3, 6, 9]
    with pytest.raises(NotFoundError, match="no channel 'wind'"):
        enrolled.readings(GW, "wind", 0, T0, 10)
    with pytest.raises(NotFoundError):
        enrolled.readings(OTHER, "rain", 0, T0, 10)


def test_a_group_commit_acks_each_stream_once_with_its_final_mark(enrolled: CoreStore) -> None:
    enroll(enrolled, OTHER, "o" * 44)
    result = enrolled.commit(
        [data(1, 10), data(1, 4, gateway=OTHER), data(11, 22), events(event(1, 2))]
    )
    assert result.acks == {
        (GW, Stream.READINGS): 22,
        (OTHER, Stream.READINGS): 4,
        (GW, Stream.EVENTS): 1,
    }
    assert (result.rows_stored, result.rows_duplicate) == (27, 0)


def test_messages_from_unknown_gateways_are_rejected_not_stored(enrolled: CoreStore) -> None:
    batch = DataBatch(gateway_id=OTHER, first_seq=1, last_seq=1, rows=[(1, T0, "rain", 1.0, 0)])
    result = enrolled.commit([Received(OTHER, T0, batch), data(1, 1)])
    assert result.rejected == [(OTHER, "unknown_gateway", "not enrolled")]
    assert result.acks == {(GW, Stream.READINGS): 1}


def test_a_row_the_store_cannot_hold_costs_its_batch_only_and_is_never_acked(
    enrolled: CoreStore,
) -> None:
    enroll(enrolled, OTHER, "o" * 44)
    rows = [(1, T0, "rain", 1.0, 0), (2, math.nan, "rain", 1.0, 0)]
    unvalidated = DataBatch.model_construct(gateway_id=GW, first_seq=1, last_seq=2, rows=rows)
    result = enrolled.commit([Received(GW, T0, unvalidated), data(1, 3, gateway=OTHER)])
    assert result.acks == {(OTHER, Stream.READINGS): 3}
    assert [(g, reason) for g, reason, _ in result.rejected] == [(GW, "storage_error")]
    assert enrolled.get_gateway(GW).streams == {"readings": 0, "events": 0}
    assert enrolled.channels(GW) == []


HOUR0 = T0 // 3600 * 3600  # the hour T0 falls in


@pytest.mark.parametrize(
    ("since", "until", "step"),
    [
        (T0, T0 + 7200, 60.0),  # minute buckets not on minute boundaries
        (T0 + 30, T0 + 900, 300.0),
        (T0, T0 + 7260, 3600.0),  # hour buckets across hour boundaries
        (HOUR0, HOUR0 + 4 * 3600, 7200.0),  # whole hours inside each bucket
        (T0 - 86400 * 30, T0 + 86400, 86400.0),  # the console's 30-day chart
    ],
)
def test_buckets_give_min_avg_max_of_good_readings_and_count_the_bad(
    enrolled: CoreStore, since: float, until: float, step: float
) -> None:
    # One reading every 20 s for 2 hours; every 7th is bad (its value must not count).
    rows = [
        (s, T0 + 20 * s, "rain", float(s % 13), BAD_QUALITY_MASK if s % 7 == 0 else 0)
        for s in range(1, 361)
    ]
    batch = DataBatch(gateway_id=GW, first_seq=1, last_seq=360, rows=rows)
    enrolled.commit([Received(GW, T0, batch)])
    expected: list[float] = []
    for index in range(math.ceil((until - since) / step)):
        left = since + index * step
        inside = [r for r in rows if left <= r[1] < min(left + step, until)]
        good = [r[3] for r in inside if r[4] == 0]
        if inside:
            average = sum(good) / len(good)
            expected += [left, len(good), len(inside) - len(good), min(good), average, max(good)]
    got = enrolled.reading_buckets(GW, "rain", since, until, step)
    flat = [x for b in got for x in (b.start, b.count, b.bad, b.min, b.avg, b.max)]
    assert flat == pytest.approx(expected)


def test_events_are_listed_newest_first_by_kind_subject_and_time(enrolled: CoreStore) -> None:
    enrolled.commit([events(event(1, 2), event(2, None, "fault", part="relay"), event(3, 0))])
    found = enrolled.events([GW], limit=10)
    assert [(e.seq, e.kind) for e in found] == [(3, "alarm"), (2, "fault"), (1, "alarm")]
    assert found[1].detail == {"part": "relay"}
    assert [e.seq for e in enrolled.events([GW], kinds=["alarm"], since=T0 + 2, limit=10)] == [3]
    assert enrolled.events([GW], kinds=[], limit=10) == []
    assert [e.seq for e in enrolled.events([GW], subject="slope", until=T0 + 2, limit=1)] == [1]


# --- AlarmStore ------------------------------------------------------------------------------


def test_alarm_events_open_raise_acknowledge_and_close_one_episode(enrolled: CoreStore) -> None:
    enrolled.commit([events(event(1, 2), event(2, 4), event(3, 0, "ack", by="button"))])
    [alarm] = enrolled.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    assert (alarm.level, alarm.peak_level, alarm.raised_at) == (4, 4, T0 + 1)
    assert alarm.acknowledged_by == "button (at the gateway)"
    assert enrolled.get_gateway(GW).alarm_level == 4
    enrolled.commit([events(event(1, 2), event(2, 4))])  # a resend changes nothing
    enrolled.commit([events(event(4, 1), event(5, 0))])
    assert active(enrolled) == []
    [ended] = enrolled.alarms(active=False, gateway_ids=[GW], since=None, until=None, limit=10)
    assert (ended.id, ended.peak_level, ended.cleared_at) == (alarm.id, 4, T0 + 5)
    assert enrolled.get_gateway(GW).alarm_level == 0


def test_a_village_answer_at_the_gateway_is_a_receipt_on_the_open_alarm(
    enrolled: CoreStore,
) -> None:
    answer = event(2, 3, "village_answer", person="Li Wei", via="sms", at=T0 + 1.5)
    enrolled.commit([events(event(1, 3), answer)])
    [alarm] = enrolled.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    [receipt] = alarm.receipts
    assert (receipt.person, receipt.via, receipt.confirmed_at, receipt.recorded_by) == (
        "Li Wei",
        "sms (at the gateway)",
        T0 + 1.5,
        "gateway",
    )


def test_the_console_acknowledges_once_and_records_receipts(enrolled: CoreStore) -> None:
    enrolled.commit([events(event(1, 3))])
    [alarm] = enrolled.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    done = enrolled.acknowledge_alarm(alarm.id, "operator", "on my way", T0 + 10)
    assert (done.acknowledged_by, done.ack_note, done.acknowledged_at) == (
        "operator",
        "on my way",
        T0 + 10,
    )
    with pytest.raises(ConflictError, match="already acknowledged"):
        enrolled.acknowledge_alarm(alarm.id, "other", None, T0 + 11)
    confirmed = enrolled.confirm_receipt(alarm.id, "Zhang", "phone", None, "operator", T0 + 12)
    assert [(r.person, r.via, r.recorded_by) for r in confirmed.receipts] == [
        ("Zhang", "phone", "operator")
    ]
    with pytest.raises(NotFoundError):
        enrolled.get_alarm(alarm.id + 1000)


def test_an_acknowledgement_records_where_it_was_taken(enrolled: CoreStore) -> None:
    slope = event(1, 3)
    creek = EventRow(seq=2, ts=T0 + 2, kind="alarm", subject="creek", level=3, detail={})
    enrolled.commit([events(slope, creek, event(3, 0, "ack", by="button"))])
    by_rule = {
        a.rule: a
        for a in enrolled.alarms(active=True, gateway_ids=[GW], since=None, until=None, limit=10)
    }
    assert (by_rule["slope"].ack_origin, by_rule["creek"].ack_origin) == ("gateway", None)
    # the words are the operator's to choose: they never make an acknowledgement the gateway's
    done = enrolled.acknowledge_alarm(by_rule["creek"].id, "ops (at the gateway)", None, T0 + 4)
    assert (done.ack_origin, done.acknowledged_by) == ("fleet", "ops (at the gateway)")
    late = EventRow(seq=4, ts=T0 + 5, kind="ack", subject="creek", level=0, detail={"by": "b"})
    enrolled.commit([events(late)])  # the gateway's ack after the fleet's changes nothing
    again = enrolled.get_alarm(done.id)
    assert (again.ack_origin, again.acknowledged_by, again.acknowledged_at) == (
        "fleet",
        "ops (at the gateway)",
        T0 + 4,
    )


def test_alarms_of_several_gateways_come_in_one_list(enrolled: CoreStore) -> None:
    enroll(enrolled, OTHER, "m" * 44, site="other-site")
    enrolled.commit([events(event(1, 2))])
    enrolled.commit([events(event(1, 4), gateway=OTHER)])

    def gateways(ids: list[str] | None) -> list[tuple[str, int]]:
        found = enrolled.alarms(active=None, gateway_ids=ids, since=None, until=None, limit=10)
        return [(a.gateway_id, a.level) for a in found]

    assert gateways([GW, OTHER]) == [(OTHER, 4), (GW, 2)]
    assert gateways(None) == [(OTHER, 4), (GW, 2)]
    assert gateways([GW]) == [(GW, 2)]
    assert gateways(["gw-ffffffffff"]) == []
    assert gateways([]) == []


def test_alarms_are_listed_newest_first_within_a_time_window(enrolled: CoreStore) -> None:
    enrolled.commit([events(event(1, 2), event(2, 0), event(3, 4))])
    every = enrolled.alarms(active=None, gateway_ids=None, since=None, until=None, limit=10)
    assert [(a.raised_at, a.cleared_at) for a in every] == [(T0 + 3, None), (T0 + 1, T0 + 2)]
    assert (
        len(enrolled.alarms(active=None, gateway_ids=[GW], since=T0 + 2.5, until=None, limit=10))
        == 1
    )
    assert (
        len(enrolled.alarms(active=None, gateway_ids=[GW], since=None, until=T0 + 2, limit=10)) == 1
    )
    assert enrolled.alarms(active=None, gateway_ids=[OTHER], since=None, until=None, limit=10) == []
