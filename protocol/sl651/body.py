"""SL 651-2014 HEX/BCD bodies (6.6): reports, link keep-alive, acknowledgements.

A report body is serial, send time, then per station: F1F1 address, station type, and
observation groups (F0F0 time, then that time's elements). Function 31/38 bodies end with
one element's values at equal intervals after a time step (6.6.4.4). This module gives
bytes their meaning and back; it must never import anything of the project, never read a
frame header itself, and raise only ``Sl651Error`` subclasses on any input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from protocol.sl651.elements import (
    FIVE_MINUTE_SERIES,
    NUMBERS,
    SERIES_LENGTH,
    ElementId,
    FiveMinuteSeries,
    Item,
    Number,
    Picture,
    Series,
    StationStatus,
    TimeStep,
    decode_five_minute,
    decode_number,
    decode_time_step,
    encode_five_minute,
    encode_number,
    encode_time_step,
    identifier_byte,
)
from protocol.sl651.errors import (
    BadFrameError,
    BadValueError,
    LengthError,
    TruncatedError,
    UnknownElementError,
)
from protocol.sl651.frame import StationAddress
from protocol.sl651.wire import (
    decode_observation_time,
    decode_send_time,
    encode_observation_time,
    encode_send_time,
)

#: serial (2 bytes HEX) + send time (6 bytes BCD): every body starts so
STAMP_SIZE = 8
STATION_SIZE = 5
STATUS_SIZE = 4
TIME_STEP_SIZE = 3


class StationType(enum.IntEnum):
    """Station classification codes (Appendix A); other values are user-defined."""

    RAINFALL = 0x50  # P 降水
    RIVER = 0x48  # H 河道
    RESERVOIR = 0x4B  # K 水库(湖泊)
    GATE = 0x5A  # Z 闸坝
    PUMPING = 0x44  # D 泵站
    TIDAL = 0x54  # T 潮汐
    SOIL_MOISTURE = 0x4D  # M 墒情
    GROUNDWATER = 0x47  # G 地下水
    WATER_QUALITY = 0x51  # Q 水质
    INTAKE = 0x49  # I 取水口
    OUTFALL = 0x4F  # O 排水口


@dataclass(frozen=True)
class ObservationGroup:
    """Elements observed at one time (F0F0 YYMMDDHHmm, station-local)."""

    observed_at: datetime
    items: tuple[Item, ...] = ()


@dataclass(frozen=True)
class StationBlock:
    """One station's part of a report: address, type (StationType when known), groups."""

    station: StationAddress
    station_type: int
    groups: tuple[ObservationGroup, ...] = ()


@dataclass(frozen=True)
class Report:
    """A station's report (functions 30-34, 36-38): serial, send time, station blocks."""

    serial: int
    sent_at: datetime
    stations: tuple[StationBlock, ...]


@dataclass(frozen=True)
class LinkKeepAlive:
    """Link keep-alive (2F): the last report's serial and the send time."""

    serial: int
    sent_at: datetime


@dataclass(frozen=True)
class Acknowledgement:
    """The centre's answer to a report: the report's serial and a send time."""

    serial: int
    sent_at: datetime


@dataclass(frozen=True)
class Query:
    """A centre's query with no parameters (ENQ): serial 0 or the centre's, send time."""

    serial: int
    sent_at: datetime


@dataclass(frozen=True)
class RawBody:
    """A body this codec does not interpret (other function codes, single M3 packets)."""

    data: bytes


Body = Report | LinkKeepAlive | Acknowledgement | Query | RawBody


def _station_type(code: int) -> int:
    try:
        return StationType(code)
    except ValueError:
        return code


def decode_stamp(data: bytes) -> tuple[int, datetime]:
    """Serial and send time from the first 8 bytes."""
    if len(data) < STAMP_SIZE:
        raise TruncatedError(
            f"a body starts with serial and send time (8 bytes), {len(data)} given"
        )
    return int.from_bytes(data[:2], "big"), decode_send_time(data[2:8])


def encode_stamp(serial: int, sent_at: datetime) -> bytes:
    """Serial (2 bytes HEX) and send time (6 bytes BCD)."""
    if not 0 <= serial <= 0xFFFF:
        raise BadValueError(f"serial {serial} is outside 0..65535")
    return serial.to_bytes(2, "big") + encode_send_time(sent_at)


def decode_exact_stamp(data: bytes, what: str) -> tuple[int, datetime]:
    """Serial and send time of a body that holds nothing else."""
    if len(data) > STAMP_SIZE:
        raise LengthError(f"{what} body has {len(data)} bytes, 8 expected")
    return decode_stamp(data)


class _Reader:
    """Walks a report body, collecting station blocks and groups."""

    def __init__(self, data: bytes, equal_interval: bool) -> None:
        self.data = data
        self.pos = STAMP_SIZE
        self.equal_interval = equal_interval
        self.stations: list[StationBlock] = []
        self.groups: list[ObservationGroup] = []
        self.items: list[Item] = []
        self.station: tuple[StationAddress, int] | None = None
        self.observed_at: datetime | None = None

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            left = len(self.data) - self.pos
            raise TruncatedError(f"{what} needs {size} bytes at offset {self.pos}, {left} left")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def close_group(self) -> None:
        if self.observed_at is not None:
            self.groups.append(ObservationGroup(self.observed_at, tuple(self.items)))
        self.observed_at, self.items = None, []

    def close_station(self) -> None:
        self.close_group()
        if self.station is not None:
            self.stations.append(StationBlock(*self.station, tuple(self.groups)))
        self.station, self.groups = None, []

    def read(self) -> tuple[StationBlock, ...]:
        while self.pos < len(self.data):
            lead, size_byte = self.take(2, "element identifier")
            self.identifier(lead, size_byte)
        self.close_station()
        return tuple(self.stations)

    def fixed(self, lead: int, size_byte: int, what: str) -> None:
        if size_byte != lead:
            msg = f"{what} identifier {lead:02X}{size_byte:02X}: its second byte must be {lead:02X}"
            raise LengthError(msg)

    def identifier(self, lead: int, size_byte: int) -> None:
        if lead == ElementId.STATION:
            self.fixed(lead, size_byte, "station address")
            self.close_station()
            address = StationAddress.of(self.take(STATION_SIZE, "station address"))
            self.station = (address, _station_type(self.take(1, "station type")[0]))
            return
        if self.station is None:
            raise BadFrameError(
                f"element {lead:02X}{size_byte:02X} before the station address F1F1"
            )
        if lead == ElementId.OBSERVATION_TIME:
            self.fixed(lead, size_byte, "observation time")
            self.close_group()
            self.observed_at = decode_observation_time(self.take(5, "observation time"))
            return
        if self.observed_at is None:
            raise BadFrameError(
                f"element {lead:02X}{size_byte:02X} before an observation time F0F0"
            )
        self.items.append(self.element(lead, size_byte))

    def element(self, lead: int, size_byte: int) -> Item:
        size, decimals = size_byte >> 3, size_byte & 0x07
        name = f"element {lead:02X}{size_byte:02X}"
        if lead == ElementId.PICTURE:
            self.fixed(lead, size_byte, "picture")
            return Picture(self.take(len(self.data) - self.pos, "picture"))
        if lead in FIVE_MINUTE_SERIES:
            element = ElementId(lead)
            width = 1 if element is ElementId.RAINFALL_5MIN_SERIES else 2
            if size != SERIES_LENGTH * width or decimals:
                raise LengthError(f"{name}: a 5-minute series is {SERIES_LENGTH * width} bytes")
            return decode_five_minute(element, self.take(size, name))
        if lead == ElementId.TIME_STEP:
            if size != TIME_STEP_SIZE or decimals:
                raise LengthError(f"{name}: a time step code is 3 bytes (0418)")
            return decode_time_step(self.take(size, name))
        if lead == ElementId.STATUS:
            if size != STATUS_SIZE or decimals:
                raise LengthError(f"{name}: station status is 4 bytes (4520)")
            return StationStatus(int.from_bytes(self.take(size, name), "big"))
        if lead not in NUMBERS:
            raise UnknownElementError(f"{name} is not in SL 651-2014 Table C.1")
        if size == 0:
            raise LengthError(f"{name} announces no data bytes")
        element = ElementId(lead)
        if self.equal_interval and any(isinstance(item, TimeStep) for item in self.items):
            rest = len(self.data) - self.pos
            if rest == 0 or rest % size:
                raise LengthError(f"{name}: {rest} bytes of values are not a whole number")
            chunks = [self.take(size, name) for _ in range(rest // size)]
            values = tuple(decode_number(chunk, decimals, name) for chunk in chunks)
            return Series(element, values, size, decimals)
        return Number(element, decode_number(self.take(size, name), decimals, name), size, decimals)


def decode_report(data: bytes, equal_interval: bool = False) -> Report:
    """A report body; ``equal_interval`` for functions 31 and 38 (series after a time step)."""
    serial, sent_at = decode_stamp(data)
    stations = _Reader(data, equal_interval).read()
    if not stations:
        raise TruncatedError("a report names its station (F1F1) after the send time")
    return Report(serial, sent_at, stations)


def _encode_item(item: Item) -> bytes:
    if isinstance(item, Number):
        what = item.element.name
        head = bytes([item.element, identifier_byte(item.size, item.decimals, what)])
        if item.element not in NUMBERS:
            raise BadValueError(f"{what} is not a number element")
        return head + encode_number(item.value, item.size, item.decimals, what)
    if isinstance(item, Series):
        what = item.element.name
        if item.element not in NUMBERS or not item.values:
            raise BadValueError(f"{what}: a series needs a number element and values")
        head = bytes([item.element, identifier_byte(item.size, item.decimals, what)])
        return head + b"".join(
            encode_number(value, item.size, item.decimals, what) for value in item.values
        )
    if isinstance(item, FiveMinuteSeries):
        if item.element not in FIVE_MINUTE_SERIES:
            raise BadValueError(f"{item.element.name} is not a 5-minute series")
        width = 1 if item.element is ElementId.RAINFALL_5MIN_SERIES else 2
        size_byte = identifier_byte(SERIES_LENGTH * width, 0, item.element.name)
        return bytes([item.element, size_byte]) + encode_five_minute(item)
    if isinstance(item, TimeStep):
        return bytes([ElementId.TIME_STEP, TIME_STEP_SIZE << 3]) + encode_time_step(item)
    if isinstance(item, StationStatus):
        if not 0 <= item.bits <= 0xFFFFFFFF:
            raise BadValueError(f"station status {item.bits} does not fit 4 bytes")
        return bytes([ElementId.STATUS, STATUS_SIZE << 3]) + item.bits.to_bytes(4, "big")
    return bytes([ElementId.PICTURE, ElementId.PICTURE]) + item.data


def _check_tail(report: Report, equal_interval: bool) -> None:
    """Refuse what would decode differently: only the body's last item may run to its end.

    A picture, and in a function 31/38 report the number element after a time step (a
    ``Series``), take the rest of the body.
    """
    groups = [group for block in report.stations for group in block.groups]
    for group_index, group in enumerate(groups):
        after_step = False
        for index, item in enumerate(group.items):
            last = group_index == len(groups) - 1 and index == len(group.items) - 1
            if isinstance(item, Picture) and not last:
                raise BadValueError(
                    "a picture runs to the end of the body; it must be the last item"
                )
            if isinstance(item, Series) and not (equal_interval and after_step and last):
                raise BadValueError(
                    "a series is the last item of a 31/38 report, after a time step"
                )
            if isinstance(item, Number) and after_step:
                raise BadValueError("after a time step a 31/38 report's element is a Series")
            after_step = after_step or (equal_interval and isinstance(item, TimeStep))


def encode_report(report: Report, equal_interval: bool = False) -> bytes:
    """The body of ``report``."""
    if not report.stations:
        raise BadValueError("a report names at least one station")
    _check_tail(report, equal_interval)
    out = [encode_stamp(report.serial, report.sent_at)]
    for block in report.stations:
        if not 0 <= block.station_type <= 0xFF:
            raise BadValueError(f"station type {block.station_type} does not fit a byte")
        out.append(bytes([ElementId.STATION, ElementId.STATION]) + block.station.to_bytes())
        out.append(bytes([block.station_type]))
        for group in block.groups:
            head = bytes([ElementId.OBSERVATION_TIME, ElementId.OBSERVATION_TIME])
            out.append(head + encode_observation_time(group.observed_at))
            out.extend(_encode_item(item) for item in group.items)
    return b"".join(out)
