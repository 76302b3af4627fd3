"""The control socket's messages: each request a typed model, the main replies too.

A request is one JSON object ``{"cmd": NAME, ...args}``; ``parse_request`` turns it into
its model or a ``BadRequestError`` whose text says exactly what is wrong, for the agent to
send back. Replies keep the JSON shape ``edge status --json`` and ``edge alarms --json``
print; ``parse_reply`` reads one back into its model on the ``edge`` side, so both ends
of the socket speak the same types. Only data and validation here: nothing in this module
may touch a socket, the store or an output.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from protocol.events import StandingForecast

if TYPE_CHECKING:
    from drivers.poller import DeviceHealth


class BadRequestError(ValueError):
    """A control request the agent cannot act on; the text is the reply's ``error``."""


class BadReplyError(ValueError):
    """An agent's answer that is not the reply its request expects (say, another version)."""


class _Request(BaseModel):
    # A misspelt argument is refused, not ignored: a technician must see the typo.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class StatusRequest(_Request):
    """``edge status``: buses, devices, channels, alarm levels, store."""

    cmd: Literal["status"] = "status"


class AlarmsRequest(_Request):
    """``edge alarms``: the level of each rule and the last alarm and ack events."""

    cmd: Literal["alarms"] = "alarms"


class AckRequest(_Request):
    """``edge ack RULE``: acknowledge a rule's latched alarm; ``by`` goes in the event log."""

    cmd: Literal["ack"] = "ack"
    rule: Annotated[str, Field(min_length=1, max_length=128)]
    by: Annotated[str, Field(min_length=1, max_length=128)] = "local"


class SirenTestRequest(_Request):
    """``edge siren test``: read every relay back, or sound the test pattern (``audible``)."""

    cmd: Literal["siren_test"] = "siren_test"
    audible: bool = False


class UplinkRequest(_Request):
    """``edge uplink status``: the live link's state."""

    cmd: Literal["uplink"] = "uplink"


class UpdateRequest(_Request):
    """``edge update status``: the running release and the configuration update's state."""

    cmd: Literal["update"] = "update"


ControlRequest = Annotated[
    StatusRequest | AlarmsRequest | AckRequest | SirenTestRequest | UplinkRequest | UpdateRequest,
    Field(discriminator="cmd"),
]
_REQUEST: TypeAdapter[ControlRequest] = TypeAdapter(ControlRequest)


def parse_request(line: bytes, commands: Collection[str]) -> ControlRequest:
    """The request on ``line`` for one of ``commands`` (the ones this agent serves).

    Raises:
        BadRequestError: naming what is wrong (not JSON, unknown command, a bad argument)
            and, where it helps, the commands there are.
    """
    known = ", ".join(sorted(commands))
    try:
        data = json.loads(line)
    except ValueError:
        msg = f'bad request: not one JSON object such as {{"cmd": "status"}}; commands: {known}'
        raise BadRequestError(msg) from None
    if not isinstance(data, dict) or not isinstance(data.get("cmd"), str):
        msg = f'bad request: no "cmd" naming a command; commands: {known}'
        raise BadRequestError(msg)
    command = data["cmd"]
    if command not in commands:
        msg = f"unknown command {command!r}; commands: {known}"
        raise BadRequestError(msg)
    try:
        return _REQUEST.validate_python(data)
    except ValidationError as exc:
        # The first part of each location is the union's tag (the command): left out.
        msg = f"bad {command!r} request: {problems(exc, skip=1, whole='request')}"
        raise BadRequestError(msg) from None


def problems(exc: ValidationError, *, skip: int = 0, whole: str = "request") -> str:
    """Each error as ``field: message``, joined by ``; ``; ``whole`` names a top-level one.

    ``skip`` leaves out that many leading parts of each location.
    """
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][skip:]) or whole}: {error['msg']}"
        for error in exc.errors()
    )


class ControlReply(BaseModel):
    """A typed reply; ``wire`` is what goes back on the socket."""

    model_config = ConfigDict(frozen=True)

    def wire(self) -> dict[str, Any]:
        """The reply as sent, JSON-ready (a NaN reading stays NaN, as ``edge`` shows it)."""
        return self.model_dump()


class ErrorReply(ControlReply):
    """Any request the agent refused: ``error`` says why."""

    ok: Literal[False] = False
    error: str


class AlarmStatus(ControlReply):
    """One rule (or siren-node fallback) now: its level name and its headline metrics.

    ``forecast`` only for a raised failure-forecast rule that has an accepted forecast:
    its newest one, as the health report sends it (``metrics`` are the latest evaluation,
    which may have failed the evidence test). Left out of the JSON when there is none.
    """

    level: str
    metrics: dict[str, float]
    forecast: StandingForecast | None = None

    @model_serializer(mode="wrap")
    def _without_absent_forecast(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and "forecast" in data and data["forecast"] is None:
            del data["forecast"]
        return data


class BusStatus(ControlReply):
    """One bus's counters: transactions, failures by quality name, last success time."""

    transactions: int
    failures: dict[str, int]
    last_success: float | None


class ExceptionAnswerStatus(ControlReply):
    """One kind of Modbus exception a device answers: code, meaning and request in words."""

    detail: str
    hint: str | None = None
    channels: list[str]
    count: int
    last: float


class DeviceStatus(ControlReply):
    """One device: when it last answered a poll, faults by quality name, what went wrong.

    ``last_error`` is set while the device does not answer at all; ``exceptions`` lists
    the exception answers it gave to any of its requests since the agent started.
    """

    last_poll: float | None
    faults: dict[str, int]
    last_error: str | None = None
    exceptions: list[ExceptionAnswerStatus] = Field(default_factory=list)

    @classmethod
    def of(cls, health: DeviceHealth) -> DeviceStatus:
        """What the poller knows of one device, as the status reply (and ``edge poll``) tell it."""
        return cls(
            last_poll=health.last_poll,
            faults=dict(health.faults),
            last_error=health.last_error if health.consecutive_failures else None,
            exceptions=[
                ExceptionAnswerStatus(
                    detail=e.detail,
                    hint=e.hint,
                    channels=list(e.channels),
                    count=e.count,
                    last=e.last,
                )
                for e in health.exceptions.values()
            ],
        )


class ChannelStatus(ControlReply):
    """One channel's latest reading; ``quality`` lists the set bits (``["ok"]`` if none)."""

    value: float
    unit: str
    quality: list[str]
    t: float


class StatusReply(ControlReply):
    """The reply to ``status``.

    ``village_call`` only on a gateway that texts villagers, ``sl651_uplink`` only on one
    that reports to an SL 651 centre.
    """

    ok: Literal[True] = True
    site: str
    version: str
    uptime_s: float
    now: float
    level: str
    #: The alarm kernels evaluating the rules: "numba", or "reference" (pure Python) where
    #: numba is not installed (Raspberry Pi OS 32-bit) or not asked for.
    alarm_backend: str
    buses: dict[str, BusStatus]
    devices: dict[str, DeviceStatus]
    channels: dict[str, ChannelStatus]
    alarms: dict[str, AlarmStatus]
    actuators: dict[str, Any]
    store: dict[str, Any]
    village_call: dict[str, Any] | None = None
    sl651_uplink: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        """The reply as sent: ``village_call`` and ``sl651_uplink`` left out where none."""
        data = super().wire()
        for optional in ("village_call", "sl651_uplink"):
            if data[optional] is None:
                del data[optional]
        return data


class AlarmHistoryEntry(ControlReply):
    """One ``alarm`` or ``ack`` event: time, rule, then the event's own detail fields."""

    model_config = ConfigDict(frozen=True, extra="allow")

    t: float
    rule: str | None


class AlarmsReply(ControlReply):
    """The reply to ``alarms``: each rule's level now, and the recent events, oldest first."""

    ok: Literal[True] = True
    active: dict[str, AlarmStatus]
    history: list[AlarmHistoryEntry]


class AckReply(ControlReply):
    """The reply to ``ack``: the rule's level after the acknowledgement."""

    ok: Literal[True] = True
    rule: str
    level: str


class SirenTestReply(ControlReply):
    """The reply to ``siren_test``: per relay True or what was wrong; ``detail`` if refused.

    ``ok`` is False when a relay failed (``results`` says which) and when an audible test
    was refused while an alarm is active (``detail`` says why).
    """

    ok: bool
    results: dict[str, bool | str] = {}
    detail: str | None = None

    def wire(self) -> dict[str, Any]:
        """The reply as sent: ``detail`` only on a refusal, ``results`` only after a test."""
        data = super().wire()
        if data["detail"] is None:
            del data["detail"]
        if not data["results"] and "detail" in data:
            del data["results"]
        return data


class UplinkReply(ControlReply):
    """The reply to ``uplink``: the live link's state; its fields as ``edge uplink status``."""

    model_config = ConfigDict(frozen=True, extra="allow")

    ok: Literal[True] = True


ReplyT = TypeVar("ReplyT", bound=ControlReply)


def parse_reply(line: bytes, reply: type[ReplyT]) -> ReplyT | ErrorReply:
    """The agent's answer on ``line``: the ``reply`` model, or the ``ErrorReply`` it refused with.

    Raises:
        BadReplyError: when the line is neither (not JSON, or not the expected shape).
    """
    try:
        data = json.loads(line)
    except ValueError:
        msg = f"the agent's reply is not JSON: {line[:80]!r}"
        raise BadReplyError(msg) from None
    if isinstance(data, dict) and data.get("ok") is False and "error" in data:
        return _validated(ErrorReply, data, reply.__name__)
    return _validated(reply, data, reply.__name__)


def _validated(model: type[ReplyT], data: object, expected: str) -> ReplyT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        msg = f"the agent's reply is not a {expected}: {problems(exc, whole='reply')}"
        raise BadReplyError(msg) from None
