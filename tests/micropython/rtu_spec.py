"""The RTU slave under MicroPython: every function code and exception, framing on a noisy line."""

from siren_node.crc import with_crc
from siren_node.rtu_slave import (
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    DataModel,
    ModbusError,
    RtuSlave,
)

UNIT = 7
SILENCE_MS = 5


class Table(DataModel):
    """Eight coils and eight registers in plain lists; register 7 is broken on purpose."""

    def __init__(self) -> None:
        self.coils = [False] * 8
        self.registers = [0] * 8

    def _span(self, address: int, count: int) -> range:
        if address + count > 8:
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        return range(address, address + count)

    def read_coils(self, address: int, count: int) -> list[bool]:
        return [self.coils[a] for a in self._span(address, count)]

    def write_coils(self, address: int, values: list[bool]) -> None:
        for offset, a in enumerate(self._span(address, len(values))):
            self.coils[a] = values[offset]

    def read_registers(self, address: int, count: int) -> list[int]:
        span = self._span(address, count)
        if 7 in span:
            raise RuntimeError("a fault inside the data model")
        return [self.registers[a] for a in span]

    def write_registers(self, address: int, values: list[int]) -> None:
        for offset, a in enumerate(self._span(address, len(values))):
            if values[offset] > 1000:
                raise ModbusError(ILLEGAL_DATA_VALUE)
            self.registers[a] = values[offset]


def slave() -> tuple[RtuSlave, Table]:
    table = Table()
    return RtuSlave(UNIT, table, SILENCE_MS), table


def frame(*body: int) -> bytes:
    # MicroPython has no starred items in a tuple display, hence two bytes objects.
    return with_crc(bytes((UNIT,)) + bytes(body))


def answers(rtu: RtuSlave, data: bytes, now_ms: int = 0) -> list[bytes]:
    if data:
        rtu.feed(data, now_ms)
    out = []
    answer = rtu.poll(now_ms)
    while answer is not None:
        out.append(answer)
        answer = rtu.poll(now_ms)
    return out


def test_fc01_reads_coils_packed_lowest_address_first():
    rtu, table = slave()
    table.coils[1] = table.coils[2] = table.coils[7] = True
    assert answers(rtu, frame(1, 0, 1, 0, 7)) == [frame(1, 1, 0b1000011)]


def test_fc03_reads_registers_high_byte_first():
    rtu, table = slave()
    table.registers[2:4] = [0x1234, 7]
    assert answers(rtu, frame(3, 0, 2, 0, 2)) == [frame(3, 4, 0x12, 0x34, 0, 7)]


def test_fc05_writes_one_coil_and_echoes_the_request():
    rtu, table = slave()
    assert answers(rtu, frame(5, 0, 3, 0xFF, 0)) == [frame(5, 0, 3, 0xFF, 0)]
    assert table.coils[3]
    assert answers(rtu, frame(5, 0, 3, 0, 0)) == [frame(5, 0, 3, 0, 0)]
    assert not table.coils[3]


def test_fc06_writes_one_register_and_echoes_the_request():
    rtu, table = slave()
    assert answers(rtu, frame(6, 0, 5, 0x03, 0xE7)) == [frame(6, 0, 5, 0x03, 0xE7)]
    assert table.registers[5] == 999


def test_fc15_writes_several_coils():
    rtu, table = slave()
    assert answers(rtu, frame(15, 0, 2, 0, 3, 1, 0b101)) == [frame(15, 0, 2, 0, 3)]
    assert table.coils[2:5] == [True, False, True]


def test_fc16_writes_several_registers():
    rtu, table = slave()
    assert answers(rtu, frame(16, 0, 0, 0, 2, 4, 0, 10, 0, 20)) == [frame(16, 0, 0, 0, 2)]
    assert table.registers[:2] == [10, 20]


def test_other_function_codes_are_refused_as_illegal_functions():
    rtu, _ = slave()
    assert answers(rtu, frame(2, 0, 0, 0, 1)) == [frame(0x82, 1)]
    assert answers(rtu, frame(4, 0, 0, 0, 1)) == [frame(0x84, 1)]
    assert answers(rtu, frame(17)) == [frame(0x91, 1)]


def test_a_function_code_of_unknown_length_is_refused_once_the_line_falls_silent():
    rtu, _ = slave()
    assert answers(rtu, frame(0x2B, 0x0E, 1, 0), now_ms=100) == []
    assert rtu.poll(100 + SILENCE_MS) == frame(0xAB, 1)


def test_quantities_outside_the_protocol_limits_are_illegal_values():
    rtu, _ = slave()
    assert answers(rtu, frame(3, 0, 0, 0, 0)) == [frame(0x83, 3)]
    assert answers(rtu, frame(3, 0, 0, 0, 126)) == [frame(0x83, 3)]
    assert answers(rtu, frame(1, 0, 0, 0x07, 0xD1)) == [frame(0x81, 3)]


def test_malformed_writes_are_illegal_values():
    rtu, table = slave()
    assert answers(rtu, frame(5, 0, 0, 0x12, 0x34)) == [frame(0x85, 3)]
    assert answers(rtu, frame(15, 0, 0, 0, 9, 1, 0xFF)) == [frame(0x8F, 3)]
    assert answers(rtu, frame(16, 0, 0, 0, 2, 2, 0, 1)) == [frame(0x90, 3)]
    assert table.coils == [False] * 8
    assert table.registers == [0] * 8


def test_the_data_models_refusals_become_exception_responses():
    rtu, _ = slave()
    assert answers(rtu, frame(3, 0, 6, 0, 3)) == [frame(0x83, 2)]
    assert answers(rtu, frame(6, 0, 1, 0x27, 0x10)) == [frame(0x86, 3)]
    assert answers(rtu, frame(3, 0xFF, 0xFF, 0, 2)) == [frame(0x83, 2)]


def test_a_fault_inside_the_data_model_is_a_device_failure_not_a_crash():
    rtu, _ = slave()
    assert answers(rtu, frame(3, 0, 6, 0, 2)) == [frame(0x83, 4)]
    assert answers(rtu, frame(3, 0, 0, 0, 1)) == [frame(3, 2, 0, 0)]


def test_a_frame_with_a_bad_crc_is_dropped_and_counted():
    rtu, table = slave()
    bad = bytearray(frame(5, 0, 0, 0xFF, 0))
    bad[-1] ^= 0x01
    assert answers(rtu, bytes(bad)) == []
    assert answers(rtu, b"", now_ms=SILENCE_MS) == []
    assert not table.coils[0]
    assert rtu.crc_errors == 1


def test_the_next_good_frame_after_a_bad_one_is_answered_even_without_silence():
    rtu, table = slave()
    bad = bytearray(frame(5, 0, 0, 0xFF, 0))
    bad[4] ^= 0x40
    good = frame(5, 0, 1, 0xFF, 0)
    assert answers(rtu, bytes(bad) + good) == [good]
    assert table.coils[:2] == [False, True]
    assert rtu.crc_errors == 1


def test_frames_for_other_units_and_broadcasts_get_no_answer():
    rtu, table = slave()
    for unit in (0, UNIT + 1):
        assert answers(rtu, with_crc(bytes((unit, 5, 0, 0, 0xFF, 0)))) == []
    assert not table.coils[0]
    assert rtu.crc_errors == 0


def test_another_slaves_answer_on_the_shared_line_is_ignored():
    rtu, table = slave()
    table.registers[0] = 42
    other = with_crc(bytes((UNIT + 1, 3, 4, 0, 1, 0, 2)))
    assert answers(rtu, other, now_ms=0) == []
    assert answers(rtu, b"", now_ms=SILENCE_MS) == []
    assert answers(rtu, frame(3, 0, 0, 0, 1), now_ms=50) == [frame(3, 2, 0, 42)]
    assert rtu.crc_errors == 0


def test_a_request_split_across_reads_is_answered_once_whole():
    rtu, _ = slave()
    request = frame(16, 0, 0, 0, 1, 2, 0, 9)
    assert answers(rtu, request[:4], now_ms=0) == []
    assert answers(rtu, request[4:9], now_ms=1) == []
    assert answers(rtu, request[9:], now_ms=2) == [frame(16, 0, 0, 0, 1)]


def test_a_truncated_request_is_dropped_at_the_silence_and_the_line_recovers():
    rtu, _ = slave()
    assert answers(rtu, frame(6, 0, 0, 0, 1)[:5], now_ms=0) == []
    assert answers(rtu, b"", now_ms=SILENCE_MS) == []
    assert rtu.crc_errors == 1
    assert answers(rtu, frame(6, 0, 0, 0, 1), now_ms=20) == [frame(6, 0, 0, 0, 1)]


def test_requests_arriving_back_to_back_are_all_answered():
    rtu, _ = slave()
    reads = frame(3, 0, 0, 0, 1) + frame(1, 0, 0, 0, 1)
    assert answers(rtu, reads) == [frame(3, 2, 0, 0), frame(1, 1, 0)]


def test_endless_noise_never_grows_the_buffer_past_one_frame():
    rtu, _ = slave()
    for _ in range(40):
        assert answers(rtu, bytes((UNIT, 0x2B)) * 8) == []
    assert len(rtu._buffer) <= 256
    assert answers(rtu, b"", now_ms=SILENCE_MS) == []
    assert answers(rtu, frame(3, 0, 0, 0, 1), now_ms=20) == [frame(3, 2, 0, 0)]
