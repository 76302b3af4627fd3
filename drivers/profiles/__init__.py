"""Device profiles: declarative TOML register maps, loaded and validated at the door.

A new vendor's sensor needs a profile file, not code. The loader rejects a bad file with
a message naming the file, the channel and the problem; it never guesses.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, cast

from drivers.codec import (
    BYTE_ORDERS,
    DATA_TYPES,
    WORD_ORDERS,
    ByteOrder,
    DataType,
    WordOrder,
    register_width,
)
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


_DEVICE_KEYS = {
    "model",
    "vendor",
    "description",
    "default_unit_id",
    "max_registers",
    "max_bits",
    "max_gap",
    "timeout_s",
    "serial",
}
_SERIAL_KEYS = {"baudrate", "parity", "stopbits", "bytesize"}
_CHANNEL_KEYS = {
    "name",
    "quantity",
    "unit",
    "table",
    "address",
    "type",
    "word_order",
    "byte_order",
    "scale",
    "offset",
    "range",
    "writable",
    "max_rate",
    "stuck_after_s",
    "description",
}
_REQUIRED_CHANNEL_KEYS = ("name", "quantity", "unit", "table", "address", "type")


def _unknown_keys(table: Mapping[str, Any], allowed: Iterable[str]) -> list[str]:
    return sorted(set(table) - set(allowed))


def _number(source: str, channel: str | None, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(source, f"'{key}' must be a number, got {value!r}", channel)
    return float(value)


def _integer(source: str, channel: str | None, key: str, value: Any, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(source, f"'{key}' must be an integer, got {value!r}", channel)
    if not lo <= value <= hi:
        raise ProfileError(source, f"'{key}' = {value} is outside {lo}..{hi}", channel)
    return value


def _parse_serial(source: str, raw: Any) -> SerialDefaults:
    if not isinstance(raw, dict):
        raise ProfileError(source, "[device.serial] must be a table")
    if bad := _unknown_keys(raw, _SERIAL_KEYS):
        raise ProfileError(source, f"unknown key(s) in [device.serial]: {', '.join(bad)}")
    parity = raw.get("parity", "N")
    if parity not in ("N", "E", "O"):
        raise ProfileError(source, f"serial parity must be N, E or O, got {parity!r}")
    return SerialDefaults(
        baudrate=_integer(
            source, None, "baudrate", raw.get("baudrate", 9600), lo=300, hi=4_000_000
        ),
        parity=parity,
        stopbits=_integer(source, None, "stopbits", raw.get("stopbits", 1), lo=1, hi=2),
        bytesize=_integer(source, None, "bytesize", raw.get("bytesize", 8), lo=7, hi=8),
    )


def _parse_numbers(source: str, name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a channel's scaling, valid range and plausibility limits."""
    scale = _number(source, name, "scale", raw.get("scale", 1.0))
    if scale == 0:
        raise ProfileError(source, "scale must not be zero", name)
    offset = _number(source, name, "offset", raw.get("offset", 0.0))
    valid_min = valid_max = None
    if "range" in raw:
        rng = raw["range"]
        if not isinstance(rng, list) or len(rng) != 2:
            raise ProfileError(source, f"'range' must be [min, max], got {rng!r}", name)
        valid_min = _number(source, name, "range[0]", rng[0])
        valid_max = _number(source, name, "range[1]", rng[1])
        if valid_min >= valid_max:
            raise ProfileError(
                source, f"range minimum {valid_min} is not below maximum {valid_max}", name
            )
    max_rate = raw.get("max_rate")
    if max_rate is not None and _number(source, name, "max_rate", max_rate) <= 0:
        raise ProfileError(source, "max_rate must be positive", name)
    stuck = raw.get("stuck_after_s")
    if stuck is not None and _number(source, name, "stuck_after_s", stuck) <= 0:
        raise ProfileError(source, "stuck_after_s must be positive", name)
    return {
        "scale": scale,
        "offset": offset,
        "valid_min": valid_min,
        "valid_max": valid_max,
        "max_rate": None if max_rate is None else float(max_rate),
        "stuck_after_s": None if stuck is None else float(stuck),
    }


def _parse_channel(source: str, index: int, raw: Any, max_registers: int) -> ChannelSpec:
    if not isinstance(raw, dict):
        raise ProfileError(source, f"[[channel]] #{index + 1} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ProfileError(source, f"[[channel]] #{index + 1} has no 'name'")
    for key in _REQUIRED_CHANNEL_KEYS:
        if key not in raw:
            raise ProfileError(source, f"missing '{key}'", name)
    if bad := _unknown_keys(raw, _CHANNEL_KEYS):
        raise ProfileError(source, f"unknown key(s): {', '.join(bad)}", name)
    quantity = raw["quantity"]
    if quantity not in QUANTITIES:
        raise ProfileError(
            source, f"unknown quantity {quantity!r} (known: {', '.join(sorted(QUANTITIES))})", name
        )
    unit = raw["unit"]
    if not isinstance(unit, str) or not unit.strip():
        raise ProfileError(source, "missing 'unit' (use '1' for a dimensionless value)", name)
    try:
        table = Table(raw["table"])
    except ValueError:
        known = ", ".join(t.value for t in Table)
        raise ProfileError(
            source, f"unknown table {raw['table']!r} (known: {known})", name
        ) from None
    dtype = raw["type"]
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
    word_order = raw.get("word_order", "big")
    if word_order not in WORD_ORDERS:
        raise ProfileError(
            source, f"word_order must be 'big' or 'little', got {word_order!r}", name
        )
    byte_order = raw.get("byte_order", "big")
    if byte_order not in BYTE_ORDERS:
        raise ProfileError(
            source, f"byte_order must be 'big' or 'little', got {byte_order!r}", name
        )
    address = _integer(source, name, "address", raw["address"], lo=0, hi=MODBUS_MAX_ADDRESS)
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
    numbers = _parse_numbers(source, name, raw)
    writable = raw.get("writable", False)
    if not isinstance(writable, bool):
        raise ProfileError(source, f"'writable' must be true or false, got {writable!r}", name)
    if writable and table in (Table.INPUT, Table.DISCRETE):
        raise ProfileError(
            source, f"a {table.value} channel is read-only and cannot be writable", name
        )
    return ChannelSpec(
        name=name,
        quantity=quantity,
        unit=unit,
        table=table,
        address=address,
        dtype=cast(DataType, dtype),
        word_order=cast(WordOrder, word_order),
        byte_order=cast(ByteOrder, byte_order),
        writable=writable,
        description=str(raw.get("description", "")),
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
    if bad := _unknown_keys(data, {"device", "channel"}):
        raise ProfileError(source, f"unknown top-level key(s): {', '.join(bad)}")
    device = data.get("device")
    if not isinstance(device, dict):
        raise ProfileError(source, "missing [device] table")
    if bad := _unknown_keys(device, _DEVICE_KEYS):
        raise ProfileError(source, f"unknown key(s) in [device]: {', '.join(bad)}")
    model = device.get("model")
    if not isinstance(model, str) or not model:
        raise ProfileError(source, "[device] needs a 'model'")
    max_registers = _integer(
        source,
        None,
        "max_registers",
        device.get("max_registers", MODBUS_MAX_REGISTERS),
        lo=1,
        hi=MODBUS_MAX_REGISTERS,
    )
    max_bits = _integer(
        source, None, "max_bits", device.get("max_bits", MODBUS_MAX_BITS), lo=1, hi=MODBUS_MAX_BITS
    )
    max_gap = _integer(
        source, None, "max_gap", device.get("max_gap", 0), lo=0, hi=MODBUS_MAX_REGISTERS
    )
    timeout_s = _number(source, None, "timeout_s", device.get("timeout_s", 0.5))
    if not 0 < timeout_s <= 30:
        raise ProfileError(source, f"timeout_s must be in (0, 30] seconds, got {timeout_s}")
    raw_channels = data.get("channel")
    if not isinstance(raw_channels, list) or not raw_channels:
        raise ProfileError(source, "a profile needs at least one [[channel]]")
    channels = [_parse_channel(source, i, raw, max_registers) for i, raw in enumerate(raw_channels)]
    _check_overlaps(source, channels)
    return DeviceProfile(
        name=name,
        model=model,
        vendor=str(device.get("vendor", "")),
        description=str(device.get("description", "")),
        default_unit_id=_integer(
            source, None, "default_unit_id", device.get("default_unit_id", 1), lo=1, hi=247
        ),
        max_registers=max_registers,
        max_bits=max_bits,
        max_gap=max_gap,
        timeout_s=timeout_s,
        serial=_parse_serial(source, device.get("serial", {})),
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
