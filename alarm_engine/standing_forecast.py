"""Each raised failure-forecast rule's newest forecast that passed its evidence test.

A failure-forecast rule forecasts again every ``eval_every_s``, but its level changes carry
a forecast only when the level moves: once a red has latched, the forecast it carried
grows older by the hour while the gateway keeps forecasting. The rule's evaluator keeps
its newest forecast that passed the evidence test (``accepted_failure_t``, the same test
a level rises on) and the time of the sample it was made at (``RuleState.accepted``), in
the kernel as in the reference, across batches: a restart's replay of the stored record
in one batch leaves the same forecast standing as the live samples did one by one. This
gives it, for the rules that are raised, for the gateway to report.

It must never change a level, and never give a forecast that failed its evidence test:
a newer forecast that failed leaves the last accepted one standing, with its own time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alarm_engine.model import RuleState


@dataclass(frozen=True, slots=True)
class StandingForecast:
    """A rule's accepted forecast: ``values`` in ``details.FORECAST_VALUES`` order.

    ``at`` is the time of the sample it was made at.
    """

    at: float
    values: tuple[float, ...]


def standing_forecasts(
    states: Mapping[str, RuleState], forecast_rules: Iterable[str]
) -> dict[str, StandingForecast]:
    """The accepted forecast of each of ``forecast_rules`` that is raised, in id order.

    Only rules above normal are given: a forecast is news while the level it supports
    stands. A rule none of whose forecasts passed yet is left out.
    """
    out: dict[str, StandingForecast] = {}
    for rule_id in sorted(forecast_rules):
        state = states[rule_id]
        accepted = state.accepted
        if accepted is not None and state.level > 0:
            out[rule_id] = StandingForecast(*accepted)
    return out
