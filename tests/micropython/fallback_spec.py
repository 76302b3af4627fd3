"""The fallback's pure logic under MicroPython: heartbeat timeout, rain window, decision."""

from siren_node.fallback import (
    DISARMED,
    END_GATEWAY_SIREN,
    END_LOCAL_ACK,
    IDLE,
    REASON_SILENT_GATEWAY_RAIN,
    SOUNDING,
    Fallback,
    HeartbeatWatch,
    RainWindow,
)


def lcg(seed: int):
    """A seeded generator that gives the same numbers under MicroPython and CPython."""
    state = seed
    while True:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        yield state


def test_the_gateway_counts_as_silent_only_once_the_timeout_has_passed_since_boot():
    watch = HeartbeatWatch(120_000)
    assert not watch.silent(0)
    assert not watch.silent(119_999)
    assert watch.silent(120_000)


def test_a_heartbeat_restarts_the_timeout():
    watch = HeartbeatWatch(30_000)
    watch.beat(100_000)
    assert not watch.silent(129_999)
    assert watch.silent(130_000)
    assert watch.age_ms(130_000) == 30_000


def test_the_window_sum_is_never_less_than_the_true_sum_nor_more_than_one_slot_above():
    window_ms = 600_000
    rain = RainWindow(window_ms)
    slot_ms = rain.slot_ms
    falls: list[tuple[int, int]] = []
    numbers = lcg(20240917)
    now = 0
    for _ in range(3000):
        now += next(numbers) % 4000
        if next(numbers) % 3 == 0:
            amount = 2000 * (1 + next(numbers) % 4)
            rain.add(now, amount)
            falls.append((now, amount))
        rain.advance(now)
        exact = sum(a for t, a in falls if t > now - window_ms)
        widest = sum(a for t, a in falls if t > now - window_ms - slot_ms)
        assert exact <= rain.total <= widest, (now, exact, rain.total, widest)


def test_rain_older_than_the_window_and_its_slot_drops_out():
    rain = RainWindow(60_000)
    rain.add(500, 2000)
    rain.advance(60_999)
    assert rain.total == 2000
    rain.advance(61_000)
    assert rain.total == 0


def test_a_long_quiet_spell_empties_the_window():
    rain = RainWindow(3_600_000)
    rain.add(0, 5000)
    rain.advance(10 * 3_600_000)
    assert rain.total == 0


def test_changing_the_window_keeps_the_rain_already_counted():
    rain = RainWindow(3_600_000)
    rain.add(1000, 6000)
    rain.add(2_000_000, 4000)
    rain.resize(600_000, 2_100_000)
    assert rain.total == 10_000
    rain.advance(2_100_000 + 600_000 + rain.slot_ms)
    assert rain.total == 0


def test_silence_and_rain_together_start_the_fallback():
    cases = ((False, True, IDLE), (True, False, IDLE), (True, True, SOUNDING))
    for silent, rain_over, expected in cases:
        fallback = Fallback()
        fallback.evaluate(silent, rain_over)
        assert fallback.state == expected, (silent, rain_over)
    assert fallback.reason == REASON_SILENT_GATEWAY_RAIN
    assert fallback.activations == 1


def test_a_heartbeat_alone_never_stops_a_sounding_fallback():
    fallback = Fallback()
    fallback.evaluate(True, True)
    fallback.heartbeat()
    fallback.evaluate(False, True)
    fallback.evaluate(False, False)
    assert fallback.sounding


def test_an_ended_fallback_stays_quiet_until_the_rain_eases_or_the_gateway_returns():
    fallback = Fallback()
    fallback.evaluate(True, True)
    assert fallback.stop(END_LOCAL_ACK)
    assert (fallback.state, fallback.end) == (DISARMED, END_LOCAL_ACK)
    fallback.evaluate(True, True)
    assert fallback.state == DISARMED
    fallback.evaluate(True, False)
    assert fallback.state == IDLE
    fallback.evaluate(True, True)
    assert fallback.sounding
    assert fallback.activations == 2
    fallback.stop(END_GATEWAY_SIREN)
    fallback.heartbeat()
    assert (fallback.state, fallback.end) == (IDLE, END_GATEWAY_SIREN)


def test_stopping_when_nothing_sounds_changes_nothing():
    fallback = Fallback()
    assert not fallback.stop(END_LOCAL_ACK)
    assert (fallback.state, fallback.end, fallback.activations) == (IDLE, 0, 0)


def test_the_activation_count_wraps_like_its_register():
    fallback = Fallback()
    fallback.activations = 0xFFFF
    fallback.evaluate(True, True)
    assert fallback.activations == 0
