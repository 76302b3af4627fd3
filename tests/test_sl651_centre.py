"""The fleet's SL 651 receiving centre over real TCP, with a simulated station.

The readings are read back through the fleet repository, the path the console's charts
take. Times are fixed: the station's clock says 2026-07-18 (Beijing time, UTC+8).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from drivers.clock import ScaledClock
from fleet.cli import app
from fleet.repository import ReadingPoint
from fleet.sl651_centre import CentreSettings, ReceivingCentre
from fleet.sl651_observations import observations
from fleet.sl651_stations import StationRegistry
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_for
from hardware_sim.sl651_station import (
    Delivery,
    NoAcknowledgementError,
    Scenario,
    Sl651Station,
    report_scenario,
)
from protocol import Quality
from protocol.sl651 import (
    Acknowledgement,
    Control,
    Direction,
    ElementId,
    FunctionCode,
    ObservationGroup,
    Report,
    Series,
    StationAddress,
    StationBlock,
    StationType,
    TimeStep,
    encode,
    number,
    split,
)
from protocol.sl651_link import read_frame
from tests.full_disk import small_disk

ADDRESS = "0012345678"
PASSWORD = 0x5A7C
SITE = "creek-village"
GATEWAY = "sl651-0012345678"
OBSERVED = datetime(2026, 7, 18, 10, 0)
SENT = datetime(2026, 7, 18, 10, 0, 12)
#: The centre's clock: 2026-07-18 10:00:20 in Beijing.
NOW = datetime(2026, 7, 18, 2, 0, 20, tzinfo=UTC).timestamp()


def utc(local: datetime) -> float:
    return (local - timedelta(hours=8)).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[SQLiteRepository, StationRegistry]]:
    repository = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
    registry = StationRegistry(repository.path, durable=False)
    registry.add_station(ADDRESS, PASSWORD, SITE, NOW)
    yield repository, registry
    registry.close()
    repository.close()


@pytest.fixture
def registry(db: tuple[SQLiteRepository, StationRegistry]) -> StationRegistry:
    return db[1]


@pytest.fixture
def repository(db: tuple[SQLiteRepository, StationRegistry]) -> SQLiteRepository:
    return db[0]


def settings(**changes: Any) -> CentreSettings:
    """The centre on a free loopback port, with ``changes``."""
    return CentreSettings(**{"host": "127.0.0.1", "port": 0, "idle_timeout_s": 30.0, **changes})


@pytest.fixture
async def centre(registry: StationRegistry) -> AsyncIterator[ReceivingCentre]:
    async with ReceivingCentre(registry, settings(), clock=lambda: NOW) as running:
        yield running


def station(
    to: ReceivingCentre, address: str = ADDRESS, password: int = PASSWORD, **changes: Any
) -> Sl651Station:
    """A simulated station reporting to the centre ``to``."""
    return Sl651Station(address, password, "127.0.0.1", to.port, **changes)


def readings(repository: SQLiteRepository, channel: str) -> list[ReadingPoint]:
    return repository.readings(GATEWAY, channel, 0, 4e9, 1000)


@pytest.mark.parametrize("function", [FunctionCode.TIMED, FunctionCode.ADD])
async def test_timed_or_add_report_is_stored_and_acknowledged_with_its_serial(
    centre: ReceivingCentre, repository: SQLiteRepository, function: FunctionCode
) -> None:
    async with station(centre) as field_station:
        delivery = await field_station.timed_report(
            OBSERVED, SENT, water_level="10.490", rainfall_accumulated="12.5", function=function
        )
    answer = delivery.answer
    assert answer.header.direction is Direction.DOWN
    assert answer.header.function == function
    assert answer.end is Control.EOT
    assert answer.body == Acknowledgement(delivery.serial, datetime(2026, 7, 18, 10, 0, 20))
    assert [(r.ts, r.value) for r in readings(repository, "water_level")] == [
        (utc(OBSERVED), 10.49)
    ]
    assert [r.value for r in readings(repository, "rainfall_accumulated")] == [12.5]
    assert [r.value for r in readings(repository, "voltage")] == [12.5]
    gateway = repository.get_gateway(GATEWAY)
    assert (gateway.site_id, gateway.last_seen) == (SITE, NOW)


async def test_hourly_report_stores_each_five_minute_value_at_its_time(
    centre: ReceivingCentre, repository: SQLiteRepository
) -> None:
    rain = ["0.0", "0.5", "1.2", None, *["0.1"] * 8]
    levels = [f"{1 + n / 100:.2f}" for n in range(12)]
    async with station(centre) as field_station:
        delivery = await field_station.hourly_report(OBSERVED, SENT, rain, levels)
    assert delivery.answer.header.function == FunctionCode.HOURLY
    stored = readings(repository, "rainfall_5min")
    times = [utc(OBSERVED - timedelta(minutes=55 - 5 * n)) for n in range(12)]
    assert [r.ts for r in stored] == times
    assert [r.value for r in stored[:4]] == [0.0, 0.5, 1.2, None]
    assert stored[3].quality == Quality.TIMEOUT  # "no value": a visible gap, not zero
    assert [r.value for r in readings(repository, "relative_level_1")][-1] == 1.11


async def test_resend_after_a_lost_acknowledgement_stores_the_readings_once(
    centre: ReceivingCentre, repository: SQLiteRepository
) -> None:
    async with station(centre, drop_link_after_send=1) as field_station:
        delivery = await field_station.timed_report(OBSERVED, SENT, water_level="10.490")
        assert (delivery.sends, field_station.connects) == (2, 2)
        again = await field_station.timed_report(
            OBSERVED + timedelta(minutes=5), SENT + timedelta(minutes=5), water_level="10.520"
        )
    assert again.serial == delivery.serial + 1
    assert [r.value for r in readings(repository, "water_level")] == [10.49, 10.52]
    assert len(readings(repository, "voltage")) == 2
    assert centre.counters.readings_duplicate == 2  # the resent level and voltage


async def test_a_report_resent_to_a_restarted_centre_is_stored_once(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    for _ in range(2):
        async with (
            ReceivingCentre(registry, settings(), clock=lambda: NOW) as running,
            station(running) as field_station,
        ):
            field_station.serial = 7  # the same report, serial 8, after a restart
            await field_station.timed_report(OBSERVED, SENT, water_level="3.000")
    assert [r.value for r in readings(repository, "water_level")] == [3.0]


async def test_keep_alive_is_answered_with_esc_so_the_link_stays(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    async with ReceivingCentre(registry, settings(), clock=lambda: NOW) as running:
        async with station(running, serial=41) as field_station:
            delivery = await field_station.keep_alive(SENT)
        assert delivery.answer.end is Control.ESC
        assert delivery.answer.header.function == FunctionCode.LINK_KEEPALIVE
        assert delivery.answer.body == Acknowledgement(41, datetime(2026, 7, 18, 10, 0, 20))
    # written when the centre stops, if no group was written before
    assert repository.get_gateway(GATEWAY).last_seen == NOW


async def test_keep_alives_are_written_together_not_one_transaction_each(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    others = [f"00123456{n:02d}" for n in range(90, 99)]
    for address in others:
        registry.add_station(address, PASSWORD, SITE, NOW)
    clock = iter(NOW + n for n in range(1000))
    async with ReceivingCentre(
        registry, settings(seen_flush_s=3600), clock=lambda: next(clock)
    ) as running:
        for address in [ADDRESS, *others]:
            async with station(running, address=address) as field_station:
                for n in range(3):
                    await field_station.keep_alive(SENT + timedelta(seconds=n))
        assert running.counters.keep_alives == 30
        assert running.counters.seen_writes == 0  # answered, nothing written yet
        assert repository.get_gateway(GATEWAY).last_seen is None  # registered, never seen
    assert running.counters.seen_writes == 1  # thirty keep-alives, one transaction
    last = [repository.get_gateway(f"sl651-{a}").last_seen for a in [ADDRESS, *others]]
    assert last == [NOW + 2 + 3 * n for n in range(10)]  # each station's latest


@pytest.mark.parametrize(
    ("address", "password", "logged"),
    [
        ("0099999999", PASSWORD, "unknown station 0099999999"),
        (ADDRESS, 0x4E21, "station 0012345678 from 127.0.0.1:"),
    ],
    ids=["unknown-station", "wrong-password"],
)
async def test_unknown_station_or_wrong_password_is_refused_and_logged(
    centre: ReceivingCentre,
    repository: SQLiteRepository,
    caplog: pytest.LogCaptureFixture,
    address: str,
    password: int,
    logged: str,
) -> None:
    caplog.set_level(logging.INFO, logger="fleet.sl651_centre")
    async with station(centre, address=address, password=password, tries=2) as intruder:
        with pytest.raises(NoAcknowledgementError):
            await intruder.timed_report(OBSERVED, SENT, water_level="99.000")
    assert intruder.connects == 2  # the centre closed the link each time
    assert repository.channels(GATEWAY) == []  # nothing stored
    refusals = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refusals) == 2
    assert all(logged in text for text in refusals)
    everything = caplog.text.lower()
    assert "4e21" not in everything  # no password in logs, neither the wrong one
    assert "5a7c" not in everything  # nor the right one
    assert centre.counters.refused_stations == 2


async def test_a_silent_connection_is_closed_after_the_idle_timeout(
    registry: StationRegistry,
) -> None:
    async with ReceivingCentre(registry, settings(idle_timeout_s=0.3)) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        await wait_for(lambda: running.open_connections == 1, 5, "the connection")
        assert await asyncio.wait_for(reader.read(), 10) == b""  # the centre closed it
        assert running.counters.idle_closed == 1
        await wait_for(lambda: running.open_connections == 0, 5, "the slot freed")
        writer.close()


async def test_a_station_trickling_a_frame_is_closed_after_the_idle_timeout(
    registry: StationRegistry,
) -> None:
    async with ReceivingCentre(registry, settings(idle_timeout_s=0.3)) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"\x7e\x7e\x01")  # a frame begun, never finished
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert running.counters.idle_closed == 1
        writer.close()


async def test_the_number_of_connections_is_bounded(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    one_slot = settings(max_connections=1)
    async with ReceivingCentre(registry, one_slot, clock=lambda: NOW) as c, station(c) as first:
        await first.keep_alive(SENT)  # holds the only slot
        reader, writer = await asyncio.open_connection("127.0.0.1", c.port)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed at once
        writer.close()
        assert c.counters.refused_connections == 1
        await first.timed_report(OBSERVED, SENT, water_level="1.000")  # still served
    assert [r.value for r in readings(repository, "water_level")] == [1.0]


async def test_a_frame_larger_than_allowed_closes_the_connection(
    registry: StationRegistry,
) -> None:
    async with ReceivingCentre(registry, settings(max_frame_bytes=40)) as running:
        async with station(running, tries=1) as big:
            with pytest.raises(NoAcknowledgementError):
                await big.timed_report(
                    OBSERVED, SENT, water_level="1.000", rainfall_accumulated="2.0"
                )
        assert running.counters.by_reason == {"too large": 1}


async def test_an_ascii_mode_station_is_told_apart_and_closed(
    centre: ReceivingCentre, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="fleet.sl651_centre")
    reader, writer = await asyncio.open_connection("127.0.0.1", centre.port)
    writer.write(b"\x01" + b"010012345678" + b"5A7C2F0008\x02")  # an ASCII-mode header
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, nothing answered
    writer.close()
    assert centre.counters.by_reason == {"bad frame": 1}
    assert "ASCII-mode frame (SOH, 01)" in caplog.text  # the log says what to change


async def test_a_frame_with_a_bad_crc_is_not_acknowledged_and_the_next_one_is(
    centre: ReceivingCentre, repository: SQLiteRepository
) -> None:
    field_station = station(centre)
    message = field_station.report(
        FunctionCode.TIMED,
        SENT,
        [ObservationGroup(OBSERVED, (number(ElementId.WATER_LEVEL, Decimal("5.000")),))],
    )
    good = encode(message)
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    reader, writer = await asyncio.open_connection("127.0.0.1", centre.port)
    writer.write(bad + good)
    await writer.drain()
    answer = await asyncio.wait_for(read_frame(reader), 10)
    writer.close()
    assert answer.body == Acknowledgement(1, datetime(2026, 7, 18, 10, 0, 20))
    assert centre.counters.by_reason == {"crc": 1}
    assert [r.value for r in readings(repository, "water_level")] == [5.0]


async def test_a_multi_packet_upload_is_stored_and_acknowledged_once_complete(
    centre: ReceivingCentre, repository: SQLiteRepository
) -> None:
    async with station(centre) as field_station:
        groups = [
            ObservationGroup(
                OBSERVED + timedelta(minutes=5 * n),
                (number(ElementId.WATER_LEVEL, Decimal(f"{2 + n / 1000:.3f}")),),
            )
            for n in range(12)
        ]
        message = field_station.report(FunctionCode.TIMED, SENT, groups)
        delivery = await field_station.upload(message, slice_size=20)
    assert delivery.answer.end is Control.EOT
    assert delivery.answer.packet is not None
    assert delivery.answer.packet.number == delivery.answer.packet.count > 1
    assert len(readings(repository, "water_level")) == 12


@pytest.mark.parametrize("lost", [{2}, {1, 3}], ids=["one-packet", "first-and-third"])
async def test_a_missing_upload_packet_is_asked_for_again_with_nak_and_stored_once(
    centre: ReceivingCentre, repository: SQLiteRepository, lost: set[int]
) -> None:
    async with station(centre) as field_station:
        groups = [
            ObservationGroup(
                OBSERVED + timedelta(minutes=5 * n),
                (number(ElementId.WATER_LEVEL, Decimal(f"{2 + n / 1000:.3f}")),),
            )
            for n in range(12)
        ]
        message = field_station.report(FunctionCode.TIMED, SENT, groups)
        delivery = await field_station.upload(message, slice_size=20, lose=lost)
    # the centre named each missing packet, first missing first, and the station sent it
    assert field_station.naks == sorted(lost)
    assert centre.counters.naks == len(lost)
    assert delivery.sends == 1  # no resend of the whole upload
    assert delivery.answer.end is Control.EOT
    assert delivery.answer.packet is not None
    assert delivery.answer.packet.number == delivery.answer.packet.count > 3
    assert delivery.answer.body == Acknowledgement(
        delivery.serial, datetime(2026, 7, 18, 10, 0, 20)
    )
    assert len(readings(repository, "water_level")) == 12


async def test_an_upload_past_its_size_bound_closes_the_connection(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    async with ReceivingCentre(registry, settings(max_upload_bytes=100)) as running:
        async with station(running, tries=1) as field_station:
            groups = [
                ObservationGroup(
                    OBSERVED + timedelta(minutes=5 * n),
                    (number(ElementId.WATER_LEVEL, Decimal("2.000")),),
                )
                for n in range(12)
            ]
            message = field_station.report(FunctionCode.TIMED, SENT, groups)
            with pytest.raises(NoAcknowledgementError):
                await field_station.upload(message, slice_size=20)
        assert running.counters.by_reason == {"upload too large": 1}
        await wait_for(lambda: running.upload_bytes == 0, 10, "the upload let go")
    assert repository.channels(GATEWAY) == []


def test_cli_registers_a_station_and_refuses_a_bad_password(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    added = runner.invoke(
        app, ["sl651", "add-station", "0012345678", "--password", "5A7C", "--site", SITE, *data]
    )
    assert added.exit_code == 0, added.output
    assert "5a7c" not in added.output.lower()
    listed = runner.invoke(app, ["sl651", "stations", *data])
    assert listed.output.split() == ["0012345678", SITE, GATEWAY, "never", "never_seen"]
    refused = runner.invoke(
        app, ["sl651", "add-station", "0012345679", "--password", "12", "--site", SITE, *data]
    )
    assert refused.exit_code == 2
    assert "4 hex digits" in refused.output


async def test_a_report_to_another_centre_is_refused_when_the_centre_has_an_address(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    async with ReceivingCentre(registry, settings(centre_address=1), clock=lambda: NOW) as c:
        async with station(c, centre=2, tries=1) as astray:
            with pytest.raises(NoAcknowledgementError):
                await astray.timed_report(OBSERVED, SENT, water_level="1.000")
        async with station(c, centre=1) as own:
            await own.timed_report(OBSERVED, SENT, water_level="2.000")
    assert [r.value for r in readings(repository, "water_level")] == [2.0]


def test_an_equal_interval_series_is_stored_value_by_value_from_the_observation_time() -> None:
    block = StationBlock(
        StationAddress(ADDRESS),
        StationType.RIVER,
        (
            ObservationGroup(
                OBSERVED,
                (
                    TimeStep(minutes=5),
                    Series(ElementId.WATER_LEVEL, (Decimal("1.5"), None, Decimal("1.7")), 4, 3),
                ),
            ),
        ),
    )
    other = StationBlock(StationAddress("0099999999"), StationType.RIVER, block.groups)
    found = observations(Report(3, SENT, (block, other)), ADDRESS)
    assert [(o.ts, o.channel, o.value, o.quality) for o in found] == [
        (utc(OBSERVED), "water_level", 1.5, Quality.OK),
        (utc(OBSERVED) + 300, "water_level", None, Quality.TIMEOUT),
        (utc(OBSERVED) + 600, "water_level", 1.7, Quality.OK),
    ]


async def test_fleet_sl651_serve_takes_a_registered_station_s_reports(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    added = CliRunner().invoke(
        app, ["sl651", "add-station", ADDRESS, "--password", "5A7C", "--site", SITE, *data]
    )
    assert added.exit_code == 0, added.output
    port = free_port()
    command = [sys.executable, "-m", "fleet.cli", "sl651", "serve", "--port", str(port), *data]
    process = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: port_open(port), 30, "fleet sl651 serve listening")
        field_station = Sl651Station(ADDRESS, PASSWORD, "127.0.0.1", port)
        async with field_station:
            delivery = await field_station.timed_report(OBSERVED, SENT, water_level="7.250")
        assert delivery.answer.end is Control.EOT
    finally:
        process.send_signal(signal.SIGTERM)  # as systemd stops it
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    repository = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
    try:
        assert [r.value for r in readings(repository, "water_level")] == [7.25]
    finally:
        repository.close()


async def test_a_station_reporting_a_scenario_resends_lost_answers_and_is_stored_once(
    centre: ReceivingCentre, repository: SQLiteRepository
) -> None:
    start = datetime(2026, 7, 18, 0, 50, tzinfo=UTC).timestamp()
    clock = ScaledClock(3000.0, start, time.time())  # a 5-minute step every 0.1 s
    scenario = Scenario(rain_mm=lambda t: (t - start) / 600, level_m=lambda t: 0.5)
    heard: list[tuple[str, Delivery | None]] = []
    async with station(centre) as field_station, asyncio.TaskGroup() as group:
        reporting = group.create_task(
            report_scenario(
                field_station,
                clock.now,
                scenario,
                speed=3000.0,
                lose_every=2,
                on_delivery=lambda kind, delivery: heard.append((kind, delivery)),
            )
        )
        await wait_for(lambda: len(heard) >= 4, 30, "four reports answered")
        reporting.cancel()
    assert all(delivery is not None for _, delivery in heard)
    sends = [delivery.sends for _, delivery in heard if delivery is not None]
    assert sends[:4] == [1, 2, 1, 2]  # every second answer lost, the report sent again
    # 01:00 UTC is on the hour: the timed and the hourly report.
    assert [kind for kind, _ in heard[:4]] == ["timed", "timed", "hourly", "timed"]
    times = [r.ts for r in readings(repository, "water_level")]
    assert len(times) == len(set(times))  # each observation once, resent or not
    # ...and resent reports did reach the centre and were recognised, not just never stored
    assert centre.counters.readings_duplicate > 0
    assert times[:3] == [start + 300, start + 600, start + 900]
    assert len(readings(repository, "rainfall_5min")) == 12


async def test_uploads_together_are_bounded_and_release_what_they_held(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    def packets(field_station: Sl651Station) -> list[bytes]:
        groups = [
            ObservationGroup(
                OBSERVED + timedelta(minutes=5 * n),
                (number(ElementId.WATER_LEVEL, Decimal("2.000")),),
            )
            for n in range(12)
        ]
        message = field_station.report(FunctionCode.TIMED, SENT, groups)
        return split(message.header, message.body, 20)

    budget = settings(max_uploads_bytes=500)
    async with ReceivingCentre(registry, budget, clock=lambda: NOW) as running:
        first = packets(station(running))
        assert 300 < sum(map(len, first[:-1])) < 500 < sum(map(len, first)) * 2
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"".join(first[:-1]))  # all but the last packet: held by the centre
        await writer.drain()
        await wait_for(lambda: running.upload_bytes > 300, 10, "the first upload held")
        other_reader, other_writer = await asyncio.open_connection("127.0.0.1", running.port)
        other_writer.write(b"".join(packets(station(running))))
        await other_writer.drain()
        assert await asyncio.wait_for(other_reader.read(), 10) == b""  # over the budget
        other_writer.close()
        writer.write(first[-1])
        await writer.drain()
        answer = await asyncio.wait_for(read_frame(reader), 10)
        writer.close()
        assert answer.end is Control.EOT
        assert running.counters.by_reason == {"uploads too large": 1}
        await wait_for(lambda: running.upload_bytes == 0, 10, "every upload let go")
    assert len(readings(repository, "water_level")) == 12


async def test_a_report_the_full_disk_refused_is_not_acknowledged_and_its_resend_is_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        repository = SQLiteRepository(disk.path / "fleet.sqlite", durable=False)
        registry = StationRegistry(repository.path, durable=False)
        try:
            registry.add_station(ADDRESS, PASSWORD, SITE, NOW)
            async with ReceivingCentre(registry, settings(), clock=lambda: NOW) as running:
                field_station = station(running, tries=1, ack_timeout_s=2.0)
                groups = [
                    ObservationGroup(
                        OBSERVED + timedelta(minutes=5 * n),
                        (number(ElementId.WATER_LEVEL, Decimal(f"{n}.000")),),
                    )
                    for n in range(200)
                ]
                message = field_station.report(FunctionCode.TIMED, SENT, groups)
                frame = encode(message)
                disk.fill()
                with pytest.raises(NoAcknowledgementError):
                    await field_station.send(frame, 1)
                assert "not stored; not acknowledged" in caplog.text
                disk.free()
                delivery = await field_station.send(frame, 1)  # the same frame again
                await field_station.hang_up()
            assert delivery.answer.body == Acknowledgement(1, datetime(2026, 7, 18, 10, 0, 20))
            assert len(readings(repository, "water_level")) == 200
        finally:
            registry.close()
            repository.close()


async def test_an_upload_not_completed_in_time_is_dropped_and_a_fresh_one_taken(
    registry: StationRegistry, repository: SQLiteRepository, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic = [0.0]
    timing = settings(upload_timeout_s=10.0)
    async with ReceivingCentre(
        registry, timing, clock=lambda: NOW, monotonic=lambda: monotonic[0]
    ) as running:
        field_station = station(running)
        groups = [
            ObservationGroup(
                OBSERVED + timedelta(minutes=5 * n),
                (number(ElementId.WATER_LEVEL, Decimal("2.000")),),
            )
            for n in range(12)
        ]
        message = field_station.report(FunctionCode.TIMED, SENT, groups)
        packets = split(message.header, message.body, 20)
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.write(b"".join(packets[:-1]))
        await writer.drain()
        held = sum(map(len, packets[:-1]))
        await wait_for(lambda: running.upload_bytes == held, 10, "the upload held")
        monotonic[0] = 11.0  # the station took longer than upload_timeout_s
        writer.write(b"".join(packets))  # it sends the whole upload again
        await writer.drain()
        answer = await asyncio.wait_for(read_frame(reader), 10)
        writer.close()
        assert answer.end is Control.EOT
        assert "took too long; dropped" in caplog.text
        assert running.upload_bytes == 0
    assert len(readings(repository, "water_level")) == 12


async def test_guessing_a_stations_password_locks_that_address_for_a_while(
    registry: StationRegistry, repository: SQLiteRepository
) -> None:
    # The password is two bytes: unbounded tries would find it. After five wrong ones the
    # address is refused, right password or not, until the window has passed.
    now = [1000.0]
    async with ReceivingCentre(
        registry, settings(), clock=lambda: NOW, monotonic=lambda: now[0]
    ) as running:
        async with station(running, password=0x4E21, tries=5) as guesser:
            with pytest.raises(NoAcknowledgementError):
                await guesser.timed_report(OBSERVED, SENT, water_level="99.000")
        async with station(running, tries=1) as owner:
            with pytest.raises(NoAcknowledgementError):
                await owner.timed_report(OBSERVED, SENT, water_level="1.000")
        assert running.counters.refused_stations == 6
        assert repository.channels(GATEWAY) == []
        now[0] += 601.0  # the window has passed
        async with station(running, tries=1) as owner:
            delivery = await owner.timed_report(OBSERVED, SENT, water_level="1.000")
        assert delivery.sends == 1
