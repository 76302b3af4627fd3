"""CRC-16/MODBUS under MicroPython: published check values and every single-bit error."""

from siren_node.crc import crc16, crc_ok, with_crc


def test_the_catalogue_check_value_of_crc_16_modbus():
    assert crc16(b"123456789") == 0x4B37


def test_the_crc_of_nothing_is_the_initial_value():
    assert crc16(b"") == 0xFFFF


def test_frames_from_the_modbus_specification_carry_their_published_crc():
    # Read 10 holding registers of unit 1; read 3 registers from 0x6B of unit 0x11.
    assert with_crc(bytes((0x01, 0x03, 0x00, 0x00, 0x00, 0x0A)))[-2:] == bytes((0xC5, 0xCD))
    assert with_crc(bytes((0x11, 0x03, 0x00, 0x6B, 0x00, 0x03)))[-2:] == bytes((0x76, 0x87))


def test_the_crc_goes_low_byte_first_and_checks_back():
    frame = with_crc(b"\x14\x05\x00\x00\xff\x00")
    crc = crc16(b"\x14\x05\x00\x00\xff\x00")
    assert frame[-2:] == bytes((crc & 0xFF, crc >> 8))
    assert crc_ok(frame)


def test_every_single_bit_error_is_caught():
    frame = with_crc(b"\x14\x0f\x00\x00\x00\x02\x01\x03")
    for index in range(len(frame)):
        for bit in range(8):
            damaged = bytearray(frame)
            damaged[index] ^= 1 << bit
            assert not crc_ok(bytes(damaged)), (index, bit)


def test_frames_too_short_to_hold_a_crc_never_pass():
    assert not crc_ok(b"")
    assert not crc_ok(b"\xff\xff")
