"""Alarm vocabulary between gateway and fleet: ``alarm``/``ack`` event details, ack args.

An ``EventRow`` carries a free ``detail`` object; for these kinds this module says what
is in it, so the gateway writes and the fleet reads one shape. Reading is tolerant: a
gateway of any release sends its own fields, so unknown fields are ignored, every field
may be missing, and a field that does not parse is dropped rather than losing the event.
``AckAlarmArgs`` are the arguments of the fleet's ``ack_alarm`` command. Nothing here may
import anything of the project but ``protocol``, and no reader here may refuse an event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocol.limits import MAX_TIMESTAMP, MIN_TIMESTAMP

#: ``EventRow.kind`` of a rule's level change; ``subject`` the rule, ``level`` the new one.
ALARM_EVENT_KIND: Final = "alarm"
#: ``EventRow.kind`` of an acknowledgement of a rule's latched alarm; ``subject`` the rule.
ACK_EVENT_KIND: Final = "ack"
#: ``EventRow.kind`` of a text the gateway sent the village itself (叫应 while cut off);
#: ``detail``: ``alarm_seq``, ``person`` (name and tier), ``to`` (masked), ``status``.
VILLAGE_CALL_EVENT_KIND: Final = "village_call"
#: ``EventRow.kind`` of a village answer the gateway took (reply SMS, confirm button);
#: ``detail``: ``alarm_seq``, ``person``, ``via``, ``at``. The fleet stops calling the tier.
VILLAGE_ANSWER_EVENT_KIND: Final = "village_answer"
#: ``EventRow.kind`` of the site's outputs following a new site level; ``subject`` is
#: ``"site"``, ``level`` the new site level, ``detail`` an ``ActuationEvent``.
ACTUATION_EVENT_KIND: Final = "actuation"
#: ``EventRow.kind`` of a broadcast clip started; ``subject`` the clip, ``level`` the level.
BROADCAST_EVENT_KIND: Final = "broadcast"


class _EventDetail(BaseModel):
    # The gateway builds these on its alarm path, before the sirens switch: no validator
    # may refuse what the alarm engine produces (a NaN metric, a long detail text).
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @classmethod
    def tolerant(cls, detail: Mapping[str, Any]) -> Self:
        """Parse ``detail`` as sent by any gateway release; never raises.

        A field that does not parse is dropped (read as missing), the others are kept.
        """
        try:
            return cls.model_validate(detail)
        except ValidationError as exc:
            bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
            return cls.model_validate({k: v for k, v in detail.items() if k not in bad})

    def wire(self) -> dict[str, Any]:
        """The JSON object stored with the event and sent in its ``EventRow.detail``."""
        return self.model_dump(by_alias=True, exclude_none=True)


class FailureForecast(_EventDetail):
    """A failure-forecast rule's forecast when its level changed (``AlarmEvent.forecast``).

    Times are epoch seconds; ``failure_t_low``/``failure_t_high`` bound the stated 95 %
    interval (the fit's own, widened where a later part of the window disagrees);
    ``evidence`` is the F statistic of acceleration against steady creep. A value the
    forecast did not have (no acceleration: no failure time) is missing, never infinite;
    so is a time outside the wire's range (2000-2100), which only a fault can give.
    """

    lead_h: float | None = None
    failure_t: float | None = None
    failure_t_low: float | None = None
    failure_t_high: float | None = None
    alpha: float | None = None
    velocity_mm_day: float | None = None
    evidence: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _finite_only(cls, value: Any) -> Any:
        # JSON has no infinity: the uplink sends one as text; here it is simply unknown.
        if isinstance(value, str) or (isinstance(value, float) and not math.isfinite(value)):
            return None
        return value

    @field_validator("failure_t", "failure_t_low", "failure_t_high")
    @classmethod
    def _a_wire_time(cls, value: float | None) -> float | None:
        # A time outside the wire's range (2000-2100) is no forecast anyone can show.
        return value if value is None or MIN_TIMESTAMP <= value <= MAX_TIMESTAMP else None


class StandingForecast(FailureForecast):
    """A failure-forecast rule's newest accepted forecast (``Health.forecasts``).

    A rule forecasts every hour or so, but its events carry a forecast only when its level
    changes; while the rule is raised, the gateway reports its newest forecast that passed
    the evidence test with each health report. ``at`` is the time of the sample it was made
    at. Older gateways send none.
    """

    at: float | None = None

    @field_validator("at")
    @classmethod
    def _made_at_a_wire_time(cls, value: float | None) -> float | None:
        return value if value is None or MIN_TIMESTAMP <= value <= MAX_TIMESTAMP else None


class AlarmEvent(_EventDetail):
    """Detail of an ``alarm`` event: one rule's level changed, or its latch was acknowledged.

    ``from``/``to`` are level names (``AlarmLevel.colour``); ``kind`` is ``rise``, ``fall``
    or ``ack``; ``metric`` the rule's headline value then (NaN when it has none); ``detail``
    says it in words, e.g. ``"1h window 47.2 mm >= 45 (yellow)"``; ``at`` the time of the
    sample that decided it. The new level itself is ``EventRow.level``.
    """

    # Separate aliases, not ``alias``: ``from`` is a keyword, so code builds by field name.
    from_level: Annotated[
        str | None, Field(validation_alias="from", serialization_alias="from", max_length=16)
    ] = None
    to_level: Annotated[
        str | None, Field(validation_alias="to", serialization_alias="to", max_length=16)
    ] = None
    kind: Literal["rise", "fall", "ack"] | None = None
    metric: float | None = None
    detail: str | None = None
    at: float | None = None
    #: Only a failure-forecast rule's events carry it (gateways from 0.14 on).
    forecast: FailureForecast | None = None

    @field_validator("metric", mode="before")
    @classmethod
    def _metric_from_text(cls, value: Any) -> Any:
        # The uplink sends a NaN metric as the string "nan" (JSON has no NaN).
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return value


class ActuationEvent(_EventDetail):
    """Detail of an ``actuation`` event: what the site's relays were set to, and why.

    ``patterns`` maps each relay actuator to its pattern now (``"siren"``, ``"light"`` ...)
    or None when it is off; ``from``/``to`` are the site level's names before and after;
    ``cause`` the rule changes that moved it, in words.
    """

    from_level: Annotated[
        str | None, Field(validation_alias="from", serialization_alias="from", max_length=16)
    ] = None
    to_level: Annotated[
        str | None, Field(validation_alias="to", serialization_alias="to", max_length=16)
    ] = None
    cause: str | None = None
    patterns: dict[str, str | None] = Field(default_factory=dict)

    @property
    def switched_on(self) -> bool:
        """True when some actuator is on after this event."""
        return any(p is not None for p in self.patterns.values())


class AckEvent(_EventDetail):
    """Detail of an ``ack`` event: who acknowledged (``local`` at the gateway by default)."""

    by: str = "local"


class AckAlarmArgs(BaseModel):
    """``Command.args`` of ``ack_alarm``: the fleet acknowledges ``rule``'s latched alarm."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    rule: Annotated[str, Field(min_length=1, max_length=128)]
    by: Annotated[str, Field(min_length=1, max_length=128)]
