"""Payload models of protocol v1, their size limits and the store-and-forward rules.

Upload rules (DESIGN section 5), per stream (``readings``, ``events``):

1. The gateway publishes batches with QoS 1, events before the readings backlog. A batch
   covers the whole seq range ``first_seq..last_seq``: a seq in the range without a row
   does not exist on the gateway (thinned under the disk quota), so it is no gap.
2. The fleet commits a batch in one transaction, ignoring rows it already has
   (key: gateway + seq), and then publishes an ``Ack`` on ``hw/v1/{id}/ack``.
3. ``Ack.seq`` is the highest seq up to which the fleet holds every range, starting at 1
   (0: nothing yet). The gateway advances its watermark to it, never beyond what it sent.
4. After any reconnect, and whenever no ack has moved for ``ACK_TIMEOUT_S`` while batches
   are unacknowledged, the gateway resends from watermark + 1. A batch the fleet
   already holds is acknowledged again at once, so resending is always safe.

Limits are checked before parsing: a payload over ``MAX_PAYLOAD_BYTES`` or a batch over
its row limit is refused and counted, never partly stored. A refused message is never
acked, so a sender validates with these same models and limits before publishing.

Numbers: no model accepts NaN or an infinity anywhere (not even inside ``detail`` or
``args``); every integer fits a signed 64-bit SQLite INTEGER (``MAX_WIRE_INT``); every
timestamp lies in ``MIN_TIMESTAMP..MAX_TIMESTAMP``; a reading value is at most
``MAX_READING_MAGNITUDE`` in size. Integers are strict: ``true`` is not a seq. A gateway
passes stored rows through ``sendable_reading`` and ``finite_json``, so what its sensors
or clock got wrong is flagged on the row and still sent, never left to stall its stream.
This module must never import from ``edge_agent`` or ``fleet``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from itertools import chain
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from protocol.events import StandingForecast
from protocol.limits import (
    MAX_EVENT_ROWS,
    MAX_READING_MAGNITUDE,
    MAX_READING_ROWS,
    MAX_STANDING_FORECASTS,
    MAX_TIMESTAMP,
    MAX_WIRE_INT,
    MIN_TIMESTAMP,
    PROTOCOL_VERSION,
)
from protocol.quality import Quality
from protocol.topics import GATEWAY_ID_PATTERN

Seq = Annotated[int, Field(strict=True, ge=1, le=MAX_WIRE_INT)]
#: A count or size: never negative, never more than storage holds.
Count = Annotated[int, Field(strict=True, ge=0, le=MAX_WIRE_INT)]
#: The bits of ``protocol.quality.Quality`` as an int: bits a newer gateway adds pass.
QualityBits = Annotated[int, Field(strict=True, ge=0, lt=1 << 16)]
#: UTC seconds since the epoch, inside the sane range of ``protocol.limits``.
Timestamp = Annotated[float, Field(ge=MIN_TIMESTAMP, le=MAX_TIMESTAMP, allow_inf_nan=False)]
#: A measured value: finite and no larger than a float32 register can hold.
ReadingValue = Annotated[
    float, Field(ge=-MAX_READING_MAGNITUDE, le=MAX_READING_MAGNITUDE, allow_inf_nan=False)
]
#: Any other real number on the wire (temperatures, loads, voltages, uptimes).
Finite = Annotated[float, Field(allow_inf_nan=False)]
ChannelName = Annotated[str, Field(min_length=1, max_length=64)]
GatewayId = Annotated[str, Field(pattern=GATEWAY_ID_PATTERN)]

#: One reading on the wire, a JSON array ``[seq, ts, channel, value, quality]``:
#: ``ts`` in UTC seconds since the epoch (ms resolution), ``value`` null for NaN,
#: ``quality`` the bits of ``protocol.quality.Quality`` (0 is a good sample).
ReadingRow = tuple[Seq, Timestamp, ChannelName, ReadingValue | None, QualityBits]
#: Values in one ``ReadingRow``.
READING_FIELDS = 5

_OUT_OF_RANGE = int(Quality.OUT_OF_RANGE)
_CLOCK_UNSYNCED = int(Quality.CLOCK_UNSYNCED)


def sendable_reading(
    seq: int, ts: float, channel: str, value: float | None, quality: int
) -> ReadingRow:
    """A stored reading as the wire accepts it: flagged, never dropped.

    A value the wire refuses (NaN, an infinity, beyond ``MAX_READING_MAGNITUDE``) goes as
    null with the ``out_of_range`` bit; a time outside the sane range is clamped into it
    with the ``clock_unsynced`` bit. A row the fleet refused would stall the stream.
    """
    if value is not None and not -MAX_READING_MAGNITUDE <= value <= MAX_READING_MAGNITUDE:
        value = None  # the comparison is False for NaN too
        quality |= _OUT_OF_RANGE
    if not MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP:
        ts = MAX_TIMESTAMP if ts > MAX_TIMESTAMP else MIN_TIMESTAMP
        quality |= _CLOCK_UNSYNCED
    return (seq, ts, channel, value, quality)


def sendable_timestamp(ts: float) -> float:
    """``ts`` clamped into ``MIN_TIMESTAMP..MAX_TIMESTAMP`` (NaN becomes the lower bound)."""
    if MIN_TIMESTAMP <= ts <= MAX_TIMESTAMP:
        return ts
    return MAX_TIMESTAMP if ts > MAX_TIMESTAMP else MIN_TIMESTAMP


def finite_json(value: Any) -> Any:
    """``value`` (parsed JSON) with every non-finite float and over-long int as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIRE_INT:
        return str(value)
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    return value


def _refuse_non_finite(value: Any, where: str = "") -> None:
    """Raise ValueError naming the first NaN, infinity or over-long int inside ``value``."""
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"{where or 'value'} is {value!r}; only finite numbers are allowed"
        raise ValueError(msg)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIRE_INT:
        msg = f"{where or 'value'} does not fit 64 bits"
        raise ValueError(msg)
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_non_finite(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_non_finite(item, f"{where}[{index}]")


class Stream(enum.StrEnum):
    """The two sequenced streams a gateway uploads; each has its own seq and watermark."""

    READINGS = "readings"
    EVENTS = "events"


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    v: Literal[1] = PROTOCOL_VERSION


class _Batch(_Payload):
    gateway_id: GatewayId
    first_seq: Seq
    last_seq: Seq
    sent_at: Timestamp | None = None

    def _check_range(self, seqs: list[int]) -> None:
        if self.last_seq < self.first_seq:
            msg = f"last_seq {self.last_seq} is below first_seq {self.first_seq}"
            raise ValueError(msg)
        if not seqs:
            return
        # The common case in C: sorted() is linear on sorted input and set() finds repeats.
        if (
            self.first_seq <= seqs[0]
            and seqs[-1] <= self.last_seq
            and sorted(seqs) == seqs
            and len(set(seqs)) == len(seqs)
        ):
            return
        previous = self.first_seq - 1
        for seq in seqs:
            if seq <= previous or seq > self.last_seq:
                msg = f"row seq {seq} is out of order or outside {self.first_seq}..{self.last_seq}"
                raise ValueError(msg)
            previous = seq


class DataBatch(_Batch):
    """Readings ``first_seq..last_seq`` of one gateway, rows in increasing seq order.

    ``rows`` is a list, not a ``Sequence``: pydantic validates a list in Rust alone, while
    a ``Sequence`` adds a Python wrapper per batch that costs a quarter of ingest's parsing.
    Do not change ``rows`` in place after validation (``flat_rows`` keeps a copy).
    """

    rows: list[ReadingRow] = Field(max_length=MAX_READING_ROWS)
    _flat: tuple[list[ReadingRow], list[Any]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _rows_in_range(self) -> Self:
        self.check_rows()
        return self

    def check_rows(self) -> None:
        """Raise ValueError unless the rows' seqs rise strictly inside the batch's range."""
        self._check_range(self.flat_rows()[::READING_FIELDS])

    def flat_rows(self) -> list[Any]:
        """The rows as one list ``seq, ts, channel, value, quality, seq, ts, ...``.

        Made in C once, when the batch is validated, so a receiver that validates off its
        critical path (ingest, before its write lock) gets rows it can bind in bulk.
        """
        if self._flat is None or self._flat[0] is not self.rows:  # new, or model_copy'd
            self._flat = (self.rows, list(chain.from_iterable(self.rows)))
        return self._flat[1]


class EventRow(BaseModel):
    """One stored event: alarm level change, fault, actuation, acknowledgement, start-up ...

    Well-known kinds: ``alarm`` (``subject`` the rule id, ``level`` the new level 0..4,
    ``detail`` with ``from``, ``to``, ``kind`` rise|fall|ack, ``metric``, ``detail``, ``at``)
    and ``ack`` (``subject`` the rule id, ``detail.by`` who acknowledged).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    seq: Seq
    ts: Timestamp
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    subject: Annotated[str, Field(max_length=128)] | None = None
    level: Annotated[int, Field(strict=True, ge=0, le=4)] | None = None
    detail: dict[str, Any] = Field(default_factory=dict)

    @field_validator("detail")
    @classmethod
    def _finite_detail(cls, detail: dict[str, Any]) -> dict[str, Any]:
        _refuse_non_finite(detail)
        return detail


class EventBatch(_Batch):
    """Events ``first_seq..last_seq`` of one gateway, rows in increasing seq order."""

    rows: Sequence[EventRow] = Field(max_length=MAX_EVENT_ROWS)

    @model_validator(mode="after")
    def _rows_in_range(self) -> Self:
        self._check_range([row.seq for row in self.rows])
        return self


class Ack(_Payload):
    """Fleet -> gateway: every range of ``stream`` up to ``seq`` is committed."""

    stream: Stream
    seq: Count


class BusHealth(BaseModel):
    """One bus as the health message reports it."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    last_success: Timestamp | None = None
    transactions: Count = 0
    failures: Count = 0


class Health(_Payload):
    """Periodic gateway health (every ``HEALTH_INTERVAL_S``, retained).

    Sizes are bytes, temperatures degrees Celsius, voltages volts; None when unknown.
    ``sensor_faults`` counts fault events per device (or channel) since start-up.
    """

    gateway_id: GatewayId
    ts: Timestamp
    uptime_s: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    agent_version: str
    config_version: str | None = None
    cpu_temp_c: Finite | None = None
    load_1m: Finite | None = None
    load_5m: Finite | None = None
    load_15m: Finite | None = None
    mem_total: Count | None = None
    mem_available: Count | None = None
    disk_total: Count | None = None
    disk_free: Count | None = None
    store_bytes: Count | None = None
    backlog_readings: Count = 0
    backlog_events: Count = 0
    alarm_level: Annotated[int, Field(strict=True, ge=0, le=4)] | None = None
    buses: dict[str, BusHealth] = Field(default_factory=dict)
    sensor_faults: dict[str, Count] = Field(default_factory=dict)
    supply_v: Finite | None = None
    battery_v: Finite | None = None
    #: Each raised failure-forecast rule's newest accepted forecast, by rule id.
    forecasts: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=128)], StandingForecast],
        Field(max_length=MAX_STANDING_FORECASTS),
    ] = Field(default_factory=dict)


Name = Annotated[str, Field(min_length=1, max_length=128)]
LevelValues = dict[Literal["blue", "yellow", "orange", "red"], Finite]


class SiteChannel(BaseModel):
    """One polled channel of the site: what it measures and in which unit."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    channel: Name
    quantity: Annotated[str, Field(max_length=64)]
    unit: Annotated[str, Field(max_length=32)]


class SiteRule(BaseModel):
    """One alarm rule as the console draws it (the gateway's site file decides, not this).

    ``thresholds`` are on the channel's value itself (water level); ``windows`` are rain
    totals per sliding window (``"1h"`` -> level -> mm); ``horizons_h`` are the hours
    before a forecast failure at which each level fires. Rules on derived metrics carry
    none of them.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    id: Name
    kind: Annotated[str, Field(max_length=64)]
    channel: Name | None = None
    thresholds: LevelValues = Field(default_factory=dict)
    windows: Annotated[dict[Name, LevelValues], Field(max_length=16)] = Field(default_factory=dict)
    horizons_h: LevelValues = Field(default_factory=dict)


class SiteSummary(BaseModel):
    """What a gateway's site file says of the site, for the county's map and charts."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    site_id: Name
    name: Name
    lat: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)] | None = None
    lon: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)] | None = None
    channels: Annotated[list[SiteChannel], Field(max_length=512)] = Field(default_factory=list)
    rules: Annotated[list[SiteRule], Field(max_length=256)] = Field(default_factory=list)


class GatewayState(_Payload):
    """Retained online/offline state; the gateway sets ``offline`` as its Last Will.

    ``online`` carries ``site``, the summary of the site file in use (absent from the
    Last Will, so the fleet keeps the last one it was told).
    """

    state: Literal["online", "offline"]
    ts: Timestamp | None = None
    agent_version: str | None = None
    site: SiteSummary | None = None


class Command(_Payload):
    """Fleet -> gateway: do something and report a ``CommandResult`` with the same ``id``."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: Timestamp
    issued_by: str | None = None

    @field_validator("args")
    @classmethod
    def _finite_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        _refuse_non_finite(args)
        return args


class CommandResult(_Payload):
    """Gateway -> fleet: the outcome of a ``Command``."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    ok: bool
    detail: str | None = None
    ts: Timestamp | None = None
