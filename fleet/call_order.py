"""The order a burst of 叫应 calls goes out in: everyone reached once before anyone twice.

When a thousand sites raise red at once, each channel's senders first take the next
person not yet reached on any channel; only when nobody is left unreached do they send
the person's other channels. A slow or hanging channel then holds back only the persons
it already took, never the others. This module only orders; it never sends or stores.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from fleet.escalation_store import Call, Escalation
from fleet.roster import Person


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A committed call with what sending it needs (person None: no longer on the roster)."""

    call: Call
    person: Person | None
    escalation: Escalation


class FirstContactQueue:
    """Hands each channel's senders the next call: a person's first, else a later one."""

    def __init__(self, outgoing: Sequence[Outgoing]) -> None:
        self._calls: dict[tuple[int, int], list[Outgoing]] = {}
        self._first: dict[str, deque[tuple[int, int]]] = {}
        self._later: dict[str, deque[Outgoing]] = {}
        self._reached: set[tuple[int, int]] = set()
        self.add(outgoing)

    def add(self, outgoing: Sequence[Outgoing]) -> None:
        """Queue more calls (a burst still being sent takes the next round's calls).

        Their persons' first calls go after the first calls queued before and before
        every later call; the calls of a person already reached are later calls.
        """
        batch: dict[tuple[int, int], list[Outgoing]] = {}
        for item in outgoing:
            batch.setdefault((item.call.escalation_id, item.call.person_id), []).append(item)
        for key, items in batch.items():
            for item in items:
                self._later.setdefault(item.call.channel, deque())
                if key in self._reached:
                    self._later[item.call.channel].append(item)
                else:
                    self._first.setdefault(item.call.channel, deque()).append(key)
            if key not in self._reached:
                self._calls.setdefault(key, []).extend(items)

    @property
    def channels(self) -> list[str]:
        """The channels that have (or had) calls to send."""
        return list(self._later)

    def take(self, channel: str) -> Outgoing | None:
        """The next call for ``channel``, or None when it has nothing left to send.

        Taking a person's first call puts their other calls behind every first call of
        those channels; once a channel's first calls are all taken, every later call it
        will get from the calls queued so far is already queued, so None is final until
        ``add`` queues more.
        """
        first = self._first.get(channel)
        while first:
            key = first.popleft()
            if key in self._reached:
                continue
            self._reached.add(key)
            mine = None
            for item in self._calls.pop(key):
                if item.call.channel == channel and mine is None:
                    mine = item
                else:
                    self._later[item.call.channel].append(item)
            return mine
        later = self._later.get(channel)
        return later.popleft() if later else None
