"""The contract every evaluation backend fulfils, and the raw changes they report.

Plain data and protocols; nothing here evaluates a rule or depends on numba. What the
engine reports to its callers, ``LevelChange``, is ``alarm_engine.level_change``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]


class RawChange(NamedTuple):
    """A level change as a backend reports it, before the engine words it.

    ``sample`` is the sample's position in the processed batch (-1 for an acknowledgement);
    ``values`` is the rule's metric snapshot at that sample (see ``details.VALUE_NAMES``).
    """

    sample: int
    old: int
    new: int
    values: tuple[float, ...]


class RuleState(Protocol):
    """One rule's level state in some backend.

    Both backends implement the same state machine:

    - a good evaluation whose metric meets a higher level's threshold raises the level at once;
    - the level falls, to the level the metric supports with hysteresis, once the metric has
      been below (current threshold - hysteresis) for ``hold_s``: the hold counts the time
      between consecutive evaluations that were both below with no bad sample between them;
      a bad sample pauses the count (its time is not evidence), an evaluation at or above
      resets it;
    - levels at or above ``latch_from`` latch: they never fall until acknowledged.
    """

    @property
    def level(self) -> int:
        """Current level, 0..4."""
        ...

    @property
    def latched(self) -> bool:
        """True while a latched level waits for an acknowledgement."""
        ...

    @property
    def values(self) -> tuple[float, ...]:
        """Metric snapshot of the latest evaluation (NaN before the first one)."""
        ...

    @property
    def accepted(self) -> tuple[float, tuple[float, ...]] | None:
        """A failure-forecast rule's newest forecast that passed its evidence test.

        (time of the sample it was made at, its snapshot as ``values``); None before one
        has passed, and always for other kinds of rule. Kept across batches, so a replay
        in one batch leaves the same as the samples pushed one by one.
        """
        ...

    def acknowledge(self) -> RawChange | None:
        """Release the latch; fall at once to the level the latest metric supports.

        Returns None when nothing was latched; otherwise a change with ``sample`` -1 (``old``
        equals ``new`` when the metric still supports the level).
        """
        ...

    def restore_latch(self, level: int) -> None:
        """Re-apply a latched ``level`` recorded before a restart (never lowers the level)."""
        ...

    def restore_level(self, level: int) -> None:
        """Re-apply a ``level`` recorded before a restart (never lowers it, never latches).

        The hold evidence starts again at the next sample: the time the agent was down is
        never counted as time below threshold.
        """
        ...


class ChannelEvaluator(Protocol):
    """Evaluates one or more rules of one channel over batches of its samples.

    A backend may evaluate several rules in one pass (the numba backend shares the slope
    fit between slope rules with the same window and cadence).
    """

    @property
    def states(self) -> Mapping[str, RuleState]:
        """The state of each rule it evaluates, by rule id."""
        ...

    def process(self, t: FloatArray, v: FloatArray, good: BoolArray) -> list[tuple[str, RawChange]]:
        """Advance over a batch of samples sorted by time; return (rule id, change) pairs."""
        ...
