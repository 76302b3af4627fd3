"""Station files: a simulated site (scenarios, links, devices, faults) described in TOML.

Everything is validated when the file is loaded, with messages of the form
``FILE: device 'name': problem``; building a loaded station never fails on input. Times in
a station file are seconds after the simulation origin, so one file replays any date.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from drivers.clock import Clock
from drivers.profiles import DeviceProfile, ProfileError, resolve_profile
from drivers.toml_schema import TomlTable, table_problem
from drivers.tomlfile import read_toml
from hardware_sim.device import SimulatedDevice, fits
from hardware_sim.faults import DeviceFaults
from hardware_sim.scenarios import (
    CreekLevel,
    CreepingSlope,
    DesignStorm,
    ExtensometerProjection,
    GnssProjection,
    InclinometerProjection,
    gaussian_noise,
)

BUILTIN_DIR = Path(__file__).parent / "stations"


class StationError(ProfileError):
    """A station file is invalid; the message names the file, the device and the problem."""

    def __init__(self, source: str | Path, problem: str, device: str | None = None) -> None:
        super().__init__(source, f"device '{device}': {problem}" if device else problem)
        self.problem = problem
        self.device = device


@dataclass(frozen=True, slots=True)
class ElapsedTime:
    """The ``clock`` pseudo-scenario: seconds since the simulation origin."""

    origin: float

    def elapsed_s(self, t: float) -> float:
        """Seconds of simulated time since the origin."""
        return t - self.origin


_NEEDS = {"creek": "storm", "gnss": "slope", "extensometer": "slope", "inclinometer": "slope"}
#: Scenario methods a channel may be bound to, by scenario name.
SIGNAL_SOURCES: dict[str, tuple[str, ...]] = {
    "clock": ("elapsed_s",),
    "storm": ("cumulative_mm", "intensity_mm_h", "window_sum_mm"),
    "creek": ("level_m", "storage_mm", "rate_of_rise_m_per_h"),
    "slope": ("displacement_mm", "measured_displacement_mm", "velocity_mm_s"),
    "gnss": ("east_mm", "north_mm", "up_mm"),
    "extensometer": ("extension_mm",),
    "inclinometer": ("tilt_x_deg", "tilt_y_deg"),
}


def build_scenarios(
    params: Mapping[str, Mapping[str, float]], origin: float, seed: int
) -> dict[str, object]:
    """Build scenario objects from validated parameters, times counted from ``origin``.

    Raises:
        ValueError: when the scenarios reject a parameter.
    """
    built: dict[str, object] = {"clock": ElapsedTime(origin)}
    if (p := params.get("storm")) is not None:
        built["storm"] = storm = DesignStorm(
            origin + p["start_s"],
            p["duration_s"],
            p["peak_mm_h"],
            peak_position=p["peak_position"],
            step_s=p["step_s"],
            variability=p["variability"],
            seed=seed,
        )
        if (c := params.get("creek")) is not None:
            built["creek"] = CreekLevel(
                storm,
                c["base_level_m"],
                c["catchment_gain_m_per_mm"],
                c["recession_s"],
                lag_s=c["lag_s"],
            )
    if (p := params.get("slope")) is not None:
        built["slope"] = slope = CreepingSlope.from_creep_rate(
            origin + p["failure_s"],
            origin + p["onset_s"],
            p["creep_mm_per_day"],
            origin + p["creep_start_s"],
            initial_displacement_mm=p["initial_displacement_mm"],
            noise_mm=p["noise_mm"],
            seed=seed,
        )
        if (g := params.get("gnss")) is not None:
            built["gnss"] = GnssProjection(slope, g["azimuth_deg"], g["dip_deg"])
        if (e := params.get("extensometer")) is not None:
            built["extensometer"] = ExtensometerProjection(slope, e["gain"])
        if (i := params.get("inclinometer")) is not None:
            built["inclinometer"] = InclinometerProjection(
                slope, i["mm_per_deg_x"], i["mm_per_deg_y"]
            )
    return built


@dataclass(frozen=True, slots=True)
class SignalBinding:
    """A channel driven by ``scale * scenario.method(t, *args) + offset`` plus sensor noise.

    ``noise`` is the standard deviation, in the scenario signal's units (before ``scale``),
    of the measurement noise every real transmitter shows; without it a level at rest would
    read perfectly constant. Channels of one device bound to the same source see the same
    noise, so derived channels (air gap = height - level) stay consistent.
    """

    source: str
    scale: float = 1.0
    offset: float = 0.0
    args: tuple[float, ...] = ()
    noise: float = 0.0

    def bind(self, scenarios: Mapping[str, object], seed: int = 0) -> Callable[[float], float]:
        """Return the signal as a function of simulated time; ``seed`` fixes the noise."""
        name, method = self.source.split(".")
        function: Callable[..., float] = getattr(scenarios[name], method)
        scale, offset, args, noise = self.scale, self.offset, self.args, self.noise

        def signal(t: float) -> float:
            value = function(t, *args)
            if noise:
                value += noise * gaussian_noise(seed, t)
            return scale * value + offset

        return signal


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Where a group of devices is reached: a TCP port, or the agent end of a pty pair."""

    name: str
    kind: Literal["tcp", "pty"]
    port: int = 0
    path: Path | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Faults a device starts with; outage windows are in seconds after the origin."""

    dead: bool = False
    exception_code: int | None = None
    corrupt_crc: bool = False
    stuck: bool = False
    spike_probability: float = 0.0
    spike_magnitude: float = 0.0
    outages: tuple[tuple[float, float], ...] = ()

    def build(self, origin: float, seed: int) -> DeviceFaults:
        """Return live faults with the outage windows placed on the simulated time axis.

        Raises:
            TypeError, ValueError: when a field is not a valid fault setting.
        """
        return DeviceFaults(
            dead=self.dead,
            exception_code=self.exception_code,
            corrupt_crc=self.corrupt_crc,
            stuck=self.stuck,
            spike_probability=self.spike_probability,
            spike_magnitude=self.spike_magnitude,
            outages=[(origin + start, origin + end) for start, end in self.outages],
            seed=seed,
        )


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One simulated device of a station, as the file describes it."""

    name: str
    link: str
    profile: DeviceProfile
    unit_id: int
    signals: Mapping[str, SignalBinding]
    values: Mapping[str, float]
    faults: FaultSpec


@dataclass(frozen=True, slots=True)
class StationSpec:
    """A validated station file; ``build`` turns it into live simulated devices."""

    name: str
    source: str
    seed: int
    description: str
    scenarios: Mapping[str, Mapping[str, float]]
    links: tuple[LinkSpec, ...]
    devices: tuple[DeviceSpec, ...]

    def build(self, clock: Clock, origin: float, seed: int | None = None) -> Station:
        """Create the scenarios and devices, with times counted from ``origin``.

        ``seed`` overrides the file's seed for the scenarios and the spike generators.
        """
        seed = self.seed if seed is None else seed
        scenarios = build_scenarios(self.scenarios, origin, seed)
        devices: dict[str, SimulatedDevice] = {}
        for spec in self.devices:
            # Each device gets its own spike sequence, fixed by the seed and its name.
            device_seed = seed ^ zlib.crc32(spec.name.encode())
            devices[spec.name] = SimulatedDevice(
                spec.profile,
                spec.unit_id,
                clock,
                {
                    channel: b.bind(scenarios, device_seed ^ zlib.crc32(b.source.encode()))
                    for channel, b in spec.signals.items()
                },
                values=spec.values,
                faults=spec.faults.build(origin, device_seed),
                name=spec.name,
            )
        return Station(self, origin, seed, scenarios, devices)


@dataclass
class Station:
    """A running site: its scenarios and its simulated devices by name."""

    spec: StationSpec
    origin: float
    seed: int
    scenarios: dict[str, object]
    devices: dict[str, SimulatedDevice]

    def devices_on(self, link: str) -> list[SimulatedDevice]:
        """Return the devices wired to the link called ``link``."""
        return [self.devices[d.name] for d in self.spec.devices if d.link == link]


Name = Annotated[str, Field(min_length=1)]


class StationTable(TomlTable):
    """``[station]``."""

    name: Name
    seed: int = Field(0, ge=0, le=2**32 - 1)
    description: str = ""


class TcpLinkTable(TomlTable):
    """``[[link]]`` with ``kind = "tcp"``: a Modbus TCP port (0 picks a free one)."""

    name: Name
    kind: Literal["tcp"]
    port: int = Field(ge=0, le=65535)


class PtyLinkTable(TomlTable):
    """``[[link]]`` with ``kind = "pty"``: ``path`` is the agent end of the pty pair."""

    name: Name
    kind: Literal["pty"]
    path: Name
    baudrate: int = Field(9600, ge=300, le=4_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: int = Field(1, ge=1, le=2)
    bytesize: int = Field(8, ge=7, le=8)


_LINK_KINDS: dict[str, type[TcpLinkTable | PtyLinkTable]] = {
    "tcp": TcpLinkTable,
    "pty": PtyLinkTable,
}
_LINK_TABLE: TypeAdapter[TcpLinkTable | PtyLinkTable] = TypeAdapter(
    Annotated[TcpLinkTable | PtyLinkTable, Field(discriminator="kind")]
)


class BindingTable(TomlTable):
    """A channel's signal: ``"scenario.method"``, or this table around it."""

    signal: str
    scale: float = 1.0
    offset: float = 0.0
    args: list[float] = Field(default_factory=list)
    noise: float = Field(0.0, ge=0.0)


class StormTable(TomlTable):
    """``[scenario.storm]``: a design storm, times in seconds after the origin."""

    start_s: float = 0.0
    duration_s: float
    peak_mm_h: float
    peak_position: float = 0.4
    step_s: float = 60.0
    variability: float = 0.2


class CreekTable(TomlTable):
    """``[scenario.creek]``: the creek level the storm drives."""

    base_level_m: float
    catchment_gain_m_per_mm: float
    recession_s: float
    lag_s: float = 0.0


class SlopeTable(TomlTable):
    """``[scenario.slope]``: a creeping slope that fails at ``failure_s``."""

    failure_s: float
    onset_s: float
    creep_mm_per_day: float
    creep_start_s: float = 0.0
    initial_displacement_mm: float = 0.0
    noise_mm: float = 0.0


class GnssTable(TomlTable):
    """``[scenario.gnss]``: the slope's movement seen by a GNSS antenna."""

    azimuth_deg: float
    dip_deg: float


class ExtensometerTable(TomlTable):
    """``[scenario.extensometer]``: the slope's movement seen by a wire extensometer."""

    gain: float = 1.0


class InclinometerTable(TomlTable):
    """``[scenario.inclinometer]``: the slope's movement seen as tilt."""

    mm_per_deg_x: float
    mm_per_deg_y: float


#: The model of each scenario's table, by scenario name.
_SCENARIO_TABLES: dict[str, type[TomlTable]] = {
    "storm": StormTable,
    "creek": CreekTable,
    "slope": SlopeTable,
    "gnss": GnssTable,
    "extensometer": ExtensometerTable,
    "inclinometer": InclinometerTable,
}


class ScenarioTables(TomlTable):
    """``[scenario]``: the scenarios a station runs.

    Each is kept as a plain table here and checked against its own model after, so that a
    problem names its ``[scenario.NAME]`` rather than a dotted key of ``[scenario]``.
    """

    storm: dict[str, Any] | None = None
    creek: dict[str, Any] | None = None
    slope: dict[str, Any] | None = None
    gnss: dict[str, Any] | None = None
    extensometer: dict[str, Any] | None = None
    inclinometer: dict[str, Any] | None = None


class FaultsTable(TomlTable):
    """A device's ``faults``; their values are checked by ``FaultSpec.build`` after."""

    dead: bool = False
    exception_code: int | None = None
    corrupt_crc: bool = False
    stuck: bool = False
    spike_probability: float = 0.0
    spike_magnitude: float = 0.0
    # [start_s, end_s] pairs; TOML has no tuples, and strict models take no list for one.
    outages: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list
    )


class StationFile(TomlTable):
    """The top level of a station file; each table is checked by its own model after."""

    station: dict[str, Any]
    scenario: dict[str, Any] = Field(default_factory=dict)
    link: list[Any] = Field(default_factory=list)
    device: list[Any] = Field(default_factory=list)


class StationDeviceTable(TomlTable):
    """``[[device]]``; signals, values and faults are checked against its profile after."""

    name: Name
    link: str
    profile: str
    unit_id: int | None = Field(None, ge=1, le=247)  # default: the profile's
    signals: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, float] = Field(default_factory=dict)
    faults: dict[str, Any] = Field(default_factory=dict)


def _validated(
    source: str,
    schema: Any,
    raw: Any,
    what: str | None,
    device: str | None = None,
    within: str | None = None,
) -> Any:
    """``raw`` checked against ``schema`` (a model or an adapter); problems name ``what``.

    ``within`` names the table in an unknown-key message when ``what`` is None.
    """
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(raw)
        return schema.model_validate(raw)
    except ValidationError as exc:
        models = _LINK_KINDS if schema is _LINK_TABLE else schema
        problem = table_problem(exc, models, within)
        raise StationError(source, f"{what}: {problem}" if what else problem, device) from None


def _table(source: str, raw: Any, what: str, device: str | None = None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise StationError(source, f"{what} must be a table", device)
    return raw


def _parse_scenarios(source: str, raw: Any) -> dict[str, dict[str, float]]:
    tables: ScenarioTables = _validated(source, ScenarioTables, raw, None, within="[scenario]")
    params: dict[str, dict[str, float]] = {}
    for name, given in tables.model_dump(exclude_none=True).items():
        table = _validated(source, _SCENARIO_TABLES[name], given, f"[scenario.{name}]")
        params[name] = {key: float(value) for key, value in table.model_dump().items()}
    for name, needed in _NEEDS.items():
        if name in params and needed not in params:
            raise StationError(source, f"[scenario.{name}] needs a [scenario.{needed}]")
    try:
        build_scenarios(params, 0.0, 0)
    except ValueError as exc:
        raise StationError(source, f"[scenario]: {exc}") from exc
    return params


def _parse_link(source: str, index: int, raw: Any) -> LinkSpec:
    table = _table(source, raw, f"[[link]] #{index + 1}")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise StationError(source, f"[[link]] #{index + 1} needs a 'name'")
    link = _validated(source, _LINK_TABLE, table, f"link '{name}'")
    if isinstance(link, TcpLinkTable):
        return LinkSpec(name, "tcp", port=link.port)
    return LinkSpec(
        name,
        "pty",
        path=Path(link.path),
        baudrate=link.baudrate,
        parity=link.parity,
        stopbits=link.stopbits,
        bytesize=link.bytesize,
    )


def _parse_binding(
    source: str, device: str, channel: str, raw: Any, scenarios: Mapping[str, object]
) -> SignalBinding:
    what = f"signal for channel '{channel}'"
    if isinstance(raw, str):
        raw = {"signal": raw}
    _table(source, raw, f'{what} (a "scenario.method" string or a table)', device)
    table: BindingTable = _validated(source, BindingTable, raw, what, device)
    ref = table.signal
    name, _, method = ref.partition(".")
    if method not in SIGNAL_SOURCES.get(name, ()):
        known = ", ".join(f"{n}.{m}" for n, methods in SIGNAL_SOURCES.items() for m in methods)
        raise StationError(source, f"{what}: unknown signal {ref!r} (known: {known})", device)
    if name not in scenarios:
        raise StationError(source, f"{what}: '{ref}' needs a [scenario.{name}]", device)
    expected = len(inspect.signature(getattr(scenarios[name], method)).parameters) - 1
    if len(table.args) != expected:
        raise StationError(
            source,
            f"{what}: '{ref}' takes {expected} argument(s) after the time, got {len(table.args)}",
            device,
        )
    return SignalBinding(
        ref, scale=table.scale, offset=table.offset, args=tuple(table.args), noise=table.noise
    )


def _parse_device(
    source: str,
    index: int,
    raw: Any,
    links: Mapping[str, LinkSpec],
    scenarios: Mapping[str, object],
    base_dir: Path,
) -> DeviceSpec:
    raw_table = _table(source, raw, f"[[device]] #{index + 1}")
    name = raw_table.get("name")
    if not isinstance(name, str) or not name:
        raise StationError(source, f"[[device]] #{index + 1} needs a 'name'")
    table: StationDeviceTable = _validated(source, StationDeviceTable, raw_table, None, name)
    link = table.link
    if link not in links:
        raise StationError(
            source, f"unknown link {link!r} (links: {', '.join(links) or 'none'})", name
        )
    if not table.profile:
        raise StationError(source, "needs a 'profile' (a built-in name or a file)", name)
    try:
        profile = resolve_profile(table.profile, base_dir)
    except ProfileError as exc:
        raise StationError(source, str(exc), name) from exc
    unit_id = profile.default_unit_id if table.unit_id is None else table.unit_id
    channels = {c.name: c for c in profile.channels}

    def channel_names(key: str) -> dict[str, Any]:
        given: dict[str, Any] = getattr(table, key)
        if bad := sorted(set(given) - set(channels)):
            known = ", ".join(channels)
            raise StationError(
                source,
                f"'{key}' names unknown channel(s) {', '.join(bad)} of profile "
                f"'{profile.name}' (channels: {known})",
                name,
            )
        return given

    signals = {
        channel: _parse_binding(source, name, channel, raw_binding, scenarios)
        for channel, raw_binding in channel_names("signals").items()
    }
    values: dict[str, float] = {}
    for channel, raw_value in channel_names("values").items():
        if channel in signals:
            raise StationError(source, f"channel '{channel}' has both a signal and a value", name)
        values[channel] = raw_value
        if not fits(channels[channel], values[channel]):
            spec = channels[channel]
            raise StationError(
                source,
                f"value {values[channel]} of channel '{channel}' does not fit its {spec.dtype} "
                f"register(s) (scale {spec.scale}, offset {spec.offset})",
                name,
            )
    faults = _parse_faults(source, name, table.faults, links[link])
    return DeviceSpec(name, link, profile, unit_id, signals, values, faults)


def _parse_faults(source: str, device: str, raw: Any, link: LinkSpec) -> FaultSpec:
    table: FaultsTable = _validated(source, FaultsTable, raw, "faults", device)
    if table.corrupt_crc and link.kind != "pty":
        raise StationError(
            source, f"corrupt_crc needs a serial link; link '{link.name}' is Modbus TCP", device
        )
    spec = FaultSpec(
        dead=table.dead,
        exception_code=table.exception_code,
        corrupt_crc=table.corrupt_crc,
        stuck=table.stuck,
        spike_probability=table.spike_probability,
        spike_magnitude=table.spike_magnitude,
        outages=tuple((start, end) for start, end in table.outages),
    )
    try:
        spec.build(0.0, 0)
    except (TypeError, ValueError) as exc:
        raise StationError(source, f"faults: {exc}", device) from exc
    return spec


def parse_station(data: Mapping[str, Any], source: str, base_dir: Path) -> StationSpec:
    """Validate an already-parsed station document.

    Raises:
        StationError: naming ``source``, the device when there is one, and the problem.
    """
    top: StationFile = _validated(source, StationFile, data, None, within="the top level")
    station = top.station
    if not isinstance(station.get("name"), str) or not station["name"]:
        raise StationError(source, "[station] needs a 'name'")
    header: StationTable = _validated(source, StationTable, station, "[station]")
    name, seed = header.name, header.seed
    scenario_params = _parse_scenarios(source, top.scenario)
    scenarios = build_scenarios(scenario_params, 0.0, seed)
    raw_links = top.link
    if not raw_links:
        raise StationError(source, "a station needs at least one [[link]]")
    links: dict[str, LinkSpec] = {}
    for index, raw in enumerate(raw_links):
        link = _parse_link(source, index, raw)
        if link.name in links:
            raise StationError(source, f"duplicate link name '{link.name}'")
        links[link.name] = link
    raw_devices = top.device
    if not raw_devices:
        raise StationError(source, "a station needs at least one [[device]]")
    devices: list[DeviceSpec] = []
    for index, raw in enumerate(raw_devices):
        device = _parse_device(source, index, raw, links, scenarios, base_dir)
        for other in devices:
            if other.name == device.name:
                raise StationError(source, "duplicate device name", device.name)
            if other.link == device.link and other.unit_id == device.unit_id:
                raise StationError(
                    source,
                    f"unit id {device.unit_id} is already used by device '{other.name}' on "
                    f"link '{device.link}'",
                    device.name,
                )
        devices.append(device)
    return StationSpec(
        name=name,
        source=source,
        seed=seed,
        description=header.description,
        scenarios=scenario_params,
        links=tuple(links.values()),
        devices=tuple(devices),
    )


def load_station(path: str | Path) -> StationSpec:
    """Load and validate a station file.

    Raises:
        StationError: when the file is missing, is not TOML, or is invalid.
    """
    path = Path(path)
    data = read_toml(path, "station file", StationError)
    return parse_station(data, str(path), path.parent)


def builtin_stations() -> dict[str, Path]:
    """Return the station files shipped with the simulator, by name."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def resolve_station(ref: str | Path) -> Path:
    """Find a station file by path, or by the name of a shipped station.

    Raises:
        StationError: when there is no such file or shipped station.
    """
    path = Path(ref)
    if path.exists():
        return path
    shipped = builtin_stations()
    if str(ref) in shipped:
        return shipped[str(ref)]
    known = ", ".join(shipped)
    raise StationError(ref, f"no such station file or shipped station (shipped: {known})")
