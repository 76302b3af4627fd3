"""Device profiles: declarative TOML register maps, loaded and validated at the door.

A new vendor's sensor needs a profile file, not code. The loader rejects a bad file with
a message naming the file, the channel and the problem; it never guesses. A channel its
source lists only as a write target is ``readable = false``: nothing ever reads it, since
the device answers such a read with an exception.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from pydantic import Field, ValidationError

from drivers.codec import (
    BYTE_ORDERS,
    DATA_TYPES,
    WORD_ORDERS,
    ByteOrder,
    DataType,
    WordOrder,
    register_width,
)
from drivers.toml_schema import TomlTable, table_problem
from drivers.tomlfile import read_toml

BUILTIN_DIR = Path(__file__).parent

#: Modbus limits per request (FC03/04 registers, FC01/02 bits), from the protocol spec.
MODBUS_MAX_REGISTERS = 125
MODBUS_MAX_BITS = 2000
MODBUS_MAX_ADDRESS = 0xFFFF

QUANTITIES = frozenset(
    {
        "rain_total",
        "rain_increment",
        "rain_window",
        "rain_tips",
        "water_level",
        "air_gap",
        "install_height",
        "displacement",
        "displacement_east",
        "displacement_north",
        "displacement_up",
        "tilt_x",
        "tilt_y",
        "crack_width",
        "battery_v",
        "supply_v",
        "temperature",
        "pressure",
        "relay",
        "heartbeat",
        "device_address",
        "baud_rate",
        "measuring_range",
        "working_time",
        "status",
        "fix_quality",
        "satellites",
    }
)


class Table(StrEnum):
    """The four Modbus data tables."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bits(self) -> bool:
        """Return True for the single-bit tables (coils and discrete inputs)."""
        return self in (Table.COIL, Table.DISCRETE)


class ProfileError(ValueError):
    """A profile or site file is invalid; the message names file, channel and problem."""

    def __init__(self, source: str | Path, problem: str, channel: str | None = None) -> None:
        self.source = str(source)
        self.channel = channel
        self.problem = problem
        where = f"{self.source}: channel '{channel}'" if channel else self.source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One measured or commanded value of a device: where it lives and what it means."""

    name: str
    quantity: str
    unit: str
    table: Table
    address: int
    dtype: DataType
    word_order: WordOrder = "big"
    byte_order: ByteOrder = "big"
    scale: float = 1.0
    offset: float = 0.0
    valid_min: float | None = None
    valid_max: float | None = None
    writable: bool = False
    max_rate: float | None = None
    stuck_after_s: float | None = None
    description: str = ""
    readable: bool = True

    @property
    def width(self) -> int:
        """Registers (or bits) this channel occupies."""
        return register_width(self.dtype)

    @property
    def end(self) -> int:
        """Last address the channel occupies (inclusive)."""
        return self.address + self.width - 1

    def to_engineering(self, raw: float) -> float:
        """Convert a decoded raw value to engineering units."""
        return raw * self.scale + self.offset

    def to_raw(self, value: float) -> float:
        """Convert an engineering value back to the raw number stored in registers."""
        return (value - self.offset) / self.scale

    def in_range(self, value: float) -> bool:
        """Return True when ``value`` lies within the channel's valid range."""
        if self.valid_min is not None and value < self.valid_min:
            return False
        return not (self.valid_max is not None and value > self.valid_max)


@dataclass(frozen=True, slots=True)
class SerialDefaults:
    """Factory serial settings of a device."""

    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A sensor or actuator model: its register map and how it wants to be read."""

    name: str
    model: str
    vendor: str
    default_unit_id: int
    max_registers: int
    max_bits: int
    max_gap: int
    timeout_s: float
    serial: SerialDefaults
    channels: tuple[ChannelSpec, ...]
    source: str
    description: str = ""

    def channel(self, name: str) -> ChannelSpec:
        """Return the channel called ``name``.

        Raises:
            KeyError: with the known channel names, when there is no such channel.
        """
        for ch in self.channels:
            if ch.name == name:
                return ch
        known = ", ".join(c.name for c in self.channels)
        msg = f"profile '{self.name}' has no channel '{name}' (channels: {known})"
        raise KeyError(msg)

    @property
    def readable_channels(self) -> tuple[ChannelSpec, ...]:
        """The channels a poll or a scan may read: not the write-only ones."""
        return tuple(c for c in self.channels if c.readable)


class SerialDefaultsTable(TomlTable):
    """``[device.serial]``: the line settings the device ships with."""

    baudrate: int = Field(9600, ge=300, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = Field(1, ge=1, le=2)
    bytesize: int = Field(8, ge=7, le=8)


class DeviceTable(TomlTable):
    """``[device]``, with its ``[device.serial]``."""

    model: str
    vendor: str = ""
    description: str = ""
    default_unit_id: int = Field(1, ge=1, le=247)
    max_registers: int = Field(MODBUS_MAX_REGISTERS, ge=1, le=MODBUS_MAX_REGISTERS)
    max_bits: int = Field(MODBUS_MAX_BITS, ge=1, le=MODBUS_MAX_BITS)
    max_gap: int = Field(0, ge=0, le=MODBUS_MAX_REGISTERS)
    timeout_s: float = Field(0.5, gt=0.0, le=30.0)
    serial: SerialDefaultsTable = SerialDefaultsTable.model_validate({})


class ChannelTable(TomlTable):
    """``[[channel]]``; names from closed sets are checked after, with the set in the message."""

    name: str
    quantity: str
    unit: str
    table: str
    address: int = Field(ge=0, le=MODBUS_MAX_ADDRESS)
    dtype: str = Field(alias="type")
    word_order: str = "big"
    byte_order: str = "big"
    scale: float = 1.0
    offset: float = 0.0
    valid_range: list[float] | None = Field(None, alias="range")
    writable: bool = False
    readable: bool = True
    max_rate: float | None = None
    stuck_after_s: float | None = None
    description: str = ""


T = TypeVar("T", bound=TomlTable)


class ProfileFile(TomlTable):
    """The top level of a profile: ``[device]`` and ``[[channel]]``, each checked after."""

    device: Any = None
    channel: Any = None


def _table(
    source: str, model: type[T], raw: Any, channel: str | None = None, within: str | None = None
) -> T:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(source, table_problem(exc, model, within), channel) from None


def _parse_numbers(source: str, name: str, raw: ChannelTable) -> dict[str, Any]:
    """Check a channel's scaling, valid range and plausibility limits."""
    if raw.scale == 0:
        raise ProfileError(source, "scale must not be zero", name)
    valid_min = valid_max = None
    if raw.valid_range is not None:
        if len(raw.valid_range) != 2:
            raise ProfileError(source, f"'range' must be [min, max], got {raw.valid_range!r}", name)
        valid_min, valid_max = raw.valid_range
        if valid_min >= valid_max:
            raise ProfileError(
                source, f"range minimum {valid_min} is not below maximum {valid_max}", name
            )
    if raw.max_rate is not None and raw.max_rate <= 0:
        raise ProfileError(source, "max_rate must be positive", name)
    if raw.stuck_after_s is not None and raw.stuck_after_s <= 0:
        raise ProfileError(source, "stuck_after_s must be positive", name)
    return {
        "scale": raw.scale,
        "offset": raw.offset,
        "valid_min": valid_min,
        "valid_max": valid_max,
        "max_rate": raw.max_rate,
        "stuck_after_s": raw.stuck_after_s,
    }


def _parse_channel(source: str, index: int, raw: Any, max_registers: int) -> ChannelSpec:
    if not isinstance(raw, dict):
        raise ProfileError(source, f"[[channel]] #{index + 1} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(source, f"[[channel]] #{index + 1} has no 'name'")
    ch = _table(source, ChannelTable, raw, name)
    if ch.quantity not in QUANTITIES:
        raise ProfileError(
            source,
            f"unknown quantity {ch.quantity!r} (known: {', '.join(sorted(QUANTITIES))})",
            name,
        )
    if not ch.unit.strip():
        raise ProfileError(source, "missing 'unit' (use '1' for a dimensionless value)", name)
    try:
        table = Table(ch.table)
    except ValueError:
        known = ", ".join(t.value for t in Table)
        raise ProfileError(source, f"unknown table {ch.table!r} (known: {known})", name) from None
    dtype = ch.dtype
    if dtype not in DATA_TYPES:
        raise ProfileError(
            source, f"unknown data type {dtype!r} (known: {', '.join(DATA_TYPES)})", name
        )
    if table.is_bits and dtype != "bool":
        raise ProfileError(
            source, f"a {table.value} channel must have type 'bool', not {dtype!r}", name
        )
    if not table.is_bits and dtype == "bool":
        raise ProfileError(
            source, f"type 'bool' only fits coil or discrete tables, not {table.value}", name
        )
    if ch.word_order not in WORD_ORDERS:
        raise ProfileError(
            source, f"word_order must be 'big' or 'little', got {ch.word_order!r}", name
        )
    if ch.byte_order not in BYTE_ORDERS:
        raise ProfileError(
            source, f"byte_order must be 'big' or 'little', got {ch.byte_order!r}", name
        )
    address = ch.address
    width = register_width(cast(DataType, dtype))
    if address + width - 1 > MODBUS_MAX_ADDRESS:
        raise ProfileError(
            source, f"address {address} + {width} registers runs past the last address 65535", name
        )
    if not table.is_bits and width > max_registers:
        raise ProfileError(
            source,
            f"{dtype} needs {width} registers but the device answers at most {max_registers} per "
            "request (max_registers), so this channel could never be read",
            name,
        )
    numbers = _parse_numbers(source, name, ch)
    if ch.writable and table in (Table.INPUT, Table.DISCRETE):
        raise ProfileError(
            source, f"a {table.value} channel is read-only and cannot be writable", name
        )
    if not ch.readable and not ch.writable:
        raise ProfileError(
            source,
            "readable = false needs writable = true: a channel that can be neither read nor "
            "written serves no purpose",
            name,
        )
    return ChannelSpec(
        name=name,
        quantity=ch.quantity,
        unit=ch.unit,
        table=table,
        address=address,
        dtype=cast(DataType, dtype),
        word_order=cast(WordOrder, ch.word_order),
        byte_order=cast(ByteOrder, ch.byte_order),
        writable=ch.writable,
        readable=ch.readable,
        description=ch.description,
        **numbers,
    )


def _check_overlaps(source: str, channels: list[ChannelSpec]) -> None:
    names: set[str] = set()
    for ch in channels:
        if ch.name in names:
            raise ProfileError(source, "duplicate channel name", ch.name)
        names.add(ch.name)
    for table in Table:
        in_table = sorted((c for c in channels if c.table == table), key=lambda c: c.address)
        for before, after in itertools.pairwise(in_table):
            if after.address <= before.end:
                raise ProfileError(
                    source,
                    f"{table.value} address {after.address}..{after.end} overlaps channel "
                    f"'{before.name}' ({before.address}..{before.end})",
                    after.name,
                )


def parse_profile(data: Mapping[str, Any], source: str, name: str) -> DeviceProfile:
    """Validate an already-parsed profile document.

    Raises:
        ProfileError: naming ``source``, the channel and the problem.
    """
    _table(source, ProfileFile, data, within="the top level")
    raw_device = data.get("device")
    if not isinstance(raw_device, dict):
        raise ProfileError(source, "missing [device] table")
    model = raw_device.get("model")
    if not isinstance(model, str) or not model:
        raise ProfileError(source, "[device] needs a 'model'")
    device = _table(source, DeviceTable, raw_device, within="[device]")
    raw_channels = data.get("channel")
    if not isinstance(raw_channels, list) or not raw_channels:
        raise ProfileError(source, "a profile needs at least one [[channel]]")
    channels = [
        _parse_channel(source, i, raw, device.max_registers) for i, raw in enumerate(raw_channels)
    ]
    _check_overlaps(source, channels)
    return DeviceProfile(
        name=name,
        model=device.model,
        vendor=device.vendor,
        description=device.description,
        default_unit_id=device.default_unit_id,
        max_registers=device.max_registers,
        max_bits=device.max_bits,
        max_gap=device.max_gap,
        timeout_s=device.timeout_s,
        serial=SerialDefaults(**device.serial.model_dump()),
        channels=tuple(channels),
        source=source,
    )


def load_profile(path: str | Path) -> DeviceProfile:
    """Load and validate one profile file; the profile is named after the file's stem.

    Raises:
        ProfileError: when the file is missing, is not TOML, or is invalid.
    """
    path = Path(path)
    data = read_toml(path, "profile", ProfileError)
    return parse_profile(data, str(path), path.stem)


@cache
def builtin_profiles() -> dict[str, DeviceProfile]:
    """Return the profiles shipped with HazardWatch, by name."""
    return {p.stem: load_profile(p) for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def resolve_profile(ref: str, base_dir: Path | None = None) -> DeviceProfile:
    """Find a profile by built-in name, or by path (relative paths start at ``base_dir``).

    Raises:
        ProfileError: when neither a built-in profile nor a file of that name exists.
    """
    shipped = builtin_profiles()
    if ref in shipped:
        return shipped[ref]
    candidate = Path(ref)
    if not candidate.is_absolute() and base_dir is not None:
        candidate = base_dir / candidate
    if candidate.suffix == ".toml" or candidate.exists():
        return load_profile(candidate)
    known = ", ".join(sorted(shipped))
    raise ProfileError(ref, f"no such profile (built-in profiles: {known})")
