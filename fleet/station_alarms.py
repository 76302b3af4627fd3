"""A site's alarm rules on SL 651 stations' readings, at the fleet: the seam, and its events.

A telemetry station has no rule engine of its own, so the fleet evaluates its rules on
what it reports. This module says what the receiving centre needs of an engine
(``StationRules``: replay a station's stored history, then evaluate its new observations,
and release a latch the console acknowledged) and turns the level changes it reports into
``alarm`` events on the station's own events stream, worded as a gateway words them. The
engine behind it is the gateway's own (``alarm_engine``), built from the station's rules
file by ``fleet.sl651_rules``; its level changes are the engine's ``LevelChange``
(``alarm_engine.level_change``, plain data: this seam, in every ``fleet serve``, loads
neither numpy nor the engine). Committed with the readings
by ``fleet.sl651_stations.StationRegistry.store`` through ingest's ``insert_events``, they
open, raise and clear the same alarm episode a gateway's events do, and 叫应 escalation
acts on it the same way.

This module must never decide a level itself, and never let a fault in the rules stop a
station's readings being stored or acknowledged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from alarm_engine.level_change import LevelChange
from protocol import EventRow
from protocol.events import ALARM_EVENT_KIND, AlarmEvent
from protocol.levels import LEVEL_NAMES

if TYPE_CHECKING:
    from fleet.sl651_stations import Observation, Station

log = logging.getLogger(__name__)


class StationRules(Protocol):
    """One station's site rules, evaluated on its observations in time order.

    The centre builds one per station at its first report after a start (or after a
    fault), replays ``history_s`` of the station's stored readings into it, restores the
    levels of its open alarms, and from then on hands it each report's new observations,
    in time order, once each.
    """

    @property
    def history_s(self) -> float:
        """How far back the rules need the readings to be where they stood (window sizes)."""
        ...

    def replay(self, observations: Sequence[Observation]) -> None:
        """Bring the rules up to date with stored history; its changes are already recorded."""
        ...

    def restore(self, levels: Mapping[str, int]) -> None:
        """After the replay, re-apply the levels of the station's open alarms, by rule.

        The history a replay sees may be shorter than what raised them (a water-level
        rule needs none): without this, a rule would start at normal while its alarm is
        open, and could never report the fall that closes it. A level a rule latches at
        latches again (the centre then re-applies the acknowledgements already made). A
        rule the station no longer has is left out.
        """
        ...

    def evaluate(self, observations: Sequence[Observation]) -> list[LevelChange]:
        """Evaluate new observations; the level changes they cause, in order."""
        ...

    def levels(self) -> Mapping[str, int]:
        """Each rule's level now (after the replay: where the stored readings put it)."""
        ...

    def acknowledge(self, rule_id: str, t: float) -> list[LevelChange]:
        """Release the latch of ``rule_id`` (acknowledged at ``t``); the changes that causes.

        Empty when the rule is not latched, or is no longer one of the station's rules.
        """
        ...


#: Builds a station's rules, or None for a station whose site has no rules for it.
RulesFor = Callable[["Station"], "StationRules | None"]


def alarm_events(changes: Sequence[LevelChange], first_seq: int) -> list[EventRow]:
    """``changes`` as the ``alarm`` events a gateway sends, numbered from ``first_seq``."""
    return [_event(change, first_seq + n) for n, change in enumerate(changes)]


def _event(change: LevelChange, seq: int) -> EventRow:
    metric = change.metric if math.isfinite(change.metric) else None
    detail = AlarmEvent(
        from_level=LEVEL_NAMES[change.old],
        to_level=LEVEL_NAMES[change.new],
        kind=change.kind,
        metric=metric,
        detail=change.detail,
        at=change.t,
    ).wire()
    return EventRow(
        seq=seq,
        ts=change.t,
        kind=ALARM_EVENT_KIND,
        subject=change.rule_id,
        level=change.new,
        detail=detail,
    )
