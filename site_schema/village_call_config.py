"""The ``[village_call]`` table: who the gateway texts itself, and how, when cut off.

When the county cannot be reached, the gateway's own cellular modem texts the village tier
of the site's roster (叫应) and takes their replies; a confirm button at the village is an
answer too. The numbers come inside the signed site configuration, written there by the
fleet from its roster. Validated completely when the site file loads; never opens the
modem, and an error never repeats a phone number in clear.

    [village_call]
    modem = "/dev/ttyUSB2"        # the modem's AT command port
    from_level = "orange"         # levels at or above this are called
    grace_s = 300                 # how long the county may take to receive the alarm
    repeat_s = 600                # an unanswered text is sent again this often
    confirm = ["relay.input1"]    # bool inputs whose press answers (a button at the siren)
    country_code = "86"           # replies reported in domestic form (13800000001) match
    ring_s = 30                   # after each text, ring the phone this long (0: off)
    utc_offset_h = 8              # the clock a slope forecast's times are texted in (北京时间)

    [[village_call.person]]
    name = "李四"
    role = "群测群防员"
    mobile = "+8613800000001"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from drivers.device_config import DeviceConfig
from drivers.toml_schema import TomlTable, table_problem
from protocol.contacts import COUNTRY_CODE, E164, mask_phone
from protocol.county_clock import CHINA_STANDARD_TIME_H, MAX_UTC_OFFSET_H, MIN_UTC_OFFSET_H
from protocol.levels import LEVEL_NAMES
from site_schema.site_errors import SiteConfigError

ITEM = "[village_call]"
Name = Annotated[str, Field(min_length=1, max_length=64)]


class VillagePersonTable(TomlTable):
    """``[[village_call.person]]``: one responsible person of the village tier."""

    name: Name
    role: Annotated[str, Field(max_length=64)] = ""
    mobile: str

    @field_validator("mobile")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not E164.match(value):
            # the number itself stays out of the message: it ends up in logs and reports
            msg = f"mobile {mask_phone(value)} is not an E.164 number such as +8613800000000"
            raise ValueError(msg)
        return value


class VillageCallTable(TomlTable):
    """``[village_call]``."""

    modem: Annotated[str, Field(min_length=1)]
    baudrate: int = Field(115200, ge=1200, le=4_000_000)
    from_level: Literal["blue", "yellow", "orange", "red"] = "orange"
    grace_s: float = Field(300.0, ge=0.0, le=86400.0)
    repeat_s: float = Field(600.0, ge=60.0, le=86400.0)
    poll_s: float = Field(10.0, gt=0.0, le=600.0)
    ring_s: float = Field(0.0, ge=0.0, le=120.0)
    utc_offset_h: float = Field(CHINA_STANDARD_TIME_H, ge=MIN_UTC_OFFSET_H, le=MAX_UTC_OFFSET_H)
    confirm: list[Name] = Field(default_factory=list, max_length=16)
    country_code: str | None = None
    person: list[VillagePersonTable] = Field(default_factory=list, max_length=50)

    @field_validator("country_code")
    @classmethod
    def _country_code(cls, value: str | None) -> str | None:
        if value is not None and not COUNTRY_CODE.match(value):
            msg = f"country_code {value!r} is not a country calling code such as \"86\" (no '+')"
            raise ValueError(msg)
        return value


@dataclass(frozen=True, slots=True)
class VillagePerson:
    """Someone the gateway may text: the village tier of the site's roster."""

    name: str
    role: str
    mobile: str

    @property
    def label(self) -> str:
        """How the person appears in events and logs: name and tier, never the number."""
        return f"{self.name} (village)"


@dataclass(frozen=True, slots=True)
class VillageCallSpec:
    """A validated ``[village_call]``: the modem, the persons, the timing and the buttons."""

    modem: str
    baudrate: int
    from_level: int
    grace_s: float
    repeat_s: float
    poll_s: float
    confirm: tuple[str, ...]
    persons: tuple[VillagePerson, ...]
    #: Replies whose sender the modem reports in this country's domestic form match too.
    country_code: str | None = None
    #: After each text, the person's phone is rung this long (0: texts only).
    ring_s: float = 0.0
    #: The county's clock, in which a slope forecast's times are texted (8: 北京时间).
    utc_offset_h: float = CHINA_STANDARD_TIME_H


def parse_village_call(
    source: str,
    raw: Any,
    devices: Mapping[str, DeviceConfig],
    serial_port_allowed: Callable[[str], bool],
) -> VillageCallSpec | None:
    """``raw`` (the table, or None) validated; ``serial_port_allowed(path)`` vets the modem.

    Raises:
        SiteConfigError: naming the table and the problem (numbers masked).
    """
    if raw is None:
        return None
    try:
        table = VillageCallTable.model_validate(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, VillageCallTable), ITEM) from None
    if not serial_port_allowed(table.modem):
        problem = f"modem {table.modem!r} is not a serial port this configuration may open"
        raise SiteConfigError(source, problem, ITEM)
    for channel_id in table.confirm:
        device_name, _, channel = channel_id.partition(".")
        device = devices.get(device_name)
        found = (
            next((c for c in device.profile.channels if c.name == channel), None)
            if device is not None
            else None
        )
        if found is None:
            problem = f"confirm input {channel_id!r} is not a channel of any device"
            raise SiteConfigError(source, problem, ITEM)
        if found.dtype != "bool":
            problem = f"confirm input {channel_id!r} is a {found.dtype}, not a bool input"
            raise SiteConfigError(source, problem, ITEM)
        assert device is not None  # found is None otherwise
        if device.channels is not None and channel not in device.channels:
            problem = f"confirm input {channel_id!r} is not polled (device '{device_name}' lists)"
            raise SiteConfigError(source, problem, ITEM)
    mobiles = [p.mobile for p in table.person]
    if len(set(mobiles)) != len(mobiles):
        raise SiteConfigError(source, "a mobile number is listed twice", ITEM)
    return VillageCallSpec(
        modem=table.modem,
        baudrate=table.baudrate,
        from_level=LEVEL_NAMES.index(table.from_level),
        grace_s=table.grace_s,
        repeat_s=table.repeat_s,
        poll_s=table.poll_s,
        confirm=tuple(table.confirm),
        persons=tuple(VillagePerson(p.name, p.role, p.mobile) for p in table.person),
        country_code=table.country_code,
        ring_s=table.ring_s,
        utc_offset_h=table.utc_offset_h,
    )
