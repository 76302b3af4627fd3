"""叫应 at the fleet: real e-mail, webhook and Kannel SMS; escalation; answers stop it.

A red alarm calls the village tier by e-mail (aiosmtpd), webhook (a local HTTP robot) and
SMS (real Kannel with its fake SMSC), escalates at the deadline, and stops on an answer by
reply SMS, by link or by an operator; every step has its time.

The fleet app runs in-process under uvicorn (Kannel calls it back over HTTP); the engine's
clock is injected and the tests tick it, so deadlines take no wall time.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from fleet.alarm_watch import AlarmWatch
from fleet.answer_link import AnswerLinks, LinkError
from fleet.call_order import FirstContactQueue, Outgoing
from fleet.channels import KannelSettings, SmtpSettings
from fleet.escalation import CHANNEL_CONCURRENCY, EscalationEngine
from fleet.escalation_store import Call, PlannedCall
from fleet.leases import ESCALATION_LEASE, Leadership
from fleet.main import create_app
from fleet.repository import NewGateway, Received, Role
from fleet.robot_pace import RobotLimit
from fleet.roster import PersonIn, Tier
from fleet.settings import EscalationSettings, FleetSettings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.kannel import Kannel, kannel_installed
from hardware_sim.harness.mosquitto import auth
from hardware_sim.harness.ports import free_port
from hardware_sim.harness.waiting import wait_for
from hardware_sim.harness.webhook_inbox import WebhookInbox
from protocol import EventBatch, EventRow, Health
from protocol.events import StandingForecast
from tests.callans_parts import SmtpInbox

SITE = "creek-village"
GW = "gw-0123456789"
VILLAGE_MOBILE = "+8613800000001"
TOWNSHIP_MOBILE = "+8613900000002"
CALLBACK_KEY = "kannel-callback-key-for-tests"

needs_kannel = pytest.mark.skipif(
    not kannel_installed(), reason="Kannel is not installed (./dev setup installs it)"
)


class Clock:
    """The engine's injectable clock: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Fleet:
    url: str
    http: httpx.AsyncClient
    repository: SQLiteRepository
    engine: EscalationEngine
    clock: Clock
    tokens: dict[Role, str]
    seq: int = 0

    def as_(self, role: Role) -> dict[str, str]:
        return auth(self.tokens[role])

    def alarm(self, level: int, rule: str = "slope") -> int:
        """The gateway reports ``rule`` at ``level``; returns the alarm's id."""
        self.seq += 1
        row = EventRow(
            seq=self.seq, ts=self.clock(), kind="alarm", subject=rule, level=level, detail={}
        )
        batch = EventBatch(gateway_id=GW, first_seq=self.seq, last_seq=self.seq, rows=[row])
        self.repository.commit([Received(GW, self.clock(), batch)])
        return self.repository.alarms(
            active=None, gateway_ids=[GW], since=None, until=None, limit=1
        )[0].id

    def events(self, *rows: tuple[str, str, int, dict[str, Any]]) -> None:
        """The gateway's (kind, rule, level, detail) events, in one batch as after an outage."""
        first = self.seq + 1
        batch_rows = []
        for kind, rule, level, detail in rows:
            self.seq += 1
            batch_rows.append(
                EventRow(
                    seq=self.seq,
                    ts=self.clock(),
                    kind=kind,
                    subject=rule,
                    level=level,
                    detail=detail,
                )
            )
        batch = EventBatch(gateway_id=GW, first_seq=first, last_seq=self.seq, rows=batch_rows)
        self.repository.commit([Received(GW, self.clock(), batch)])

    async def tick(self, advance_s: float = 0) -> list[Any]:
        self.clock.advance(advance_s)
        return await self.engine.tick()

    async def alarm_view(self, alarm_id: int, role: Role = Role.VIEWER) -> dict[str, Any]:
        answer = await self.http.get(f"/api/v1/alarms/{alarm_id}", headers=self.as_(role))
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def record(self, alarm_id: int) -> list[tuple[str, str | None, str | None]]:
        """(kind, person, channel) of every step of the alarm's latest escalation."""
        view = await self.alarm_view(alarm_id)
        steps = view["escalation"][-1]["record"]
        return [(s["kind"], s["person"], s["channel"]) for s in steps]


@pytest.fixture
def smtp() -> AsyncIterator[SmtpInbox]:
    with SmtpInbox() as inbox:
        yield inbox  # type: ignore[misc]


@pytest.fixture
def robots() -> AsyncIterator[WebhookInbox]:
    with WebhookInbox().running() as inbox:
        yield inbox  # type: ignore[misc]


async def _fleet(
    tmp_path: Path,
    smtp: SmtpInbox,
    robots: WebhookInbox,
    kannel: Kannel | None,
    port: int,
    tick_s: float | None = None,
    robot_limit: RobotLimit | None = None,
) -> AsyncIterator[Fleet]:
    clock = Clock()
    escalation = EscalationSettings(
        smtp=SmtpSettings("127.0.0.1", smtp.port, "alerts@county.example.cn"),
        kannel=KannelSettings(kannel.sendsms_url, "fleet", "fleet-password", "10086")
        if kannel
        else None,
        sms_callback_key=CALLBACK_KEY,
        tick_s=tick_s,
        robot_limit=robot_limit or RobotLimit(),
    )
    url = f"http://127.0.0.1:{port}"
    settings = FleetSettings(
        data_dir=tmp_path / "fleet",
        broker="external",
        mqtt_url="mqtt://127.0.0.1:9",
        ingest=False,
        fleet_url=url,
        escalation=escalation,
    )
    app = create_app(settings, escalation_clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, 20, "the fleet to serve")
    repository: SQLiteRepository = app.state.repository
    tokens = {role: repository.create_api_token(role.value, role, time.time())[1] for role in Role}
    _token, secret = repository.create_enrollment_token(
        SITE, time.time() + 60, None, None, time.time()
    )
    repository.redeem_enrollment_token(
        secret, NewGateway(GW, "k" * 44, "$7$x", None, None), time.time()
    )
    async with httpx.AsyncClient(base_url=url) as http:
        fleet = Fleet(url, http, repository, app.state.escalation, clock, tokens)
        roster = [
            {
                "tier": "village",
                "name": "王建国",
                "role": "群测群防员",
                "mobile": VILLAGE_MOBILE,
                "email": "wang@village.example.cn",
                "webhook": robots.url("village"),
            },
            {
                "tier": "township",
                "name": "李敏",
                "role": "乡镇值班",
                "mobile": TOWNSHIP_MOBILE,
                "email": "li@town.example.cn",
                "webhook": robots.url("township"),
            },
            {
                "tier": "county",
                "name": "county duty",
                "role": "县值班",
                "email": "duty@county.example.cn",
            },
        ]
        answer = await http.put(
            f"/api/v1/sites/{SITE}/roster", json=roster, headers=fleet.as_(Role.ADMIN)
        )
        assert answer.status_code == 200, answer.text
        try:
            yield fleet
        finally:
            server.should_exit = True
            await serving


@pytest.fixture
async def fleet(tmp_path: Path, smtp: SmtpInbox, robots: WebhookInbox) -> AsyncIterator[Fleet]:
    async for f in _fleet(tmp_path, smtp, robots, None, free_port()):
        yield f


@pytest.fixture
async def fleet_with_sms(
    tmp_path: Path, smtp: SmtpInbox, robots: WebhookInbox
) -> AsyncIterator[tuple[Fleet, Kannel]]:
    port = free_port()
    (tmp_path / "kannel").mkdir()
    kannel = Kannel(
        tmp_path / "kannel", f"http://127.0.0.1:{port}/api/v1/sms/mo?key={CALLBACK_KEY}"
    )
    await asyncio.to_thread(kannel.start)
    try:
        async for f in _fleet(tmp_path, smtp, robots, kannel, port):
            yield f, kannel
    finally:
        await asyncio.to_thread(kannel.stop)


@needs_kannel
async def test_red_calls_the_village_escalates_to_the_township_and_a_reply_sms_stops_it(
    fleet_with_sms: tuple[Fleet, Kannel],
    smtp: SmtpInbox,
    robots: WebhookInbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet, kannel = fleet_with_sms
    caplog.set_level(logging.DEBUG)
    alarm_id = fleet.alarm(4)
    started = fleet.clock()
    calls = await fleet.tick()
    assert sorted(c.channel for c in calls) == ["email", "sms", "webhook"]
    assert {c.person for c in calls} == {"王建国 (village)"}
    await wait_for(lambda: len(kannel.received()) == 1, 20, "the village SMS at the fake SMSC")
    sms = kannel.received()[0]
    assert (sms.to, "红色预警" in sms.text, "/a/" in sms.text) == (VILLAGE_MOBILE, True, True)
    assert len(smtp.to("wang@village.example.cn")) == 1
    assert "红色预警" in robots.to("village")[0]["text"]["content"]

    # Kannel's delivery report comes back over HTTP and goes on the record
    async def delivered() -> bool:
        return ("delivery", "王建国 (village)", "sms") in await fleet.record(alarm_id)

    await wait_for(delivered, 20, "Kannel's delivery report")

    # unanswered: repeated after repeat_s (120 s), not before
    assert await fleet.tick(60) == []
    repeated = await fleet.tick(60)
    assert sorted(c.channel for c in repeated) == ["email", "sms", "webhook"]
    await wait_for(lambda: len(kannel.received()) == 2, 20, "the repeated SMS")

    # nobody answered by the village deadline (300 s): the township is called
    escalated = await fleet.tick(180)
    assert {c.person for c in escalated} == {"李敏 (township)"}
    await wait_for(
        lambda: [s.to for s in kannel.received()][-1] == TOWNSHIP_MOBILE, 20, "the township SMS"
    )

    # the township answers by reply SMS: calling stops
    fleet.clock.advance(30)
    await asyncio.to_thread(kannel.reply, TOWNSHIP_MOBILE.lstrip("+"), "收到")

    async def ended() -> bool:
        return (await fleet.alarm_view(alarm_id))["escalation"][0]["ended_at"] is not None

    await wait_for(ended, 20, "the reply SMS to end the escalation")
    assert await fleet.tick(600) == []

    view = await fleet.alarm_view(alarm_id)
    escalation = view["escalation"][0]
    assert escalation["end_reason"] == "answered by 李敏 (township) via sms reply"
    kinds = [s["kind"] for s in escalation["record"]]
    assert kinds[0] == "started"
    assert kinds.index("escalated") < kinds.index("answer") < kinds.index("ended")
    assert kinds.count("call_sent") == 9  # village twice, township once, three channels each
    times = [s["at"] for s in escalation["record"]]
    assert times == sorted(times)
    escalated_at = next(s["at"] for s in escalation["record"] if s["kind"] == "escalated")
    assert escalated_at == pytest.approx(started + 300)
    # no phone number in clear in a viewer's answer or in any log line
    assert "GET /api/v1/sms/mo?*** HTTP/1.1" in caplog.text  # the access log saw the reply
    for clear in (VILLAGE_MOBILE, TOWNSHIP_MOBILE, VILLAGE_MOBILE[1:], TOWNSHIP_MOBILE[1:]):
        assert clear not in str(view)
        assert clear not in caplog.text
    assert CALLBACK_KEY not in caplog.text


async def test_an_answer_link_stops_the_escalation_once(
    fleet: Fleet, smtp: SmtpInbox, robots: WebhookInbox
) -> None:
    alarm_id = fleet.alarm(4)
    await fleet.tick()
    await wait_for(lambda: len(smtp.messages) == 1, 10, "the village e-mail")
    body = smtp.messages[0].get_payload(decode=True)
    assert isinstance(body, bytes)
    match = re.search(r"(http://\S+/a/[A-Za-z0-9_-]+)", body.decode())
    assert match is not None
    link = match.group(1)

    # opening the link (as a chat app's preview does) shows the page but answers nothing
    page = await fleet.http.get(link)
    assert (page.status_code, "<form" in page.text) == (200, True)
    assert f"红色预警】站点 {SITE}（slope）" in page.text  # what is being confirmed  # noqa: RUF001
    assert sorted(await fleet.record(alarm_id), key=str) == [
        ("call_sent", "王建国 (village)", "email"),
        ("call_sent", "王建国 (village)", "webhook"),
        ("started", None, None),
    ]

    fleet.clock.advance(45)
    answered = await fleet.http.post(link)
    assert answered.status_code == 200, answered.text
    escalation = (await fleet.alarm_view(alarm_id))["escalation"][0]
    assert escalation["end_reason"] == "answered by 王建国 (village) via link"
    assert escalation["ended_at"] == pytest.approx(fleet.clock())
    again = await fleet.http.post(link)
    assert again.status_code == 410
    assert "already used" in again.text
    assert await fleet.tick(600) == []
    forged = await fleet.http.post(link[:-2] + ("AA" if not link.endswith("AA") else "BB"))
    assert forged.status_code == 404


async def test_an_operator_receipt_stops_the_escalation(fleet: Fleet) -> None:
    alarm_id = fleet.alarm(4)
    await fleet.tick()
    fleet.clock.advance(20)
    answer = await fleet.http.post(
        f"/api/v1/alarms/{alarm_id}/receipts",
        json={"person": "王建国", "via": "phone"},
        headers=fleet.as_(Role.OPERATOR),
    )
    assert answer.status_code == 201, answer.text
    escalation = answer.json()["escalation"][0]
    assert escalation["end_reason"] == "answered by 王建国 (recorded by operator) via operator"
    assert await fleet.tick(600) == []


async def test_a_level_that_falls_back_or_an_acknowledgement_with_a_note_ends_calling(
    fleet: Fleet,
) -> None:
    alarm_id = fleet.alarm(4)
    await fleet.tick()
    # REST stamps acknowledgements with the wall clock: this test keeps the engine's clock
    # there, so the acknowledgement below comes after the escalation it ends
    fleet.alarm(2)  # back to yellow: not covered, and lower than red
    assert await fleet.tick() == []
    escalation = (await fleet.alarm_view(alarm_id))["escalation"][0]
    assert escalation["end_reason"] == "level fell back to yellow"

    other = fleet.alarm(3, rule="rain")
    calls = await fleet.tick()
    assert {c.person for c in calls} == {"王建国 (village)"}
    answer = await fleet.http.post(
        f"/api/v1/alarms/{other}/acknowledge",
        json={"note": "patrol on site, slope stable"},
        headers=fleet.as_(Role.OPERATOR),
    )
    assert answer.status_code == 200, answer.text
    fleet.clock.now = time.time()
    assert await fleet.tick() == []
    escalation = (await fleet.alarm_view(other))["escalation"][0]
    assert escalation["end_reason"] == (
        "acknowledged by operator with the note: patrol on site, slope stable"
    )


async def test_a_failed_channel_is_retried_and_recorded_and_never_blocks_another(
    fleet: Fleet, smtp: SmtpInbox, robots: WebhookInbox
) -> None:
    robots.refuse.add("village")
    alarm_id = fleet.alarm(4)
    calls = await fleet.tick()
    assert len(calls) == 2
    assert len(smtp.to("wang@village.example.cn")) == 1  # e-mail went despite the robot
    record = (await fleet.alarm_view(alarm_id))["escalation"][0]["record"]
    failed = [s for s in record if s["kind"] == "call_failed"]
    assert [(s["channel"], s["detail"]) for s in failed] == [
        ("webhook", "webhook http://127.0.0.1/*** answered 500")
    ]
    robots.refuse.clear()
    assert await fleet.tick(10) == []  # the retry waits RETRY_S (30 s)
    retried = await fleet.tick(20)
    assert [c.channel for c in retried] == ["webhook"]
    assert len(robots.to("village")) == 1


async def test_a_tier_with_nobody_on_the_roster_is_skipped_at_once_and_recorded(
    fleet: Fleet,
) -> None:
    await fleet.http.put(
        f"/api/v1/sites/{SITE}/roster",
        json=[{"tier": "township", "name": "李敏", "role": "乡镇值班", "email": "li@town.cn"}],
        headers=fleet.as_(Role.ADMIN),
    )
    alarm_id = fleet.alarm(4)
    calls = await fleet.tick()
    assert [(c.person, c.channel) for c in calls] == [("李敏 (township)", "email")]
    record = (await fleet.alarm_view(alarm_id))["escalation"][0]["record"]
    escalated = [s for s in record if s["kind"] == "escalated"]
    assert [(s["tier"], s["detail"], s["at"]) for s in escalated] == [
        ("township", "nobody on the roster for the village tier", fleet.clock())
    ]


async def test_a_level_that_rises_starts_a_new_escalation_that_calls_again(fleet: Fleet) -> None:
    alarm_id = fleet.alarm(3)
    assert len(await fleet.tick()) == 2  # orange: the village by e-mail and webhook
    fleet.alarm(4)
    calls = await fleet.tick(30)
    assert {c.person for c in calls} == {"王建国 (village)"}
    first, second = (await fleet.alarm_view(alarm_id))["escalation"]
    assert (first["level_name"], first["end_reason"]) == (
        "orange",
        "level rose to red: a new escalation calls again",
    )
    assert (second["level_name"], second["ended_at"]) == ("red", None)


def beijing(t: float) -> str:
    """``t`` as a call tells it to the village: month, day and time in 北京时间 (UTC+8)."""
    local = datetime.fromtimestamp(t, UTC) + timedelta(hours=8)
    return f"{local.month}月{local.day}日{local:%H:%M}"


async def test_a_slope_red_call_tells_the_forecast_failure_and_a_repeat_the_newer_one(
    fleet: Fleet, smtp: SmtpInbox, robots: WebhookInbox
) -> None:
    now = fleet.clock()
    forecast = {
        "lead_h": 30.0,
        "failure_t": now + 30 * 3600,
        "failure_t_low": now + 21 * 3600,
        "failure_t_high": now + 44 * 3600,
        "alpha": 2.0,
        "velocity_mm_day": 12.0,
        "evidence": 5200.0,
    }
    detail = {"from": "orange", "to": "red", "kind": "rise", "metric": 30.0, "at": now,
              "detail": "failure forecast in 30 h (red)", "forecast": forecast}  # fmt: skip
    fleet.events(("alarm", "slope_forecast", 4, detail), ("alarm", "rain_1h", 4, {"metric": 52.0}))
    calls = await fleet.tick()
    assert len(calls) == 4  # two alarms, the village by e-mail and webhook each
    await wait_for(lambda: len(robots.to("village")) == 2, 20, "the two village posts")
    texts = [post["text"]["content"] for post in robots.to("village")]
    (slope,) = [t for t in texts if "slope_forecast" in t]
    (rain,) = [t for t in texts if "rain_1h" in t]
    earliest, likely = beijing(now + 21 * 3600), beijing(now + 30 * 3600)
    told = f"滑坡预测：最早{earliest}，最可能{likely}（北京时间）。"  # noqa: RUF001
    assert told in slope
    assert slope.index(told) < slope.index("请回复")  # before the answer, not lost after the link
    assert "滑坡预测" not in rain
    await wait_for(lambda: len(smtp.to("wang@village.example.cn")) == 2, 20, "the two e-mails")
    mails = [m.get_payload(decode=True) for m in smtp.to("wang@village.example.cn")]
    assert sum(isinstance(body, bytes) and told in body.decode() for body in mails) == 1

    # Then the gateway's health carries a newer forecast (failure 2 h sooner, the interval
    # narrower); the repeat call two minutes on (the policy's repeat_s) tells that one.
    newer = StandingForecast(
        lead_h=28.0, failure_t=now + 28 * 3600, failure_t_low=now + 24 * 3600,
        failure_t_high=now + 33 * 3600, alpha=2.0, velocity_mm_day=14.0, evidence=9000.0,
        at=now + 100,
    )  # fmt: skip
    report = Health(gateway_id=GW, ts=now + 100, uptime_s=60.0, agent_version="0.1.0",
                    forecasts={"slope_forecast": newer})  # fmt: skip
    fleet.repository.commit([Received(GW, now + 100, report)])
    fleet.clock.advance(120)
    repeated = await fleet.tick()
    assert len(repeated) == 4
    await wait_for(lambda: len(robots.to("village")) == 4, 20, "the repeated posts")
    link = re.search(r"(http://\S+/a/[A-Za-z0-9_-]+)", slope)
    assert link is not None
    page = await fleet.http.get(link.group(1))  # the answer page tells the newest forecast
    assert f"最早{beijing(now + 24 * 3600)}，最可能{beijing(now + 28 * 3600)}" in page.text  # noqa: RUF001
    later = [
        p["text"]["content"]
        for p in robots.to("village")[2:]
        if "slope_forecast" in p["text"]["content"]
    ]
    assert f"最早{beijing(now + 24 * 3600)}，最可能{beijing(now + 28 * 3600)}" in later[0]  # noqa: RUF001


async def test_a_forecast_that_cannot_be_read_costs_its_words_not_the_call(
    fleet: Fleet, robots: WebhookInbox, caplog: pytest.LogCaptureFixture
) -> None:
    def unreadable(_escalation: object) -> str | None:
        raise sqlite3.OperationalError("database is locked")

    fleet.engine.forecast_words = unreadable
    fleet.alarm(4, rule="slope_forecast")
    await fleet.tick()
    await wait_for(lambda: len(robots.to("village")) == 1, 20, "the village post")
    text = robots.to("village")[0]["text"]["content"]
    assert "红色预警" in text
    assert "滑坡预测" not in text
    assert "the forecast of escalation 1 could not be read" in caplog.text


def test_an_answer_link_is_refused_once_expired_or_forged(tmp_path: Path) -> None:
    links = AnswerLinks.load_or_create(tmp_path)
    token = links.token(42, now=1000.0, ttl_s=60)
    assert links.call_id(token, 1059.0) == 42
    with pytest.raises(LinkError, match="expired"):
        links.call_id(token, 1061.0)
    other = AnswerLinks.load_or_create(tmp_path / "other")
    with pytest.raises(LinkError, match="not an answer link"):
        other.call_id(token, 1000.0)
    assert AnswerLinks.load_or_create(tmp_path).key == links.key  # kept across restarts
    assert (tmp_path / "answer-link.key").stat().st_mode & 0o777 == 0o600


async def test_a_failed_delivery_report_is_recorded_and_the_call_retried(fleet: Fleet) -> None:
    # Kannel's fake SMSC only ever reports success, so the failure report is sent here the
    # way Kannel sends it (GET on the dlr-url); the call it names is a real one.
    alarm_id = fleet.alarm(4)
    calls = await fleet.tick()
    webhook = next(c for c in calls if c.channel == "webhook")
    dlr = {"call": webhook.id, "type": 16}
    refused = await fleet.http.get("/api/v1/sms/dlr", params={**dlr, "key": "wrong"})
    assert refused.status_code == 404
    answer = await fleet.http.get("/api/v1/sms/dlr", params={**dlr, "key": CALLBACK_KEY})
    assert answer.json() == {"recorded": True}
    view = (await fleet.alarm_view(alarm_id))["escalation"][0]
    assert [s["detail"] for s in view["record"] if s["kind"] == "delivery"] == ["SMS rejected"]
    assert next(c for c in view["calls"] if c["id"] == webhook.id)["status"] == "failed"
    retried = await fleet.tick(30)
    assert [c.channel for c in retried] == ["webhook"]


@pytest.mark.parametrize(
    ("reply", "answers"),
    [("收到\uff01", 1), (" 1 ", 1), ("OK.", 1), ("2", 0), ("不在", 0)],  # \uff01: full-width !
)
async def test_a_reply_sms_answers_only_with_1_or_shoudao(
    fleet: Fleet, reply: str, answers: int
) -> None:
    # The reply comes the way Kannel's sms-service sends it (text=%b, the UCS-2 bytes
    # URL-encoded, charset=%C) to an escalation that texted the village monitor.
    alarm_id = fleet.alarm(4)
    await fleet.tick()
    escalation = fleet.engine.store.escalations_of(alarm_id)[0]
    village = fleet.engine.store.roster(SITE)[0]
    (sms,) = fleet.engine.store.plan_calls([PlannedCall(escalation.id, village, "sms")], 0)
    fleet.engine.store.call_done(sms, True, "Kannel: 0: Accepted for delivery", fleet.clock())
    text = quote(reply.encode("utf-16-be"), safe="")
    query = f"key={CALLBACK_KEY}&from={VILLAGE_MOBILE[1:]}&to=10086&text={text}&charset=UTF-16BE"
    answer = await fleet.http.get(f"/api/v1/sms/mo?{query}")
    assert answer.json() == {"answered": answers}
    ended = (await fleet.alarm_view(alarm_id))["escalation"][0]["end_reason"]
    assert ended == ("answered by 王建国 (village) via sms reply" if answers else None)


async def test_a_reply_from_a_domestic_sender_answers_once_the_country_code_is_set(
    fleet: Fleet,
) -> None:
    # Many SMS centres report the sender as 13800000001, not +8613800000001.
    alarm_id = fleet.alarm(4)
    await fleet.tick()
    escalation = fleet.engine.store.escalations_of(alarm_id)[0]
    village = fleet.engine.store.roster(SITE)[0]
    (sms,) = fleet.engine.store.plan_calls([PlannedCall(escalation.id, village, "sms")], 0)
    fleet.engine.store.call_done(sms, True, "Kannel: 0: Accepted for delivery", fleet.clock())
    domestic = VILLAGE_MOBILE.removeprefix("+86")

    async def reply(sender: str) -> Any:
        query = f"key={CALLBACK_KEY}&from={sender}&to=10086&text=1&charset=UTF-8"
        return (await fleet.http.get(f"/api/v1/sms/mo?{query}")).json()

    assert await reply(domestic) == {"answered": 0}  # read as +13800000001: nobody
    fleet.engine.sms_country_code = "86"  # what [kannel] country_code = "86" sets
    assert await reply(domestic[1:]) == {"answered": 0}  # a shorter number is nobody
    assert await reply(domestic) == {"answered": 1}
    ended = (await fleet.alarm_view(alarm_id))["escalation"][0]["end_reason"]
    assert ended == "answered by 王建国 (village) via sms reply"


async def test_a_damaged_record_or_policy_silences_no_other_alarm(
    fleet: Fleet, robots: WebhookInbox, caplog: pytest.LogCaptureFixture
) -> None:
    first = fleet.alarm(4, rule="slope")
    await fleet.tick()
    db = fleet.repository._db()  # damage the stored rows the way a bad disk or hand edit would
    db.execute("UPDATE escalations SET policy = '{\"tiers\": 3}' WHERE alarm_id = ?", [first])
    db.execute(
        "INSERT INTO escalation_policies VALUES (?, '{\"levels\": {\"red\": 1}}', 'x', 0)", [SITE]
    )
    fleet.alarm(4, rule="rain")
    calls = await fleet.tick(1)
    assert sorted(c.channel for c in calls) == ["email", "webhook"]  # by the default policy
    assert len(robots.to("village")) == 2
    assert f"escalation of alarm {first} failed this round" in caplog.text
    assert "its escalation policy is unusable" in caplog.text


async def test_a_tier_no_configured_channel_reaches_is_skipped_not_waited_on(
    fleet: Fleet,
) -> None:
    # this fleet has no SMS channel: a village monitor with only a mobile cannot be called
    await fleet.http.put(
        f"/api/v1/sites/{SITE}/roster",
        json=[
            {"tier": "village", "name": "王建国", "role": "群测群防员", "mobile": VILLAGE_MOBILE},
            {"tier": "township", "name": "李敏", "role": "乡镇值班", "email": "li@town.cn"},
        ],
        headers=fleet.as_(Role.ADMIN),
    )
    alarm_id = fleet.alarm(4)
    calls = await fleet.tick()
    assert [c.person for c in calls] == ["李敏 (township)"]
    record = (await fleet.alarm_view(alarm_id))["escalation"][0]["record"]
    assert [s["detail"] for s in record if s["kind"] == "escalated"] == [
        "no configured channel reaches anyone of the village tier"
    ]


async def test_a_village_answer_taken_at_the_gateway_stops_the_calling_before_it_starts(
    fleet: Fleet,
) -> None:
    # The link was down: the alarm, the gateway's own text and the reply arrive together.
    answered_at = fleet.clock() - 120
    fleet.events(
        ("alarm", "slope", 4, {}),
        ("village_call", "slope", 4, {"alarm_seq": 1, "person": "王建国 (village)"}),
        (
            "village_answer",
            "slope",
            4,
            {"alarm_seq": 1, "person": "王建国 (village)", "via": "sms reply", "at": answered_at},
        ),
    )
    alarm_id = fleet.repository.alarms(
        active=None, gateway_ids=[GW], since=None, until=None, limit=1
    )[0].id
    assert await fleet.tick() == []  # nobody is called
    view = await fleet.alarm_view(alarm_id)
    (escalation,) = view["escalation"]
    assert escalation["end_reason"] == "answered by 王建国 (village) via sms reply (at the gateway)"
    (receipt,) = view["receipts"]
    assert (receipt["person"], receipt["recorded_by"]) == ("王建国 (village)", "gateway")
    assert receipt["confirmed_at"] == pytest.approx(answered_at)
    assert await fleet.tick(3600) == []


async def test_a_village_answer_at_the_gateway_sends_the_calling_on_to_the_required_tier(
    fleet: Fleet,
) -> None:
    policy = {
        "levels": {
            "red": {
                "tiers": [
                    {"tier": "village", "deadline_s": 300},
                    {"tier": "township", "deadline_s": 600},
                ],
                "repeat_s": 120,
                "required_tier": "township",
            }
        }
    }
    answer = await fleet.http.put(
        f"/api/v1/sites/{SITE}/escalation-policy", json=policy, headers=fleet.as_(Role.ADMIN)
    )
    assert answer.status_code == 200, answer.text
    fleet.events(
        ("alarm", "slope", 4, {}),
        ("village_answer", "slope", 4, {"person": "王建国 (village)", "via": "confirm button"}),
    )
    calls = await fleet.tick()
    # the village answered the gateway: the township is called at once, the village not again
    assert {c.person for c in calls} == {"李敏 (township)"}
    alarm_id = fleet.repository.alarms(
        active=None, gateway_ids=[GW], since=None, until=None, limit=1
    )[0].id
    record = await fleet.record(alarm_id)
    assert ("answer", "王建国 (village)", "confirm button (at the gateway)") in record
    # An answer given to an orange alarm does not answer it once it is red.
    fleet.events(("alarm", "slope", 0, {}))
    await fleet.tick(1)
    fleet.events(
        ("alarm", "slope", 3, {}),
        ("village_answer", "slope", 3, {"person": "王建国 (village)", "via": "confirm button"}),
        ("alarm", "slope", 4, {}),
    )
    calls = await fleet.tick(1)
    assert "王建国 (village)" in {c.person for c in calls}


async def test_many_calls_go_out_a_few_at_a_time_on_each_channel(
    fleet: Fleet, robots: WebhookInbox
) -> None:
    # A burst of calls (here 100 village persons of one site, as 1,000 sites raising red
    # at once would be): unbounded, they pile up in the HTTP pool and at the SMTP relay.
    village = [
        PersonIn(Tier.VILLAGE, f"监测员{i}", "群测群防员", webhook=robots.url(f"v{i}"))
        for i in range(100)
    ]
    fleet.engine.store.replace_roster(SITE, village, fleet.clock())
    robots.answer_s = 0.2  # a robot that takes a moment, so posts overlap
    fleet.alarm(4)
    calls = await fleet.tick()
    assert len(calls) == 100
    assert len(robots.received_at) == 100
    assert 1 < robots.most_at_once <= CHANNEL_CONCURRENCY
    assert robots.most_at_once < 100  # not the whole burst at once
    sent = [c for c in fleet.engine.store.calls(calls[0].escalation_id) if c.status == "sent"]
    assert len(sent) == 100


async def test_a_storm_to_one_robot_keeps_its_rate_and_loses_no_call_to_45009(
    tmp_path: Path, smtp: SmtpInbox
) -> None:
    # Ten persons of the site share one duty group's robot, which takes 4 messages in any
    # second here (20 a minute in life); someone else has just used all 4.
    with WebhookInbox(per_minute=4, minute_s=1.0).running() as robots:
        pace = RobotLimit(per_window=4, window_s=1.2)
        async for fleet in _fleet(tmp_path, smtp, robots, None, free_port(), robot_limit=pace):
            group = robots.url("duty-group")
            village = [
                PersonIn(Tier.VILLAGE, f"监测员{i}", "群测群防员", webhook=group) for i in range(10)
            ]
            fleet.engine.store.replace_roster(SITE, village, fleet.clock())
            async with httpx.AsyncClient() as other:
                for _ in range(4):
                    await other.post(group, json={"msgtype": "text", "text": {"content": "值班"}})
            fleet.alarm(4)
            calls = await fleet.tick()
            assert len(calls) == 10
            # every call reached the group, none lost to 45009
            assert len(robots.to("duty-group")) == 4 + 10
            # refused only at first, before the fleet knew the robot was full: its first slots
            assert 1 <= robots.over_limit <= pace.per_window
            stored = fleet.engine.store.calls(calls[0].escalation_id)
            assert [c.status for c in stored] == ["sent"] * 10


def test_each_person_is_reached_on_one_channel_before_anyone_gets_a_second() -> None:
    outgoing = []
    for person_id in (7, 8, 9):
        for channel in ("email", "sms", "webhook"):
            call = Call(len(outgoing) + 1, 1, person_id, f"p{person_id}", Tier.VILLAGE,
                        channel, 0.0, None, "planned")  # fmt: skip
            outgoing.append(Outgoing(call, None, None))  # type: ignore[arg-type]
    queue = FirstContactQueue(outgoing)
    assert queue.channels == ["email", "sms", "webhook"]

    def take(channel: str) -> tuple[int, str] | None:
        item = queue.take(channel)
        return None if item is None else (item.call.person_id, item.call.channel)

    # e-mail takes persons 7 and 8 first; SMS gets 9, the one nobody has reached yet
    assert [take("email"), take("email"), take("sms")] == [(7, "email"), (8, "email"), (9, "sms")]
    # now everyone is reached: second calls, in the order their persons were reached
    assert [take("sms"), take("sms"), take("sms")] == [(7, "sms"), (8, "sms"), None]
    # a channel that hangs on its first calls holds back nobody else's
    assert [take("webhook") for _ in range(4)] == [(7, "webhook"), (8, "webhook"),
                                                  (9, "webhook"), None]  # fmt: skip
    assert [take("email"), take("email")] == [(9, "email"), None]


def test_calls_queued_during_a_burst_reach_new_persons_before_second_channels() -> None:
    def outgoing(first_id: int, escalation: int, person_id: int, *channels: str) -> list[Any]:
        return [Outgoing(Call(first_id + i, escalation, person_id, f"p{person_id}", Tier.VILLAGE,
                              channel, 0.0, None, "planned"), None, None)  # type: ignore[arg-type]
                for i, channel in enumerate(channels)]  # fmt: skip

    queue = FirstContactQueue(outgoing(1, 1, 7, "email", "webhook"))
    first = queue.take("email")
    assert first is not None
    assert first.call.id == 1  # person 7 reached; their webhook call waits
    # the next round: a new alarm's person 8, and person 7 again (a new channel, say)
    queue.add([*outgoing(3, 2, 8, "webhook"), *outgoing(4, 1, 7, "sms")])
    taken = [queue.take("webhook"), queue.take("webhook"), queue.take("sms"), queue.take("sms")]
    assert [None if t is None else t.call.id for t in taken] == [3, 2, 4, None]
    assert queue.take("webhook") is None


async def test_a_round_with_nothing_new_takes_no_write_lock(fleet: Fleet, tmp_path: Path) -> None:
    # Every open escalation is looked at every second: if that took the write lock, ingest
    # and the console would wait on the engine all the time.
    fleet.alarm(4)
    assert len(await fleet.tick()) == 2
    lock = os.open(tmp_path / "fleet" / "fleet.sqlite.write-lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # ingest is committing
    release = threading.Timer(5, fcntl.flock, [lock, fcntl.LOCK_UN])
    release.start()
    try:
        started = time.monotonic()
        assert await fleet.tick(10) == []
        took = time.monotonic() - started
    finally:
        release.cancel()
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert took < 2, f"the round waited {took:.1f} s on the write lock"


def test_a_batch_of_writes_commits_once_and_a_failed_write_undoes_only_itself(
    tmp_path: Path,
) -> None:
    # The engine decides a round (a thousand new alarms, say) as one batch: one commit.
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    store = repository.escalation
    watcher = sqlite3.connect(tmp_path / "fleet.sqlite")

    def commits_seen() -> int:
        return int(watcher.execute("PRAGMA data_version").fetchone()[0])

    before = commits_seen()
    with store.batch():
        store.add_person(SITE, PersonIn(Tier.VILLAGE, "甲", "群测群防员", email="a@v.cn"), 0)
        # a roster replaced by a list whose second person is bad: none of it happens
        nameless = PersonIn(Tier.VILLAGE, None, "群测群防员", email="b@v.cn")  # type: ignore[arg-type]
        replacement = [PersonIn(Tier.VILLAGE, "丙", "群测群防员", email="d@v.cn"), nameless]
        with pytest.raises(sqlite3.IntegrityError):
            store.replace_roster(SITE, replacement, 0)
        store.add_person(SITE, PersonIn(Tier.TOWNSHIP, "乙", "乡镇值班", email="c@t.cn"), 0)
        assert commits_seen() == before  # nothing is committed inside the batch
    assert commits_seen() != before
    assert [p.name for p in store.roster(SITE)] == ["甲", "乙"]
    watcher.close()
    repository.close()


async def test_a_robot_that_answers_200_with_an_error_code_is_a_failed_call(
    fleet: Fleet, robots: WebhookInbox
) -> None:
    # A robot removed from its group still answers 200, with errcode 93000: nobody saw it.
    robots.disabled.add("village")
    alarm_id = fleet.alarm(4)
    await fleet.tick()
    record = (await fleet.alarm_view(alarm_id))["escalation"][0]["record"]
    failed = [(s["channel"], s["detail"]) for s in record if s["kind"] == "call_failed"]
    assert failed == [("webhook", "webhook http://127.0.0.1/*** refused it: errcode 93000")]
    assert robots.to("village") == []
    robots.disabled.clear()
    retried = await fleet.tick(30)
    assert [c.channel for c in retried] == ["webhook"]
    assert len(robots.to("village")) == 1


@pytest.fixture
async def ticking_fleet(
    tmp_path: Path, smtp: SmtpInbox, robots: WebhookInbox
) -> AsyncIterator[Fleet]:
    """The fleet's engine ticking by itself, once a minute (as if a long ``tick_s``)."""
    async for f in _fleet(tmp_path, smtp, robots, None, free_port(), tick_s=60):
        yield f


async def test_an_alarm_another_process_commits_is_called_at_once_not_at_the_next_tick(
    ticking_fleet: Fleet, robots: WebhookInbox, tmp_path: Path
) -> None:
    # A `fleet ingest` worker beside `fleet serve` commits the red alarm to the same file:
    # the engine starts calling within its watch's look, not up to tick_s (60 s) later.
    ingest = SQLiteRepository(tmp_path / "fleet" / "fleet.sqlite")
    row = EventRow(seq=1, ts=time.time(), kind="alarm", subject="slope", level=4, detail={})
    batch = EventBatch(gateway_id=GW, first_seq=1, last_seq=1, rows=[row])
    ingest.commit([Received(GW, time.time(), batch)])
    ingest.close()
    # well inside the 60 s the next tick would take
    await wait_for(lambda: robots.to("village"), 10, "the village's webhook call")
    assert "红色预警" in robots.to("village")[0]["text"]["content"]


def test_the_alarm_watch_sees_alarms_raised_raised_again_answered_and_cleared(
    tmp_path: Path,
) -> None:
    repository = SQLiteRepository(tmp_path / "fleet.sqlite")
    _token, secret = repository.create_enrollment_token(SITE, 1e10, None, None, 0)
    repository.redeem_enrollment_token(secret, NewGateway(GW, "k" * 44, "$7$x", None, None), 0)
    watch = AlarmWatch(tmp_path / "fleet.sqlite")
    seq, T0 = 0, 1_800_000_000.0  # noqa: N806 - a fixed time

    def report(kind: str, level: int, detail: dict[str, Any] | None = None) -> None:
        nonlocal seq
        seq += 1
        row = EventRow(seq=seq, ts=T0 + seq, kind=kind, subject="slope", level=level,
                       detail=detail or {})  # fmt: skip
        batch = EventBatch(gateway_id=GW, first_seq=seq, last_seq=seq, rows=[row])
        repository.commit([Received(GW, T0 + seq, batch)])

    assert watch.changed() is False  # the first look only learns how things are
    assert watch.changed() is False  # nothing committed since
    village = PersonIn(Tier.VILLAGE, "甲", "监测员", email="a@v.cn")
    repository.escalation.add_person(SITE, village, 0)
    assert watch.changed() is False  # a commit, but no alarm changed
    report("alarm", 2)
    assert watch.changed() is True  # raised (yellow)
    assert watch.changed() is False
    report("alarm", 4)
    assert watch.changed() is True  # the same alarm, raised to red
    answer = {"alarm_seq": 2, "person": "甲 (village)", "via": "confirm button", "at": T0 + 3}
    report("village_answer", 4, answer)
    assert watch.changed() is True  # answered at the gateway
    report("alarm", 0)
    assert watch.changed() is True  # cleared
    watch.close()
    repository.close()


async def test_a_delivery_report_before_the_send_is_recorded_keeps_its_status(
    fleet: Fleet,
) -> None:
    # Kannel reports "delivered" (or "rejected") while the engine has not yet written that
    # the send went: the send's outcome must not turn the call back into merely "sent".
    alarm_id = fleet.alarm(4)
    with fleet.engine.store.batch():
        decided = fleet.engine._decide(fleet.clock())
    email, webhook = (next(o.call for o in decided if o.call.channel == c)
                      for c in ("email", "webhook"))  # fmt: skip
    for call, report in ((email, 1), (webhook, 16)):
        answer = await fleet.http.get(
            "/api/v1/sms/dlr", params={"call": call.id, "type": report, "key": CALLBACK_KEY}
        )
        assert answer.json() == {"recorded": True}
    fleet.engine.store.calls_done(
        [(email, True, "accepted", fleet.clock()), (webhook, True, "answered 200", fleet.clock())]
    )
    calls = {c["id"]: c for c in (await fleet.alarm_view(alarm_id))["escalation"][0]["calls"]}
    assert calls[email.id]["status"] == "delivered"
    assert calls[webhook.id]["status"] == "failed"  # so it is retried
    assert [c.channel for c in await fleet.tick(30)] == ["webhook"]


async def test_delivery_reports_are_answered_once_committed_and_recorded_once_each(
    fleet: Fleet, tmp_path: Path
) -> None:
    alarm_id = fleet.alarm(4)
    calls = await fleet.tick()
    lock = os.open(tmp_path / "fleet" / "fleet.sqlite.write-lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another writer holds the store
    try:
        reports = [
            asyncio.create_task(fleet.http.get("/api/v1/sms/dlr", params={
                "call": call.id, "type": kind, "key": CALLBACK_KEY}))
            for call in calls for kind in (8, 1, 1)  # Kannel says "delivered" twice
        ]  # fmt: skip
        await wait_for(lambda: fleet.engine.deliveries.unanswered == len(reports), 10,
                       "the reports to arrive")  # fmt: skip
        assert not any(r.done() for r in reports)  # nothing is answered before its commit
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    answers = await asyncio.gather(*reports)
    assert [a.json() for a in answers] == [{"recorded": True}] * len(reports)
    unknown = {"call": 999999, "type": 1, "key": CALLBACK_KEY}
    assert (await fleet.http.get("/api/v1/sms/dlr", params=unknown)).json() == {"recorded": False}
    view = (await fleet.alarm_view(alarm_id))["escalation"][0]
    deliveries = [(s["channel"], s["detail"]) for s in view["record"] if s["kind"] == "delivery"]
    assert sorted(deliveries) == sorted((c.channel, d) for c in calls
                                for d in ("SMS accepted by the SMSC", "SMS delivered"))  # fmt: skip
    assert {c["status"] for c in view["calls"]} == {"delivered"}


async def test_a_roster_changed_between_rounds_is_called_in_the_next(fleet: Fleet) -> None:
    # Each round reads a site's roster once, for all its alarms; never a round's old copy.
    fleet.alarm(4)
    fleet.alarm(4, rule="creek")
    first = await fleet.tick()
    assert {c.person for c in first} == {"王建国 (village)"}
    assert len(first) == 4  # two alarms, e-mail and webhook each
    fleet.engine.store.add_person(
        SITE, PersonIn(Tier.VILLAGE, "赵丽", "群测群防员", email="zhao@village.example.cn"),
        fleet.clock(),
    )  # fmt: skip
    second = await fleet.tick(1)
    assert sorted((c.person, c.channel) for c in second) == [("赵丽 (village)", "email")] * 2


async def test_an_alarm_raised_while_a_burst_is_being_sent_is_called_before_the_burst_ends(
    ticking_fleet: Fleet, robots: WebhookInbox, smtp: SmtpInbox
) -> None:
    # A hundred village persons at one site, each called by e-mail and on a slow robot: a
    # burst of a few seconds, most of it their second channel. Red at a second site
    # meanwhile is decided at once, and its first call goes ahead of those second calls.
    fleet = ticking_fleet
    village = [
        PersonIn(Tier.VILLAGE, f"监测员{i}", "群测群防员", email=f"v{i}@village.example.cn",
                 webhook=robots.url(f"v{i}"))
        for i in range(100)
    ]  # fmt: skip
    fleet.engine.store.replace_roster(SITE, village, fleet.clock())
    ridge, ridge_gw = "ridge-village", "gw-0000000002"
    _token, secret = fleet.repository.create_enrollment_token(ridge, 1e10, None, None, 0)
    fleet.repository.redeem_enrollment_token(
        secret, NewGateway(ridge_gw, "k" * 44, "$7$x", None, None), 0
    )
    fleet.engine.store.replace_roster(
        ridge, [PersonIn(Tier.VILLAGE, "刘洋", "群测群防员", webhook=robots.url("ridge"))], 0
    )
    robots.answer_s = 0.2  # 100 posts, 8 at a time: about 2.5 s
    fleet.alarm(4)
    await wait_for(lambda: robots.received_at, 10, "the burst to start")
    row = EventRow(seq=1, ts=time.time(), kind="alarm", subject="creek", level=4, detail={})
    batch = EventBatch(gateway_id=ridge_gw, first_seq=1, last_seq=1, rows=[row])
    fleet.repository.commit([Received(ridge_gw, time.time(), batch)])
    await wait_for(lambda: robots.to("ridge"), 10, "the second site's call")
    burst = [path for path, _at in robots.received_at if path != "/robot/ridge"]
    assert len(burst) < 100, "the second site waited for the whole burst"
    await wait_for(lambda: len(robots.received_at) == 101, 20, "the rest of the burst")
    assert len(smtp.messages) == 100


async def test_a_village_answer_short_of_the_required_tier_calls_the_next_at_once(
    ticking_fleet: Fleet, robots: WebhookInbox
) -> None:
    # The engine ticks once a minute here: the township is called right after the village
    # answers by link, not at the next tick.
    fleet = ticking_fleet
    policy = {"levels": {"red": {"tiers": [{"tier": "village", "deadline_s": 300},
                                           {"tier": "township", "deadline_s": 600}],
                                 "repeat_s": 120, "required_tier": "township"}}}  # fmt: skip
    answer = await fleet.http.put(
        f"/api/v1/sites/{SITE}/escalation-policy", json=policy, headers=fleet.as_(Role.ADMIN)
    )
    assert answer.status_code == 200, answer.text
    fleet.alarm(4)
    await wait_for(lambda: robots.to("village"), 10, "the village's webhook call")
    link = re.search(r"http://\S+(/a/[A-Za-z0-9_-]+)", robots.to("village")[0]["text"]["content"])
    assert link is not None
    assert (await fleet.http.post(link.group(1))).status_code == 200
    await wait_for(lambda: robots.to("township"), 10, "the township's webhook call")


async def test_a_holder_that_lost_the_lease_during_its_round_commits_and_calls_nothing(
    fleet: Fleet,
) -> None:
    # A replica frozen past its lease in mid-round resumes believing it holds term 1, while
    # another replica holds term 2: its round's transaction must not commit beside theirs.
    leases = fleet.repository.leases
    mine = Leadership(leases, ESCALATION_LEASE, "host-a/1/100/aa", clock=fleet.clock)
    assert mine.try_take()
    fleet.engine.leadership = mine
    alarm_id = fleet.alarm(4)
    other = "host-b/1/200/bb"
    assert leases.take(ESCALATION_LEASE, other, fleet.clock(), 10.0, mine.holder).term == 2
    assert mine.held  # its own view is stale, as a frozen process's is on waking

    assert await fleet.tick() == []
    states = fleet.repository.escalation.alarm_states()
    assert [(s.alarm_id, s.open_escalation) for s in states] == [(alarm_id, None)]
    assert fleet.repository.escalation.unsent_calls() == []

    # Its lease back, it calls: the rolled-back round silenced nothing.
    leases.give_up(ESCALATION_LEASE, other)
    assert mine.try_take()
    assert mine.term == 3
    assert len(await fleet.tick()) == 2
