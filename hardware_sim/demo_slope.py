"""The demo's slope: its failure forecast as the fleet showed it, beside the real failure.

While the demo runs, ``SlopeWatch.look`` asks the fleet for each simulated slope's
forecast (``GET /api/v1/sites/{site}/slope``) and notes it with the slope's simulated
time; at the end, ``tables`` show what a duty officer would have read a day and a half,
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
SOURCES = {"level_change": "event", "latest": "newest"}


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

    def tables(self) -> list[Table]:
        """Per slope rule: the forecast shown ``SHOWN_BEFORE_H`` before the failure, its error."""
        tables = []
        for view, slope in self.slopes:
            failure = slope.failure_time
            for (site_id, rule_id), seen in self.shown.items():
                if site_id != view.site_id:
                    continue
                table = Table(title=f"{site_id} {rule_id}: the failure forecast the fleet showed")
                columns = ("before", "predicted", "95 % interval", "made at", "from")
                for column in (*columns, "error"):
                    table.add_column(column)
                for hours in SHOWN_BEFORE_H:
                    before = [s for s in seen if s.seen_at <= failure - hours * 3600.0]
                    if not before:
                        table.add_row(f"{hours:g} h", "none yet", "", "", "", "")
                        continue
                    f = before[-1].forecast
                    error = (f["failure_t"] - failure) / (failure - before[-1].seen_at)
                    table.add_row(
                        f"{hours:g} h",
                        _sim_h(view, f["failure_t"]),
                        _interval(view, f["failure_t_low"], f["failure_t_high"]),
                        _sim_h(view, f["as_of"]),
                        SOURCES.get(f["source"], f["source"]),
                        f"{100 * error:+.0f} %",
                    )
                table.caption = (
                    f"simulated time; the slope fails at {_sim_h(view, failure)}. before: "
                    "hours before the failure. error: of the time then left, late positive. "
                    "from: the rule's level change event, or the gateway's newest forecast "
                    "since (sent with its health)"
                )
                tables.append(table)
        return tables


def _sim_h(view: GatewayView, t: float) -> str:
    """Simulated time as hours since the origin, to a tenth: 't+88.1 h'."""
    return f"t{(t - view.clock.origin) / 3600:+.1f} h"


def _interval(view: GatewayView, low: float | None, high: float | None) -> str:
    """'t+82.8..+97.1 h'; an unbounded end is '?'."""
    lo = "?" if low is None else f"{(low - view.clock.origin) / 3600:+.1f}"
    hi = "?" if high is None else f"{(high - view.clock.origin) / 3600:+.1f}"
    return f"t{lo}..{hi} h"
