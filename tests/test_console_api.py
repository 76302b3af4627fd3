"""What the console reads: sites on the map and the live feed of changes (server-sent events).

The fleet app runs under uvicorn in-process with its real SQLite store; gateways' messages
go through the same commit path ingest uses (``repository.commit``). The live feed is read
over a real HTTP stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from edge_agent.site_file import load_site
from edge_agent.site_summary import site_summary
from fleet.main import create_app
from fleet.repository import NewGateway, Received, Repository, Role
from fleet.settings import EscalationSettings, FleetSettings
from hardware_sim.harness.mosquitto import auth
from hardware_sim.harness.ports import free_port
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.harness.waiting import wait_for
from protocol import MAX_READING_ROWS, DataBatch, EventBatch, EventRow, GatewayState, Health
from protocol.events import AlarmEvent, FailureForecast, StandingForecast
from protocol.payloads import finite_json

EXAMPLES = Path(__file__).parent.parent / "edge_agent" / "examples"


@dataclass
class Fleet:
    url: str
    repository: Repository
    viewer: str
    seqs: dict[str, int]

    def gateway(self, site_id: str, gateway_id: str) -> None:
        _token, secret = self.repository.create_enrollment_token(
            site_id, time.time() + 60, None, None, time.time()
        )
        self.repository.redeem_enrollment_token(
            secret, NewGateway(gateway_id, "k" * 44, "$7$x", None, None), time.time()
        )

    def send(self, gateway_id: str, payload: Any) -> None:
        self.repository.commit([Received(gateway_id, time.time(), payload)])

    def alarm(self, gateway_id: str, rule: str, level: int) -> None:
        seq = self.seqs[gateway_id] = self.seqs.get(gateway_id, 0) + 1
        row = EventRow(seq=seq, ts=time.time(), kind="alarm", subject=rule, level=level, detail={})
        self.send(
            gateway_id, EventBatch(gateway_id=gateway_id, first_seq=seq, last_seq=seq, rows=[row])
        )


@pytest.fixture(params=("sqlite", "postgresql"))
async def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fleet]:
    """The console served on each backend (``fleet serve --database`` for PostgreSQL)."""
    if request.param == "sqlite":
        async for served in _fleet(tmp_path, None):
            yield served
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        async for served in _fleet(tmp_path, url):
            yield served


async def _fleet(tmp_path: Path, database: str | None) -> AsyncIterator[Fleet]:
    port = free_port()
    settings = FleetSettings(
        data_dir=tmp_path,
        broker="external",
        mqtt_url="mqtt://127.0.0.1:9",
        ingest=False,
        fleet_url=f"http://127.0.0.1:{port}",
        escalation=EscalationSettings(tick_s=None),
        database=database,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, 20, "the fleet to serve")
    repository: Repository = app.state.repository
    viewer = repository.create_api_token("duty", Role.VIEWER, time.time())[1]
    try:
        yield Fleet(f"http://127.0.0.1:{port}", repository, viewer, {})
    finally:
        server.should_exit = True
        await serving


async def test_sites_are_placed_and_described_by_what_their_gateways_said(fleet: Fleet) -> None:
    creek = site_summary(load_site(EXAMPLES / "creek_village.toml"))
    fleet.gateway("creek-village", "gw-0000000001")
    fleet.gateway("slope-road", "gw-0000000002")
    fleet.send("gw-0000000001", GatewayState(state="online", ts=time.time(), site=creek))
    fleet.alarm("gw-0000000002", "slope_forecast", 3)
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        sites = (await http.get("/api/v1/sites")).json()
        # most alarmed first; a site whose gateway never said where it is has no place yet
        assert [(s["site_id"], s["level_name"], s["lat"]) for s in sites] == [
            ("slope-road", "orange", None),
            ("creek-village", "normal", 25.1912),
        ]
        detail = (await http.get("/api/v1/sites/creek-village")).json()
    assert (detail["name"], detail["lon"]) == ("Creek village", 111.5736)
    assert detail["gateways"][0]["gateway_id"] == "gw-0000000001"
    water = [r for r in detail["rules"] if r["kind"] == "water_level"]
    assert water
    assert set(water[0]["thresholds"]) <= {"blue", "yellow", "orange", "red"}
    rain = [r for r in detail["rules"] if r["kind"] == "rain_windows"]
    assert rain
    assert rain[0]["windows"]
    assert {c["channel"] for c in detail["channels"]} >= {water[0]["channel"]}
    # The Last Will says nothing of the site: the fleet keeps what it was told.
    fleet.send("gw-0000000001", GatewayState(state="offline"))
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        again = (await http.get("/api/v1/sites/creek-village")).json()
        assert again["lat"] == 25.1912
        assert again["gateways"][0]["state"] == "offline"
        assert (await http.get("/api/v1/sites/no-such-site")).status_code == 404


async def test_a_gateways_clock_is_told_against_the_fleets(fleet: Fleet) -> None:
    fleet.gateway("creek-village", "gw-0000000001")
    fleet.gateway("slope-road", "gw-0000000002")
    now = time.time()
    # One gateway's clock is right; the other's lost an hour (no NTP, no GNSS fix yet).
    for gateway_id, ts in (("gw-0000000001", now), ("gw-0000000002", now - 3600)):
        fleet.repository.commit(
            [
                Received(
                    gateway_id,
                    now,
                    Health(gateway_id=gateway_id, ts=ts, uptime_s=5, agent_version="x"),
                )
            ]
        )
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        sites = {s["site_id"]: s for s in (await http.get("/api/v1/sites")).json()}
    right = sites["creek-village"]["gateways"][0]
    wrong = sites["slope-road"]["gateways"][0]
    assert right["clock_offset_s"] == 0.0
    assert right["health_at"] == pytest.approx(now)
    assert wrong["clock_offset_s"] == pytest.approx(-3600, abs=0.1)
    # A gateway that never sent health has no clock to tell.
    fleet.gateway("lower-village", "gw-0000000003")
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        silent = (await http.get("/api/v1/sites/lower-village")).json()["gateways"][0]
    assert (silent["health_at"], silent["clock_offset_s"]) == (None, None)


async def read_events(response: httpx.Response, into: list[tuple[str, dict[str, Any]]]) -> None:
    kind = None
    async for line in response.aiter_lines():
        if line == ": connected":
            into.append(("connected", {}))
        elif line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: ") and kind is not None:
            into.append((kind, json.loads(line.removeprefix("data: "))))
            kind = None


async def test_the_live_feed_carries_level_changes_and_health_within_two_seconds(
    fleet: Fleet,
) -> None:
    fleet.gateway("creek-village", "gw-0000000001")
    fleet.alarm("gw-0000000001", "creek", 1)  # before the console opened: not sent again
    received: list[tuple[str, dict[str, Any]]] = []
    async with (
        httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer), timeout=30) as http,
        http.stream("GET", "/api/v1/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(read_events(response, received))
        await wait_for(lambda: bool(received), 5, "the feed to open")
        stored = time.monotonic()
        fleet.alarm("gw-0000000001", "creek", 4)
        await wait_for(lambda: any(k == "level" for k, _ in received), 5, "the level change")
        assert time.monotonic() - stored < 2.0
        health = Health(gateway_id="gw-0000000001", ts=time.time(), uptime_s=5, agent_version="x")
        fleet.send("gw-0000000001", health)
        await wait_for(lambda: any(k == "health" for k, _ in received), 5, "the health")
        reader.cancel()
    levels = [d for k, d in received if k == "level"]
    assert [(d["rule"], d["level_name"], d["site_id"]) for d in levels] == [
        ("creek", "red", "creek-village")
    ]
    assert levels[0]["alarm_id"] is not None


async def test_the_live_feed_needs_a_viewer(fleet: Fleet) -> None:
    async with httpx.AsyncClient(base_url=fleet.url) as http:
        assert (await http.get("/api/v1/stream")).status_code == 401


def test_fleet_serve_stops_on_sigterm_while_a_console_listens(tmp_path: Path) -> None:
    # A live feed never ends by itself; `fleet serve` must still stop within its grace.
    import signal  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from fleet.cli import SHUTDOWN_GRACE_S  # noqa: PLC0415
    from hardware_sim.harness.waiting import wait_until  # noqa: PLC0415

    cli = [sys.executable, "-m", "fleet.cli"]
    created = subprocess.run(
        [*cli, "apitoken", "create", "--name", "v", "--role", "viewer",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = created.stdout.strip()
    port, broker_port = free_port(), free_port()
    fleet = subprocess.Popen(
        [*cli, "serve", "--data-dir", str(tmp_path), "--port", str(port),
         "--broker", "embedded", "--broker-port", str(broker_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    opened = threading.Event()

    def listen() -> None:
        url = f"http://127.0.0.1:{port}/api/v1/stream"
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", url, headers=auth(token), timeout=None) as response,
        ):
            for _line in response.iter_lines():
                opened.set()

    try:

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
            return False

        wait_until(ready, 60, "fleet serve to answer")
        threading.Thread(target=listen, daemon=True).start()
        wait_until(opened.is_set, 10, "the console's live feed to open")
        stopped = time.monotonic()
        fleet.send_signal(signal.SIGTERM)
        # uvicorn ends by re-raising the SIGTERM it handled: -15 is its normal stop
        assert fleet.wait(SHUTDOWN_GRACE_S + 15) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopped < SHUTDOWN_GRACE_S + 5
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()


async def test_a_site_is_read_by_its_own_gateways_not_by_listing_the_county(fleet: Fleet) -> None:
    # GET /api/v1/sites/{id} (the site page, and each falling level on the map) asks the
    # store for one site's gateways: at 1,000 sites, listing them all cost ~25 ms a call.
    fleet.gateway("creek-village", "gw-0000000001")
    fleet.gateway("creek-village", "gw-0000000002")
    fleet.gateway("slope-road", "gw-0000000003")
    fleet.alarm("gw-0000000002", "creek", 3)
    gateways = fleet.repository.site_gateways("creek-village")
    assert [(g.id, g.alarm_level) for g in gateways] == [
        ("gw-0000000001", 0),
        ("gw-0000000002", 3),
    ]
    assert fleet.repository.site_gateways("no-such-site") == []
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        detail = (await http.get("/api/v1/sites/creek-village")).json()
    assert [g["gateway_id"] for g in detail["gateways"]] == ["gw-0000000001", "gw-0000000002"]
    assert detail["level"] == 3


async def test_the_active_alarms_come_with_their_calls_in_one_request(fleet: Fleet) -> None:
    fleet.gateway("creek-village", "gw-0000000001")
    fleet.gateway("slope-road", "gw-0000000002")
    fleet.alarm("gw-0000000001", "creek", 4)
    fleet.alarm("gw-0000000002", "slope_forecast", 2)
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        ids = [a["id"] for a in (await http.get("/api/v1/alarms", params={"active": True})).json()]
        one_by_one = [(await http.get(f"/api/v1/alarms/{i}")).json() for i in ids]
        # unknown ids are left out, repeats answered once
        asked = ",".join(str(i) for i in [*ids, 999_999, ids[0]])
        answer = await http.get("/api/v1/alarms/details", params={"ids": asked})
        assert answer.status_code == 200
        assert answer.json() == one_by_one
        for bad in ("", "1,,2", "x", "-1", "1" * 19, ",".join(["1"] * 101)):
            refused = await http.get("/api/v1/alarms/details", params={"ids": bad})
            assert refused.status_code == 422, bad
    async with httpx.AsyncClient(base_url=fleet.url) as http:
        assert (await http.get("/api/v1/alarms/details", params={"ids": "1"})).status_code == 401


def readings(fleet: Fleet, gateway_id: str, rows: list[tuple[float, str, float]]) -> None:
    """Commit ``(ts, channel, value)`` readings of ``gateway_id`` as one gateway's batches."""
    numbered = [(seq, ts, channel, value, 0) for seq, (ts, channel, value) in enumerate(rows, 1)]
    for first in range(0, len(numbered), MAX_READING_ROWS):
        part = numbered[first : first + MAX_READING_ROWS]
        batch = DataBatch(
            gateway_id=gateway_id, first_seq=part[0][0], last_seq=part[-1][0], rows=part
        )
        fleet.send(gateway_id, batch)


def event(fleet: Fleet, gateway_id: str, ts: float, kind: str, subject: str | None,
          level: int | None, detail: dict[str, Any]) -> None:  # fmt: skip
    """Commit one event of ``gateway_id`` as its uplink sends it (infinity as text)."""
    seq = fleet.seqs[gateway_id] = fleet.seqs.get(gateway_id, 0) + 1
    row = EventRow(
        seq=seq, ts=ts, kind=kind, subject=subject, level=level, detail=finite_json(detail)
    )
    fleet.send(
        gateway_id, EventBatch(gateway_id=gateway_id, first_seq=seq, last_seq=seq, rows=[row])
    )


def health(fleet: Fleet, gateway_id: str, forecasts: dict[str, StandingForecast]) -> None:
    """A health report from ``gateway_id`` with its standing forecasts, stored as ingest does."""
    report = Health(
        gateway_id=gateway_id, ts=time.time(), uptime_s=60.0, agent_version="0.1.0",
        forecasts=forecasts,
    )  # fmt: skip
    fleet.send(gateway_id, report)


EXTENSION = "scarp_extensometer.extension"
HOUR = 3600.0


def slope_site(fleet: Fleet, gateway_id: str) -> tuple[float, float]:
    """A slope-road gateway with 48 h of extension readings; returns (start, until)."""
    slope = site_summary(load_site(EXAMPLES / "slope_road.toml"))
    fleet.gateway("slope-road", gateway_id)
    fleet.send(gateway_id, GatewayState(state="online", ts=time.time(), site=slope))
    until = math.floor(time.time() / HOUR) * HOUR
    start = until - 48 * HOUR
    # Every 10 minutes: 2 mm/day for 20 h, then at rest for 12 h, then nothing for 6 h
    # (the gauge off), then 2 mm/day again for the last 10 h.
    rows: list[tuple[float, str, float]] = []
    for k in range(48 * 6):
        t = start + k * 600
        hour = k // 6
        if hour < 20:
            rows.append((t, EXTENSION, 2.0 * (t - start) / 86400))
        elif hour < 32:
            rows.append((t, EXTENSION, 2.0 * 20 / 24))
        elif hour >= 38:
            rows.append((t, EXTENSION, 2.0 * 20 / 24 + 2.0 * (t - start - 38 * HOUR) / 86400))
    readings(fleet, gateway_id, rows)
    return start, until


async def slope_rule(http: httpx.AsyncClient, start: float, until: float) -> dict[str, Any]:
    """The slope page's answer for slope-road's one forecast rule."""
    answer = await http.get(
        "/api/v1/sites/slope-road/slope", params={"since": start, "until": until}
    )
    assert answer.status_code == 200, answer.text
    rules = answer.json()["rules"]
    # Only the forecast rule draws 1/v; the velocity rule has its thresholds chart.
    assert [r["rule"] for r in rules] == ["slope_forecast"]
    return dict(rules[0])


async def test_a_slope_site_draws_inverse_velocity_and_skips_what_has_none(fleet: Fleet) -> None:
    start, until = slope_site(fleet, "gw-0000000005")
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        quiet = await slope_rule(http, start, until)
        assert quiet["forecast"]["state"] == "not_reported"
        assert (quiet["channel"], quiet["unit"]) == (EXTENSION, "mm")
        assert quiet["horizons_h"] == {"yellow": 168, "orange": 144, "red": 48}
        picture = quiet["inverse_velocity"]
        assert picture["gateway_id"] == "gw-0000000005"
        assert picture["hours"] == 48 - 6
        points = picture["points"]
        # Inside the steady stretches the fit is exact: 2 mm/day, 0.5 day/mm.
        steady = [p for p in points if p["t"] < start + 17 * HOUR]
        assert len(steady) == 17 - 1  # the first hour has 4 means of its window, too few
        for p in steady:
            assert p["velocity"] == pytest.approx(2.0)
            assert p["inverse"] == pytest.approx(0.5)
        # At rest, 1/v is undefined: those hours are counted, never drawn as a number.
        assert picture["not_moving"] >= 12 - 2 * 3
        assert all(p["velocity"] > 0 and math.isfinite(p["inverse"]) for p in points)
        assert not any(start + 23 * HOUR < p["t"] < start + 29 * HOUR for p in points)
        assert picture["gaps"] > 0
        assert len(points) + picture["not_moving"] + picture["gaps"] == picture["hours"]

    async with httpx.AsyncClient(base_url=fleet.url) as http:
        assert (await http.get("/api/v1/sites/slope-road/slope")).status_code == 401


async def test_a_slope_site_gives_the_forecast_its_gateway_last_reported(fleet: Fleet) -> None:
    start, until = slope_site(fleet, "gw-0000000005")
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        assert (await slope_rule(http, start, until))["forecast"]["state"] == "not_reported"
        # An older gateway: the lead time only; the failure time follows from it.
        at = until - 2 * HOUR
        older = {"from": "normal", "to": "yellow", "kind": "rise", "metric": 150.0, "at": at,
                 "detail": "predicted failure ... in 150.0 h"}  # fmt: skip
        event(fleet, "gw-0000000005", at, "alarm", "slope_forecast", 2, older)
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert (forecast["state"], forecast["level_name"]) == ("forecast", "yellow")
        assert forecast["failure_t"] == pytest.approx(at + 150 * HOUR)
        assert (forecast["failure_t_low"], forecast["alpha"]) == (None, None)

        # The newest event's numbers win; an unbounded interval stays unbounded.
        at = until - HOUR
        numbers = FailureForecast(
            lead_h=30.0, failure_t=at + 30 * HOUR, failure_t_low=at + 20 * HOUR,
            failure_t_high=math.inf, alpha=1.9, velocity_mm_day=14.5, evidence=52.0,
        )  # fmt: skip
        newer = AlarmEvent(from_level="yellow", to_level="red", kind="rise", metric=30.0,
                           detail="predicted failure ...", at=at, forecast=numbers)  # fmt: skip
        event(fleet, "gw-0000000005", at, "alarm", "slope_forecast", 4, newer.wire())
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert forecast == {
            "state": "forecast", "source": "level_change", "gateway_id": "gw-0000000005",
            "as_of": at, "level": 4, "level_name": "red", "lead_h": 30.0,
            "failure_t": at + 30 * HOUR, "failure_t_low": at + 20 * HOUR,
            "failure_t_high": None, "alpha": 1.9, "velocity_mm_day": 14.5, "evidence": 52.0,
            "words": "predicted failure ...",
        }  # fmt: skip

        # The red latched; the gateway forecasts on and reports its newest accepted forecast
        # with its health: newer than the event, it is the one shown, and says so.
        red_at = at
        later = red_at + 0.5 * HOUR
        standing = StandingForecast(
            lead_h=24.0, failure_t=later + 24 * HOUR, failure_t_low=later + 21 * HOUR,
            failure_t_high=later + 28 * HOUR, alpha=2.1, velocity_mm_day=18.0, evidence=900.0,
            at=later,
        )  # fmt: skip
        health(fleet, "gw-0000000005", {"slope_forecast": standing})
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert forecast == {
            "state": "forecast", "source": "latest", "gateway_id": "gw-0000000005",
            "as_of": later, "level": 4, "level_name": "red", "lead_h": 24.0,
            "failure_t": later + 24 * HOUR, "failure_t_low": later + 21 * HOUR,
            "failure_t_high": later + 28 * HOUR, "alpha": 2.1, "velocity_mm_day": 18.0,
            "evidence": 900.0, "words": None,
        }  # fmt: skip
        # One made before the event (a health report from before the red) does not win.
        older = standing.model_copy(update={"at": red_at - 0.5 * HOUR})
        health(fleet, "gw-0000000005", {"slope_forecast": older})
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert (forecast["source"], forecast["as_of"]) == ("level_change", red_at)
        # One stamped after the report that carries it is no forecast (it would outrank
        # every later level change).
        ahead = standing.model_copy(update={"at": time.time() + 86400})
        health(fleet, "gw-0000000005", {"slope_forecast": ahead})
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert (forecast["source"], forecast["as_of"]) == ("level_change", red_at)
        health(fleet, "gw-0000000005", {"slope_forecast": standing})

        # No failure in sight (the gateway's metric is infinite): said so, no time given.
        calm = {"from": "red", "to": "normal", "kind": "ack", "metric": math.inf, "at": until}
        event(fleet, "gw-0000000005", until, "alarm", "slope_forecast", 0, calm)
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert (forecast["state"], forecast["failure_t"], forecast["as_of"]) == (
            "not_accelerating",
            None,
            until,
        )
        # Back to normal, a standing forecast is no news, however new.
        newest = standing.model_copy(update={"at": until + 60})
        health(fleet, "gw-0000000005", {"slope_forecast": newest})
        forecast = (await slope_rule(http, start, until))["forecast"]
        assert (forecast["state"], forecast["source"]) == ("not_accelerating", "level_change")

        for params, words in (
            ({"since": until, "until": until}, "must be before"),
            ({"since": until - 61 * 86400, "until": until}, "at most 60"),
        ):
            refused = await http.get("/api/v1/sites/slope-road/slope", params=params)
            assert refused.status_code == 400
            assert words in refused.json()["detail"]
        assert (await http.get("/api/v1/sites/nowhere/slope")).status_code == 404


async def test_a_site_tells_its_recent_events_newest_first_without_contacts(
    fleet: Fleet,
) -> None:
    fleet.gateway("creek-village", "gw-0000000006")
    gw = "gw-0000000006"
    t0 = time.time() - 600
    event(fleet, gw, t0, "alarm", "creek", 4,
          {"from": "normal", "to": "red", "kind": "rise", "metric": 821.0,
           "detail": "water level 821 >= 820 (red)"})  # fmt: skip
    event(fleet, gw, t0 + 1, "actuation", "site", 4,
          {"from": "normal", "to": "red", "cause": "creek: water level 821 >= 820 (red)",
           "patterns": {"siren": "warble"}})  # fmt: skip
    event(
        fleet,
        gw,
        t0 + 2,
        "broadcast",
        "evacuate_now",
        4,
        {"command": ["aplay", "-q", "/opt/clips/evacuate_now.wav"], "started": t0 + 2},
    )
    event(fleet, gw, t0 + 3, "village_call", "creek", 4,
          {"alarm_seq": 1, "person": "王建国 (village)", "to": "+86138****0000",
           "via": "gateway modem", "status": "sent"})  # fmt: skip
    event(
        fleet,
        gw,
        t0 + 4,
        "village_answer",
        "creek",
        4,
        {"alarm_seq": 1, "person": "王建国 (village)", "via": "sms", "at": t0 + 4},
    )
    event(fleet, gw, t0 + 5, "sensor_fault", "creek", None, {"detail": "timeout"})
    alarm = fleet.repository.alarms(active=True, gateway_ids=[gw], since=None, until=None, limit=1)[
        0
    ]
    fleet.repository.acknowledge_alarm(alarm.id, "duty-officer", "已通知", t0 + 6)
    fleet.repository.confirm_receipt(alarm.id, "李四", "phone", None, "duty-officer", t0 + 7)
    event(fleet, gw, t0 + 8, "alarm", "creek", 0,
          {"from": "red", "to": "normal", "kind": "fall", "metric": 805.0})  # fmt: skip
    event(
        fleet,
        gw,
        t0 + 9,
        "actuation",
        "site",
        0,
        {"from": "red", "to": "normal", "cause": "creek", "patterns": {"siren": None}},
    )
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        answer = await http.get("/api/v1/sites/creek-village/events")
        assert answer.status_code == 200
        events = answer.json()
        assert (await http.get("/api/v1/sites/nowhere/events")).status_code == 404
        assert (await http.get("/api/v1/sites/creek-village/events", params={"limit": 0})
                ).status_code == 422  # fmt: skip
        two = (await http.get("/api/v1/sites/creek-village/events", params={"limit": 2})).json()
    assert [e["kind"] for e in events] == [
        "actuation", "alarm", "fleet_answer", "fleet_ack", "village_answer", "village_call",
        "broadcast", "actuation", "alarm",
    ]  # fmt: skip
    assert two == events[:2]
    assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
    off, fall, answered, acked, village, call, broadcast, on, rise = events
    assert (on["outputs"], off["outputs"]) == ({"siren": "warble"}, {"siren": None})
    assert (on["level_name"], off["level_name"]) == ("red", "normal")
    assert (rise["change"], rise["level_name"], rise["rule"]) == ("rise", "red", "creek")
    assert rise["words"] == "water level 821 >= 820 (red)"
    assert (fall["change"], fall["level"]) == ("fall", 0)
    assert (acked["by"], acked["words"]) == ("duty-officer", "已通知")
    assert (answered["person"], answered["via"], answered["by"]) == (
        "李四",
        "phone",
        "duty-officer",
    )
    assert (village["person"], village["via"]) == ("王建国 (village)", "sms")
    assert (call["status"], call["person"]) == ("sent", "王建国 (village)")
    assert broadcast["clip"] == "evacuate_now"
    text = json.dumps(events, ensure_ascii=False)
    # No phone number, even masked (a bare "138" would also match the digits of a time).
    assert "+86138" not in text
    assert "****" not in text
    assert "aplay" not in text  # no player's command line


async def test_a_site_tells_each_acknowledgement_once_by_where_it_was_taken(
    fleet: Fleet,
) -> None:
    upper, lower = "gw-0000000016", "gw-0000000017"
    fleet.gateway("ridge-village", upper)
    fleet.gateway("ridge-village", lower)
    t0 = time.time() - 600
    event(fleet, upper, t0, "alarm", "slope", 3, {"kind": "rise"})
    event(fleet, lower, t0 + 1, "alarm", "creek", 4, {"kind": "rise"})
    event(fleet, upper, t0 + 2, "ack", "slope", 3, {"by": "button"})
    [creek] = fleet.repository.alarms(
        active=True, gateway_ids=[lower], since=None, until=None, limit=1
    )
    # an operator's name is words: it never makes the county's acknowledgement the gateway's
    fleet.repository.acknowledge_alarm(creek.id, "ops (at the gateway)", None, t0 + 3)
    async with httpx.AsyncClient(base_url=fleet.url, headers=auth(fleet.viewer)) as http:
        answer = await http.get("/api/v1/sites/ridge-village/events")
    assert answer.status_code == 200
    told = [(e["kind"], e["gateway_id"], e["rule"], e["by"]) for e in answer.json()]
    assert told == [
        ("fleet_ack", lower, "creek", "ops (at the gateway)"),
        ("ack", upper, "slope", "button"),
        ("alarm", lower, "creek", None),
        ("alarm", upper, "slope", None),
    ]
