"""Choosing an evaluation backend and building one evaluator per rule in it.

"numba" runs the compiled kernels, "reference" the plain-Python oracle, "auto" takes numba
when it imports and otherwise falls back to the reference with one logged warning. Never
evaluates anything itself.
"""

from __future__ import annotations

import logging
from typing import Literal

from alarm_engine.model import BoolArray, ChannelEvaluator, FloatArray, RawChange
from alarm_engine.reference import ReferenceRule
from site_schema.rule_specs import SampleRule

Backend = Literal["numba", "reference"]
BACKENDS = ("auto", "numba", "reference")

_log = logging.getLogger(__name__)
_warned_fallback = False


def resolve_backend(name: str) -> Backend:
    """Return the backend ``name`` stands for on this host.

    Raises:
        ValueError: for an unknown name, or "numba" when numba cannot be imported.
    """
    global _warned_fallback  # noqa: PLW0603 - one warning per process, not per engine
    if name not in BACKENDS:
        msg = f"unknown alarm backend {name!r} (backends: {', '.join(BACKENDS)})"
        raise ValueError(msg)
    if name == "reference":
        return "reference"
    try:
        import alarm_engine.numba_backend  # noqa: F401, PLC0415 - numba is optional
    except ImportError as exc:
        if name == "numba":
            msg = f"alarm backend 'numba' is not available: {exc}"
            raise ValueError(msg) from exc
        if not _warned_fallback:
            _log.warning("numba is not available (%s); alarms use the pure-Python reference", exc)
            _warned_fallback = True
        return "reference"
    return "numba"


class ReferenceEvaluator:
    """The reference rule behind the evaluator protocols (numpy batches become lists)."""

    def __init__(self, rule: SampleRule) -> None:
        self._rule = ReferenceRule(rule)
        self._id = rule.id

    @property
    def states(self) -> dict[str, ReferenceEvaluator]:
        """The state of the one rule evaluated, by id."""
        return {self._id: self}

    @property
    def level(self) -> int:
        """Current level."""
        return self._rule.level

    @property
    def latched(self) -> bool:
        """True while a latched level waits for an acknowledgement."""
        return self._rule.latched

    @property
    def values(self) -> tuple[float, ...]:
        """Metric snapshot of the latest evaluation."""
        return self._rule.values

    @property
    def accepted(self) -> tuple[float, tuple[float, ...]] | None:
        """A failure-forecast rule's newest accepted forecast (see ``RuleState``)."""
        return self._rule.accepted

    def process(self, t: FloatArray, v: FloatArray, good: BoolArray) -> list[tuple[str, RawChange]]:
        """Evaluate a batch sample by sample."""
        changes = self._rule.process(t.tolist(), v.tolist(), good.tolist())
        return [(self._id, change) for change in changes]

    def acknowledge(self) -> RawChange | None:
        """Release the latch."""
        return self._rule.acknowledge()

    def restore_latch(self, level: int) -> None:
        """Re-apply a latched level recorded before a restart."""
        self._rule.restore_latch(level)

    def restore_level(self, level: int) -> None:
        """Re-apply a level recorded before a restart."""
        self._rule.restore_level(level)


def make_evaluators(rules: list[SampleRule], backend: Backend) -> list[ChannelEvaluator]:
    """Evaluators for the rules of one channel in a backend ``resolve_backend`` returned."""
    if backend == "numba":
        from alarm_engine.numba_backend import evaluators  # noqa: PLC0415 - optional

        return list(evaluators(rules))
    return [ReferenceEvaluator(rule) for rule in rules]
