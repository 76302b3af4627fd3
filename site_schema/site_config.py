"""The site file: which buses a gateway has and which devices sit on them.

Validated completely at load time; an error names the file, the bus or device, and the
problem, so a technician can fix the file at the site. Never opens a port. It is given
the document: the gateway reads its local file (``edge_agent.site_file``), the fleet
gives the text it is about to sign (``parse_site_text``); the only files read here are
shipped profiles and rule tables, and those a local file names beside it. A pushed
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
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from drivers.bus_config import BusConfig, SerialBusConfig, TcpBusConfig
from drivers.device_config import DeviceConfig
from drivers.profiles import ProfileError, builtin_profiles, resolve_profile
from drivers.toml_schema import TomlTable, table_problem
from protocol import (
    ACK_TIMEOUT_S,
    HEALTH_INTERVAL_S,
    MAX_EVENT_ROWS,
    MAX_INFLIGHT_BATCHES,
    MAX_READING_ROWS,
)
from protocol.levels import LEVEL_NAMES
from site_schema.actuation_spec import ActuationSpec
from site_schema.rule_includes import IncludedRules, check_clashes, expand_includes
from site_schema.rule_sampling import check_sample_counts, poll_intervals
from site_schema.rule_specs import ChannelInfo, RuleSpec
from site_schema.rules import RuleError, parse_rules
from site_schema.siren_node import SETTINGS, SirenNodeSpec
from site_schema.site_actuation import parse_actuation
from site_schema.site_errors import SiteConfigError
from site_schema.sl651_uplink_config import Sl651UplinkSpec, parse_sl651_uplink
from site_schema.village_call_config import VillageCallSpec, parse_village_call

#: Serial ports a pushed configuration may open: tty devices (ttyS0, ttyUSB0, ttyAMA0,
#: ttyACM0 ...), the Raspberry Pi's serialN aliases and udev's stable links. Consoles
#: (/dev/tty, /dev/ttyN), disks and ordinary files are out of reach.
SERIAL_PORT = re.compile(r"/dev/(tty[A-Za-z]+[0-9]+|serial[0-9]+|serial/by-(id|path)/[^/]+)")

Name = Annotated[str, Field(min_length=1)]


class SiteTable(TomlTable):
    """``[site]``."""

    id: Name
    name: Name | None = None
    description: str = ""
    lat: float | None = Field(None, ge=-90.0, le=90.0)
    lon: float | None = Field(None, ge=-180.0, le=180.0)


class SerialBusTable(TomlTable):
    """``[[bus]]`` with ``kind = "serial"``."""

    name: Name
    kind: Literal["serial"]
    device: Name
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = Field(1, ge=1, le=2)
    bytesize: int = Field(8, ge=7, le=8)


class TcpBusTable(TomlTable):
    """``[[bus]]`` with ``kind = "tcp"``."""

    name: Name
    kind: Literal["tcp"]
    host: Name
    port: int = Field(502, ge=1, le=65535)


_BUS_KINDS: dict[str, type[SerialBusTable | TcpBusTable]] = {
    "serial": SerialBusTable,
    "tcp": TcpBusTable,
}
_BUS_TABLE: TypeAdapter[SerialBusTable | TcpBusTable] = TypeAdapter(
    Annotated[SerialBusTable | TcpBusTable, Field(discriminator="kind")]
)


class DeviceTable(TomlTable):
    """``[[device]]``; unset ``unit_id`` and ``timeout_s`` come from the profile."""

    name: Name
    bus: Name
    profile: Name
    unit_id: int | None = Field(None, ge=1, le=247)
    poll_interval_s: float = Field(10.0, gt=0.0, le=86400.0)
    timeout_s: float | None = Field(None, gt=0.0, le=30.0)
    retries: int = Field(1, ge=0, le=5)
    backoff_max_s: float = Field(60.0, gt=0.0, le=86400.0)
    channels: list[Name] | None = Field(None, min_length=1)


class SirenNodeTable(TomlTable):
    """``[[siren_node]]``."""

    device: Name
    heartbeat_timeout_s: float = Field(120.0, gt=9.0, le=3600.0)
    fallback_rain_mm: float = Field(30.0, gt=0.0, le=6553.5)
    fallback_window_s: float = Field(3600.0, gt=59.0, le=43200.0)
    mm_per_tip: float = Field(0.2, gt=0.0, le=6.5535)
    fallback_level: Literal["blue", "yellow", "orange", "red"] = "red"


T = TypeVar("T", bound=TomlTable)


def _table(source: str, item: str, model: type[T], raw: Any) -> T:
    """``raw`` validated as ``model``; a problem is raised naming the file and the item."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, model), item) from None


class SiteFile(TomlTable):
    """The top level of a site file: which tables it may have.

    Each is checked by its own model (or rule kind) after, so a problem names its table.
    """

    site: Any = None
    bus: Any = None
    device: Any = None
    agent: Any = None
    actuator: Any = None
    player: Any = None
    actions: Any = None
    rule: Any = None
    siren_node: Any = None
    uplink: Any = None
    village_call: Any = None
    sl651_uplink: Any = None
    include: Any = None


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


#: The defaults a site file's [agent] and [uplink] start from.
_AGENT = AgentSettings()
_UPLINK = UplinkSettings()


class AgentTable(TomlTable):
    """``[agent]``."""

    quota_mb: float = Field(_AGENT.quota_bytes / 2**20, gt=1.0, le=1_000_000.0)
    reassert_s: float = Field(_AGENT.reassert_s, gt=0.0, le=3600.0)
    self_test_every_s: float = Field(_AGENT.self_test_every_s, gt=0.0, le=30 * 86400.0)
    test_duration_s: float = Field(_AGENT.test_duration_s, gt=0.0, le=600.0)


class UplinkTable(TomlTable):
    """``[uplink]``."""

    batch_rows: int = Field(_UPLINK.batch_rows, ge=1, le=MAX_READING_ROWS)
    event_batch_rows: int = Field(_UPLINK.event_batch_rows, ge=1, le=MAX_EVENT_ROWS)
    max_inflight: int = Field(_UPLINK.max_inflight, ge=1, le=64)
    ack_timeout_s: float = Field(_UPLINK.ack_timeout_s, gt=0.0, le=3600.0)
    health_interval_s: float = Field(_UPLINK.health_interval_s, gt=0.0, le=86400.0)
    reconnect_min_s: float = Field(_UPLINK.reconnect_min_s, gt=0.0, le=3600.0)
    reconnect_max_s: float = Field(_UPLINK.reconnect_max_s, gt=0.0, le=86400.0)


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
    village_call: VillageCallSpec | None = None
    sl651_uplink: Sl651UplinkSpec | None = None
    lat: float | None = None
    lon: float | None = None


def serial_port_allowed(device: str, pushed: bool) -> bool:
    """Whether a site file may open ``device``: any path locally, serial ports if pushed."""
    return not pushed or (
        os.path.normpath(device) == device and bool(SERIAL_PORT.fullmatch(device))
    )


def _parse_bus(source: str, raw: Any, index: int, pushed: bool) -> BusConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SiteConfigError(source, "needs a table with a 'name'", f"[[bus]] #{index + 1}")
    item = f"bus '{raw['name']}'"
    try:
        table = _BUS_TABLE.validate_python(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, _BUS_KINDS), item) from None
    if isinstance(table, TcpBusTable):
        return TcpBusConfig(name=table.name, host=table.host, port=table.port)
    device = table.device
    if not serial_port_allowed(device, pushed):
        raise SiteConfigError(
            source,
            f"device {device!r}: a pushed configuration may open serial ports only "
            "(/dev/ttyS0, /dev/ttyUSB0 and the like, /dev/serialN, /dev/serial/by-id/...)",
            item,
        )
    return SerialBusConfig(
        name=table.name,
        device=device,
        baudrate=table.baudrate,
        parity=table.parity,
        stopbits=table.stopbits,
        bytesize=table.bytesize,
    )


def _parse_device(
    source: str,
    base_dir: Path | None,
    raw: Any,
    index: int,
    buses: Mapping[str, BusConfig],
) -> DeviceConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise SiteConfigError(source, "needs a table with a 'name'", f"[[device]] #{index + 1}")
    item = f"device '{raw['name']}'"
    table = _table(source, item, DeviceTable, raw)

    def fail(problem: str) -> SiteConfigError:
        return SiteConfigError(source, problem, item)

    if table.bus not in buses:
        raise fail(f"unknown bus '{table.bus}' (buses: {', '.join(buses) or 'none'})")
    ref = table.profile
    if base_dir is None and ref not in builtin_profiles():
        # A path would be a file on the gateway, which a pushed configuration may not read.
        raise fail(
            f"profile {ref!r}: a pushed configuration may use shipped profiles only "
            f"({', '.join(sorted(builtin_profiles()))})"
        )
    try:
        profile = resolve_profile(ref, base_dir)
    except ProfileError as exc:
        raise fail(f"profile problem: {exc}") from None
    poll = table.poll_interval_s
    timeout = profile.timeout_s if table.timeout_s is None else table.timeout_s
    if timeout * (table.retries + 1) > poll:
        raise fail(
            f"timeout_s {timeout} x {table.retries + 1} attempts exceeds poll_interval_s "
            f"{poll}: a silent device would overrun its own schedule"
        )
    if table.channels is not None:
        known = {c.name for c in profile.channels}
        if missing := [c for c in table.channels if c not in known]:
            raise fail(
                f"profile '{profile.name}' has no channel(s) {', '.join(missing)} "
                f"(channels: {', '.join(sorted(known))})"
            )
        if write_only := [c for c in table.channels if not profile.channel(c).readable]:
            raise fail(
                f"channel(s) {', '.join(write_only)} of profile '{profile.name}' are write-only "
                "(readable = false: the device answers a read with an exception), so they "
                "cannot be polled"
            )
    return DeviceConfig(
        name=table.name,
        bus=table.bus,
        profile=profile,
        unit_id=profile.default_unit_id if table.unit_id is None else table.unit_id,
        poll_interval_s=poll,
        timeout_s=timeout,
        retries=table.retries,
        backoff_max_s=table.backoff_max_s,
        channels=None if table.channels is None else tuple(table.channels),
    )


def _unique(source: str, kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SiteConfigError(source, f"duplicate {kind} name", f"{kind} '{name}'")
        seen.add(name)


def parse_site(
    data: Mapping[str, Any], source: str, base_dir: Path | None, text: str | None = None
) -> SiteConfig:
    """Validate an already-parsed site document.

    ``base_dir`` is the directory of a local site file, where its profile and rule-file
    paths start; None for a pushed configuration, which may name shipped profiles and rule
    tables, serial ports under /dev and its player by name only. ``text``, the document
    as written, lets an error about an ``[[include]]`` name its line.

    Raises:
        SiteConfigError: naming ``source``, the bus or device, and the problem.
    """
    raw_site = data.get("site")
    if (
        not isinstance(raw_site, dict)
        or not raw_site.get("id")
        or not isinstance(raw_site["id"], str)
    ):
        # No default: the fleet, the uplink and the alarm history know a site by its id,
        # and two gateways that both fell back to one would be confused for each other.
        raise SiteConfigError(source, "a [site] table with a non-empty string 'id' is required")
    try:
        SiteFile.model_validate(data)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, SiteFile, "the top level")) from None
    site = _table(source, "[site]", SiteTable, raw_site)
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
        site_id=site.id,
        name=site.name or site.id,
        lat=site.lat,
        lon=site.lon,
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
        rules=_checked_rules(
            source,
            data.get("rule", []),
            devices,
            expand_includes(source, data.get("include"), base_dir, text),
        ),
        siren_nodes=tuple(
            _parse_siren_node(source, raw, i, by_device)
            for i, raw in enumerate(data.get("siren_node", []))
        ),
        uplink=_parse_uplink(source, data.get("uplink", {})),
        village_call=_parse_village_call(
            source, data.get("village_call"), by_device, buses, pushed=base_dir is None
        ),
        sl651_uplink=parse_sl651_uplink(source, data.get("sl651_uplink"), by_device),
    )


def _parse_village_call(
    source: str,
    raw: Any,
    devices: Mapping[str, DeviceConfig],
    buses: Sequence[BusConfig],
    *,
    pushed: bool,
) -> VillageCallSpec | None:
    spec = parse_village_call(source, raw, devices, lambda port: serial_port_allowed(port, pushed))
    for bus in buses:
        if spec is not None and isinstance(bus, SerialBusConfig) and bus.device == spec.modem:
            problem = f"modem {spec.modem!r} is the port of bus '{bus.name}'"
            raise SiteConfigError(source, problem, "[village_call]")
    return spec


_NODE_CHANNELS = ("heartbeat", "fallback_active", "heartbeat_silent", "siren", *SETTINGS)


def _parse_siren_node(
    source: str, raw: Any, index: int, devices: Mapping[str, DeviceConfig]
) -> SirenNodeSpec:
    item = f"[[siren_node]] #{index + 1}"
    table = _table(source, item, SirenNodeTable, raw)
    device = devices.get(table.device)
    if device is None:
        problem = f"unknown device {table.device!r} (devices: {', '.join(devices)})"
        raise SiteConfigError(source, problem, item)
    names = {c.name for c in device.profile.channels}
    if missing := [c for c in _NODE_CHANNELS if c not in names]:
        problem = f"device '{device.name}' is not a siren node: no channel(s) {', '.join(missing)}"
        raise SiteConfigError(source, problem, item)
    timeout = table.heartbeat_timeout_s
    if timeout < 3 * device.poll_interval_s:
        raise SiteConfigError(
            source,
            f"heartbeat_timeout_s {timeout} is under 3 poll intervals of '{device.name}' "
            f"({device.poll_interval_s} s): one slow poll would start the node's fallback",
            item,
        )
    return SirenNodeSpec(
        device=device,
        heartbeat_timeout_s=timeout,
        fallback_rain_mm=table.fallback_rain_mm,
        fallback_window_s=table.fallback_window_s,
        mm_per_tip=table.mm_per_tip,
        fallback_level=LEVEL_NAMES.index(table.fallback_level),
    )


def _parse_agent(source: str, raw: Any) -> AgentSettings:
    table = _table(source, "[agent]", AgentTable, raw)
    return AgentSettings(
        quota_bytes=int(table.quota_mb * 1024 * 1024),
        reassert_s=table.reassert_s,
        self_test_every_s=table.self_test_every_s,
        test_duration_s=table.test_duration_s,
    )


def _parse_uplink(source: str, raw: Any) -> UplinkSettings:
    table = _table(source, "[uplink]", UplinkTable, raw)
    if table.reconnect_max_s < table.reconnect_min_s:
        raise SiteConfigError(
            source,
            f"'reconnect_max_s' = {table.reconnect_max_s} is below 'reconnect_min_s' = "
            f"{table.reconnect_min_s}",
            "[uplink]",
        )
    return UplinkSettings(**table.model_dump())


def channel_infos(devices: Sequence[DeviceConfig]) -> dict[str, ChannelInfo]:
    """What the alarm rules may know of each polled channel, by site channel id.

    Integer counters get their wrap-around modulus (2^bits x scale), so a rain counter
    that wraps is not mistaken for a reset.
    """
    infos: dict[str, ChannelInfo] = {}
    for device in devices:
        for name in device.polled_channels():
            ch = device.profile.channel(name)
            modulus = None
            if ch.dtype in ("uint16", "uint32") and ch.quantity in ("rain_total", "rain_tips"):
                modulus = float(2 ** (16 * ch.width)) * ch.scale
            infos[device.channel_id(name)] = ChannelInfo(ch.quantity, ch.unit, modulus)
    return infos


def _parse_rules(
    source: str, raw: Any, devices: Sequence[DeviceConfig], included: list[IncludedRules]
) -> tuple[RuleSpec, ...]:
    if not isinstance(raw, list):
        raise SiteConfigError(source, "[[rule]] must be an array of tables")
    origin = check_clashes(source, raw, included)
    every = [*raw, *(rule for block in included for rule in block.rules)]
    try:
        return parse_rules(every, source, channel_infos(devices))
    except RuleError as exc:
        rule_id = exc.rule.removeprefix("rule '").removesuffix("'")
        if rule_id in origin:
            # A rule of an included file: name the include it came from.
            raise SiteConfigError(source, exc.problem, f"{origin[rule_id]}: {exc.rule}") from None
        # RuleError already reads "FILE: rule 'id': problem"; keep it whole.
        raise SiteConfigError(source, str(exc).removeprefix(f"{source}: ")) from None


def _checked_rules(
    source: str, raw: Any, devices: Sequence[DeviceConfig], included: list[IncludedRules]
) -> tuple[RuleSpec, ...]:
    rules = _parse_rules(source, raw, devices, included)
    check_sample_counts(source, rules, poll_intervals(devices))
    return rules


def parse_site_text(text: Any, source: str) -> SiteConfig:
    """Validate a pushed configuration's text: as ``load_site`` does, with no local files.

    (``load_site``, which reads a gateway's own site file, is ``edge_agent.site_file``.)

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
    return parse_site(raw, source, None, text)
