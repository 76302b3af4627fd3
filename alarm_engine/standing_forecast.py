"""Each failure-forecast rule's newest forecast that passed its evidence test, and when.

A failure-forecast rule forecasts again every ``eval_every_s``, but its level changes carry
a forecast only when the level moves: once a red has latched, the forecast it carried
grows older by the hour while the gateway keeps forecasting. This keeps, per rule, the
newest forecast that passed the evidence test (``accepted_failure_t``, the same test a
level rises on) and the time of the sample it was made at, so that the gateway can report
it while the rule is raised.

It must never change a level, and never keep a forecast that failed its evidence test:
a newer forecast that failed leaves the last accepted one standing, with its own time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from alarm_engine.reference_forecast import accepted_failure_t
from site_schema.rule_specs import FailureForecastRule


@dataclass(frozen=True, slots=True)
class StandingForecast:
    """A rule's accepted forecast: ``values`` in ``details.FORECAST_VALUES`` order.

    ``at`` is the time of the sample it was made at (its failure time minus its lead).
    """

    at: float
    values: tuple[float, ...]


class StandingForecasts:
    """The newest accepted forecast of each failure-forecast rule (see the module)."""

    def __init__(self, rules: Iterable[FailureForecastRule]) -> None:
        self._rules = {rule.id: rule for rule in rules}
        self._seen: dict[str, tuple[float, ...]] = {}
        self._latest: dict[str, StandingForecast] = {}

    @property
    def rule_ids(self) -> frozenset[str]:
        """The failure-forecast rules followed."""
        return frozenset(self._rules)

    def observe(self, rule_id: str, values: tuple[float, ...]) -> None:
        """Look at a rule's latest metric snapshot; keep it if it is new and accepted."""
        rule = self._rules.get(rule_id)
        if rule is None or values == self._seen.get(rule_id):
            return
        self._seen[rule_id] = values
        if accepted_failure_t(values, rule) < math.inf:
            lead_h, failure_t = values[0], values[1]
            self._latest[rule_id] = StandingForecast(failure_t - lead_h * 3600.0, values)

    def latest(self, rule_id: str) -> StandingForecast | None:
        """The rule's newest accepted forecast, or None when none has passed yet."""
        return self._latest.get(rule_id)
