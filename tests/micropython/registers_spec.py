"""The node's register map under MicroPython: power-up values, layout and what may be written."""

from scripted_hal import boot, run_for
from siren_node.registers import (
    COIL_COUNT,
    COIL_SIREN_OUTPUT,
    FIRMWARE_VERSION,
    READ_ONLY_REGISTERS,
    REG_FALLBACK_RAIN,
    REG_FALLBACK_WINDOW_S,
    REG_FIRMWARE_VERSION,
    REG_HEARTBEAT,
    REG_HEARTBEAT_TIMEOUT_S,
    REG_MM_PER_TIP,
    REG_RAIN_TIPS,
    REG_RAIN_TOTAL,
    REG_RAIN_WINDOW,
    REG_UPTIME_S,
    REGISTER_COUNT,
    WRITABLE_REGISTERS,
)


def test_power_up_values_are_the_documented_ones():
    _, _, gateway = boot()
    registers = gateway.read_registers(0, REGISTER_COUNT)
    assert registers[:5] == [0, 120, 300, 3600, 2000]
    assert registers[REG_FIRMWARE_VERSION] == FIRMWARE_VERSION == 100
    assert registers[5:16] == [0] * 11
    assert registers[17:] == [0] * (REGISTER_COUNT - 17)
    assert gateway.read_coils(0, COIL_COUNT) == [False] * COIL_COUNT


def test_the_write_limits_are_the_power_up_values_bounds():
    for _, value, lowest, highest in WRITABLE_REGISTERS:
        assert lowest <= value <= highest


def test_reads_past_the_map_are_illegal_addresses():
    _, _, gateway = boot()
    assert gateway.request(bytes((3, 0, REGISTER_COUNT - 1, 0, 2))) == bytes((0x83, 2))
    assert gateway.request(bytes((1, 0, COIL_COUNT - 1, 0, 2))) == bytes((0x81, 2))


def test_status_registers_and_coils_refuse_writes():
    _, _, gateway = boot()
    for address, width in READ_ONLY_REGISTERS:
        for register in range(address, address + width):
            assert gateway.write_register(register, 1) == bytes((0x86, 2)), register
    assert gateway.write_register(5, 1) == bytes((0x86, 2))
    assert gateway.write_coil(COIL_SIREN_OUTPUT, True) == bytes((0x85, 2))


def test_settings_outside_their_limits_are_illegal_values_and_change_nothing():
    _, _, gateway = boot()
    assert gateway.write_register(REG_HEARTBEAT_TIMEOUT_S, 5) == bytes((0x86, 3))
    assert gateway.write_register(REG_FALLBACK_RAIN, 0) == bytes((0x86, 3))
    assert gateway.write_register(REG_FALLBACK_WINDOW_S, 50000) == bytes((0x86, 3))
    assert gateway.write_register(REG_MM_PER_TIP, 0) == bytes((0x86, 3))
    assert gateway.read_registers(0, 5) == [0, 120, 300, 3600, 2000]


def test_a_multiple_write_is_all_or_nothing():
    _, _, gateway = boot()
    # Timeout 60 s and window 7200 s are fine, threshold 0 is not: nothing changes.
    pdu = bytes((16, 0, 1, 0, 3, 6, 0, 60, 0, 0, 0x1C, 0x20))
    assert gateway.request(pdu) == bytes((0x90, 3))
    # Running from the heartbeat into the status block is refused as a whole, too.
    pdu = bytes((16, 0, 4, 0, 13, 26)) + bytes(26)
    assert gateway.request(pdu) == bytes((0x90, 2))
    assert gateway.read_registers(0, 5) == [0, 120, 300, 3600, 2000]
    pdu = bytes((16, 0, 0, 0, 4, 8, 0, 9, 0, 60, 0, 50, 0x1C, 0x20))
    assert gateway.request(pdu) == bytes((16, 0, 0, 0, 4))
    assert gateway.read_registers(0, 5) == [9, 60, 50, 7200, 2000]


def test_the_heartbeat_register_reads_back_the_last_value_written():
    _, _, gateway = boot()
    gateway.write_register(REG_HEARTBEAT, 0xBEEF)
    assert gateway.read_registers(REG_HEARTBEAT, 1) == [0xBEEF]


def test_counters_take_two_registers_high_word_first():
    node, hal, gateway = boot()
    hal.tips = 70000
    run_for(node, hal, 1000)
    tips = gateway.read_registers(REG_RAIN_TIPS, 2)
    assert tips == [70000 >> 16, 70000 & 0xFFFF]
    total = 70000 * 2000
    assert gateway.read_registers(REG_RAIN_TOTAL, 2) == [total >> 16, total & 0xFFFF]
    assert gateway.read_registers(REG_UPTIME_S, 2) == [0, 1]


def test_window_rain_reads_in_tenths_of_a_millimetre():
    node, hal, gateway = boot()
    hal.tips = 13
    run_for(node, hal, 1000)
    assert gateway.read_registers(REG_RAIN_WINDOW, 1) == [26]
