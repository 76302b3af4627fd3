"""The alarm episode rule: what a stored gateway event does to a rule's alarm.

An alarm is one episode of a rule on a gateway, from the first raise until back to normal.
``alarm`` events open, raise, lower and clear it; ``ack`` events acknowledge it at the
gateway; ``village_answer`` events record a village's answer to its 叫应 as a receipt.
``episode_change`` decides; each storage backend applies the decision in the transaction
that stores the event, so the rule is written once for every backend.

This module must never know a database, and must never drop an alarm because an event's
detail is malformed: the level is the event row's own, the detail only words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol import EventRow
from protocol.events import (
    ACK_EVENT_KIND,
    ALARM_EVENT_KIND,
    VILLAGE_ANSWER_EVENT_KIND,
    AckEvent,
    AlarmEvent,
)

#: Event kinds that may change an alarm episode (only with a ``subject``, the rule).
EPISODE_EVENT_KINDS = frozenset({ALARM_EVENT_KIND, ACK_EVENT_KIND, VILLAGE_ANSWER_EVENT_KIND})


@dataclass(frozen=True, slots=True)
class OpenEpisode:
    """The rule's alarm not back to normal yet, and the seq of the last event applied to it."""

    alarm_id: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class OpenAlarm:
    """Start a new episode of ``rule`` at ``level`` (also its peak so far)."""

    rule: str
    level: int
    raised_at: float
    seq: int
    detail: str | None


@dataclass(frozen=True, slots=True)
class MoveAlarm:
    """Set the episode's level (its peak only rises); ``cleared_at`` set: back to normal.

    ``detail`` None keeps the words the episode has.
    """

    alarm_id: int
    level: int
    seq: int
    detail: str | None
    cleared_at: float | None


@dataclass(frozen=True, slots=True)
class AcknowledgeAtGateway:
    """Record the gateway's acknowledgement, unless the alarm was acknowledged before.

    The backend stores where it was taken as ``ack_origin`` ``gateway``, not in the words.
    """

    alarm_id: int
    at: float
    by: str


@dataclass(frozen=True, slots=True)
class VillageAnswer:
    """A village answer taken at the gateway: a receipt on the alarm, and one for 叫应.

    The escalation engine reads these and stops calling the village tier. Gateways send
    them exactly once, so there is no duplicate to guard against.
    """

    alarm_id: int
    level: int
    person: str
    via: str
    confirmed_at: float


EpisodeChange = OpenAlarm | MoveAlarm | AcknowledgeAtGateway | VillageAnswer


def episode_change(open_episode: OpenEpisode | None, event: EventRow) -> EpisodeChange | None:
    """What newly stored ``event`` does to its rule's episode (``open_episode``), if anything.

    An event older than the last one applied to the episode changes nothing: it stays among
    the events but does not move the alarm back in time.
    """
    if not event.subject or event.kind not in EPISODE_EVENT_KINDS:
        return None
    if open_episode is not None and event.seq < open_episode.last_seq:
        return None
    if event.kind == VILLAGE_ANSWER_EVENT_KIND:
        return None if open_episode is None else _village_answer(open_episode.alarm_id, event)
    if event.kind == ACK_EVENT_KIND:
        if open_episode is None:
            return None
        by = f"{AckEvent.tolerant(event.detail).by} (at the gateway)"
        return AcknowledgeAtGateway(open_episode.alarm_id, event.ts, by)
    if event.level is None:
        return None
    detail = AlarmEvent.tolerant(event.detail).detail
    if open_episode is None:
        if event.level == 0:
            return None
        return OpenAlarm(event.subject, event.level, event.ts, event.seq, detail)
    cleared_at = event.ts if event.level == 0 else None
    return MoveAlarm(open_episode.alarm_id, event.level, event.seq, detail, cleared_at)


def _village_answer(alarm_id: int, event: EventRow) -> VillageAnswer:
    person = str(event.detail.get("person", "village"))[:128]
    via = f"{str(event.detail.get('via', 'answer'))[:64]} (at the gateway)"
    at = event.detail.get("at")
    confirmed_at = float(at) if isinstance(at, int | float) and math.isfinite(at) else event.ts
    return VillageAnswer(alarm_id, event.level or 0, person, via, confirmed_at)
