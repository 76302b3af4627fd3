"""The whole node under MicroPython on a scripted HAL: who may sound the siren, and when."""

from scripted_hal import boot, run_for
from siren_node.crc import with_crc
from siren_node.fallback import DISARMED, END_GATEWAY_ACK, END_GATEWAY_SIREN, END_LOCAL_ACK, IDLE
from siren_node.node import RAIN_SAMPLE_MS
from siren_node.registers import (
    COIL_FALLBACK_ACK,
    COIL_FALLBACK_ACTIVE,
    COIL_HEARTBEAT_SILENT,
    COIL_SIREN,
    COIL_SIREN_OUTPUT,
    REG_CRC_ERRORS,
    REG_FALLBACK_ACTIVATIONS,
    REG_FALLBACK_END,
    REG_FALLBACK_RAIN,
    REG_FALLBACK_STATE,
    REG_FALLBACK_WINDOW_S,
    REG_HEARTBEAT_TIMEOUT_S,
)

TIMEOUT_MS = 30_000
THRESHOLD_TIPS = 10  # 2.0 mm at 0.2 mm per tip


def configured():
    """A node set up by its gateway: 30 s heartbeat timeout, 2 mm in 10 min."""
    node, hal, gateway = boot()
    gateway.write_register(REG_HEARTBEAT_TIMEOUT_S, TIMEOUT_MS // 1000)
    gateway.write_register(REG_FALLBACK_RAIN, 20)
    gateway.write_register(REG_FALLBACK_WINDOW_S, 600)
    return node, hal, gateway


def first_time_on(hal):
    for at, on in hal.siren_changes:
        if on:
            return at
    return None


def sounding_on_its_own():
    """A node whose gateway went silent at boot, in rain over the threshold."""
    node, hal, gateway = configured()
    hal.tips = THRESHOLD_TIPS + 5
    run_for(node, hal, TIMEOUT_MS + RAIN_SAMPLE_MS)
    assert hal.siren
    assert node.fallback.sounding
    return node, hal, gateway


def corrupted(frame: bytes) -> list[bytes]:
    """The frame with a broken CRC byte, with a flipped data bit, and cut short."""
    bad_crc = bytearray(frame)
    bad_crc[-1] ^= 0x5A
    bad_data = bytearray(frame)
    bad_data[5] ^= 0x01
    return [bytes(bad_crc), bytes(bad_data), frame[:-1]]


def test_power_up_drives_the_relay_off_and_reports_nothing_active():
    node, hal, gateway = boot()
    assert hal.siren_changes == [(0, False)]
    assert gateway.read_coils(0, 6) == [False] * 6
    assert node.fallback.state == IDLE


def test_silence_counts_from_boot_so_the_node_waits_a_full_timeout_after_power_up():
    node, hal, gateway = boot()
    hal.tips = 200  # 40 mm: far over the 30 mm power-up threshold
    run_for(node, hal, 119_900)
    assert not hal.siren
    assert gateway.read_coils(COIL_HEARTBEAT_SILENT, 1) == [False]
    run_for(node, hal, 100)
    assert first_time_on(hal) == 120_000


def test_a_silent_gateway_and_rain_over_the_threshold_sound_within_timeout_plus_one_sample():
    node, hal, gateway = configured()
    run_for(node, hal, 20_000, gateway=gateway)
    hal.tips = THRESHOLD_TIPS
    run_for(node, hal, 40_000, gateway=gateway)
    last_heartbeat = hal.now_ms
    assert not hal.siren
    run_for(node, hal, TIMEOUT_MS + RAIN_SAMPLE_MS)
    on = first_time_on(hal)
    assert on is not None
    assert last_heartbeat + TIMEOUT_MS <= on <= last_heartbeat + TIMEOUT_MS + RAIN_SAMPLE_MS
    assert gateway.read_coils(COIL_SIREN, 5) == [False, False, True, True, True]


def test_rain_reaching_the_threshold_while_the_gateway_is_silent_sounds_within_one_sample():
    node, hal, _ = configured()
    run_for(node, hal, 45_300)
    hal.tips = THRESHOLD_TIPS - 1
    run_for(node, hal, 5_000)
    assert not hal.siren
    tipped = hal.now_ms
    hal.tips = 1
    run_for(node, hal, 2 * RAIN_SAMPLE_MS)
    on = first_time_on(hal)
    assert on is not None
    assert tipped < on <= tipped + RAIN_SAMPLE_MS


def test_the_node_never_sounds_on_its_own_while_heartbeats_arrive():
    node, hal, gateway = configured()
    for _ in range(7200):
        hal.tips += 1  # 0.2 mm a second: 720 mm/h
        run_for(node, hal, 1000, gateway=gateway)
    assert hal.siren_changes == [(0, False)]
    assert node.rain_over_threshold()


def test_the_gateways_command_is_obeyed_and_never_overridden_by_the_node():
    node, hal, gateway = configured()
    gateway.siren(True)
    assert hal.siren
    run_for(node, hal, 10 * TIMEOUT_MS)
    hal.ack = True
    run_for(node, hal, 1000)
    hal.ack = False
    run_for(node, hal, 1000)
    assert hal.siren, "the node silenced a siren the gateway commanded"
    gateway.siren(False)
    assert not hal.siren
    assert [on for _, on in hal.siren_changes] == [False, True, False]


def test_a_command_off_during_heartbeats_keeps_the_siren_off_in_any_rain():
    node, hal, gateway = configured()
    gateway.siren(True)
    gateway.siren(False)
    hal.tips = 100
    run_for(node, hal, 600_000, gateway=gateway)
    assert not hal.siren


def test_resumed_heartbeats_alone_do_not_silence_the_fallback():
    node, hal, gateway = sounding_on_its_own()
    run_for(node, hal, 60_000, gateway=gateway)
    assert hal.siren
    assert gateway.read_coils(COIL_FALLBACK_ACTIVE, 2) == [True, False]


def test_the_gateway_takes_over_by_writing_the_siren_without_a_silent_gap():
    node, hal, gateway = sounding_on_its_own()
    changes = len(hal.siren_changes)
    gateway.heartbeat()
    gateway.siren(True)
    assert hal.siren_changes[changes:] == []
    assert gateway.read_registers(REG_FALLBACK_STATE, 3) == [DISARMED, 1, END_GATEWAY_SIREN]
    gateway.heartbeat()
    assert node.fallback.state == IDLE
    gateway.siren(False)
    assert not hal.siren


def test_the_gateway_takes_over_by_acknowledging_and_its_command_then_rules():
    node, hal, gateway = sounding_on_its_own()
    gateway.heartbeat()
    gateway.write_coil(COIL_FALLBACK_ACK, True)
    assert not hal.siren
    assert gateway.read_coils(COIL_FALLBACK_ACK, 1) == [False]
    assert gateway.read_registers(REG_FALLBACK_END, 2) == [END_GATEWAY_ACK, 1]
    run_for(node, hal, 120_000, gateway=gateway)
    assert not hal.siren


def test_the_local_button_silences_the_nodes_own_fallback_until_the_rain_eases():
    node, hal, gateway = sounding_on_its_own()
    hal.ack = True
    run_for(node, hal, 300)
    hal.ack = False
    assert not hal.siren
    assert gateway.read_registers(REG_FALLBACK_STATE, 3) == [DISARMED, 1, END_LOCAL_ACK]
    hal.tips = THRESHOLD_TIPS
    run_for(node, hal, 300_000)
    assert not hal.siren, "an acknowledged fallback started again in the same rain"
    run_for(node, hal, 700_000)
    assert node.fallback.state == IDLE
    hal.tips = THRESHOLD_TIPS
    run_for(node, hal, RAIN_SAMPLE_MS)
    assert hal.siren
    assert gateway.read_registers(REG_FALLBACK_ACTIVATIONS, 1) == [2]


def test_the_button_acknowledges_only_the_fallback_not_the_gateways_command():
    node, hal, gateway = configured()
    gateway.siren(True)
    hal.tips = THRESHOLD_TIPS
    run_for(node, hal, TIMEOUT_MS + RAIN_SAMPLE_MS)
    assert node.fallback.sounding
    hal.ack = True
    run_for(node, hal, 300)
    assert gateway.read_registers(REG_FALLBACK_STATE, 3) == [DISARMED, 1, END_LOCAL_ACK]
    assert hal.siren
    assert gateway.read_coils(COIL_SIREN, 3) == [True, False, True]


def test_a_button_held_down_does_not_keep_the_fallback_from_sounding():
    node, hal, _ = configured()
    hal.ack = True
    hal.tips = THRESHOLD_TIPS
    run_for(node, hal, TIMEOUT_MS + RAIN_SAMPLE_MS)
    assert hal.siren


def test_frames_with_a_bad_crc_never_switch_the_siren_either_way():
    node, hal, gateway = configured()
    on = with_crc(bytes((20, 5, 0, COIL_SIREN, 0xFF, 0)))
    for frame in corrupted(on):
        assert gateway.send(frame) is None
        run_for(node, hal, 100)
    assert not hal.siren
    gateway.siren(True)
    off = with_crc(bytes((20, 5, 0, COIL_SIREN, 0, 0)))
    for frame in corrupted(off):
        assert gateway.send(frame) is None
        run_for(node, hal, 100)
    assert hal.siren
    assert gateway.read_registers(REG_CRC_ERRORS, 1) == [6]
    assert gateway.read_coils(COIL_SIREN_OUTPUT, 1) == [True]


def test_heartbeats_with_a_bad_crc_do_not_count_as_heartbeats():
    node, hal, gateway = configured()
    hal.tips = THRESHOLD_TIPS
    beat = with_crc(bytes((20, 6, 0, 0, 0, 1)))
    while hal.now_ms < TIMEOUT_MS + RAIN_SAMPLE_MS:
        gateway.send(corrupted(beat)[0])
        run_for(node, hal, 5000)
    assert hal.siren


def test_re_asserting_the_same_window_does_not_hold_old_rain_in_it():
    node, hal, gateway = configured()
    hal.tips = THRESHOLD_TIPS
    for _ in range(70):
        gateway.write_register(REG_FALLBACK_WINDOW_S, 600)
        run_for(node, hal, 10_000)
    assert not node.rain_over_threshold()
