"""What the gateway's SL 651 reports say: report times, and the values of a report.

Timed reports (32) fall on a grid of the station's local day, hourly reports (34) on each
full hour, add reports (33) when a level rises. A report's values come from readings as
the store gives them (``ChannelHistory``): an instantaneous element (water level Z,
voltage VT, the rain counter PT) is the newest good reading at or before the observation
time, a period rainfall (PN05, P1, PJ, ...) the increase of a cumulative rain counter over
the period, counting a drop as the counter restarting from zero. Each number is scaled to
the element's unit and decimals; a value SL 651 cannot carry is sent as "no value".
Pure functions: this module must never touch storage, the network or a clock.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import numpy as np

from edge_agent.store import ChannelHistory
from protocol.sl651 import (
    NUMBERS,
    Control,
    Direction,
    ElementId,
    FiveMinuteSeries,
    FunctionCode,
    Header,
    Item,
    Message,
    Number,
    ObservationGroup,
    Report,
    Sl651Error,
    StationAddress,
    StationBlock,
    encode,
)
from protocol.sl651.elements import encode_number
from site_schema.sl651_uplink_config import RAIN_PERIODS, ElementMap, Sl651UplinkSpec

log = logging.getLogger(__name__)

HOUR_S = 3600
FIVE_MINUTES_S = 300
#: An instantaneous value older than this (or the report period, if longer) is no value.
MAX_AGE_S = 900.0
#: The F4 series holds 0.1 mm in one byte, the F5 series 0.01 m in two (FF, FFFF: none).
MAX_RAIN_5MIN = Decimal("25.4")
MAX_LEVEL_5MIN = Decimal("655.34")
#: Levels of the 5-minute series F5 come from the first of these that is mapped.
LEVEL_ELEMENTS = (ElementId.WATER_LEVEL, ElementId.UPSTREAM_LEVEL, ElementId.DOWNSTREAM_LEVEL)

#: The readings of one channel between two UTC times (the store's public read).
History = Callable[[str, float, float], ChannelHistory]


@dataclass(frozen=True, slots=True)
class Due:
    """A report to compose: its function and observation time (UTC epoch, whole minutes)."""

    function: FunctionCode
    at: float


def local_time(t: float, utc_offset_s: float) -> datetime:
    """UTC epoch ``t`` on the station's clock: naive, as SL 651 carries it."""
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None) + timedelta(seconds=utc_offset_s)


def minute_floor(t: float) -> float:
    """``t`` rounded down to its minute (SL 651 observation times carry minutes)."""
    return math.floor(t / 60.0) * 60.0


def _on_grid(t: float, step_s: int, utc_offset_s: float) -> bool:
    return (round(t + utc_offset_s)) % step_s == 0


def scheduled(spec: Sl651UplinkSpec, after: float, until: float) -> Iterator[Due]:
    """The timed and hourly reports whose times are in ``(after, until]``, oldest first.

    A timed report that falls on a full hour is left to the hourly report when hourly
    reports are on: it carries the same values, and the centre would hold them twice.
    """
    step = spec.timed_every_s or HOUR_S
    if spec.hourly:
        step = math.gcd(step, HOUR_S)
    t = math.floor(minute_floor(after) / 60.0) * 60.0 + 60.0
    # walk the minutes on the grid of ``step`` from the first one after ``after``
    while not _on_grid(t, step, spec.utc_offset_s):
        t += 60.0
    while t <= until:
        hour = _on_grid(t, HOUR_S, spec.utc_offset_s)
        if spec.hourly and hour:
            yield Due(FunctionCode.HOURLY, t)
        elif spec.timed_every_s and _on_grid(t, spec.timed_every_s, spec.utc_offset_s):
            yield Due(FunctionCode.TIMED, t)
        t += step


def period_s(spec: Sl651UplinkSpec, function: FunctionCode) -> float:
    """The period a report covers: PJ is the rain since the previous report of its kind."""
    if function is FunctionCode.HOURLY:
        return HOUR_S
    return float(spec.timed_every_s or HOUR_S)


def latest(history: ChannelHistory, at: float, max_age_s: float) -> float | None:
    """The newest good value at or before ``at`` and younger than ``max_age_s``."""
    good = history.good & (history.t <= at) & (history.t > at - max_age_s)
    if not good.any():
        return None
    return float(history.value[np.flatnonzero(good)[-1]])


def rain_between(history: ChannelHistory, start: float, end: float) -> float | None:
    """Rain in ``(start, end]`` from a cumulative counter; None without a reading in it.

    The baseline is the newest good reading at or before ``start`` (else the first one
    after it); a drop is the counter restarting from zero, so its new value is rain.
    """
    good = history.good
    before = np.flatnonzero(good & (history.t <= start))
    inside = np.flatnonzero(good & (history.t > start) & (history.t <= end))
    if not inside.size:
        return None
    values = history.value
    previous = float(values[before[-1]]) if before.size else float(values[inside[0]])
    total = 0.0
    for index in inside:
        current = float(values[index])
        total += current - previous if current >= previous else current
        previous = current
    return total


def fitted(element: ElementId, value: float | None, factor: Decimal) -> Number:
    """``value`` (in the channel's unit) as the element's number, or "no value" if unfit."""
    spec = NUMBERS[element]
    if value is None or not math.isfinite(value):
        return Number(element, None, spec.size, spec.decimals)
    scaled = (Decimal(repr(value)) * factor).quantize(
        Decimal(1).scaleb(-spec.decimals), rounding=ROUND_HALF_UP
    )
    try:
        encode_number(scaled, spec.size, spec.decimals, spec.mnemonic)
    except Sl651Error:
        log.warning(
            "SL 651: %s = %s does not fit %s; sent as no value", spec.mnemonic, scaled, spec
        )
        return Number(element, None, spec.size, spec.decimals)
    return Number(element, scaled, spec.size, spec.decimals)


def _element_value(
    mapped: ElementMap, history: ChannelHistory, at: float, period: float
) -> float | None:
    if mapped.element in RAIN_PERIODS:
        return rain_between(history, at - RAIN_PERIODS[mapped.element] * 60.0, at)
    if mapped.element is ElementId.RAINFALL_CURRENT:
        return rain_between(history, at - period, at)
    return latest(history, at, max(MAX_AGE_S, period))


def _five_minute_series(
    spec: Sl651UplinkSpec, histories: Mapping[str, ChannelHistory], at: float
) -> list[Item]:
    """The hour's F4 rainfall and F5 level series, each where a channel is mapped."""
    items: list[Item] = []
    marks = [at - HOUR_S + FIVE_MINUTES_S * n for n in range(13)]
    rain = next((m for m in spec.elements if m.element is ElementId.RAINFALL_ACCUMULATED), None)
    rain = rain or next((m for m in spec.elements if m.from_counter), None)
    if rain is not None:
        history = histories[rain.channel]
        values: list[Decimal | None] = []
        for start, end in itertools.pairwise(marks):
            mm = rain_between(history, start, end)
            fit = fitted(ElementId.RAINFALL_5MIN, mm, rain.factor).value
            values.append(None if fit is None else min(fit, MAX_RAIN_5MIN))
        items.append(FiveMinuteSeries(ElementId.RAINFALL_5MIN_SERIES, tuple(values)))
    level = next((m for m in spec.elements if m.element in LEVEL_ELEMENTS), None)
    if level is not None:
        history = histories[level.channel]
        levels: list[Decimal | None] = []
        for mark in marks[1:]:
            metres = latest(history, mark, MAX_AGE_S)
            value = None if metres is None else Decimal(repr(metres)) * level.factor
            value = None if value is None else value.quantize(Decimal("0.01"), ROUND_HALF_UP)
            levels.append(value if value is not None and 0 <= value <= MAX_LEVEL_5MIN else None)
        items.append(FiveMinuteSeries(ElementId.LEVEL_5MIN_SERIES_1, tuple(levels)))
    return items


def lookback_s(spec: Sl651UplinkSpec, channel: str, due: Due) -> float:
    """How far before ``due.at`` a channel's readings are read for that report.

    Its longest period (a rainfall period, the report's period, the hour of an hourly
    report's series), plus the age a baseline reading before it may have.
    """
    periods = [MAX_AGE_S, period_s(spec, due.function)]
    periods += [
        RAIN_PERIODS.get(m.element, 0) * 60.0 for m in spec.elements if m.channel == channel
    ]
    if due.function is FunctionCode.HOURLY:
        periods.append(HOUR_S)
    return max(periods) + MAX_AGE_S


def report_items(spec: Sl651UplinkSpec, due: Due, history: History) -> tuple[Item, ...]:
    """The items of a timed or hourly report at ``due.at``, read through ``history``."""
    period = period_s(spec, due.function)
    histories = {
        channel: history(channel, due.at - lookback_s(spec, channel, due), due.at)
        for channel in spec.channels
    }
    items: list[Item] = []
    if due.function is FunctionCode.HOURLY:
        items.extend(_five_minute_series(spec, histories, due.at))
    for mapped in spec.elements:
        value = _element_value(mapped, histories[mapped.channel], due.at, period)
        items.append(fitted(mapped.element, value, mapped.factor))
    return tuple(items)


def add_items(spec: Sl651UplinkSpec, values: Mapping[str, float | None]) -> tuple[Item, ...]:
    """The items of an add report: each instantaneous element's newest observed value.

    Period rainfalls are left to the timed and hourly reports, which read them whole.
    """
    return tuple(
        fitted(mapped.element, values.get(mapped.channel), mapped.factor)
        for mapped in spec.elements
        if not mapped.from_counter
    )


def report_frame(
    spec: Sl651UplinkSpec,
    function: FunctionCode,
    serial: int,
    observed_at: float,
    sent_at: float,
    items: tuple[Item, ...],
) -> bytes:
    """The bytes of one report of this station (``Sl651Error`` if they cannot be made)."""
    station = StationAddress(spec.station)
    group = ObservationGroup(local_time(observed_at, spec.utc_offset_s), items)
    body = Report(
        serial,
        local_time(math.floor(sent_at), spec.utc_offset_s),
        (StationBlock(station, spec.station_type, (group,)),),
    )
    header = Header(Direction.UP, spec.centre_address, station, spec.password, function)
    return encode(Message(header, body, Control.ETX))
