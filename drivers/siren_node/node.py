"""The siren node: a Modbus RTU slave that drives the siren for the gateway, or without it.

The siren sounds while the gateway commands it or while the node's own fallback does;
the node never switches off what the gateway commanded. One ``step()`` serves the line,
samples the rain gauge, reads the acknowledge button and sets the relay; the caller
loops it (``main.py`` on the board, the simulator under CPython).
"""

from .fallback import (
    END_GATEWAY_ACK,
    END_GATEWAY_SIREN,
    END_LOCAL_ACK,
    Fallback,
    HeartbeatWatch,
    RainWindow,
)
from .hal import NodeHal
from .registers import (
    COIL_ACK_INPUT,
    COIL_COUNT,
    COIL_FALLBACK_ACK,
    COIL_FALLBACK_ACTIVE,
    COIL_HEARTBEAT_SILENT,
    COIL_SIREN,
    COIL_SIREN_OUTPUT,
    DEFAULT_UNIT_ID,
    FIRMWARE_VERSION,
    REG_CRC_ERRORS,
    REG_FALLBACK_ACTIVATIONS,
    REG_FALLBACK_END,
    REG_FALLBACK_RAIN,
    REG_FALLBACK_REASON,
    REG_FALLBACK_STATE,
    REG_FALLBACK_WINDOW_S,
    REG_FIRMWARE_VERSION,
    REG_HEARTBEAT,
    REG_HEARTBEAT_AGE_S,
    REG_HEARTBEAT_TIMEOUT_S,
    REG_MM_PER_TIP,
    REG_RAIN_TIPS,
    REG_RAIN_TOTAL,
    REG_RAIN_WINDOW,
    REG_UPTIME_S,
    REGISTER_COUNT,
    WRITABLE_COILS,
    power_up_values,
    write_limits,
)
from .rtu_slave import ILLEGAL_DATA_ADDRESS, ILLEGAL_DATA_VALUE, DataModel, ModbusError, RtuSlave

RAIN_SAMPLE_MS = 1000
"""How often the node adds the bucket's new tips to its rain window."""

# Rain is counted in 0.0001 mm; the threshold and the window register are in 0.1 mm.
_RAIN_UNITS_PER_TENTH_MM = 1000


def silence_ms(baudrate: int) -> int:
    """Return the RTU inter-frame silence t3.5 in whole milliseconds (rounded up)."""
    if baudrate > 19200:
        return 2
    return -(-3500 * 11 // baudrate)


def _put32(registers: dict[int, int], address: int, value: int) -> None:
    registers[address] = (value >> 16) & 0xFFFF
    registers[address + 1] = value & 0xFFFF


class SirenNode(DataModel):
    """The node's whole state and behaviour over one HAL.

    Power-up is safe: the relay is driven off, the gateway's command is off, and the
    gateway counts as silent only once the heartbeat timeout has passed since boot.

    Attributes:
        siren_command: the gateway's last siren command.
        siren_output: the relay as driven now.
        ack_input: the acknowledge button as last read.
        tips: bucket tips since power-up; ``rain_total`` the same in 0.0001 mm.
        uptime_ms: milliseconds since power-up, from the HAL's ticks.
    """

    def __init__(self, hal: NodeHal, unit_id: int = DEFAULT_UNIT_ID, baudrate: int = 9600) -> None:
        self.hal = hal
        hal.set_siren(False)
        self.siren_command = False
        self.siren_output = False
        self.ack_input = False
        self.tips = 0
        self.rain_total = 0
        self.uptime_ms = 0
        self.config = power_up_values()
        self.heartbeat = HeartbeatWatch(self.config[REG_HEARTBEAT_TIMEOUT_S] * 1000)
        self.rain = RainWindow(self.config[REG_FALLBACK_WINDOW_S] * 1000)
        self.fallback = Fallback()
        self.slave = RtuSlave(unit_id, self, silence_ms(baudrate))
        self._boot_ms = hal.ticks_ms()
        self._next_sample_ms = RAIN_SAMPLE_MS

    def step(self) -> None:
        """Run one pass of the main loop."""
        hal = self.hal
        now = self.uptime_ms = hal.ticks_ms() - self._boot_ms
        received = hal.uart_read()
        if received:
            self.slave.feed(received, now)
        answer = self.slave.poll(now)
        while answer is not None:
            hal.uart_write(answer)
            answer = self.slave.poll(now)
        if now >= self._next_sample_ms:
            self._sample_rain(now)
        pressed = hal.ack_pressed()
        # Only a press acknowledges: a button stuck down cannot keep the siren quiet.
        if pressed and not self.ack_input:
            self.fallback.stop(END_LOCAL_ACK)
        self.ack_input = pressed
        self._decide(now)

    def rain_over_threshold(self) -> bool:
        """Return True when the rain over the window has reached the fallback threshold."""
        self.rain.advance(self.uptime_ms)
        return self.rain.total >= self.config[REG_FALLBACK_RAIN] * _RAIN_UNITS_PER_TENTH_MM

    def _sample_rain(self, now: int) -> None:
        self._next_sample_ms = now + RAIN_SAMPLE_MS
        tips = self.hal.take_tips()
        if tips > 0:
            amount = tips * self.config[REG_MM_PER_TIP]
            self.tips = (self.tips + tips) & 0xFFFFFFFF
            self.rain_total = (self.rain_total + amount) & 0xFFFFFFFF
            self.rain.add(now, amount)

    def _decide(self, now: int) -> None:
        self.fallback.evaluate(self.heartbeat.silent(now), self.rain_over_threshold())
        output = self.siren_command or self.fallback.sounding
        if output != self.siren_output:
            self.siren_output = output
            self.hal.set_siren(output)

    def read_coils(self, address: int, count: int) -> list[bool]:
        """Serve FC01."""
        if address + count > COIL_COUNT:
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        state = {
            COIL_SIREN: self.siren_command,
            COIL_FALLBACK_ACK: False,
            COIL_SIREN_OUTPUT: self.siren_output,
            COIL_FALLBACK_ACTIVE: self.fallback.sounding,
            COIL_HEARTBEAT_SILENT: self.heartbeat.silent(self.uptime_ms),
            COIL_ACK_INPUT: self.ack_input,
        }
        return [state[coil] for coil in range(address, address + count)]

    def write_coils(self, address: int, values: list[bool]) -> None:
        """Serve FC05 and FC15: the gateway's siren command and its acknowledgement."""
        for coil in range(address, address + len(values)):
            if coil not in WRITABLE_COILS:
                raise ModbusError(ILLEGAL_DATA_ADDRESS)
        for coil, value in enumerate(values, address):
            # Either write means the gateway is back and owns the siren: the fallback
            # ends in the same step, with the relay left as the gateway now commands.
            if coil == COIL_SIREN:
                self.siren_command = value
                self.fallback.stop(END_GATEWAY_SIREN)
            elif value:
                self.fallback.stop(END_GATEWAY_ACK)

    def read_registers(self, address: int, count: int) -> list[int]:
        """Serve FC03."""
        if address + count > REGISTER_COUNT:
            raise ModbusError(ILLEGAL_DATA_ADDRESS)
        registers = self._registers()
        return [registers.get(register, 0) for register in range(address, address + count)]

    def write_registers(self, address: int, values: list[int]) -> None:
        """Serve FC06 and FC16: heartbeats and the fallback's settings, all or nothing."""
        limits: list[tuple[int, int]] = []
        for register in range(address, address + len(values)):
            limit = write_limits(register)
            if limit is None:
                raise ModbusError(ILLEGAL_DATA_ADDRESS)
            limits.append(limit)
        for offset, value in enumerate(values):
            lowest, highest = limits[offset]
            if not lowest <= value <= highest:
                raise ModbusError(ILLEGAL_DATA_VALUE)
        now = self.uptime_ms
        for register, value in enumerate(values, address):
            if register == REG_HEARTBEAT:
                self.config[register] = value
                self.heartbeat.beat(now)
                self.fallback.heartbeat()
                continue
            # The gateway re-asserts its settings; only a real change may touch the window.
            if self.config[register] == value:
                continue
            self.config[register] = value
            if register == REG_HEARTBEAT_TIMEOUT_S:
                self.heartbeat.timeout_ms = value * 1000
            elif register == REG_FALLBACK_WINDOW_S:
                self.rain.resize(value * 1000, now)

    def _registers(self) -> dict[int, int]:
        now = self.uptime_ms
        self.rain.advance(now)
        registers = dict(self.config)
        registers[REG_FIRMWARE_VERSION] = FIRMWARE_VERSION
        registers[REG_FALLBACK_STATE] = self.fallback.state
        registers[REG_FALLBACK_REASON] = self.fallback.reason
        registers[REG_FALLBACK_END] = self.fallback.end
        registers[REG_FALLBACK_ACTIVATIONS] = self.fallback.activations
        registers[REG_HEARTBEAT_AGE_S] = min(self.heartbeat.age_ms(now) // 1000, 0xFFFF)
        registers[REG_RAIN_WINDOW] = min(self.rain.total // _RAIN_UNITS_PER_TENTH_MM, 0xFFFF)
        _put32(registers, REG_RAIN_TIPS, self.tips)
        _put32(registers, REG_RAIN_TOTAL, self.rain_total)
        _put32(registers, REG_UPTIME_S, now // 1000)
        registers[REG_CRC_ERRORS] = self.slave.crc_errors & 0xFFFF
        return registers
