"""What the demo shows: the stations as the simulator sees them beside what the fleet holds.

Pure presentation: it reads the simulated devices and scenarios, the agents' log files and
the fleet's REST answers, and builds rich tables. It never changes anything it shows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from drivers.clock import ScaledClock
from hardware_sim.device import SimulatedDevice
from hardware_sim.scenarios import CreekLevel, DesignStorm, ExtensometerProjection
from hardware_sim.station import Station
from protocol.levels import LEVEL_NAMES

LEVEL_STYLES = {
    "normal": "",
    "blue": "bold blue",
    "yellow": "bold yellow",
    "orange": "bold dark_orange",
    "red": "bold red",
}
RELAY_PROFILE = "relay_module_8ch"
LOG_LINES = 8


class FleetReader(Protocol):
    """The part of the demo's fleet client the view reads from."""

    async def get(self, path: str, **params: str | float) -> Any: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class GatewayView:
    """One station and its gateway, as the view needs them."""

    station_name: str
    gateway_id: str
    station: Station
    clock: ScaledClock
    log: Path
    site_id: str = ""

    @property
    def relays(self) -> SimulatedDevice | None:
        """The station's relay module (coil 0: siren, coil 1: strobe or warning light)."""
        return next(
            (d for d in self.station.devices.values() if d.profile.name == RELAY_PROFILE), None
        )

    def hours(self, t: float) -> str:
        """Simulated time as hours since the origin, e.g. 't+3.25 h'."""
        return f"t{(t - self.clock.origin) / 3600:+.2f} h"


@dataclass(frozen=True, slots=True)
class Exactness:
    """The fleet's readings of one gateway compared with the gateway's own store."""

    station: str
    gateway_id: str
    stored: int
    at_fleet: int
    missing: int
    extra: int
    twice: int
    drained: bool

    @property
    def exact(self) -> bool:
        """True when the fleet holds exactly the stored set: no gap, no extra, no duplicate."""
        return self.drained and not (self.missing or self.extra or self.twice)


def _sensors(view: GatewayView, now: float) -> str:
    parts = []
    scenarios = view.station.scenarios
    storm = scenarios.get("storm")
    if isinstance(storm, DesignStorm):
        parts.append(f"rain {storm.window_sum_mm(now, 3600):.0f} mm/h")
    creek = scenarios.get("creek")
    if isinstance(creek, CreekLevel):
        parts.append(f"{creek.level_m(now):.2f} m")
    extensometer = scenarios.get("extensometer")
    if isinstance(extensometer, ExtensometerProjection):
        parts.append(f"scarp {extensometer.extension_mm(now):.0f} mm")
        left_h = (extensometer.slope.failure_time - now) / 3600
        parts.append(f"fails in {left_h:.0f} h" if left_h > 0 else "FAILED")
    return ", ".join(parts)


def _on_off(relays: SimulatedDevice | None, address: int) -> Text:
    return Text("ON", style="bold red") if relays and relays.coil(address) else Text("off")


def _short(line: str) -> str:
    """'2026-11-25 11:42:47,142 WARNING edge_agent.agent: alarm ...' -> 'alarm ...'."""
    parts = line.split(" ", 4)
    return parts[4] if len(parts) == 5 and parts[3].endswith(":") else line


def _log_tail(views: list[GatewayView]) -> list[Text]:
    lines: list[tuple[str, str, str]] = []
    for view in views:
        if view.log.exists():
            for line in view.log.read_text(errors="replace").splitlines()[-LOG_LINES:]:
                lines.append((line[:23], view.station_name, line))
    lines.sort()
    return [
        Text(
            f"{stamp[11:19]} {station:<14} {_short(line)}", style="red" if " ERROR " in line else ""
        )
        for stamp, station, line in lines[-LOG_LINES:]
    ]


async def live_view(views: list[GatewayView], fleet: FleetReader) -> RenderableType:
    """The live table: each station's sensors and sirens, and what the fleet has of it."""
    try:
        summaries = {g["id"]: g for g in await fleet.get("/api/v1/gateways")}
        details = await asyncio.gather(
            *(fleet.get(f"/api/v1/gateways/{v.gateway_id}") for v in views)
        )
    except (OSError, ValueError):
        summaries, details = {}, [{} for _ in views]
    table = Table(title="the field (simulator) and what the fleet holds")
    for column in ("station", "sim time", "field", "siren", "light", "level", "at fleet", "link"):
        table.add_column(column, justify="left" if column in ("station", "field") else "right")
    for view, detail in zip(views, details, strict=True):
        summary = summaries.get(view.gateway_id, {})
        level = str(summary.get("alarm_level_name", "-"))
        now = view.clock.now()
        table.add_row(
            view.station_name,
            view.hours(now),
            _sensors(view, now),
            _on_off(view.relays, 0),
            _on_off(view.relays, 1),
            Text(level, style=LEVEL_STYLES.get(level, "")),
            str(detail.get("streams", {}).get("readings", "-")),
            str(summary.get("status", "-")),
        )
    legend = Text(
        "level: the highest active alarm the fleet knows of; at fleet: readings it holds",
        style="dim",
    )
    logs = Text("gateway logs (alarms, actuation, faults):", style="bold")
    return Group(table, legend, logs, *_log_tail(views))


async def alarm_table(views: list[GatewayView], fleet: FleetReader) -> Table:
    """Every alarm episode as the fleet received it from the gateways' event uploads."""
    by_gateway = {v.gateway_id: v for v in views}
    table = Table(title="alarms at the fleet (from the gateways' events)")
    for column in ("station", "rule", "peak level", "first raised", "now"):
        table.add_column(column)
    for alarm in sorted(await fleet.get("/api/v1/alarms", limit=500), key=lambda a: a["raised_at"]):
        view = by_gateway.get(alarm["gateway_id"])
        if view is None:
            continue
        peak = LEVEL_NAMES[alarm["peak_level"]]
        table.add_row(
            view.station_name,
            alarm["rule"],
            Text(peak, style=LEVEL_STYLES[peak]),
            view.hours(alarm["raised_at"]),
            alarm["level_name"],
        )
    return table


def coil_table(views: list[GatewayView]) -> Table:
    """Every relay coil change the simulated relay modules saw, in simulated time."""
    table = Table(title="relay coil changes (simulated time)")
    for column in ("station", "sim time", "UTC", "coil", "state"):
        table.add_column(column)
    for view in views:
        relays = view.relays
        for change in relays.coil_log if relays else []:
            stamp = datetime.fromtimestamp(change.sim_time, UTC).strftime("%H:%M:%S")
            state = "on" if change.value else "off"
            table.add_row(
                view.station_name,
                view.hours(change.sim_time),
                stamp,
                f"relay{change.address + 1}",
                state,
            )
    return table


def exactness_table(checks: list[Exactness]) -> Table:
    """The end-of-demo check: each gateway's stored readings against the fleet's."""
    table = Table(title="readings: gateway store vs fleet, after the gateways were drained")
    for column in (
        "station",
        "gateway",
        "stored",
        "at fleet",
        "missing",
        "extra",
        "twice",
        "result",
    ):
        table.add_column(
            column, justify="right" if column not in ("station", "gateway") else "left"
        )
    for c in checks:
        result = (
            Text("exact", style="bold green") if c.exact else Text("MISMATCH", style="bold red")
        )
        if not c.drained:
            result = Text("drain failed", style="bold red")
        table.add_row(
            c.station,
            c.gateway_id,
            str(c.stored),
            str(c.at_fleet),
            str(c.missing),
            str(c.extra),
            str(c.twice),
            result,
        )
    return table


def escalation_table(station: str, alarm: dict[str, Any]) -> Table:
    """The 叫应 record of an alarm's latest escalation: each step, seconds from its start."""
    escalation = alarm["escalation"][-1]
    started = escalation["started_at"]
    table = Table(
        title=f"叫应 at {station}: {alarm['rule']} {escalation['level_name']} (alarm {alarm['id']})"
    )
    for column in ("at", "step", "tier", "person", "channel", "detail"):
        table.add_column(column)
    for step in escalation["record"]:
        table.add_row(
            f"+{step['at'] - started:.1f} s",
            step["kind"],
            step["tier"] or "",
            step["person"] or "",
            step["channel"] or "",
            step["detail"] or "",
        )
    return table
