"""What an SL 651 report says a station observed, as readings for the fleet's store.

Each number element becomes one observation on the channel named after the element
(``water_level``, ``rainfall_accumulated``, ``voltage``, ...); an hourly report's
5-minute series (F4, F5-FC) and an equal-interval report's series (31, after a time step)
become one observation per value at its own time. Station-local times become UTC with the
centre's offset. Pure functions: this module must never touch storage or the network,
and never read a clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fleet.sl651_stations import Observation
from protocol import Quality
from protocol.county_clock import CHINA_STANDARD_TIME  # SL 651 stations keep it
from protocol.sl651 import (
    ElementId,
    FiveMinuteSeries,
    Number,
    ObservationGroup,
    Report,
    Series,
    TimeStep,
)

FIVE_MINUTES = timedelta(minutes=5)
SERIES_CHANNELS = {ElementId.RAINFALL_5MIN_SERIES: ElementId.RAINFALL_5MIN.name.lower()} | {
    element: f"relative_level_{n}"
    for n, element in enumerate(
        (
            ElementId.LEVEL_5MIN_SERIES_1,
            ElementId.LEVEL_5MIN_SERIES_2,
            ElementId.LEVEL_5MIN_SERIES_3,
            ElementId.LEVEL_5MIN_SERIES_4,
            ElementId.LEVEL_5MIN_SERIES_5,
            ElementId.LEVEL_5MIN_SERIES_6,
            ElementId.LEVEL_5MIN_SERIES_7,
            ElementId.LEVEL_5MIN_SERIES_8,
        ),
        start=1,
    )
}


def channel_name(element: ElementId) -> str:
    """The channel an element's values are stored on (lower-case element name)."""
    return SERIES_CHANNELS.get(element, element.name.lower())


def utc_timestamp(local: datetime, utc_offset: timedelta) -> float:
    """A station-local naive time as a UTC epoch timestamp."""
    return (local - utc_offset).replace(tzinfo=UTC).timestamp()


def observations(
    report: Report, station: str, utc_offset: timedelta = CHINA_STANDARD_TIME
) -> list[Observation]:
    """The observations of ``report``'s blocks for ``station`` (other blocks are left out).

    A "no value" (all FF) is kept as a null value with the ``timeout`` quality bit: the
    station had nothing to send, and the chart shows the gap as a fault, not as zero.
    """
    out: list[Observation] = []
    for block in report.stations:
        if block.station.hex != station:
            continue
        for group in block.groups:
            out.extend(_group(group, utc_offset))
    return out


def _observation(
    when: datetime, channel: str, value: Decimal | None, utc_offset: timedelta
) -> Observation:
    ts = utc_timestamp(when, utc_offset)
    if value is None:
        return Observation(ts, channel, None, int(Quality.TIMEOUT))
    return Observation(ts, channel, float(value), int(Quality.OK))


def _group(group: ObservationGroup, utc_offset: timedelta) -> Iterator[Observation]:
    step: timedelta | None = None
    for item in group.items:
        if isinstance(item, Number):
            yield _observation(
                group.observed_at, channel_name(item.element), item.value, utc_offset
            )
        elif isinstance(item, FiveMinuteSeries):
            # The 12 values cover the hour that ends at the observation time.
            start = group.observed_at - 12 * FIVE_MINUTES
            for index, value in enumerate(item.values, start=1):
                when = start + index * FIVE_MINUTES
                yield _observation(when, channel_name(item.element), value, utc_offset)
        elif isinstance(item, TimeStep):
            step = timedelta(days=item.days, hours=item.hours, minutes=item.minutes)
        elif isinstance(item, Series) and step:
            # The observation time is the first value's (6.6.4.4).
            for index, value in enumerate(item.values):
                when = group.observed_at + index * step
                yield _observation(when, channel_name(item.element), value, utc_offset)
