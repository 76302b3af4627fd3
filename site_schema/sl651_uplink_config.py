"""The ``[sl651_uplink]`` table: report a gateway's rain and levels to a provincial centre.

Besides MQTT to the county, a gateway may report in SL 651-2014 to a hydrology centre that
takes telemetry stations: the gateway is one station, with the address and password the
centre gave it, and each of its channels is sent as the SL 651 element the table maps it
to. Validated completely when the site file loads (unknown channels, elements and
mismatched units refused naming the channel); this module never opens a connection and
an error never repeats the password.

    [sl651_uplink]
    centre = "hydro.province.example:5005"   # the centre's host:port (TCP)
    station = "0012345678"                   # 10 hex digits: the station's 5-byte address
    password = "5A7C"                        # 4 hex digits: the 2-byte password
    centre_address = 1                       # 1..255 (0: the centre takes any)
    station_type = "H"                       # P rainfall, H river, K reservoir, ...
    timed_every_min = 5                      # timed report (32) on this grid; 0: none
    hourly = true                            # hourly report (34) on each full hour
    add_from = "blue"                        # add report (33) when a rule rises to this

    [sl651_uplink.elements]                  # channel -> element(s) by mnemonic
    "rain_sen0575.rain_total" = ["PT", "PN05"]
    "creek_radar.water_level" = "Z"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from drivers.device_config import DeviceConfig
from drivers.toml_schema import TomlTable, table_problem
from protocol.county_clock import CHINA_STANDARD_TIME_H, MAX_UTC_OFFSET_H, MIN_UTC_OFFSET_H
from protocol.levels import LEVEL_NAMES
from protocol.sl651 import NUMBERS, ElementId, StationType
from site_schema.site_errors import SiteConfigError

ITEM = "[sl651_uplink]"

#: Rain over a period ending at the observation time, from a cumulative counter: minutes.
RAIN_PERIODS: dict[ElementId, int] = {
    ElementId.RAINFALL_1MIN: 1,
    ElementId.RAINFALL_5MIN: 5,
    ElementId.RAINFALL_10MIN: 10,
    ElementId.RAINFALL_30MIN: 30,
    ElementId.RAINFALL_1H: 60,
    ElementId.RAINFALL_2H: 120,
    ElementId.RAINFALL_3H: 180,
    ElementId.RAINFALL_6H: 360,
    ElementId.RAINFALL_12H: 720,
}
#: Elements taken from a cumulative rain counter: the period ones, PJ (since the last
#: report of the same kind) and PT (the counter itself).
RAIN_COUNTER_ELEMENTS = frozenset({*RAIN_PERIODS, ElementId.RAINFALL_CURRENT})
#: A channel of one of these units is sent in the element's unit (SL 651 levels are m).
UNIT_FACTORS: dict[str, dict[str, Decimal]] = {
    "m": {"m": Decimal(1), "cm": Decimal("0.01"), "mm": Decimal("0.001")},
    "mm": {"mm": Decimal(1)},
}
BY_MNEMONIC = {spec.mnemonic: element for element, spec in NUMBERS.items()}
STATION_TYPES = {chr(kind): kind for kind in StationType}
_HOST_PORT = re.compile(r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})$")


class Sl651UplinkTable(TomlTable):
    """``[sl651_uplink]``."""

    centre: Annotated[str, Field(min_length=3, max_length=260)]
    station: str
    password: str
    centre_address: int = Field(1, ge=0, le=255)
    station_type: str = "H"
    utc_offset_h: float = Field(CHINA_STANDARD_TIME_H, ge=MIN_UTC_OFFSET_H, le=MAX_UTC_OFFSET_H)
    timed_every_min: int = Field(5, ge=0, le=1440)
    hourly: bool = True
    add_from: Literal["blue", "yellow", "orange", "red"] = "blue"
    ack_timeout_s: float = Field(10.0, gt=0.0, le=600.0)
    reconnect_min_s: float = Field(1.0, gt=0.0, le=3600.0)
    reconnect_max_s: float = Field(300.0, gt=0.0, le=86400.0)
    catch_up_h: float = Field(48.0, ge=0.0, le=720.0)
    elements: dict[str, str | list[str]] = Field(min_length=1, max_length=64)

    @field_validator("station")
    @classmethod
    def _station(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9A-Fa-f]{10}", value):
            msg = f"station {value!r}: give the 10 hex digits of its 5 bytes, e.g. 0012345678"
            raise ValueError(msg)
        return value.upper()

    @field_validator("password")
    @classmethod
    def _password(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9A-Fa-f]{4}", value):
            # the value itself stays out of the message: it ends up in logs and reports
            raise ValueError("password: 4 hex digits (the 2 bytes on the wire), e.g. 1234")
        return value

    @field_validator("station_type")
    @classmethod
    def _station_type(cls, value: str) -> str:
        if value not in STATION_TYPES:
            msg = f"station_type {value!r}: one of {', '.join(sorted(STATION_TYPES))}"
            raise ValueError(msg)
        return value

    @field_validator("timed_every_min")
    @classmethod
    def _grid(cls, value: int) -> int:
        if value and 1440 % value:
            msg = f"timed_every_min {value}: 0, or a divisor of a day's 1440 minutes (5, 10, 60)"
            raise ValueError(msg)
        return value


@dataclass(frozen=True, slots=True)
class ElementMap:
    """One channel sent as one SL 651 element, times ``factor`` (the unit conversion)."""

    channel: str
    element: ElementId
    factor: Decimal

    @property
    def from_counter(self) -> bool:
        """Rain over a period, from the increase of a cumulative counter."""
        return self.element in RAIN_COUNTER_ELEMENTS


@dataclass(frozen=True, slots=True)
class Sl651UplinkSpec:
    """A validated ``[sl651_uplink]``. ``password`` never goes into a log or a message."""

    host: str
    port: int
    station: str
    password: int
    centre_address: int
    station_type: int
    utc_offset_s: float
    timed_every_s: int
    hourly: bool
    add_from_level: int
    ack_timeout_s: float
    reconnect_min_s: float
    reconnect_max_s: float
    catch_up_s: float
    elements: tuple[ElementMap, ...]

    def __repr__(self) -> str:  # the password stays out of any repr that reaches a log
        return f"Sl651UplinkSpec(centre={self.host}:{self.port}, station={self.station})"

    @property
    def channels(self) -> frozenset[str]:
        """The channels the uplink reports."""
        return frozenset(m.channel for m in self.elements)


def _centre(value: str) -> tuple[str, int]:
    match = _HOST_PORT.match(value)
    port = int(match["port"]) if match else 0
    if match is None or not 1 <= port <= 65535:
        msg = f"centre {value!r} is not host:port with a port in 1..65535"
        raise SiteConfigError("", msg, ITEM)
    return match["host"].strip("[]"), port


def _element_map(
    source: str, channel_id: str, mnemonic: str, devices: Mapping[str, DeviceConfig]
) -> ElementMap:
    item = f"{ITEM} elements"
    element = BY_MNEMONIC.get(mnemonic)
    if element is None:
        known = ", ".join(sorted(BY_MNEMONIC))
        problem = f"{channel_id!r}: {mnemonic!r} is not an SL 651 number element ({known})"
        raise SiteConfigError(source, problem, item)
    device_name, _, name = channel_id.partition(".")
    device = devices.get(device_name)
    channel = next((c for c in device.profile.channels if c.name == name), None) if device else None
    if device is None or channel is None:
        raise SiteConfigError(source, f"{channel_id!r} is not a channel of any device", item)
    if name not in device.polled_channels():
        problem = f"{channel_id!r} is not polled (device '{device_name}' lists its channels)"
        raise SiteConfigError(source, problem, item)
    counter = element in RAIN_COUNTER_ELEMENTS or element is ElementId.RAINFALL_ACCUMULATED
    if counter and channel.quantity != "rain_total":
        problem = f"{channel_id!r} is a {channel.quantity}; {mnemonic} needs a rain_total counter"
        raise SiteConfigError(source, problem, item)
    unit = NUMBERS[element].unit
    factor = UNIT_FACTORS.get(unit, {unit: Decimal(1)}).get(channel.unit)
    if factor is None:
        problem = f"{channel_id!r} is in {channel.unit!r}; {mnemonic} is sent in {unit!r}"
        raise SiteConfigError(source, problem, item)
    return ElementMap(channel_id, element, factor)


def parse_sl651_uplink(
    source: str, raw: Any, devices: Mapping[str, DeviceConfig]
) -> Sl651UplinkSpec | None:
    """``raw`` (the table, or None) validated against the site's ``devices``.

    Raises:
        SiteConfigError: naming the table and the problem (never the password).
    """
    if raw is None:
        return None
    try:
        table = Sl651UplinkTable.model_validate(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, Sl651UplinkTable), ITEM) from None
    try:
        host, port = _centre(table.centre)
    except SiteConfigError as exc:
        raise SiteConfigError(source, exc.problem, ITEM) from None
    if table.reconnect_max_s < table.reconnect_min_s:
        raise SiteConfigError(source, "reconnect_max_s is below reconnect_min_s", ITEM)
    if not table.timed_every_min and not table.hourly:
        raise SiteConfigError(source, "neither timed reports nor hourly: nothing to report", ITEM)
    maps: list[ElementMap] = []
    for channel_id, mnemonics in table.elements.items():
        for mnemonic in [mnemonics] if isinstance(mnemonics, str) else mnemonics:
            maps.append(_element_map(source, channel_id, mnemonic, devices))
    seen: dict[ElementId, str] = {}
    for mapped in maps:
        if mapped.element in seen:
            mnemonic = NUMBERS[mapped.element].mnemonic
            problem = (
                f"{mnemonic} is mapped from both {seen[mapped.element]!r} and {mapped.channel!r}"
            )
            raise SiteConfigError(source, problem, f"{ITEM} elements")
        seen[mapped.element] = mapped.channel
    return Sl651UplinkSpec(
        host=host,
        port=port,
        station=table.station,
        password=int(table.password, 16),
        centre_address=table.centre_address,
        station_type=STATION_TYPES[table.station_type],
        utc_offset_s=table.utc_offset_h * 3600.0,
        timed_every_s=table.timed_every_min * 60,
        hourly=table.hourly,
        add_from_level=LEVEL_NAMES.index(table.add_from),
        ack_timeout_s=table.ack_timeout_s,
        reconnect_min_s=table.reconnect_min_s,
        reconnect_max_s=table.reconnect_max_s,
        catch_up_s=table.catch_up_h * 3600.0,
        elements=tuple(maps),
    )
