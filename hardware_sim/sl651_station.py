"""A simulated SL 651-2014 telemetry station (遥测站) that reports to a centre over TCP.

It reports as a field station does: timed (32), hourly (34) and add (33) reports and link
keep-alives (2F), each with the next serial; it waits for the centre's acknowledgement and,
when none comes (a lost answer, a dropped link), reconnects and sends the very same frame
again, original serial and times. ``drop_link_after_send`` makes the next sends drop the
link before the answer is read: an acknowledgement lost on the way. For tests, benches
and the demo; production code must never import it.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Self

from protocol.county_clock import CHINA_STANDARD_TIME  # SL 651 stations keep it
from protocol.sl651 import (
    Control,
    Direction,
    ElementId,
    FiveMinuteSeries,
    FunctionCode,
    Header,
    Item,
    LinkKeepAlive,
    Message,
    ObservationGroup,
    Report,
    StationAddress,
    StationBlock,
    StationType,
    encode,
    number,
    split,
)
from protocol.sl651_link import NoAnswerError, Silence, StationLink, answers, first_frame

FIVE_MINUTES_S = 300.0
#: The largest 5-minute rainfall (F4, one byte of 0.1 mm) and relative level (F5, 0.01 m).
MAX_RAIN_5MIN = Decimal("25.4")
MAX_LEVEL_5MIN = Decimal("655.34")


class NoAcknowledgementError(Exception):
    """The centre did not acknowledge a frame after every try."""


@dataclass
class Delivery:
    """How a frame got through: its serial, the centre's answer, how many sends it took."""

    serial: int
    answer: Message
    sends: int


@dataclass
class Sl651Station:
    """One station: its address and password, and the centre's host and port.

    ``ack_timeout_s`` is how long it waits for an answer before sending again, at most
    ``tries`` times.
    """

    address: str
    password: int
    host: str
    port: int
    centre: int = 1
    station_type: int = StationType.RIVER
    ack_timeout_s: float = 5.0
    tries: int = 3
    drop_link_after_send: int = 0
    serial: int = 0
    sends: int = 0
    connects: int = 0
    #: The packet numbers the centre asked for again (NAK), in order.
    naks: list[int] = field(default_factory=list)
    _link: StationLink | None = field(default=None, repr=False)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.hang_up()

    @property
    def station(self) -> StationAddress:
        """The station's address as the codec carries it."""
        return StationAddress(self.address)

    def header(self, function: int) -> Header:
        """The header of this station's frames with ``function``."""
        return Header(Direction.UP, self.centre, self.station, self.password, function)

    def next_serial(self) -> int:
        """The next serial (1..65535, then 1 again)."""
        self.serial = self.serial % 0xFFFF + 1
        return self.serial

    def report(
        self, function: FunctionCode, sent_at: datetime, groups: Sequence[ObservationGroup]
    ) -> Message:
        """A report of this station with the next serial."""
        block = StationBlock(self.station, self.station_type, tuple(groups))
        body = Report(self.next_serial(), sent_at, (block,))
        return Message(self.header(function), body, Control.ETX)

    async def timed_report(
        self,
        observed_at: datetime,
        sent_at: datetime,
        *,
        water_level: Decimal | str | None = None,
        rainfall_accumulated: Decimal | str | None = None,
        voltage: Decimal | str = "12.50",
        function: FunctionCode = FunctionCode.TIMED,
    ) -> Delivery:
        """Send a timed report (32, or 33 for an add report) and wait for its answer."""
        items: list[Item] = []
        if rainfall_accumulated is not None:
            items.append(number(ElementId.RAINFALL_ACCUMULATED, rainfall_accumulated))
        if water_level is not None:
            items.append(number(ElementId.WATER_LEVEL, water_level))
        items.append(number(ElementId.VOLTAGE, voltage))
        message = self.report(function, sent_at, [ObservationGroup(observed_at, tuple(items))])
        return await self.send(encode(message), self.serial)

    async def hourly_report(
        self,
        observed_at: datetime,
        sent_at: datetime,
        rainfall_5min: Sequence[Decimal | str | None],
        levels_5min: Sequence[Decimal | str | None],
    ) -> Delivery:
        """Send an hourly report (34): the hour's 5-minute rainfall and relative levels."""
        rain = tuple(None if v is None else Decimal(v) for v in rainfall_5min)
        level = tuple(None if v is None else Decimal(v) for v in levels_5min)
        items: tuple[Item, ...] = (
            FiveMinuteSeries(ElementId.RAINFALL_5MIN_SERIES, rain),
            FiveMinuteSeries(ElementId.LEVEL_5MIN_SERIES_1, level),
        )
        message = self.report(FunctionCode.HOURLY, sent_at, [ObservationGroup(observed_at, items)])
        return await self.send(encode(message), self.serial)

    async def keep_alive(self, sent_at: datetime) -> Delivery:
        """Send a link keep-alive (2F) with the last serial."""
        body = LinkKeepAlive(self.serial, sent_at)
        message = Message(self.header(FunctionCode.LINK_KEEPALIVE), body, Control.ETX)
        return await self.send(encode(message), self.serial)

    async def upload(
        self, message: Message, slice_size: int, *, lose: Collection[int] = ()
    ) -> Delivery:
        """Send ``message`` as an M3 multi-packet upload; the answer comes after the last.

        ``lose``: numbers of packets lost on the way the first time (the centre's NAK asks
        for each again, and the station sends it again).
        """
        packets = split(message.header, message.body, slice_size)
        assert isinstance(message.body, Report)
        first = b"".join(p for n, p in enumerate(packets, start=1) if n not in lose)
        return await self.send(first, message.body.serial, packets=packets)

    async def send(
        self, frames: bytes, serial: int, *, packets: Sequence[bytes] | None = None
    ) -> Delivery:
        """Send ``frames`` until the centre answers them; resends carry the very same bytes.

        As a real station does, it takes only an answer to this very frame (from the
        centre, same function, same serial); a garbled or unrelated answer is no answer.
        With ``packets`` (an M3 upload), a NAK naming one of them is answered by sending
        that packet again (counted in ``naks``), and the answer is awaited anew.
        """
        function = first_frame(frames).header.function
        for attempt in range(1, self.tries + 1):
            await self.link.connect()
            self.connects = self.link.connects
            self.sends += 1
            try:
                await self.link.send(frames)
            except ConnectionError:
                continue
            if self.drop_link_after_send:
                self.drop_link_after_send -= 1
                await self.hang_up()
                continue
            try:
                if packets:
                    answer = await self._resend_asked(function, serial, packets)
                else:
                    answer = await self.link.answer(function, serial, self.ack_timeout_s)
            except (NoAnswerError, ConnectionError):
                continue
            return Delivery(serial, answer, attempt)
        msg = f"station {self.address}: no acknowledgement of serial {serial} in {self.tries} tries"
        raise NoAcknowledgementError(msg)

    async def _resend_asked(self, function: int, serial: int, packets: Sequence[bytes]) -> Message:
        """Send each packet the centre NAKs again; its answer to the whole upload.

        A centre that keeps asking (more than three times the packets) is no answer.
        """
        answer = await self.link.frame(self.ack_timeout_s)
        for _ in range(3 * len(packets)):
            if not _asks_again(answer, function, len(packets)):
                if answers(answer, function, serial):
                    return answer
                await self.hang_up()
                raise NoAnswerError(Silence.UNRELATED)
            assert answer.packet is not None
            self.naks.append(answer.packet.number)
            await self.link.send(packets[answer.packet.number - 1])
            answer = await self.link.frame(self.ack_timeout_s)
        await self.hang_up()
        raise NoAnswerError(Silence.TIMEOUT)

    @property
    def link(self) -> StationLink:
        """The TCP link to the centre (shared code with the gateway's SL 651 uplink)."""
        if self._link is None:
            self._link = StationLink(self.host, self.port)
        return self._link

    async def hang_up(self) -> None:
        """Close the link (the next send connects again)."""
        if self._link is not None:
            await self._link.hang_up()


def _asks_again(answer: Message, function: int, count: int) -> bool:
    """Whether ``answer`` is the centre's NAK for one of an upload's ``count`` packets."""
    return (
        answer.end is Control.NAK
        and answer.header.direction is Direction.DOWN
        and answer.header.function == function
        and answer.packet is not None
        and answer.packet.count == count
        and 1 <= answer.packet.number <= count
    )


@dataclass(frozen=True)
class Scenario:
    """What the station measures at simulated UTC time ``t``: rain and water level.

    ``rain_mm`` is the rain since the start (mm), ``level_m`` the level (m); either may
    be absent.
    """

    rain_mm: Callable[[float], float] | None = None
    level_m: Callable[[float], float] | None = None


def station_time(t: float, utc_offset: timedelta = CHINA_STANDARD_TIME) -> datetime:
    """UTC epoch ``t`` on the station's clock (naive, whole seconds)."""
    return datetime.fromtimestamp(int(t), UTC).replace(tzinfo=None) + utc_offset


async def report_scenario(
    station: Sl651Station,
    now: Callable[[], float],
    scenario: Scenario,
    *,
    every_s: float = FIVE_MINUTES_S,
    speed: float = 1.0,
    lose_every: int = 0,
    on_delivery: Callable[[str, Delivery | None], None] | None = None,
    utc_offset: timedelta = CHINA_STANDARD_TIME,
) -> None:
    """Report ``scenario`` until cancelled, as a field station does.

    A timed report (32) every ``every_s`` simulated seconds on the grid of that step, and
    an hourly report (34) with the hour's 5-minute rainfall and levels on each full hour.
    ``now`` is the simulated clock, running ``speed`` times the wall clock. Every
    ``lose_every``-th report loses its answer (the link drops after sending), so the
    station resends it. ``on_delivery`` hears each report's outcome (None: unanswered).
    """
    sent = 0
    next_t = math.floor(now() / every_s) * every_s + every_s
    while True:
        await asyncio.sleep(max(0.0, (next_t - now()) / speed))
        t = next_t
        next_t += every_s
        kinds = ["timed"] + (["hourly"] if t % 3600 == 0 else [])
        for kind in kinds:
            sent += 1
            if lose_every and sent % lose_every == 0:
                station.drop_link_after_send = 1
            observed = station_time(t, utc_offset)
            at = station_time(now(), utc_offset)
            try:
                if kind == "timed":
                    delivery = await station.timed_report(
                        observed,
                        at,
                        rainfall_accumulated=_rain(scenario, t),
                        water_level=_level(scenario, t),
                    )
                else:
                    delivery = await _hourly(station, scenario, t, observed, at)
            except (NoAcknowledgementError, OSError):
                delivery = None
            if on_delivery is not None:
                on_delivery(kind, delivery)


def _rain(scenario: Scenario, t: float) -> Decimal | None:
    if scenario.rain_mm is None:
        return None
    return Decimal(f"{scenario.rain_mm(t):.1f}")


def _level(scenario: Scenario, t: float) -> Decimal | None:
    if scenario.level_m is None:
        return None
    return Decimal(f"{scenario.level_m(t):.3f}")


async def _hourly(
    station: Sl651Station, scenario: Scenario, t: float, observed: datetime, at: datetime
) -> Delivery:
    marks = [t - 3600 + FIVE_MINUTES_S * n for n in range(13)]
    rain: list[Decimal | None] = [None] * 12
    level: list[Decimal | None] = [None] * 12
    if scenario.rain_mm is not None:
        totals = [scenario.rain_mm(m) for m in marks]
        rain = [
            min(MAX_RAIN_5MIN, Decimal(f"{max(0.0, b - a):.1f}"))
            for a, b in itertools.pairwise(totals)
        ]
    if scenario.level_m is not None:
        level = [
            min(MAX_LEVEL_5MIN, Decimal(f"{max(0.0, scenario.level_m(m)):.2f}")) for m in marks[1:]
        ]
    return await station.hourly_report(observed, at, rain, level)
