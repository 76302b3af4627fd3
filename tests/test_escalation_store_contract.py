"""The 叫应 store's contract (``EscalationStore``), run on every storage backend.

SQLite in a temporary file and PostgreSQL (a real cluster the session starts, a fresh
schema per test). The engine's behaviour on top of the store is in ``tests/test_callans.py``;
here is what any backend must keep: the roster's order and checks, a call committed as
planned before it is sent, one-time answers, delivery reports taken once, and a batch that
commits or rolls back whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.escalation_policy import DEFAULT_POLICY
from fleet.escalation_store import AlarmState, DeliveryReport, PlannedCall
from fleet.postgres_repository import PostgresRepository
from fleet.repository import NewGateway, NotFoundError, Received
from fleet.roster import PersonIn, Tier
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from protocol import EventBatch, EventRow

T0 = 1_750_000_000.0
GW = "gw-0123456789"
SITE = "creek"
RED = DEFAULT_POLICY.levels[4]


@pytest.fixture(params=("sqlite", "postgresql"))
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A store of each backend with gateway GW at SITE and its red ``slope`` alarm raised."""
    if request.param == "sqlite":
        store: Any = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
        yield from _with_alarm(store)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        yield from _with_alarm(PostgresRepository(url))


def _with_alarm(store: Any) -> Iterator[Any]:
    try:
        _token, secret = store.create_enrollment_token(SITE, T0 + 60, None, None, T0)
        store.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), T0)
        report(store, 1, "alarm", 4)
        yield store
    finally:
        store.close()


def report(store: Any, seq: int, kind: str, level: int, **detail: object) -> None:
    row = EventRow(seq=seq, ts=T0 + seq, kind=kind, subject="slope", level=level, detail=detail)
    batch = EventBatch(gateway_id=GW, first_seq=seq, last_seq=seq, rows=[row])
    store.commit([Received(GW, T0 + seq, batch)])


def only_alarm(repo: Any) -> AlarmState:
    (state,) = repo.escalation.alarm_states()
    return state


def test_the_roster_is_kept_by_tier_then_name_and_a_person_removed_is_gone(repo: Any) -> None:
    esc = repo.escalation
    assert not esc.site_known("elsewhere")
    assert esc.site_known(SITE)  # its gateway
    esc.replace_roster(
        SITE,
        [
            PersonIn(Tier.COUNTY, "丙", "duty officer", email="c@county.cn"),
            PersonIn(Tier.VILLAGE, "乙", "monitor", mobile="+8613800000002"),
            PersonIn(Tier.TOWNSHIP, "甲", "head", mobile="+8613800000001"),
        ],
        T0,
    )
    added = esc.add_person(SITE, PersonIn(Tier.VILLAGE, "甲", "monitor", webhook="https://x"), T0)
    assert [(p.tier, p.name) for p in esc.roster(SITE)] == [
        (Tier.VILLAGE, "乙"),
        (Tier.VILLAGE, "甲"),
        (Tier.TOWNSHIP, "甲"),
        (Tier.COUNTY, "丙"),
    ]
    assert esc.person(added.id) == added
    assert [p.name for p in esc.persons_with_mobile("+8613800000001")] == ["甲"]
    esc.delete_person(SITE, added.id)
    with pytest.raises(NotFoundError):
        esc.person(added.id)
    with pytest.raises(NotFoundError):
        esc.delete_person(SITE, added.id)
    assert esc.persons_by_id([added.id]) == {}


def test_a_site_policy_is_stored_replaced_and_removed(repo: Any) -> None:
    esc = repo.escalation
    assert esc.site_policy(SITE) is None
    esc.set_site_policy(SITE, {"levels": {}}, "ana", T0)
    esc.set_site_policy(SITE, DEFAULT_POLICY.to_json(), "ana", T0 + 1)
    assert esc.site_policy(SITE) == DEFAULT_POLICY.to_json()
    assert esc.delete_site_policy(SITE) is True
    assert esc.delete_site_policy(SITE) is False


def test_an_escalation_is_started_advanced_and_ended_once_on_the_record(repo: Any) -> None:
    esc = repo.escalation
    alarm = only_alarm(repo)
    assert (alarm.site_id, alarm.rule, alarm.level, alarm.open_escalation) == (
        SITE,
        "slope",
        4,
        None,
    )
    started = esc.start_escalation(alarm, RED, T0 + 10)
    assert esc.escalation(started.id) == started
    assert only_alarm(repo).open_escalation == started.id
    esc.advance(started.id, 1, T0 + 310, Tier.TOWNSHIP, "no answer from the village")
    esc.note(started.id, T0 + 311, "nobody", "nobody on the roster for township")
    esc.end_escalation(started.id, "acknowledged", T0 + 400)
    esc.end_escalation(started.id, "again", T0 + 401)  # a second end is ignored
    ended = esc.escalation(started.id)
    assert (ended.step, ended.ended_at, ended.end_reason) == (1, T0 + 400, "acknowledged")
    assert [(r["kind"], r["tier"]) for r in esc.record(started.id)] == [
        ("started", "village"),
        ("escalated", "township"),
        ("nobody", None),
        ("ended", None),
    ]
    assert esc.escalations_of(alarm.alarm_id) == [ended]
    with pytest.raises(NotFoundError):
        esc.escalation(started.id + 100)


def test_calls_are_planned_before_sending_and_each_delivery_report_counts_once(
    repo: Any,
) -> None:
    esc = repo.escalation
    person = esc.add_person(
        SITE, PersonIn(Tier.VILLAGE, "乙", "monitor", mobile="+8613800000002"), T0
    )
    escalation = esc.start_escalation(only_alarm(repo), RED, T0)
    sms, mail = esc.plan_calls(
        [PlannedCall(escalation.id, person, "sms"), PlannedCall(escalation.id, person, "email")],
        T0 + 1,
    )
    assert [c.status for c in esc.unsent_calls()] == ["planned", "planned"]
    esc.calls_done([(sms, True, "accepted", T0 + 2), (mail, False, "refused", T0 + 2)])
    assert [c.status for c in esc.calls(escalation.id)] == ["sent", "failed"]
    assert esc.unsent_calls() == []
    delivered = DeliveryReport(sms.id, "delivered", "DLR 1", T0 + 3)
    assert esc.delivery_reports([delivered, DeliveryReport(sms.id + 99, None, "x", T0)]) == [
        True,
        False,
    ]
    assert esc.delivery_report(sms.id, "delivered", "DLR 1", T0 + 4) is True  # again: no change
    kinds = [r["kind"] for r in esc.record(escalation.id)]
    assert kinds.count("delivery") == 1
    assert esc.last_calls(escalation.id)[(person.id, "sms")].status == "delivered"
    assert esc.recent_sms_escalations(person.id) == [escalation.id]


def test_a_calls_answer_counts_once_and_a_gateways_answer_is_taken_once(repo: Any) -> None:
    esc = repo.escalation
    person = esc.add_person(
        SITE, PersonIn(Tier.VILLAGE, "乙", "monitor", mobile="+8613800000002"), T0
    )
    escalation = esc.start_escalation(only_alarm(repo), RED, T0)
    (call,) = esc.plan_calls([PlannedCall(escalation.id, person, "sms")], T0 + 1)
    assert esc.record_answer(escalation.id, person.label, Tier.VILLAGE, "sms", T0 + 5, call.id)
    assert not esc.record_answer(escalation.id, person.label, Tier.VILLAGE, "sms", T0 + 6, call.id)
    answer = {"alarm_seq": 1, "person": "甲 (village)", "via": "confirm button", "at": T0 + 7}
    report(repo, 2, "village_answer", 4, **answer)
    assert esc.take_gateway_answers(escalation) == 1
    assert esc.take_gateway_answers(escalation) == 0
    assert [(p, t, v) for p, t, v, _at in esc.answers(escalation.id)] == [
        (person.label, Tier.VILLAGE, "sms"),
        ("甲 (village)", Tier.VILLAGE, "confirm button (at the gateway)"),  # as ingest stored it
    ]


def test_a_batch_sees_its_own_writes_and_rolls_back_whole_on_an_error(repo: Any) -> None:
    esc = repo.escalation
    with esc.batch():
        inside = esc.add_person(SITE, PersonIn(Tier.VILLAGE, "甲", "monitor", email="a@v.cn"), T0)
        assert esc.person(inside.id) == inside  # seen inside the batch
    assert [p.id for p in esc.roster(SITE)] == [inside.id]

    def faulty_round() -> None:
        with esc.batch():
            esc.replace_roster(SITE, [], T0 + 1)
            esc.set_site_policy(SITE, {"levels": {}}, "ana", T0 + 1)
            raise RuntimeError("engine fault")

    with pytest.raises(RuntimeError, match="engine fault"):
        faulty_round()
    assert [p.id for p in esc.roster(SITE)] == [inside.id]
    assert esc.site_policy(SITE) is None
