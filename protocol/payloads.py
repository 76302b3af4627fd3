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
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from itertools import chain
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from protocol.limits import (
    MAX_EVENT_ROWS,
    MAX_READING_ROWS,
    PROTOCOL_VERSION,
)
from protocol.topics import GATEWAY_ID_PATTERN

Seq = Annotated[int, Field(ge=1)]
Quality = Annotated[int, Field(ge=0, lt=1 << 16)]
ChannelName = Annotated[str, Field(min_length=1, max_length=64)]
GatewayId = Annotated[str, Field(pattern=GATEWAY_ID_PATTERN)]

#: One reading on the wire, a JSON array ``[seq, ts, channel, value, quality]``:
#: ``ts`` in UTC seconds since the epoch (ms resolution), ``value`` null for NaN,
#: ``quality`` the bits of ``drivers.model.Quality`` (0 is a good sample).
ReadingRow = tuple[Seq, float, ChannelName, float | None, Quality]
#: Values in one ``ReadingRow``.
READING_FIELDS = 5


class Stream(enum.StrEnum):
    """The two sequenced streams a gateway uploads; each has its own seq and watermark."""

    READINGS = "readings"
    EVENTS = "events"


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: Literal[1] = PROTOCOL_VERSION


class _Batch(_Payload):
    gateway_id: GatewayId
    first_seq: Seq
    last_seq: Seq
    sent_at: float | None = None

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
        self._check_range(self.flat_rows()[::READING_FIELDS])
        return self

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

    model_config = ConfigDict(frozen=True, extra="ignore")

    seq: Seq
    ts: float
    kind: Annotated[str, Field(min_length=1, max_length=32)]
    subject: Annotated[str, Field(max_length=128)] | None = None
    level: Annotated[int, Field(ge=0, le=4)] | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


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
    seq: Annotated[int, Field(ge=0)]


class BusHealth(BaseModel):
    """One bus as the health message reports it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    last_success: float | None = None
    transactions: int = 0
    failures: int = 0


class Health(_Payload):
    """Periodic gateway health (every ``HEALTH_INTERVAL_S``, retained).

    Sizes are bytes, temperatures degrees Celsius, voltages volts; None when unknown.
    ``sensor_faults`` counts fault events per device (or channel) since start-up.
    """

    gateway_id: GatewayId
    ts: float
    uptime_s: float
    agent_version: str
    config_version: str | None = None
    cpu_temp_c: float | None = None
    load_1m: float | None = None
    load_5m: float | None = None
    load_15m: float | None = None
    mem_total: int | None = None
    mem_available: int | None = None
    disk_total: int | None = None
    disk_free: int | None = None
    store_bytes: int | None = None
    backlog_readings: int = 0
    backlog_events: int = 0
    alarm_level: Annotated[int, Field(ge=0, le=4)] | None = None
    buses: dict[str, BusHealth] = Field(default_factory=dict)
    sensor_faults: dict[str, int] = Field(default_factory=dict)
    supply_v: float | None = None
    battery_v: float | None = None


class GatewayState(_Payload):
    """Retained online/offline state; the gateway sets ``offline`` as its Last Will."""

    state: Literal["online", "offline"]
    ts: float | None = None
    agent_version: str | None = None


class Command(_Payload):
    """Fleet -> gateway: do something and report a ``CommandResult`` with the same ``id``."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    args: dict[str, Any] = Field(default_factory=dict)
    issued_at: float
    issued_by: str | None = None


class CommandResult(_Payload):
    """Gateway -> fleet: the outcome of a ``Command``."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    ok: bool
    detail: str | None = None
    ts: float | None = None
