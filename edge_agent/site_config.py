"""The site file: which buses a gateway has and which devices sit on them.

Validated completely at load time; an error names the file, the bus or device, and the
problem, so a technician can fix the file at the site. Never opens a port.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.bus import BusConfig, SerialBusConfig, TcpBusConfig
from drivers.poller import DeviceConfig
from drivers.profiles import ProfileError, resolve_profile
from drivers.tomlfile import read_toml

_SITE_KEYS = {"id", "name", "description"}
_SERIAL_KEYS = {"name", "kind", "device", "baudrate", "parity", "stopbits", "bytesize"}
_TCP_KEYS = {"name", "kind", "host", "port"}
_DEVICE_KEYS = {
    "name",
    "bus",
    "profile",
    "unit_id",
    "poll_interval_s",
    "timeout_s",
    "retries",
    "backoff_max_s",
    "channels",
}


class SiteConfigError(ValueError):
    """The site file is invalid; the message names the file, the item and the problem."""

    def __init__(self, source: str | Path, problem: str, item: str | None = None) -> None:
        self.source = str(source)
        self.item = item
        self.problem = problem
        where = f"{self.source}: {item}" if item else self.source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """A validated site file."""

    source: str
    site_id: str
    name: str
    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]


class _Reader:
    """Typed access to one TOML table with errors that say where the problem is."""

    def __init__(self, source: str, item: str, table: Mapping[str, Any], allowed: set[str]):
        self.source, self.item, self.table = source, item, table
        if unknown := sorted(set(table) - allowed):
            self.fail(
                f"unknown key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
            )

    def fail(self, problem: str) -> SiteConfigError:
        raise SiteConfigError(self.source, problem, self.item)

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            self.fail(f"'{key}' must be a non-empty string, got {value!r}")
        return str(value)

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"'{key}' must be an integer, got {value!r}")
        if not lo <= value <= hi:
            self.fail(f"'{key}' = {value} is outside {lo}..{hi}")
        return int(value)

    def number(self, key: str, default: float | None, lo: float, hi: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(f"'{key}' must be a number, got {value!r}")
        if not lo < value <= hi:
            self.fail(f"'{key}' = {value} must be above {lo} and at most {hi}")
        return float(value)


def _parse_bus(source: str, raw: Any, index: int) -> BusConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SiteConfigError(source, "needs a table with a 'name'", f"[[bus]] #{index + 1}")
    item = f"bus '{raw['name']}'"
    kind = raw.get("kind")
    if kind == "serial":
        r = _Reader(source, item, raw, _SERIAL_KEYS)
        parity = raw.get("parity", "N")
        if parity not in ("N", "E", "O"):
            r.fail(f"parity must be N, E or O, got {parity!r}")
        return SerialBusConfig(
            name=raw["name"],
            device=r.text("device"),
            baudrate=r.integer("baudrate", 9600, 300, 4_000_000),
            parity=parity,
            stopbits=r.integer("stopbits", 1, 1, 2),
            bytesize=r.integer("bytesize", 8, 7, 8),
        )
    if kind == "tcp":
        r = _Reader(source, item, raw, _TCP_KEYS)
        return TcpBusConfig(
            name=raw["name"], host=r.text("host"), port=r.integer("port", 502, 1, 65535)
        )
    raise SiteConfigError(source, f"'kind' must be 'serial' or 'tcp', got {kind!r}", item)


def _parse_device(
    source: str, base_dir: Path, raw: Any, index: int, buses: Mapping[str, BusConfig]
) -> DeviceConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SiteConfigError(source, "needs a table with a 'name'", f"[[device]] #{index + 1}")
    name = raw["name"]
    r = _Reader(source, f"device '{name}'", raw, _DEVICE_KEYS)
    bus = r.text("bus")
    if bus not in buses:
        r.fail(f"unknown bus '{bus}' (buses: {', '.join(buses) or 'none'})")
    try:
        profile = resolve_profile(r.text("profile"), base_dir)
    except ProfileError as exc:
        r.fail(f"profile problem: {exc}")
    poll = r.number("poll_interval_s", 10.0, 0.0, 86400.0)
    timeout = r.number("timeout_s", profile.timeout_s, 0.0, 30.0)
    retries = r.integer("retries", 1, 0, 5)
    if timeout * (retries + 1) > poll:
        r.fail(
            f"timeout_s {timeout} x {retries + 1} attempts exceeds poll_interval_s {poll}: "
            "a silent device would overrun its own schedule"
        )
    channels = raw.get("channels")
    if channels is not None:
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) for c in channels)
        ):
            r.fail("'channels' must be a non-empty list of channel names")
        known = {c.name for c in profile.channels}
        if missing := [c for c in channels if c not in known]:
            r.fail(
                f"profile '{profile.name}' has no channel(s) {', '.join(missing)} "
                f"(channels: {', '.join(sorted(known))})"
            )
    return DeviceConfig(
        name=name,
        bus=bus,
        profile=profile,
        unit_id=r.integer("unit_id", profile.default_unit_id, 1, 247),
        poll_interval_s=poll,
        timeout_s=timeout,
        retries=retries,
        backoff_max_s=r.number("backoff_max_s", 60.0, 0.0, 86400.0),
        channels=None if channels is None else tuple(channels),
    )


def _unique(source: str, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SiteConfigError(source, f"duplicate {kind} name", f"{kind} '{name}'")
        seen.add(name)


def parse_site(data: Mapping[str, Any], source: str, base_dir: Path) -> SiteConfig:
    """Validate an already-parsed site document.

    Raises:
        SiteConfigError: naming ``source``, the bus or device, and the problem.
    """
    allowed_top = {"site", "bus", "device"}
    if unknown := sorted(set(data) - allowed_top):
        raise SiteConfigError(source, f"unknown section(s): {', '.join(unknown)}")
    site = _Reader(source, "[site]", data.get("site", {}), _SITE_KEYS)
    raw_buses = data.get("bus", [])
    raw_devices = data.get("device", [])
    if not isinstance(raw_buses, list) or not raw_buses:
        raise SiteConfigError(source, "a site needs at least one [[bus]]")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise SiteConfigError(source, "a site needs at least one [[device]]")
    buses = [_parse_bus(source, raw, i) for i, raw in enumerate(raw_buses)]
    _unique(source, "bus", [b.name for b in buses])
    ports: dict[str, str] = {}
    for bus in buses:
        endpoint = bus.device if isinstance(bus, SerialBusConfig) else f"{bus.host}:{bus.port}"
        if endpoint in ports:
            raise SiteConfigError(
                source,
                f"uses {endpoint}, already used by bus '{ports[endpoint]}'",
                f"bus '{bus.name}'",
            )
        ports[endpoint] = bus.name
    by_name = {b.name: b for b in buses}
    devices = [
        _parse_device(source, base_dir, raw, i, by_name) for i, raw in enumerate(raw_devices)
    ]
    _unique(source, "device", [d.name for d in devices])
    addresses: dict[tuple[str, int], str] = {}
    for dev in devices:
        key = (dev.bus, dev.unit_id)
        if key in addresses:
            raise SiteConfigError(
                source,
                f"unit id {dev.unit_id} on bus '{dev.bus}' is already taken by device "
                f"'{addresses[key]}'",
                f"device '{dev.name}'",
            )
        addresses[key] = dev.name
    return SiteConfig(
        source=source,
        site_id=site.text("id", "site"),
        name=site.text("name", site.text("id", "site")),
        buses=tuple(buses),
        devices=tuple(devices),
    )


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site file.

    Raises:
        SiteConfigError: when the file is missing, is not TOML, or is invalid.
    """
    path = Path(path)
    data = read_toml(path, "site file", SiteConfigError)
    return parse_site(data, str(path), path.parent)
