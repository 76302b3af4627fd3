"""One simulated Modbus field device: a profile's register map filled from scenario signals.

Values are exact functions of simulated time (signal -> ``ChannelSpec.to_raw`` ->
``drivers.codec.encode``), computed when a request arrives; the device never reads the
wall clock for values and never sleeps.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType as SimDataType
from pymodbus.simulator import SimData, SimDevice

from drivers.clock import Clock
from drivers.codec import decode, encode
from drivers.profiles import ChannelSpec, DeviceProfile, Table
from hardware_sim.faults import DeviceFaults

Signal = Callable[[float], float]
"""An engineering value as a function of simulated UTC time in seconds."""

#: Which data table each supported function code addresses.
TABLE_OF_FUNCTION: dict[int, Table] = {
    1: Table.COIL,
    2: Table.DISCRETE,
    3: Table.HOLDING,
    4: Table.INPUT,
    5: Table.COIL,
    6: Table.HOLDING,
    15: Table.COIL,
    16: Table.HOLDING,
    22: Table.HOLDING,
    23: Table.HOLDING,
}
_READ_FUNCTIONS = frozenset({1, 2, 3, 4})
_BITS_PER_REGISTER = 16
# Tables without channels still need one SimData; a block at the very top of the bit
# space and an invalid register keep every real address answering "illegal address".
_EMPTY_BITS = SimData(0xFFF0, datatype=SimDataType.BITS)
_EMPTY_REGISTERS = SimData(0, datatype=SimDataType.INVALID)

_RAW_LIMITS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "float32": (-3.4028234e38, 3.4028234e38),
}


@dataclass(frozen=True, slots=True)
class CoilChange:
    """A relay switching: when (simulated and monotonic wall time), which coil, to what."""

    sim_time: float
    wall_time: float
    address: int
    value: bool


def encode_channel(channel: ChannelSpec, value: float) -> list[int]:
    """Encode an engineering value into the channel's registers, saturating like a device.

    A value outside what the data type can hold is clamped to its limits (NaN becomes
    zero for integer types), as a transmitter pins its output rather than wrapping.
    """
    raw = channel.to_raw(value)
    if channel.dtype == "bool":
        return encode(raw >= 0.5, "bool")
    low, high = _RAW_LIMITS[channel.dtype]
    if math.isnan(raw):
        raw = raw if channel.dtype == "float32" else 0.0
    else:
        raw = min(max(raw, low), high)
    return encode(raw, channel.dtype, channel.word_order, channel.byte_order)


def fits(channel: ChannelSpec, value: float) -> bool:
    """Return True when the engineering value is representable in the channel's registers."""
    if channel.dtype == "bool":
        return True
    low, high = _RAW_LIMITS[channel.dtype]
    return low <= channel.to_raw(value) <= high


def decode_channel(channel: ChannelSpec, words: list[int]) -> float:
    """Decode a channel's registers (as on the wire) into its engineering value."""
    return channel.to_engineering(
        decode(words, channel.dtype, channel.word_order, channel.byte_order)
    )


class SimulatedDevice:
    """A Modbus slave that serves a device profile from signals of simulated time.

    Channels bound to a signal are recomputed from ``signal(clock.now())`` on every read.
    Other channels hold a value: the power-up value from ``values`` (zero when absent),
    changed by ``set_value`` or by client writes to writable registers and coils. A client
    write to a bound channel offsets it (the way presetting a rain counter does). A read
    that touches a write-only channel (``readable = false``) is answered with exception 02,
    illegal data address, as the real device does.

    Attributes:
        requests: requests that reached the device, by function code.
        request_log: ``(function_code, address, count)`` of each request that reached the
            device, including those answered with an injected fault.
        coil_log: every actual change of a coil, in order.
    """

    def __init__(
        self,
        profile: DeviceProfile,
        unit_id: int,
        clock: Clock,
        signals: Mapping[str, Signal] | None = None,
        *,
        values: Mapping[str, float] | None = None,
        faults: DeviceFaults | None = None,
        name: str | None = None,
    ) -> None:
        if not 1 <= unit_id <= 247:
            msg = f"unit id must be within 1..247, got {unit_id}"
            raise ValueError(msg)
        self.profile = profile
        self.unit_id = unit_id
        self.clock = clock
        self.name = name or f"{profile.name}@{unit_id}"
        self._signals = {profile.channel(n).name: s for n, s in (signals or {}).items()}
        self._power_up = {profile.channel(n).name: float(v) for n, v in (values or {}).items()}
        if both := sorted(set(self._signals) & set(self._power_up)):
            msg = f"channel(s) {', '.join(both)} have both a signal and a value"
            raise ValueError(msg)
        self._bias: dict[str, float] = {}
        self.requests: collections.Counter[int] = collections.Counter()
        self.request_log: list[tuple[int, int, int]] = []
        self.coil_log: list[CoilChange] = []
        self._memory: dict[Table, dict[int, int]] = {table: {} for table in Table}
        self._owner: dict[Table, dict[int, ChannelSpec]] = {table: {} for table in Table}
        for channel in profile.channels:
            for address in range(channel.address, channel.end + 1):
                self._owner[channel.table][address] = channel
        now = clock.now()
        for channel in profile.channels:
            if channel.name in self._signals:
                self._store(channel, self._signal_value(channel, now))
            else:
                self._store(channel, self._power_up.get(channel.name, 0.0), log=False)
        self.faults = faults if faults is not None else DeviceFaults()

    @property
    def faults(self) -> DeviceFaults:
        """The faults this device shows; assign fields (or a new object) at any time."""
        return self._faults

    @faults.setter
    def faults(self, faults: DeviceFaults) -> None:
        faults.add_listener(self._fault_changed)
        self._faults = faults

    def _fault_changed(self, name: str) -> None:
        if name == "stuck" and self._faults.stuck:
            # Freeze what the sensor showed at this instant, not at the last poll.
            self._refresh(self.clock.now())

    def value(self, channel_name: str) -> float:
        """Return the channel's true engineering value now, as a fault-free device reports it.

        For a bound channel that is the signal at ``clock.now()`` (plus any preset a
        client wrote); otherwise the held value, rounded through the register encoding.
        """
        channel = self.profile.channel(channel_name)
        if channel.name in self._signals:
            return self._signal_value(channel, self.clock.now())
        return decode_channel(channel, self._words(channel))

    def set_value(self, channel_name: str, value: float) -> None:
        """Set the held value of an unbound channel (an input going high, a battery sagging).

        Raises:
            KeyError: when the profile has no such channel.
            ValueError: when the channel is bound to a signal.
        """
        channel = self.profile.channel(channel_name)
        if channel.name in self._signals:
            msg = f"channel '{channel.name}' of {self.name} is driven by a signal"
            raise ValueError(msg)
        self._store(channel, value)

    def power_cycle(self) -> None:
        """Switch the device off and on: writable channels return to their power-up values.

        Coils that drop out are recorded in ``coil_log`` like any other relay change.
        """
        self._bias.clear()
        for channel in self.profile.channels:
            if channel.writable and channel.name not in self._signals:
                self._store(channel, self._power_up.get(channel.name, 0.0))

    def coil(self, address: int) -> bool:
        """Return the current state of the coil at ``address``."""
        return bool(self._memory[Table.COIL].get(address, 0))

    def silent(self) -> bool:
        """Return True when the device must not answer right now (dead or in an outage)."""
        return self._faults.silent_at(self.clock.now())

    def record_request(self, function_code: int, address: int, count: int) -> None:
        """Count a request addressed to this device, unless the device is silent.

        The bus calls it for every decoded request, so requests that the datastore
        rejects (an illegal address) are counted too.
        """
        if self.silent():
            return
        self.requests[function_code] += 1
        self.request_log.append((function_code, address, count))

    def sim_device(self) -> SimDevice:
        """Build the pymodbus datastore for this device; its memory is refreshed per access."""
        coils, discrete = (self._bit_blocks(t) for t in (Table.COIL, Table.DISCRETE))
        holding, inputs = (self._register_blocks(t) for t in (Table.HOLDING, Table.INPUT))
        return SimDevice(
            self.unit_id, simdata=(coils, discrete, holding, inputs), action=self._on_access
        )

    def _bit_blocks(self, table: Table) -> list[SimData]:
        words = sorted({a // _BITS_PER_REGISTER for a in self._owner[table]})
        if not words:
            return [_EMPTY_BITS]
        return [SimData(w * _BITS_PER_REGISTER, datatype=SimDataType.BITS) for w in words]

    def _register_blocks(self, table: Table) -> list[SimData]:
        addresses = sorted(self._owner[table])
        if not addresses:
            return [_EMPTY_REGISTERS]
        return [SimData(a, datatype=SimDataType.REGISTERS) for a in addresses]

    def _signal_value(self, channel: ChannelSpec, sim_time: float) -> float:
        return self._signals[channel.name](sim_time) + self._bias.get(channel.name, 0.0)

    def _words(self, channel: ChannelSpec) -> list[int]:
        memory = self._memory[channel.table]
        return [memory[a] for a in range(channel.address, channel.end + 1)]

    def _store(self, channel: ChannelSpec, value: float, *, log: bool = True) -> None:
        words = encode_channel(channel, value)
        if channel.table is Table.COIL:
            self._write_coils(channel.address, [bool(words[0])], log=log)
            return
        memory = self._memory[channel.table]
        for offset, word in enumerate(words):
            memory[channel.address + offset] = word

    def _write_coils(self, address: int, bits: Iterable[bool], *, log: bool = True) -> None:
        memory = self._memory[Table.COIL]
        for coil, bit in enumerate(bits, start=address):
            changed = memory.get(coil) != int(bit)
            memory[coil] = int(bit)
            if changed and log:
                self.coil_log.append(
                    CoilChange(self.clock.now(), time.monotonic(), coil, bool(bit))
                )

    def _refresh(self, sim_time: float) -> None:
        for channel in self.profile.channels:
            if channel.name in self._signals:
                self._store(channel, self._signal_value(channel, sim_time))

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Serve one datastore access; ``registers`` is pymodbus's block, updated in place.

        For the bit tables ``start_address`` and ``count`` are in 16-bit words while
        ``address`` is the requested bit.
        """
        if self.silent():
            # Never sent: the bus drops answers of a silent device. Refusing here keeps a
            # dead relay module from switching.
            return ExcCodes.DEVICE_FAILURE
        if self._faults.exception_code is not None:
            return ExcCodes(self._faults.exception_code)
        table = TABLE_OF_FUNCTION[function_code]
        if set_values is not None:
            return self._apply_write(table, address, set_values)
        is_read = function_code in _READ_FUNCTIONS
        if is_read and not self._faults.stuck:
            self._refresh(self.clock.now())
        if is_read and self._write_only(table, address, 1 if table.is_bits else count):
            # As the real device does: its manual lists the register as a write target only.
            return ExcCodes.ILLEGAL_ADDRESS
        if table.is_bits:
            if address not in self._owner[table]:
                return ExcCodes.ILLEGAL_ADDRESS
            self._fill_bits(table, start_address, address, count, registers)
        else:
            self._fill_registers(table, start_address, address, count, registers, is_read)
        return None

    def _write_only(self, table: Table, address: int, count: int) -> bool:
        owners = self._owner[table]
        return any(a in owners and not owners[a].readable for a in range(address, address + count))

    def _apply_write(
        self, table: Table, address: int, set_values: list[int] | list[bool]
    ) -> ExcCodes | None:
        owners = self._owner[table]
        span = range(address, address + len(set_values))
        if any(a not in owners or not owners[a].writable for a in span):
            return ExcCodes.ILLEGAL_ADDRESS
        if table is Table.COIL:
            self._write_coils(address, [bool(v) for v in set_values])
            return None
        memory = self._memory[table]
        for a, word in zip(span, set_values, strict=True):
            memory[a] = int(word) & 0xFFFF
        now = self.clock.now()
        for channel in {owners[a].name: owners[a] for a in span}.values():
            if channel.name in self._signals:
                written = decode_channel(channel, self._words(channel))
                self._bias[channel.name] = written - self._signals[channel.name](now)
        return None

    def _fill_bits(
        self, table: Table, start_word: int, bit: int, count: int, registers: list[int]
    ) -> None:
        memory = self._memory[table]
        first_word = bit // _BITS_PER_REGISTER
        for word in range(first_word, first_word + count):
            base = word * _BITS_PER_REGISTER
            registers[word - start_word] = sum(
                1 << i for i in range(_BITS_PER_REGISTER) if memory.get(base + i, 0)
            )

    def _fill_registers(
        self,
        table: Table,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        is_read: bool,
    ) -> None:
        memory = self._memory[table]
        span = range(address, address + count)
        served = {a: memory[a] for a in span}
        if is_read:
            for channel in self._spiked_channels(table, span):
                spiked = decode_channel(channel, self._words(channel))
                words = encode_channel(channel, spiked + self._faults.spike_magnitude)
                for offset, word in enumerate(words):
                    if channel.address + offset in served:
                        served[channel.address + offset] = word
        for a, word in served.items():
            registers[a - start_address] = word

    def _spiked_channels(self, table: Table, span: range) -> list[ChannelSpec]:
        spiked: list[ChannelSpec] = []
        for channel in self.profile.channels:
            in_read = (
                channel.table is table and channel.address <= span[-1] and channel.end >= span[0]
            )
            if in_read and channel.name in self._signals and self._faults.draw_spike():
                spiked.append(channel)
        return spiked
