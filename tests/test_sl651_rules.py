"""A station's own rules file at the fleet: checked, kept, built, changed and acknowledged.

The file is refused with the reason when a rule watches a channel no SL 651 station
reports, or includes a local file; a kept file is built into the gateway's engine by
``fleet.sl651_rules``; a running centre takes new rules at the station's next report; and
acknowledging a latched station alarm at the console releases the latch at the next
report. Real SQLite, real TCP (the simulated station), injected clocks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleet.cli import app
from fleet.repository import Alarm
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_rules import rules_for
from fleet.sl651_rules_file import StationRulesError, parse_station_rules
from fleet.sl651_stations import StationRegistry, UnknownStationError
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.sl651_station import Sl651Station
from site_schema.rule_specs import RainWindowRule, WaterLevelRule

ADDRESS = "0012345678"
PASSWORD = 0x5A7C
SITE = "creek-village"
GATEWAY = "sl651-0012345678"
START = datetime(2026, 7, 18, 10, 0)  # station time (Beijing)
NOW = datetime(2026, 7, 18, 2, 0, tzinfo=UTC).timestamp()

LATCHING_CREEK = """
[[rule]]
id = "creek"
kind = "water_level"
channel = "water_level"
hold_s = 600
latch_from = "red"
thresholds = { yellow = 2.0, red = 4.0 }
"""
GENTLE_CREEK = """
[[rule]]
id = "creek"
kind = "water_level"
channel = "water_level"
thresholds = { red = 9.0 }
"""


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


def centre(registry: StationRegistry, clock: Clock) -> ReceivingCentre:
    settings = CentreSettings(host="127.0.0.1", port=0, idle_timeout_s=30.0)
    built = rules_for(registry, "reference")  # the kernels' bit-for-bit reference: no compile
    return ReceivingCentre(registry, settings, clock=clock, rules_for=built)


async def levels(running: ReceivingCentre, first: int, values: Sequence[str]) -> None:
    """Timed reports of the creek's level every 5 minutes, from report ``first`` on."""
    async with Sl651Station(ADDRESS, PASSWORD, "127.0.0.1", running.port) as field:
        for n, value in enumerate(values, start=first):
            observed = START + timedelta(minutes=5 * n)
            await field.timed_report(observed, observed, water_level=value)


def said(output: str) -> str:
    """A CLI's output with the error box's frame and line breaks taken out."""
    return " ".join(output.replace("│", " ").split())


def open_alarms(repository: SQLiteRepository) -> list[Alarm]:
    return repository.alarms(active=True, gateway_ids=[GATEWAY], since=None, until=None, limit=10)


# --- the rules file --------------------------------------------------------------------


def test_a_rule_on_the_station_s_channels_parses_as_a_site_file_s_would() -> None:
    text = LATCHING_CREEK + '[[include]]\nrules = "jianghua"\n'
    text += 'channels = { rain = "rainfall_accumulated" }\n'
    creek, county = parse_station_rules(text, "station.toml")
    assert isinstance(creek, WaterLevelRule)
    assert (creek.channel, creek.latch_from, creek.thresholds) == (
        "water_level",
        4,
        (None, 2.0, None, 4.0),
    )
    assert isinstance(county, RainWindowRule)
    assert county.channel == "rainfall_accumulated"
    assert county.counter_modulus == 100000.0  # PT, N(6,1): wraps past 99999.9 mm


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[rule]]\nid = "r"\nkind = "water_level"\nchannel = "rain_total"\n'
            "thresholds = { red = 3 }\n",
            "station.toml: rule 'r': channel 'rain_total' is not one an SL 651 station "
            "reports; its channels are named after its elements: rain rules watch "
            "rainfall_accumulated",
        ),
        (
            '[[rule]]\nid = "r"\nkind = "rain_windows"\nchannel = "rainfall_1h"\n'
            'windows = { "1h" = { red = 30 } }\n',
            "station.toml: rule 'r': channel 'rainfall_1h' measures rain_period, this rule "
            "needs rain_total",
        ),
        (
            '[[include]]\nrules = "jianghua"\nchannels = { rain = "water_level" }\n',
            "(jianghua): rule 'jianghua_critical_rainfall': channel 'water_level' measures "
            "water_level, this rule needs rain_total",
        ),
        (
            '[[include]]\nrules = "county.toml"\n',
            "'rules' = 'county.toml': a station's rules are kept in the fleet database, so "
            "they may include shipped rule tables only (jianghua)",
        ),
        ("", "no [[rule]] and no [[include]]"),
        ("[station]\nname = 1\n", "unknown table(s) station"),
        ("[[rule]\n", "station.toml: not a TOML file"),
    ],
)
def test_a_bad_rules_file_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(StationRulesError) as refused:
        parse_station_rules(text, "station.toml")
    assert message in str(refused.value)


def test_add_station_refuses_a_bad_rules_file_and_registers_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "creek.toml"
    rules.write_text(LATCHING_CREEK.replace('"water_level"\nhold', '"stage"\nhold'))
    data = ["--data-dir", str(tmp_path / "fleet")]
    add = ["sl651", "add-station", ADDRESS, "--password", "5A7C", "--site", SITE]
    refused = CliRunner().invoke(app, [*add, "--rules", str(rules), *data])
    assert refused.exit_code == 2
    assert "channel 'stage' is not one an SL 651 station reports" in said(refused.output)
    listed = CliRunner().invoke(app, ["sl651", "stations", *data])
    assert listed.output == ""  # nothing registered


def test_rules_are_kept_shown_changed_and_cleared_by_the_cli(tmp_path: Path) -> None:
    rules = tmp_path / "creek.toml"
    rules.write_text(LATCHING_CREEK)
    data = ["--data-dir", str(tmp_path / "fleet")]
    add = ["sl651", "add-station", ADDRESS, "--password", "5A7C", "--site", SITE]
    added = CliRunner().invoke(app, [*add, "--rules", str(rules), *data])
    assert added.exit_code == 0, added.output
    assert CliRunner().invoke(app, ["sl651", "rules", ADDRESS, *data]).output == LATCHING_CREEK
    rules.write_text(GENTLE_CREEK)
    changed = CliRunner().invoke(app, ["sl651", "set-rules", ADDRESS, str(rules), *data])
    assert changed.exit_code == 0, changed.output
    assert "revision 2" in changed.output
    assert CliRunner().invoke(app, ["sl651", "rules", ADDRESS, *data]).output == GENTLE_CREEK
    cleared = CliRunner().invoke(app, ["sl651", "set-rules", ADDRESS, "--clear", *data])
    assert cleared.exit_code == 0, cleared.output
    assert CliRunner().invoke(app, ["sl651", "rules", ADDRESS, *data]).output == ""
    unknown = CliRunner().invoke(app, ["sl651", "set-rules", "00AA", str(rules), *data])
    assert unknown.exit_code == 2
    assert "10 hex digits" in said(unknown.output)


def test_rules_of_an_unknown_station_are_refused(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    with pytest.raises(UnknownStationError, match="0099999999 is not registered"):
        db[1].set_rules("0099999999", GENTLE_CREEK)


def test_a_registry_made_before_rules_gains_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "fleet.sqlite"
    SQLiteRepository(path, durable=False).close()
    with sqlite3.connect(path) as conn:  # the table as first shipped
        conn.execute(
            "CREATE TABLE sl651_stations (address TEXT PRIMARY KEY, password INTEGER NOT NULL, "
            "site_id TEXT NOT NULL, gw INTEGER NOT NULL UNIQUE, added_at REAL NOT NULL) "
            "WITHOUT ROWID"
        )
    registry = StationRegistry(path, durable=False)
    try:
        registry.add_station(ADDRESS, PASSWORD, SITE, NOW)
        assert registry.rules_text(ADDRESS) == (None, 0)
        assert registry.set_rules(ADDRESS, GENTLE_CREEK) == 1
    finally:
        registry.close()


# --- the centre ------------------------------------------------------------------------


async def test_a_running_centre_takes_new_rules_at_the_station_s_next_report(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    repository, registry = db
    registry.set_rules(ADDRESS, GENTLE_CREEK)
    async with centre(registry, Clock()) as running:
        await levels(running, 0, ["4.50"])
        assert open_alarms(repository) == []  # 4.5 m is below the gentle rule's 9 m
        registry.set_rules(ADDRESS, LATCHING_CREEK)
        await levels(running, 1, ["4.50"])
    assert [(a.rule, a.level) for a in open_alarms(repository)] == [("creek", 4)]


async def test_acknowledging_a_latched_station_alarm_releases_it_at_the_next_report(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    repository, registry = db
    registry.set_rules(ADDRESS, LATCHING_CREEK)
    clock = Clock()
    async with centre(registry, clock) as running:
        await levels(running, 0, ["4.50", "0.50", "0.50", "0.50", "0.50"])
        (alarm,) = open_alarms(repository)
        assert alarm.level == 4  # 20 minutes below, past the 10-minute hold: latched
        repository.acknowledge_alarm(alarm.id, "operator", "seen", NOW + 1500)
        await levels(running, 5, ["0.50"])
    assert open_alarms(repository) == []  # released: the level fell at once
    (closed,) = repository.alarms(
        active=False, gateway_ids=[GATEWAY], since=None, until=None, limit=10
    )
    assert closed.peak_level == 4
    assert closed.cleared_at == NOW + 1500  # at the acknowledgement


async def test_a_latch_holds_across_a_restart_and_an_acknowledgement_made_meanwhile(
    db: tuple[SQLiteRepository, StationRegistry],
) -> None:
    repository, registry = db
    registry.set_rules(ADDRESS, LATCHING_CREEK)
    clock = Clock()
    async with centre(registry, clock) as running:
        await levels(running, 0, ["4.50"])
    clock.now = NOW + 3600
    async with centre(registry, clock) as running:  # restored latched: the hold cannot fall
        await levels(running, 1, ["0.50"] * 4)
        (alarm,) = open_alarms(repository)
        assert alarm.level == 4
    repository.acknowledge_alarm(alarm.id, "operator", None, NOW + 3700)
    async with centre(registry, clock) as running:  # acknowledged while no centre ran
        await levels(running, 5, ["0.50"])
    assert open_alarms(repository) == []
