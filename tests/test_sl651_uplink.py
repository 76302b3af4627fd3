"""The gateway's SL 651 uplink feeding the fleet's own receiving centre, over real TCP.

Real parts: the agent's ``LocalStore`` (SQLite), the uplink's outbox in the same file,
the fleet's ``ReceivingCentre`` on a free loopback port with its registry on a real
fleet database, and (for the lost answer) a TCP relay between them. Time is a
``ManualClock``: report times come when the test moves it; waiting is ``wait_for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drivers.clock import ManualClock
from drivers.model import Quality, Reading
from edge_agent.agent import Agent
from edge_agent.cli import app as edge_app
from edge_agent.control import SOCKET_NAME, serve_control
from edge_agent.control_messages import StatusRequest
from edge_agent.sl651_outbox import OutboxFrame
from edge_agent.sl651_uplink import SETTLE_S, Sl651Uplink
from edge_agent.store import LocalStore
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_observations import observations
from fleet.sl651_stations import StationRegistry
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.waiting import wait_for
from protocol.sl651 import ElementId, FunctionCode, Number, Report, decode, frame_size
from protocol.sl651.frame import HEADER_SIZE
from site_schema.site_config import SiteConfig, parse_site_text
from site_schema.site_errors import SiteConfigError

ADDRESS = "0012345678"
PASSWORD = "5A7C"
#: 2026-07-18 10:00 in Beijing: the gateway's clock when each test starts.
START = datetime(2026, 7, 18, 2, 0, tzinfo=UTC).timestamp()
EIGHT_HOURS_S = 8 * 3600.0
POLL_S = 60.0

SITE = """
[site]
id = "creek-village"

[[bus]]
name = "cabinet"
kind = "tcp"
host = "127.0.0.1"
port = 5020

[[device]]
name = "rain"
bus = "cabinet"
profile = "dfrobot_sen0575"
unit_id = 192
poll_interval_s = 60
channels = ["rain_total"]

[[device]]
name = "creek"
bus = "cabinet"
profile = "hlk_ld8001h"
unit_id = 1
poll_interval_s = 60
channels = ["water_level"]

[[rule]]
id = "creek_stage"
kind = "water_level"
channel = "creek.water_level"
thresholds = {{ blue = 1200, yellow = 1600, orange = 2000, red = 2500 }}
hysteresis = 50
hold_s = 1800

[sl651_uplink]
centre = "127.0.0.1:{port}"
station = "0012345678"
password = "{password}"
centre_address = 1
timed_every_min = 5
ack_timeout_s = 5
reconnect_min_s = 0.05
reconnect_max_s = 0.2
{extra}

[sl651_uplink.elements]
"rain.rain_total" = ["PT", "PN05"]
"creek.water_level" = "Z"
"""


def site(port: int, password: str = PASSWORD, extra: str = "") -> SiteConfig:
    return parse_site_text(SITE.format(port=port, password=password, extra=extra), "site.toml")


def centre_settings(port: int = 0) -> CentreSettings:
    return CentreSettings(host="127.0.0.1", port=port, idle_timeout_s=30.0, centre_address=1)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[StationRegistry]:
    repository = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
    registry = StationRegistry(repository.path, durable=False)
    registry.add_station(ADDRESS, int(PASSWORD, 16), "creek-village", START)
    yield registry
    registry.close()
    repository.close()


@pytest.fixture
async def centre(registry: StationRegistry) -> AsyncIterator[ReceivingCentre]:
    async with ReceivingCentre(registry, centre_settings(), clock=lambda: START) as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalStore]:
    async with LocalStore(tmp_path / "gateway") as opened:
        yield opened


@contextlib.asynccontextmanager
async def running(uplink: Sl651Uplink) -> AsyncIterator[Sl651Uplink]:
    task = asyncio.create_task(uplink.run())
    try:
        await wait_for(uplink.scheduled.is_set, 10, "the uplink's report times")
        yield uplink
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def poll(t: float, rain_mm: float, level_mm: float) -> list[Reading]:
    """One poll of the rain gauge's counter and the creek's radar at ``t``."""
    return [
        Reading(t, "rain.rain_total", rain_mm, "mm", Quality.OK),
        Reading(t, "creek.water_level", level_mm, "mm", Quality.OK),
    ]


def storm(t: float) -> tuple[float, float]:
    """Rain counter (mm) and creek level (mm) at ``t``: steady rain, a rising creek."""
    minutes = (t - START) / 60.0
    return round(0.4 * minutes, 4), 900.0 + 2.0 * minutes


async def poll_until(clock: ManualClock, store: LocalStore, until: float) -> None:
    """Poll every POLL_S, commit, and move the clock, up to ``until``."""
    while clock.now() < until:
        rain, level = storm(clock.now())
        store.add_readings(poll(clock.now(), rain, level))
        await store.flush()
        clock.advance(POLL_S)


def held_at_centre(registry: StationRegistry) -> set[tuple[float, str]]:
    """The (observation time, element) the centre holds for the station."""
    with sqlite3.connect(registry.path) as conn:
        rows = conn.execute(
            "SELECT observed_at, element FROM sl651_observations WHERE address = ?", (ADDRESS,)
        ).fetchall()
    return {(float(t), str(e)) for t, e in rows}


def centre_readings(registry: StationRegistry) -> list[tuple[float, str, float | None]]:
    """Every reading row the centre stored for the station (duplicates would show here)."""
    with sqlite3.connect(registry.path) as conn:
        return [
            (float(ts), str(name), value)
            for ts, name, value in conn.execute(
                "SELECT r.ts, c.name, r.value FROM readings r JOIN channels c ON c.id = r.channel "
                "JOIN sl651_stations s ON s.gw = r.gw WHERE s.address = ?",
                (ADDRESS,),
            )
        ]


def sent_by_gateway(frames: list[OutboxFrame]) -> set[tuple[float, str]]:
    """The (observation time, element) of every report the gateway composed."""
    held: set[tuple[float, str]] = set()
    for frame in frames:
        report = decode(frame.frame).body
        assert isinstance(report, Report)
        held |= {(o.ts, o.channel) for o in observations(report, ADDRESS)}
    return held


def numbers(frame: OutboxFrame) -> dict[ElementId, float | None]:
    """The number elements of a stored frame, as floats."""
    report = decode(frame.frame).body
    assert isinstance(report, Report)
    group = report.stations[0].groups[0]
    return {
        item.element: None if item.value is None else float(item.value)
        for item in group.items
        if isinstance(item, Number)
    }


async def test_an_outage_of_the_centre_loses_nothing_and_duplicates_nothing(
    store: LocalStore, registry: StationRegistry, centre: ReceivingCentre
) -> None:
    clock = ManualClock(START)
    port = centre.port
    spec = site(port).sl651_uplink
    assert spec is not None
    uplink = Sl651Uplink(spec, store.path, store.history, clock)
    async with running(uplink):
        await poll_until(clock, store, START + 1800)
        await wait_for(
            lambda: uplink.status()["backlog"] == 0 and uplink.answered >= 5, 20, "first reports"
        )
        await centre.stop()
        await poll_until(clock, store, START + 5400)  # through 10:30 .. 11:30, the centre down
        await wait_for(lambda: uplink.state == "unreachable", 20, "the uplink to find it down")
        await wait_for(lambda: uplink.status()["backlog"] >= 10, 20, "reports held back")
        async with ReceivingCentre(registry, centre_settings(port), clock=lambda: START):
            await poll_until(clock, store, START + 7200 + SETTLE_S + 1)
            # 24 reports from 10:05 to 12:00, every one of them answered
            await wait_for(
                lambda: (uplink.status()["last_frame"], uplink.status()["backlog"]) == (24, 0),
                30,
                "the backlog to drain",
            )
            frames = await uplink.outbox.frames()
    timed = sorted(f.observed_at for f in frames if f.function is FunctionCode.TIMED)
    hourly = sorted(f.observed_at for f in frames if f.function is FunctionCode.HOURLY)
    # every 5 minutes from 10:05 to 12:00 Beijing time, full hours as hourly reports
    assert hourly == [START + 3600, START + 7200]
    assert timed == [START + 300 * n for n in range(1, 25) if n % 12]
    assert all(f.acked_at is not None for f in frames)
    gateway = sent_by_gateway(frames)
    assert held_at_centre(registry) == gateway
    stored = centre_readings(registry)
    assert len(stored) == len(gateway) == len({(ts, name) for ts, name, _ in stored})
    # what went out is what the store held: Z at 10:35 is the creek's reading then, in m
    at_1035 = next(f for f in frames if f.observed_at == START + 2100)
    rain_then, level_then = storm(START + 2100)
    rain_before, _ = storm(START + 1800)
    assert numbers(at_1035)[ElementId.WATER_LEVEL] == pytest.approx(level_then / 1000)
    assert numbers(at_1035)[ElementId.RAINFALL_ACCUMULATED] == pytest.approx(rain_then, abs=0.05)
    assert numbers(at_1035)[ElementId.RAINFALL_5MIN] == pytest.approx(
        rain_then - rain_before, abs=0.05
    )
    assert uplink.resends >= 1  # frames were tried during the outage and sent again


class AnswerDropper:
    """A TCP relay between station and centre that loses the next ``drop`` answers.

    It forwards the station's bytes, keeps each frame it saw, and when an answer is to be
    lost it swallows it and closes the station's link, as a dropped GPRS link does.
    """

    def __init__(self, centre_port: int, drop: int) -> None:
        self.centre_port = centre_port
        self.drop = drop
        self.frames: list[bytes] = []
        self.dropped = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> AnswerDropper:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.centre_port)
        try:
            while True:
                head = await reader.readexactly(HEADER_SIZE - 1)
                size = frame_size(head)
                assert size is not None
                frame = head + await reader.readexactly(size - len(head))
                self.frames.append(frame)
                up_writer.write(frame)
                await up_writer.drain()
                answer_head = await up_reader.readexactly(HEADER_SIZE - 1)
                answer_size = frame_size(answer_head)
                assert answer_size is not None
                answer = answer_head + await up_reader.readexactly(answer_size - len(answer_head))
                if self.drop:
                    self.drop -= 1
                    self.dropped += 1
                    return  # the answer is lost with the link
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()


async def test_a_resend_after_a_lost_answer_carries_the_original_serial_and_times(
    store: LocalStore, registry: StationRegistry, centre: ReceivingCentre
) -> None:
    clock = ManualClock(START)
    async with AnswerDropper(centre.port, drop=1) as relay:
        spec = site(relay.port).sl651_uplink
        assert spec is not None
        uplink = Sl651Uplink(spec, store.path, store.history, clock)
        async with running(uplink):
            await poll_until(clock, store, START + 300 + SETTLE_S + 1)
            await wait_for(lambda: uplink.answered == 1, 20, "the report to be answered")
            frames = await uplink.outbox.frames()
    assert relay.dropped == 1
    assert len(frames) == 1
    assert frames[0].sends == 2
    first, second = (decode(frame) for frame in relay.frames)
    assert relay.frames[0] == relay.frames[1] == frames[0].frame  # the very same bytes
    assert isinstance(first.body, Report)
    assert isinstance(second.body, Report)
    assert first.body.serial == second.body.serial == frames[0].serial
    assert first.body.sent_at == second.body.sent_at
    assert first.body.stations[0].groups[0].observed_at == datetime(2026, 7, 18, 10, 5)
    # the centre stored the report once and recognised the resend as one it held
    held = sent_by_gateway(frames)
    assert held_at_centre(registry) == held
    assert centre.counters.readings_duplicate == len(held)
    assert len(centre_readings(registry)) == len(held)


async def test_reports_composed_in_an_outage_survive_a_restart_of_the_gateway(
    store: LocalStore, registry: StationRegistry, centre: ReceivingCentre
) -> None:
    clock = ManualClock(START)
    port = centre.port
    await centre.stop()
    spec = site(port).sl651_uplink
    assert spec is not None
    first = Sl651Uplink(spec, store.path, store.history, clock)
    async with running(first):
        await poll_until(clock, store, START + 900 + SETTLE_S + 1)  # 10:05, 10:10, 10:15
        await wait_for(lambda: first.status()["backlog"] == 3, 20, "three reports held")
        held = await first.outbox.frames()
    # the agent restarts (a new uplink on the same store) while the centre is still down
    second = Sl651Uplink(spec, store.path, store.history, clock)
    async with ReceivingCentre(registry, centre_settings(port), clock=lambda: START) as back:
        async with running(second):
            await poll_until(clock, store, START + 1200 + SETTLE_S + 1)  # and 10:20
            await wait_for(
                lambda: (second.status()["last_frame"], second.status()["backlog"]) == (4, 0),
                20,
                "the backlog and 10:20 to go",
            )
            frames = await second.outbox.frames()
        assert back.counters.reports == 4
    # the frames held before the restart went out as they were composed, then the next
    assert [(f.serial, f.frame) for f in frames[:3]] == [(f.serial, f.frame) for f in held]
    assert [f.serial for f in frames] == [1, 2, 3, 4]
    assert [f.observed_at for f in frames] == [START + 300 * n for n in range(1, 5)]
    assert held_at_centre(registry) == sent_by_gateway(frames)


async def test_an_add_report_reaches_the_centre_within_one_poll_of_a_raised_level(
    tmp_path: Path, registry: StationRegistry, centre: ReceivingCentre
) -> None:
    clock = ManualClock(START)
    agent = Agent(site(centre.port), tmp_path / "gateway", clock, backend="reference")
    assert agent.sl651_uplink is not None
    agent.store.open()
    try:
        async with running(agent.sl651_uplink) as uplink:
            agent._on_readings(poll(clock.now(), 10.0, 1100.0))  # the poller's callback
            clock.advance(POLL_S)
            raised_at = clock.now()
            agent._on_readings(poll(raised_at, 10.4, 1250.0))  # 1250 mm >= blue's 1200
            assert agent.engine.levels()["creek_stage"] == 1
            # the clock stays before the next poll: the add report must not wait for it
            await wait_for(lambda: uplink.answered == 1, 10, "the add report's answer")
            assert clock.now() < raised_at + POLL_S
            frames = await uplink.outbox.frames()
            status = (await agent._status(StatusRequest())).wire()["sl651_uplink"]
            # and as `edge status` prints it, over the agent's control socket
            server = await serve_control(agent.data_dir / SOCKET_NAME, {"status": agent._status})
            try:
                shown = await asyncio.to_thread(
                    CliRunner().invoke, edge_app, ["status", "-d", str(agent.data_dir)]
                )
            finally:
                server.close()
    finally:
        await asyncio.to_thread(agent.store.close)
    (add,) = frames
    assert add.function is FunctionCode.ADD
    assert add.observed_at == raised_at
    assert numbers(add) == {
        ElementId.RAINFALL_ACCUMULATED: pytest.approx(10.4),
        ElementId.WATER_LEVEL: pytest.approx(1.25),
    }
    assert (raised_at, "water_level") in held_at_centre(registry)
    assert centre.counters.reports == 1
    # what `edge status` shows
    assert status["centre"] == f"127.0.0.1:{centre.port}"
    assert (status["watermark"], status["last_frame"], status["backlog"]) == (1, 1, 0)
    assert status["state"] in ("connected", "idle")
    assert shown.exit_code == 0, shown.output
    assert f"SL 651 uplink to 127.0.0.1:{centre.port} as station 0012345678" in shown.output
    assert "watermark 1 of 1 frames, backlog 0" in shown.output


async def test_a_refusing_centre_is_a_clear_error_without_the_password(
    store: LocalStore, centre: ReceivingCentre, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START)
    spec = site(centre.port, password="B7E9").sl651_uplink
    assert spec is not None
    uplink = Sl651Uplink(spec, store.path, store.history, clock)
    with caplog.at_level(logging.DEBUG):
        async with running(uplink):
            await poll_until(clock, store, START + 300 + SETTLE_S + 1)
            await wait_for(lambda: uplink.state == "refused", 20, "the refusal")
            await wait_for(lambda: uplink.sends >= 2, 20, "a second try")
            status = uplink.status()
    assert status["backlog"] == 1
    assert status["watermark"] == 0
    assert "refuses station 0012345678" in (status["last_error"] or "")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "SL 651" in r.message]
    assert len(errors) == 1  # once, then only at DEBUG while it lasts
    assert "password" in errors[0].message
    for shown in ("B7E9", "b7e9", str(0xB7E9)):  # as written, as bytes, as a number
        assert not any(shown in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("change", "elements", "problem"),
    [
        ("", '"creek.water_level" = "ZZ"', "'ZZ' is not an SL 651 number element"),
        (
            "",
            '"creek.water_level" = "PT"',
            "'creek.water_level' is a water_level; PT needs a rain_total counter",
        ),
        ("", '"creek.air_gap" = "Z"', "'creek.air_gap' is not polled"),
        ("", '"creek.water_level" = "Z"\n"rain.rain_total" = "Z"', "Z is mapped from both"),
        ("timed_every_min = 7", '"creek.water_level" = "Z"', "timed_every_min 7"),
        ('centre = "localhost"', '"creek.water_level" = "Z"', "'localhost' is not host:port"),
        ('station_type = "X"', '"creek.water_level" = "Z"', "station_type 'X'"),
    ],
)
def test_the_table_is_refused_naming_the_problem(change: str, elements: str, problem: str) -> None:
    text = SITE.format(port=5005, password=PASSWORD, extra="")
    key = change.split(" =", maxsplit=1)[0]
    line = next((line for line in text.splitlines() if line.startswith(f"{key} =")), None)
    if change and line:  # a key the test site file sets: replaced
        text = text.replace(line, change)
    elif change:
        text = SITE.format(port=5005, password=PASSWORD, extra=change)
    text = text[: text.index("[sl651_uplink.elements]")] + "[sl651_uplink.elements]\n" + elements
    with pytest.raises(SiteConfigError, match="sl651_uplink") as refused:
        parse_site_text(text, "site.toml")
    assert problem in str(refused.value)


def test_a_bad_password_is_refused_without_repeating_it() -> None:
    with pytest.raises(SiteConfigError) as refused:
        site(5005, password="SECRETPW")
    assert "password: 4 hex digits" in str(refused.value)
    assert "SECRETPW" not in str(refused.value)
    spec = site(5005).sl651_uplink
    assert spec is not None
    assert spec.password == 0x5A7C
    assert PASSWORD not in repr(spec)
    assert str(0x5A7C) not in repr(spec)
