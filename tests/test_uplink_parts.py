"""The uplink's parts on their own: batches from a real store, ack bookkeeping, backoff, health."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from drivers.model import Quality, Reading
from edge_agent.health import cpu_temperature, host_health, memory
from edge_agent.store import LocalStore
from edge_agent.upload_progress import StreamProgress
from edge_agent.upload_source import UploadSource, event_row, stored_progress
from protocol import (
    MAX_PAYLOAD_BYTES,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    DataBatch,
    EventBatch,
    Stream,
)
from protocol.reconnect import Backoff, ReconnectTiming, ReconnectWait

GATEWAY = "gw-0123456789"
#: A time inside the wire's range (2025-06-15).
T0 = 1_750_000_000.0


def reading(t: float, channel: str = "rain.rain_total", value: float = 1.0) -> Reading:
    quality = Quality.TIMEOUT if math.isnan(value) else Quality.OK
    return Reading(t, channel, value, "mm", quality, None)


async def test_batches_cover_whole_seq_ranges_even_where_the_quota_thinned_rows(
    tmp_path: Path,
) -> None:
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(T0 + t, value=t) for t in range(1, 11)])
        store.add_readings([reading(T0 + 11, "creek.level", math.nan)])
        await store.flush()
        store.conn.execute("DELETE FROM readings WHERE seq IN (3, 4)")  # thinned
        source = UploadSource(store.path, GATEWAY, {Stream.READINGS: 4, Stream.EVENTS: 10})
        try:
            first = await source.batch(Stream.READINGS, 0)
            second = await source.batch(Stream.READINGS, 6)
            third = await source.batch(Stream.READINGS, 10)
            done = await source.batch(Stream.READINGS, 11)
        finally:
            source.close()
    assert first is not None
    assert second is not None
    assert third is not None
    one = DataBatch.model_validate_json(first.payload)
    assert (one.first_seq, one.last_seq) == (1, 6)  # seqs 3 and 4 are gone: no gap
    assert [row[0] for row in one.rows] == [1, 2, 5, 6]
    assert (second.first_seq, second.last_seq, second.rows) == (7, 10, 4)
    three = DataBatch.model_validate_json(third.payload)
    assert three.rows == [(11, T0 + 11, "creek.level", None, int(Quality.TIMEOUT))]  # NaN: null
    assert done is None


async def test_an_event_too_big_for_one_message_is_sent_as_a_stub_not_dropped(
    tmp_path: Path,
) -> None:
    async with LocalStore(tmp_path) as store:
        await store.record_event(T0 + 1, "alarm", "rain_1h", 4, {"to": "red"})
        await store.record_event(T0 + 2, "config", None, None, {"blob": "x" * MAX_PAYLOAD_BYTES})
        source = UploadSource(store.path, GATEWAY, {Stream.READINGS: 10, Stream.EVENTS: 10})
        try:
            first = await source.batch(Stream.EVENTS, 0)
            assert first is not None
            second = await source.batch(Stream.EVENTS, first.last_seq)
        finally:
            source.close()
    assert second is not None
    assert (first.first_seq, first.last_seq) == (1, 1)  # split off the oversized one
    assert EventBatch.model_validate_json(first.payload).rows[0].detail == {"to": "red"}
    stub = EventBatch.model_validate_json(second.payload).rows[0]
    assert stub.seq == 2
    assert stub.detail["truncated_bytes"] > MAX_PAYLOAD_BYTES
    assert len(second.payload) <= MAX_PAYLOAD_BYTES


def test_event_fields_the_wire_cannot_carry_are_clipped_into_range() -> None:
    row = event_row(7, T0, "k" * 40, "s" * 200, 9, '{"a": 1}')
    assert len(row.kind) == 32
    assert row.subject is not None
    assert len(row.subject) == 128
    assert row.level is None
    assert row.detail == {"a": 1, "level": 9}
    unset_clock = event_row(8, 1.0, "fault", None, None, '{"value": NaN, "big": Infinity}')
    assert unset_clock.ts == MIN_TIMESTAMP
    assert unset_clock.detail == {"value": "nan", "big": "inf", "recorded_ts": "1.0"}


async def test_readings_the_wire_cannot_carry_are_sent_flagged_not_stalled(
    tmp_path: Path,
) -> None:
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(T0 + 1, value=math.inf), reading(T0 + 2, value=-1e308)])
        store.add_readings([reading(5.0, value=2.0), reading(T0 + 4, value=3.0)])
        await store.flush()
        await store.record_event(math.inf, "fault", "radar", None, {"reading": math.nan})
        source = UploadSource(store.path, GATEWAY, {Stream.READINGS: 10, Stream.EVENTS: 10})
        try:
            readings = await source.batch(Stream.READINGS, 0)
            events = await source.batch(Stream.EVENTS, 0)
        finally:
            source.close()
    assert readings is not None
    assert events is not None
    out, unsynced = int(Quality.OUT_OF_RANGE), int(Quality.CLOCK_UNSYNCED)
    assert DataBatch.model_validate_json(readings.payload).rows == [
        (1, T0 + 1, "rain.rain_total", None, out),
        (2, T0 + 2, "rain.rain_total", None, out),
        (3, MIN_TIMESTAMP, "rain.rain_total", 2.0, unsynced),
        (4, T0 + 4, "rain.rain_total", 3.0, 0),
    ]
    event = EventBatch.model_validate_json(events.payload).rows[0]
    assert (event.ts, event.detail) == (MAX_TIMESTAMP, {"reading": "nan", "recorded_ts": "inf"})


async def test_stored_progress_reads_last_seq_and_watermark_without_the_agent(
    tmp_path: Path,
) -> None:
    assert stored_progress(tmp_path / "store.sqlite")[Stream.READINGS] == (0, 0)
    async with LocalStore(tmp_path) as store:
        store.add_readings([reading(T0 + t) for t in range(5)])
        await store.flush()
        await store.set_watermark("readings", 3)
    assert stored_progress(tmp_path / "store.sqlite")[Stream.READINGS] == (5, 3)


def test_acks_advance_the_watermark_only_up_to_what_was_sent() -> None:
    progress = StreamProgress(Stream.READINGS)
    progress.sent(100, 100, now=0.0)
    progress.sent(200, 100, now=1.0)
    assert not progress.acknowledge(0, now=2.0)
    assert progress.acknowledge(150, now=2.0)  # a partial ack: the fleet lacks 151..200
    assert list(progress.inflight) == [200]
    assert progress.acknowledge(10_000, now=3.0)  # never beyond what was sent
    assert progress.acked == 200
    assert not progress.inflight
    progress.sent(300, 100, now=4.0)
    progress.restart(now=5.0)  # a reconnect: resend from watermark + 1
    assert (progress.next_after, list(progress.inflight)) == (200, [])


def test_backoff_grows_to_its_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[4:]}) == 4  # jittered, not lockstep
    backoff.reset()
    assert backoff.next() <= 0.5


def test_backoff_keeps_going_through_a_week_offline() -> None:
    # An attempt counter that kept growing overflowed 2.0**n after about a day at 120 s.
    backoff = Backoff(1.0, 120.0, random.Random(2))
    delays = [backoff.next() for _ in range(7 * 24 * 30)]
    assert all(60.0 <= d <= 120.0 for d in delays[7:])
    tiny = Backoff(1e-30, 120.0, random.Random(3))
    assert all(0.0 < tiny.next() <= 120.0 for _ in range(5000))


class FakeClock:
    """Monotonic time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


async def return_delay(outage_s: float, seed: int, clock: FakeClock) -> tuple[float, int]:
    """Seconds from the broker's return to the next session, and the probes made meanwhile.

    The broker is down for ``outage_s``; every full session fails until then.
    """
    wait = ReconnectWait(
        Backoff(1.0, 120.0, random.Random(seed)),
        random.Random(seed + 1),
        ReconnectTiming(),
        clock.sleep,
        clock,
    )

    async def probe() -> bool:
        return clock.now >= outage_s

    while clock.now < outage_s:  # each full session fails while the broker is down
        await wait.wait(probe)
    return clock.now - outage_s, wait.probes


@pytest.mark.parametrize("outage_s", [5.0, 60.0, 3600.0])
async def test_gateways_return_within_seconds_of_the_broker_after_any_outage(
    outage_s: float,
) -> None:
    delays = []
    for seed in range(200):
        clock = FakeClock()
        delay, probes = await return_delay(outage_s, seed, clock)
        delays.append(delay)
        # Probes are cheap but not a flood: at most one per half interval.
        assert probes <= outage_s / 0.5 + 2
    delays.sort()
    p95 = delays[int(0.95 * len(delays))]
    timing = ReconnectTiming()
    assert delays[-1] <= 1.5 * timing.probe_interval_s + timing.return_spread_s
    assert p95 < 5.0
    # Spread, not lockstep: the returns fill most of the window.
    assert delays[-1] - delays[0] > timing.return_spread_s / 2


async def test_a_broker_that_answers_but_fails_sessions_gets_the_full_backoff() -> None:
    clock = FakeClock()
    wait = ReconnectWait(
        Backoff(1.0, 120.0, random.Random(3)), random.Random(4), None, clock.sleep, clock
    )

    async def up() -> bool:
        return True

    waits = []
    for _ in range(10):
        start = clock.now
        await wait.wait(up)
        waits.append(clock.now - start)
    ceilings = [1, 2, 4, 8, 16, 32, 64, 120, 120, 120]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert wait.probes == 10  # one probe per wait while the port answers
    assert wait.returns == 0


def test_host_health_reads_this_machine(tmp_path: Path) -> None:
    health = host_health(tmp_path)
    assert health.load is not None
    assert health.mem_total is not None
    assert health.mem_available is not None
    assert 0 < health.mem_available <= health.mem_total
    assert health.disk_total is not None
    assert health.disk_free is not None
    assert 0 < health.disk_free <= health.disk_total
    assert health.store_bytes is None  # no store here
    assert memory(tmp_path / "missing") == (None, None)


def test_cpu_temperature_prefers_the_cpu_zone_and_is_none_without_zones(tmp_path: Path) -> None:
    assert cpu_temperature(tmp_path) is None
    for name, kind, milli in (
        ("thermal_zone0", "battery", "30000"),
        ("thermal_zone1", "cpu-thermal", "51234"),
    ):
        zone = tmp_path / name
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert cpu_temperature(tmp_path) == 51.234
