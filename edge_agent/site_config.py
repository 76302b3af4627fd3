"""The site file: which buses a gateway has and which devices sit on them.

Validated completely at load time; an error names the file, the bus or device, and the
problem, so a technician can fix the file at the site. Never opens a port. A pushed
configuration (from the fleet) is held to more: it may name shipped profiles only and
serial ports under /dev only, so it can never make the gateway read or write other files.
"""

from __future__ import annotations

import os.path
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.bus import BusConfig, SerialBusConfig, TcpBusConfig
from drivers.poller import DeviceConfig
from drivers.profiles import ProfileError, builtin_profiles, resolve_profile
from drivers.tomlfile import read_toml
from edge_agent.actuation import LEVEL_NAMES, ActuationSpec
from edge_agent.alarms import ChannelInfo, RuleError, RuleSpec, parse_rules
from edge_agent.rule_sampling import check_sample_counts
from edge_agent.siren_node_link import SETTINGS, SirenNodeSpec
from edge_agent.site_actuation import parse_actuation
from edge_agent.site_errors import SiteConfigError
from protocol import (
    ACK_TIMEOUT_S,
    HEALTH_INTERVAL_S,
    MAX_EVENT_ROWS,
    MAX_INFLIGHT_BATCHES,
    MAX_READING_ROWS,
)

_SITE_KEYS = {"id", "name", "description"}
#: Serial ports a pushed configuration may open: tty devices (ttyS0, ttyUSB0, ttyAMA0,
#: ttyACM0 ...), the Raspberry Pi's serialN aliases and udev's stable links. Consoles
#: (/dev/tty, /dev/ttyN), disks and ordinary files are out of reach.
SERIAL_PORT = re.compile(r"/dev/(tty[A-Za-z]+[0-9]+|serial[0-9]+|serial/by-(id|path)/[^/]+)")
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


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """How the daemon runs: store quota and actuation timing."""

    quota_bytes: int = 512 * 1024 * 1024
    reassert_s: float = 10.0
    self_test_every_s: float = 86400.0
    test_duration_s: float = 5.0


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """How the uplink talks to the fleet once the gateway is enrolled; times in real seconds."""

    batch_rows: int = 500
    event_batch_rows: int = 100
    max_inflight: int = MAX_INFLIGHT_BATCHES
    ack_timeout_s: float = ACK_TIMEOUT_S
    health_interval_s: float = HEALTH_INTERVAL_S
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """A validated site file."""

    source: str
    site_id: str
    name: str
    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]
    agent: AgentSettings = field(default_factory=AgentSettings)
    actuation: ActuationSpec = field(default_factory=ActuationSpec)
    rules: tuple[RuleSpec, ...] = ()
    siren_nodes: tuple[SirenNodeSpec, ...] = ()
    uplink: UplinkSettings = field(default_factory=UplinkSettings)


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


def _parse_bus(source: str, raw: Any, index: int, pushed: bool) -> BusConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SiteConfigError(source, "needs a table with a 'name'", f"[[bus]] #{index + 1}")
    item = f"bus '{raw['name']}'"
    kind = raw.get("kind")
    if kind == "serial":
        r = _Reader(source, item, raw, _SERIAL_KEYS)
        parity = raw.get("parity", "N")
        if parity not in ("N", "E", "O"):
            r.fail(f"parity must be N, E or O, got {parity!r}")
        device = r.text("device")
        if pushed and (os.path.normpath(device) != device or not SERIAL_PORT.fullmatch(device)):
            r.fail(
                f"device {device!r}: a pushed configuration may open serial ports only "
                "(/dev/ttyS0, /dev/ttyUSB0 and the like, /dev/serialN, /dev/serial/by-id/...)"
            )
        return SerialBusConfig(
            name=raw["name"],
            device=device,
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
    source: str,
    base_dir: Path | None,
    raw: Any,
    index: int,
    buses: Mapping[str, BusConfig],
) -> DeviceConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SiteConfigError(source, "needs a table with a 'name'", f"[[device]] #{index + 1}")
    name = raw["name"]
    r = _Reader(source, f"device '{name}'", raw, _DEVICE_KEYS)
    bus = r.text("bus")
    if bus not in buses:
        r.fail(f"unknown bus '{bus}' (buses: {', '.join(buses) or 'none'})")
    ref = r.text("profile")
    if base_dir is None and ref not in builtin_profiles():
        # A path would be a file on the gateway, which a pushed configuration may not read.
        r.fail(
            f"profile {ref!r}: a pushed configuration may use shipped profiles only "
            f"({', '.join(sorted(builtin_profiles()))})"
        )
    try:
        profile = resolve_profile(ref, base_dir)
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


def parse_site(data: Mapping[str, Any], source: str, base_dir: Path | None) -> SiteConfig:
    """Validate an already-parsed site document.

    ``base_dir`` is the directory of a local site file, where its profile paths start;
    None for a pushed configuration, which may name shipped profiles, serial ports under
    /dev and its player by name only.

    Raises:
        SiteConfigError: naming ``source``, the bus or device, and the problem.
    """
    allowed_top = {
        "site", "bus", "device", "agent", "actuator", "player", "actions", "rule", "siren_node",
        "uplink",
    }  # fmt: skip
    raw_site = data.get("site")
    if (
        not isinstance(raw_site, dict)
        or not raw_site.get("id")
        or not isinstance(raw_site["id"], str)
    ):
        # No default: the fleet, the uplink and the alarm history know a site by its id,
        # and two gateways that both fell back to one would be confused for each other.
        raise SiteConfigError(source, "a [site] table with a non-empty string 'id' is required")
    if unknown := sorted(set(data) - allowed_top):
        raise SiteConfigError(source, f"unknown section(s): {', '.join(unknown)}")
    site = _Reader(source, "[site]", raw_site, _SITE_KEYS)
    raw_buses = data.get("bus", [])
    raw_devices = data.get("device", [])
    if not isinstance(raw_buses, list) or not raw_buses:
        raise SiteConfigError(source, "a site needs at least one [[bus]]")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise SiteConfigError(source, "a site needs at least one [[device]]")
    buses = [_parse_bus(source, raw, i, base_dir is None) for i, raw in enumerate(raw_buses)]
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
    agent = _parse_agent(source, data.get("agent", {}))
    by_device = {d.name: d for d in devices}
    return SiteConfig(
        source=source,
        site_id=site.text("id"),
        name=site.text("name", site.text("id")),
        buses=tuple(buses),
        devices=tuple(devices),
        agent=agent,
        actuation=parse_actuation(
            source,
            data,
            by_device,
            agent.reassert_s,
            agent.test_duration_s,
            pushed=base_dir is None,
        ),
        rules=_checked_rules(source, data.get("rule", []), devices),
        siren_nodes=tuple(
            _parse_siren_node(source, raw, i, by_device)
            for i, raw in enumerate(data.get("siren_node", []))
        ),
        uplink=_parse_uplink(source, data.get("uplink", {})),
    )


_NODE_KEYS = {
    "device", "heartbeat_timeout_s", "fallback_rain_mm", "fallback_window_s", "mm_per_tip",
    "fallback_level",
}  # fmt: skip
_NODE_CHANNELS = ("heartbeat", "fallback_active", "heartbeat_silent", "siren", *SETTINGS)


def _parse_siren_node(
    source: str, raw: Any, index: int, devices: Mapping[str, DeviceConfig]
) -> SirenNodeSpec:
    item = f"[[siren_node]] #{index + 1}"
    if not isinstance(raw, dict):
        raise SiteConfigError(source, "must be a table", item)
    r = _Reader(source, item, raw, _NODE_KEYS)
    device = devices.get(r.text("device"))
    if device is None:
        r.fail(f"unknown device {raw['device']!r} (devices: {', '.join(devices)})")
        raise AssertionError  # unreachable: fail() raises
    names = {c.name for c in device.profile.channels}
    if missing := [c for c in _NODE_CHANNELS if c not in names]:
        r.fail(f"device '{device.name}' is not a siren node: no channel(s) {', '.join(missing)}")
    timeout = r.number("heartbeat_timeout_s", 120.0, 9.0, 3600.0)
    if timeout < 3 * device.poll_interval_s:
        r.fail(
            f"heartbeat_timeout_s {timeout} is under 3 poll intervals of '{device.name}' "
            f"({device.poll_interval_s} s): one slow poll would start the node's fallback"
        )
    level = raw.get("fallback_level", "red")
    if level not in LEVEL_NAMES[1:]:
        r.fail(f"fallback_level must be one of {', '.join(LEVEL_NAMES[1:])}, got {level!r}")
    return SirenNodeSpec(
        device=device,
        heartbeat_timeout_s=timeout,
        fallback_rain_mm=r.number("fallback_rain_mm", 30.0, 0.0, 6553.5),
        fallback_window_s=r.number("fallback_window_s", 3600.0, 59.0, 43200.0),
        mm_per_tip=r.number("mm_per_tip", 0.2, 0.0, 6.5535),
        fallback_level=LEVEL_NAMES.index(level),
    )


def _parse_agent(source: str, raw: Any) -> AgentSettings:
    if not isinstance(raw, dict):
        raise SiteConfigError(source, "[agent] must be a table")
    r = _Reader(
        source, "[agent]", raw, {"quota_mb", "reassert_s", "self_test_every_s", "test_duration_s"}
    )
    return AgentSettings(
        quota_bytes=int(r.number("quota_mb", 512, 1.0, 1_000_000) * 1024 * 1024),
        reassert_s=r.number("reassert_s", 10.0, 0.0, 3600.0),
        self_test_every_s=r.number("self_test_every_s", 86400.0, 0.0, 30 * 86400.0),
        test_duration_s=r.number("test_duration_s", 5.0, 0.0, 600.0),
    )


def _parse_uplink(source: str, raw: Any) -> UplinkSettings:
    if not isinstance(raw, dict):
        raise SiteConfigError(source, "[uplink] must be a table")
    r = _Reader(source, "[uplink]", raw, set(UplinkSettings.__dataclass_fields__))
    defaults = UplinkSettings()
    low = r.number("reconnect_min_s", defaults.reconnect_min_s, 0.0, 3600.0)
    high = r.number("reconnect_max_s", defaults.reconnect_max_s, 0.0, 86400.0)
    if high < low:
        r.fail(f"'reconnect_max_s' = {high} is below 'reconnect_min_s' = {low}")
    return UplinkSettings(
        batch_rows=r.integer("batch_rows", defaults.batch_rows, 1, MAX_READING_ROWS),
        event_batch_rows=r.integer(
            "event_batch_rows", defaults.event_batch_rows, 1, MAX_EVENT_ROWS
        ),
        max_inflight=r.integer("max_inflight", defaults.max_inflight, 1, 64),
        ack_timeout_s=r.number("ack_timeout_s", defaults.ack_timeout_s, 0.0, 3600.0),
        health_interval_s=r.number("health_interval_s", defaults.health_interval_s, 0.0, 86400.0),
        reconnect_min_s=low,
        reconnect_max_s=high,
    )


def channel_infos(devices: Sequence[DeviceConfig]) -> dict[str, ChannelInfo]:
    """What the alarm rules may know of each polled channel, by site channel id.

    Integer counters get their wrap-around modulus (2^bits x scale), so a rain counter
    that wraps is not mistaken for a reset.
    """
    infos: dict[str, ChannelInfo] = {}
    for device in devices:
        names = device.channels or tuple(c.name for c in device.profile.channels)
        for name in names:
            ch = device.profile.channel(name)
            modulus = None
            if ch.dtype in ("uint16", "uint32") and ch.quantity in ("rain_total", "rain_tips"):
                modulus = float(2 ** (16 * ch.width)) * ch.scale
            infos[device.channel_id(name)] = ChannelInfo(ch.quantity, ch.unit, modulus)
    return infos


def _parse_rules(source: str, raw: Any, devices: Sequence[DeviceConfig]) -> tuple[RuleSpec, ...]:
    if not isinstance(raw, list):
        raise SiteConfigError(source, "[[rule]] must be an array of tables")
    try:
        return parse_rules(raw, source, channel_infos(devices))
    except RuleError as exc:
        # RuleError already reads "FILE: rule 'id': problem"; keep it whole.
        raise SiteConfigError(source, str(exc).removeprefix(f"{source}: ")) from None


def _checked_rules(source: str, raw: Any, devices: Sequence[DeviceConfig]) -> tuple[RuleSpec, ...]:
    rules = _parse_rules(source, raw, devices)
    polls = {
        device.channel_id(name): device.poll_interval_s
        for device in devices
        for name in (device.channels or tuple(c.name for c in device.profile.channels))
    }
    check_sample_counts(source, rules, polls)
    return rules


def absent_serial_ports(site: SiteConfig) -> list[str]:
    """One message per serial bus whose device file does not exist on this machine.

    Checked where the file is used, never where it is parsed: the fleet validates a
    configuration for a gateway whose ports it cannot see. Looks the path up only; never
    opens it.
    """
    return [
        f"{site.source}: bus '{bus.name}': serial device {bus.device} does not exist"
        for bus in site.buses
        if isinstance(bus, SerialBusConfig) and not os.path.exists(bus.device)
    ]


def parse_site_text(text: Any, source: str) -> SiteConfig:
    """Validate a pushed configuration's text: as ``load_site`` does, with no local files.

    The gateway runs this on every configuration it receives and the fleet on every one
    before it signs it, so both refuse the same files with the same message.

    Raises:
        SiteConfigError: when the text is missing, is not TOML, or is invalid.
    """
    if not isinstance(text, str):
        raise SiteConfigError(source, "payload has no 'site_toml' text")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(source, f"not valid TOML: {exc}") from None
    return parse_site(raw, source, None)


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site file.

    Raises:
        SiteConfigError: when the file is missing, is not TOML, or is invalid.
    """
    path = Path(path)
    data = read_toml(path, "site file", SiteConfigError)
    return parse_site(data, str(path), path.parent)
