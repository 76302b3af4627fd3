"""The demo's slope: its failure forecast as the fleet showed it, beside the real failure.

While the demo runs, ``SlopeWatch.look`` asks the fleet for each simulated slope's
forecast (``GET /api/v1/sites/{site}/slope``) and notes it with the slope's simulated
time; at the end, ``table`` shows what a duty officer would have read a day and a half,
a day, 12 h and 6 h before the simulated failure, and how far off it was. Presentation
only: it never changes anything it shows, and a fleet that does not answer is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from hardware_sim.demo_view import FleetReader, GatewayView
from hardware_sim.scenarios import CreepingSlope

#: Hours before the simulated failure at which the table shows the fleet's forecast.
SHOWN_BEFORE_H = (36.0, 24.0, 12.0, 6.0)
#: How the table names a forecast's source (``fleet.site_forecast.ForecastSource``).
SOURCES = {"level_change": "level change", "latest": "newest"}


@dataclass(frozen=True, slots=True)
class Shown:
    """A forecast the fleet showed, and the slope's simulated time when it did."""

    seen_at: float
    forecast: dict[str, Any]


class SlopeWatch:
    """What the fleet showed of each simulated slope's failure forecast (see the module)."""

    def __init__(self, views: list[GatewayView]) -> None:
        self.slopes: list[tuple[GatewayView, CreepingSlope]] = []
        for view in views:
            slope = view.station.scenarios.get("slope")
            if isinstance(slope, CreepingSlope) and view.site_id:
                self.slopes.append((view, slope))
        self.shown: dict[tuple[str, str], list[Shown]] = {}

    async def look(self, fleet: FleetReader) -> None:
        """Note each slope rule's forecast as the fleet shows it now."""
        for view, _slope in self.slopes:
            try:
                answer = await fleet.get(f"/api/v1/sites/{view.site_id}/slope")
            except (OSError, ValueError):
                continue
            now = view.clock.now()
            for rule in answer["rules"]:
                if rule["forecast"]["state"] == "forecast":
                    key = (view.site_id, rule["rule"])
                    self.shown.setdefault(key, []).append(Shown(now, rule["forecast"]))

    def table(self) -> Table:
        """The forecast shown ``SHOWN_BEFORE_H`` before each slope's failure, and its error."""
        table = Table(title="slope failure forecast as the fleet showed it (simulated time)")
        columns = ("site", "rule", "when", "at", "predicted failure", "95 % interval")
        for column in (*columns, "made at", "from", "error"):
            table.add_column(column)
        for view, slope in self.slopes:
            failure = slope.failure_time
            for (site_id, rule_id), seen in self.shown.items():
                if site_id != view.site_id:
                    continue
                for hours in SHOWN_BEFORE_H:
                    moment = failure - hours * 3600.0
                    before = [s for s in seen if s.seen_at <= moment]
                    when = (site_id, rule_id, f"{hours:g} h before", view.hours(moment))
                    if not before:
                        table.add_row(*when, "no forecast yet", "", "", "", "")
                        continue
                    f = before[-1].forecast
                    low, high = f["failure_t_low"], f["failure_t_high"]
                    interval = (
                        f"{view.hours(low) if low is not None else '-'} .. "
                        f"{view.hours(high) if high is not None else '-'}"
                    )
                    error = (f["failure_t"] - failure) / (failure - before[-1].seen_at)
                    table.add_row(
                        *when,
                        view.hours(f["failure_t"]),
                        interval,
                        view.hours(f["as_of"]),
                        SOURCES.get(f["source"], f["source"]),
                        f"{100 * error:+.0f} %",
                    )
            table.caption = (
                f"{view.site_id}: the simulated slope fails at {view.hours(failure)}; error: "
                "of the time then left (late is positive); from: the rule's level change or "
                "the gateway's newest forecast since (its health)"
            )
        return table
