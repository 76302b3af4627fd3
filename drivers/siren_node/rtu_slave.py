"""Modbus RTU slave: frames requests off the byte stream and answers them from a data model.

It answers function codes 1, 3, 5, 6, 15 and 16 and refuses every other one with an
exception response. A frame with a bad CRC, or for another unit id, is dropped without an
answer, so line noise and other devices' traffic never reach the data model. No I/O: the
caller feeds received bytes in and sends the answers out.
"""

from .crc import crc_ok, with_crc

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
SLAVE_DEVICE_FAILURE = 4

READ_COILS = 1
READ_HOLDING_REGISTERS = 3
WRITE_SINGLE_COIL = 5
WRITE_SINGLE_REGISTER = 6
WRITE_MULTIPLE_COILS = 15
WRITE_MULTIPLE_REGISTERS = 16

# Quantity limits per request, from the Modbus application protocol specification.
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_BITS = 1968
MAX_WRITE_REGISTERS = 123
MAX_FRAME = 256

# Request lengths of the public function codes, so that a request is answered as soon as
# its last byte is in and a request for another unit is skipped without waiting for line
# silence. Fixed-length requests by code; for the others the index of their byte count.
_FIXED_LENGTH = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8, 7: 4, 8: 8, 11: 4, 12: 4, 17: 4, 22: 10, 24: 6}
_BYTE_COUNT_AT = {15: 6, 16: 6, 23: 10}


class ModbusError(Exception):
    """A request the data model refuses; ``code`` is the exception code to answer with."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class DataModel:
    """The coils and holding registers a slave serves; refuse a request with ModbusError.

    A model without coils or without registers keeps the refusing default for that table.
    """

    def read_coils(self, address: int, count: int) -> list[bool]:
        """Return ``count`` coils from ``address``."""
        raise ModbusError(ILLEGAL_DATA_ADDRESS)

    def write_coils(self, address: int, values: list[bool]) -> None:
        """Write coils from ``address``; all of them, or none when one is refused."""
        raise ModbusError(ILLEGAL_DATA_ADDRESS)

    def read_registers(self, address: int, count: int) -> list[int]:
        """Return ``count`` holding registers from ``address``."""
        raise ModbusError(ILLEGAL_DATA_ADDRESS)

    def write_registers(self, address: int, values: list[int]) -> None:
        """Write holding registers from ``address``; all of them, or none when one is refused."""
        raise ModbusError(ILLEGAL_DATA_ADDRESS)


def request_length(frame: bytes) -> int:
    """Return the length of the request starting ``frame``; 0 while it cannot be told.

    It cannot be told before the header is in, nor ever for a function code not listed
    here: such a frame ends only with line silence.
    """
    if len(frame) < 2:
        return 0
    function = frame[1]
    fixed = _FIXED_LENGTH.get(function)
    if fixed is not None:
        return fixed
    count_at = _BYTE_COUNT_AT.get(function)
    if count_at is None or len(frame) <= count_at:
        return 0
    return count_at + 1 + frame[count_at] + 2


def _word(data: bytes, index: int) -> int:
    return (data[index] << 8) | data[index + 1]


def _check_span(address: int, count: int, limit: int) -> None:
    if not 1 <= count <= limit:
        raise ModbusError(ILLEGAL_DATA_VALUE)
    if address + count > 0x10000:
        raise ModbusError(ILLEGAL_DATA_ADDRESS)


def _pack_bits(bits: list[bool]) -> bytes:
    packed = bytearray((len(bits) + 7) // 8)
    for index, bit in enumerate(bits):
        if bit:
            packed[index >> 3] |= 1 << (index & 7)
    return bytes(packed)


def _pack_registers(registers: list[int]) -> bytes:
    packed = bytearray()
    for value in registers:
        packed.append((value >> 8) & 0xFF)
        packed.append(value & 0xFF)
    return bytes(packed)


class RtuSlave:
    """One unit id on an RTU line: turns received bytes into answers.

    Frames are found by the length their header announces; line silence of at least
    ``silence_ms`` (t3.5) ends any frame, complete or not. After a frame whose CRC fails,
    the slave looks for the next good frame further on in what it has received, and
    drops the rest at the next silence, so it falls back into step with the line after
    noise or after a frame it mis-sized.

    Attributes:
        crc_errors: frames carrying this unit id that failed their CRC check.
    """

    def __init__(self, unit_id: int, model: DataModel, silence_ms: int) -> None:
        self.unit_id = unit_id
        self.model = model
        self.silence_ms = silence_ms
        self.crc_errors = 0
        self._buffer = b""
        self._last_byte_ms = 0
        # After a CRC failure the bytes that follow are the same bad frame, not new errors.
        self._hunting = False

    def feed(self, data: bytes, now_ms: int) -> None:
        """Take bytes just received from the line."""
        buffer = self._buffer + data
        if len(buffer) > MAX_FRAME:
            buffer = buffer[-MAX_FRAME:]
            self._hunting = True
        self._buffer = buffer
        self._last_byte_ms = now_ms

    def poll(self, now_ms: int) -> bytes | None:
        """Return the answer to the next complete request for this unit, if there is one.

        Call again until it returns None: several requests may be waiting.
        """
        while self._buffer:
            buffer = self._buffer
            length = request_length(buffer)
            complete = 0 < length <= len(buffer)
            if complete and crc_ok(buffer[:length]):
                self._buffer = buffer[length:]
                self._hunting = False
                answer = self._answer(buffer[:length])
                if answer is not None:
                    return answer
                continue
            if complete:
                # Noise, or a frame mis-sized from its header (another slave's answer):
                # look for a good frame further on before waiting for silence.
                if not self._hunting:
                    self._count_crc_error(buffer)
                    self._hunting = True
                if self._skip_to_next_frame():
                    continue
            if now_ms - self._last_byte_ms < self.silence_ms:
                return None
            # Silence ends the frame, whatever its header announced.
            self._buffer = b""
            hunting, self._hunting = self._hunting, False
            if hunting:
                return None
            if crc_ok(buffer):
                return self._answer(buffer)
            self._count_crc_error(buffer)
        return None

    def _skip_to_next_frame(self) -> bool:
        buffer = self._buffer
        for start in range(1, len(buffer) - 3):
            length = request_length(buffer[start:])
            end = start + length
            if length and end <= len(buffer) and crc_ok(buffer[start:end]):
                self._buffer = buffer[start:]
                return True
        return False

    def _count_crc_error(self, frame: bytes) -> None:
        if frame and frame[0] == self.unit_id:
            self.crc_errors += 1

    def _answer(self, frame: bytes) -> bytes | None:
        if frame[0] != self.unit_id:
            return None
        function = frame[1]
        try:
            body = self._execute(function, frame)
        except ModbusError as refusal:
            body = bytes((function | 0x80, refusal.code))
        except Exception:
            # A fault in the data model costs one answer, never the node's main loop.
            body = bytes((function | 0x80, SLAVE_DEVICE_FAILURE))
        return with_crc(bytes((self.unit_id,)) + body)

    def _execute(self, function: int, frame: bytes) -> bytes:
        model = self.model
        if function in (READ_COILS, READ_HOLDING_REGISTERS):
            address, count = _word(frame, 2), _word(frame, 4)
            if function == READ_COILS:
                _check_span(address, count, MAX_READ_BITS)
                data = _pack_bits(model.read_coils(address, count))
            else:
                _check_span(address, count, MAX_READ_REGISTERS)
                data = _pack_registers(model.read_registers(address, count))
            return bytes((function, len(data))) + data
        if function == WRITE_SINGLE_COIL:
            value = _word(frame, 4)
            if value not in (0x0000, 0xFF00):
                raise ModbusError(ILLEGAL_DATA_VALUE)
            model.write_coils(_word(frame, 2), [value == 0xFF00])
            return frame[1:6]
        if function == WRITE_SINGLE_REGISTER:
            model.write_registers(_word(frame, 2), [_word(frame, 4)])
            return frame[1:6]
        if function == WRITE_MULTIPLE_COILS:
            address, count, size = _word(frame, 2), _word(frame, 4), frame[6]
            _check_span(address, count, MAX_WRITE_BITS)
            if size != (count + 7) // 8:
                raise ModbusError(ILLEGAL_DATA_VALUE)
            bits = [(frame[7 + (i >> 3)] >> (i & 7)) & 1 == 1 for i in range(count)]
            model.write_coils(address, bits)
            return frame[1:6]
        if function == WRITE_MULTIPLE_REGISTERS:
            address, count, size = _word(frame, 2), _word(frame, 4), frame[6]
            _check_span(address, count, MAX_WRITE_REGISTERS)
            if size != 2 * count:
                raise ModbusError(ILLEGAL_DATA_VALUE)
            model.write_registers(address, [_word(frame, 7 + 2 * i) for i in range(count)])
            return frame[1:6]
        raise ModbusError(ILLEGAL_FUNCTION)
