"""The site's alarm rules on SL 651 stations' readings at the fleet, end to end.

A simulated station reports a storm over real TCP to the receiving centre; the gateway's
own rule engine (``alarm_engine``, behind the fleet's ``StationRules`` seam) evaluates
it; the alarm events are committed with the readings, open the same alarm episode a
gateway's events open, and the 叫应 engine calls the village's work-chat robot (a real
HTTP server). Real SQLite throughout; the centre's and the engine's clocks are injected.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alarm_engine.level_change import LevelChange
from fleet import sl651_rules
from fleet.escalation import EscalationEngine, running_engine
from fleet.repository import Alarm
from fleet.roster import PersonIn, Tier
from fleet.settings import EscalationSettings
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_stations import Observation, Station, StationRegistry
from fleet.sqlite_repository import SQLiteRepository
from fleet.station_alarms import RulesFor, StationRules, alarm_events
from hardware_sim.harness.waiting import wait_for
from hardware_sim.harness.webhook_inbox import WebhookInbox
from hardware_sim.sl651_station import Sl651Station
from protocol.events import AlarmEvent
from site_schema.rule_specs import RainWindow, RainWindowRule, RuleSpec, WaterLevelRule

ADDRESS = "0012345678"
PASSWORD = 0x5A7C
SITE = "creek-village"
GATEWAY = "sl651-0012345678"
#: The storm starts at 02:00 UTC (10:00 in Beijing, the station's clock).
START = datetime(2026, 7, 18, 10, 0)
NOW = datetime(2026, 7, 18, 2, 0, tzinfo=UTC).timestamp()

RULES: tuple[RuleSpec, ...] = (
    RainWindowRule(
        id="station_rain",
        channel="rainfall_accumulated",
        windows=(RainWindow("1h", 3600.0, (20.0, 30.0, 40.0, 50.0)),),
    ),
    WaterLevelRule(id="creek_level", channel="water_level", thresholds=(3.0, 4.0, 5.0, 6.0)),
)


class EngineRules(sl651_rules.EngineRules):
    """The fleet's engine behind the seam, remembering what it was asked to evaluate.

    ``backend="reference"``: the pure-Python kernels, which the numba ones match bit for
    bit, so the test does not wait for a compile.
    """

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        super().__init__(rules, backend="reference")
        self.evaluated: list[Observation] = []

    def evaluate(self, observations: Sequence[Observation]) -> list[LevelChange]:
        self.evaluated += observations
        return super().evaluate(observations)


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[SQLiteRepository, StationRegistry]]:
    repository = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
    registry = StationRegistry(repository.path, durable=False)
    registry.add_station(ADDRESS, PASSWORD, SITE, NOW)
    yield repository, registry
    registry.close()
    repository.close()


@pytest.fixture
def robots() -> Iterator[WebhookInbox]:
    with WebhookInbox().running() as inbox:
        yield inbox


@pytest.fixture
async def calls(
    tmp_path: Path, db: tuple[SQLiteRepository, StationRegistry], robots: WebhookInbox
) -> AsyncIterator[EscalationEngine]:
    repository = db[0]
    village = PersonIn(Tier.VILLAGE, "王建国", "群测群防员", webhook=robots.url("village"))
    repository.escalation.replace_roster(SITE, [village], NOW)
    settings = EscalationSettings(tick_s=None)  # ticked by the test
    async with running_engine(
        repository.escalation, settings, tmp_path, "http://127.0.0.1:9", clock=Clock()
    ) as engine:
        yield engine


def centre(
    registry: StationRegistry, rules_for: RulesFor | None = None, clock: Clock | None = None
) -> ReceivingCentre:
    settings = CentreSettings(host="127.0.0.1", port=0, idle_timeout_s=30.0)
    built = rules_for or (lambda station: EngineRules(RULES))
    return ReceivingCentre(registry, settings, clock=clock or Clock(), rules_for=built)


async def storm(running: ReceivingCentre, reports: range, *, lose_answers: bool = False) -> None:
    """Reports every 5 minutes, rain 5 mm per 5 minutes (60 mm/h), the creek rising.

    ``lose_answers``: each report's first answer is lost, so the station sends it again.
    """
    async with Sl651Station(ADDRESS, PASSWORD, "127.0.0.1", running.port) as field:
        for n in reports:
            field.drop_link_after_send = int(lose_answers)
            observed = START + timedelta(minutes=5 * n)
            await field.timed_report(
                observed,
                observed + timedelta(seconds=9),
                rainfall_accumulated=f"{5 * n:.1f}",
                water_level=f"{1 + n / 10:.2f}",
            )


def utc_of(local: datetime) -> float:
    """A station-local (Beijing) time as UTC epoch seconds."""
    return (local - timedelta(hours=8)).replace(tzinfo=UTC).timestamp()


def station_alarms(repository: SQLiteRepository) -> list[Alarm]:
    return repository.alarms(active=True, gateway_ids=[GATEWAY], since=None, until=None, limit=10)


async def test_a_station_s_storm_raises_the_alarm_and_the_village_is_called(
    db: tuple[SQLiteRepository, StationRegistry], calls: EscalationEngine, robots: WebhookInbox
) -> None:
    repository, registry = db
    async with centre(registry) as running:
        # every answer lost once: each report arrives twice and is evaluated once
        await storm(running, range(14), lose_answers=True)
    rain = [a for a in station_alarms(repository) if a.rule == "station_rain"]
    assert [(a.level, a.peak_level) for a in rain] == [(4, 4)]  # one episode, red
    assert "1h window" in str(rain[0].detail)
    events = repository.events([GATEWAY], kinds=["alarm"], limit=50)
    rises = [(e.subject, e.level) for e in events if e.subject == "station_rain"]
    assert sorted(rises, key=lambda r: r[1]) == [("station_rain", n) for n in (1, 2, 3, 4)]
    assert running.counters.readings_duplicate > 0  # resends came and were not re-evaluated

    made = await calls.tick()
    assert [(c.tier, c.channel) for c in made] == [(Tier.VILLAGE, "webhook")]
    posted = await wait_for(lambda: robots.to("village"), 10, "the village robot called")
    text = posted[0]["text"]["content"]
    assert "红色预警" in text  # red, as for a gateway's alarm
    assert SITE in text
    assert "station_rain" in text


async def test_a_restarted_centre_rebuilds_the_rules_from_the_stored_history(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    repository, registry = db
    built: list[EngineRules] = []

    def rules_for(station: Station) -> StationRules:
        built.append(EngineRules(RULES))
        return built[-1]

    clock = Clock()
    async with centre(registry, rules_for, clock) as running:
        await storm(running, range(5))  # 20 mm within the hour: blue
    assert [a.level for a in station_alarms(repository)] == [1]
    clock.now = NOW + 25 * 60
    async with centre(registry, rules_for, clock) as running:
        await storm(running, range(5, 14))  # the window fills on: red
    assert len(built) == 2
    # the second centre evaluated only the new reports, on top of the replayed ones
    assert built[1].evaluated[0].ts == datetime(2026, 7, 18, 2, 25, tzinfo=UTC).timestamp()
    levels = [
        e.level
        for e in reversed(repository.events([GATEWAY], kinds=["alarm"], limit=50))
        if e.subject == "station_rain"
    ]
    assert levels == [1, 2, 3, 4]  # blue not raised twice, nothing skipped


async def test_a_restarted_centre_restores_an_open_alarm_so_its_fall_closes_it(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    repository, registry = db
    creek = WaterLevelRule(
        id="creek", channel="water_level", thresholds=(1.0, 2.0, 3.0, 4.0), hold_s=600.0
    )

    async def levels(running: ReceivingCentre, first: int, values: Sequence[str]) -> None:
        async with Sl651Station(ADDRESS, PASSWORD, "127.0.0.1", running.port) as field:
            for n, value in enumerate(values, start=first):
                observed = START + timedelta(minutes=5 * n)
                await field.timed_report(observed, observed, water_level=value)

    clock = Clock()
    async with centre(registry, lambda station: EngineRules([creek]), clock) as running:
        await levels(running, 0, ["4.50"])  # red
    assert [(a.rule, a.level) for a in station_alarms(repository)] == [("creek", 4)]
    clock.now = NOW + 3600  # a water-level rule replays no history: only the restore tells
    async with centre(registry, lambda station: EngineRules([creek]), clock) as running:
        await levels(running, 1, ["0.50"] * 4)  # 15 minutes below, past the 10-minute hold
    assert station_alarms(repository) == []  # the fall closed the episode
    (closed,) = repository.alarms(
        active=False, gateway_ids=[GATEWAY], since=None, until=None, limit=10
    )
    assert (closed.peak_level, closed.cleared_at) == (4, utc_of(START + timedelta(minutes=15)))


async def test_a_fault_in_the_rules_stores_the_readings_and_rebuilds_the_rules(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    repository, registry = db
    built: list[EngineRules] = []

    class Failing(EngineRules):
        def evaluate(self, observations: Sequence[Observation]) -> list[LevelChange]:
            raise ZeroDivisionError("a bug in the rules")

    def rules_for(station: Station) -> StationRules:
        built.append(Failing(RULES) if not built else EngineRules(RULES))
        return built[-1]

    async with centre(registry, rules_for) as running:
        await storm(running, range(14))
    assert running.counters.rules_faults == 1
    assert len(built) == 2  # rebuilt from the history at the next report
    stored = repository.readings(GATEWAY, "rainfall_accumulated", 0, 4e9, 100)
    assert len(stored) == 14  # every report stored (and acknowledged: storm() waited)
    assert [a.level for a in station_alarms(repository)] == [4]  # the storm still raised red


def test_alarm_events_are_worded_as_a_gateway_words_them() -> None:
    change = LevelChange("station_rain", 1.5e9, 0, 4, "rise", math.nan, "1h window 52 mm")
    (event,) = alarm_events([change], 7)
    assert (event.seq, event.kind, event.subject, event.level, event.ts) == (
        7,
        "alarm",
        "station_rain",
        4,
        1.5e9,
    )
    detail = AlarmEvent.model_validate(event.detail)
    assert (detail.from_level, detail.to_level, detail.kind, detail.metric) == (
        "normal",
        "red",
        "rise",
        None,  # NaN is not sent: JSON has none
    )
