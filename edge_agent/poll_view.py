"""How the technician sees readings and agent status: rich tables, or JSON for scripts.

Pure formatting of readings the poller already produced; never talks to a device.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from drivers.model import Reading
from drivers.poller import DeviceHealth
from edge_agent.control_messages import DeviceStatus, StatusReply


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S")


def _value(reading: Reading) -> str:
    return "—" if math.isnan(reading.value) else f"{reading.value:.4g}"


def reading_table(
    readings: Mapping[str, Reading], health: Mapping[str, DeviceHealth], title: str
) -> RichTable:
    """Build a table of the newest reading per channel, with its device's fault counts."""
    newest = max((r.timestamp for r in readings.values()), default=None)
    day = "" if newest is None else datetime.fromtimestamp(newest, UTC).strftime(" %Y-%m-%d")
    table = RichTable(title=f"{title}{day}", expand=False)
    table.add_column("channel", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("quality", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    table.add_column("device faults")
    for channel_id in sorted(readings):
        reading = readings[channel_id]
        device = channel_id.split(".", 1)[0]
        faults = health.get(device)
        fault_text = (
            ", ".join(f"{k}={v}" for k, v in sorted(faults.faults.items())) if faults else ""
        )
        style = None if reading.good else "bold red"
        table.add_row(
            channel_id,
            _value(reading),
            reading.unit,
            ",".join(reading.quality.names()),
            _when(reading.timestamp),
            fault_text,
            style=style,
        )
    return table


def device_problems(devices: Mapping[str, DeviceStatus]) -> list[str]:
    """One line per device problem a technician can act on, each hint on a line of its own.

    The same for ``edge poll`` (its poller's ``DeviceStatus.of`` each device's health) and
    ``edge status`` (the agent's reply). A device that did not answer at all gives its
    last error (a missing port names the device file and the operating system's reason);
    a device that answered a request with a Modbus exception gives the code, its meaning,
    the request and how often.
    """
    lines: list[str] = []
    for device, status in sorted(devices.items()):
        if status.last_error:
            lines.append(f"{device}: {status.last_error}")
        for answer in status.exceptions:
            times = "once" if answer.count == 1 else f"{answer.count} times"
            lines.append(
                f"{device}: answered {answer.detail} ({', '.join(answer.channels)}), {times}"
            )
            if answer.hint:
                lines.append(f"  hint: {answer.hint}")
    return lines


def reading_json(reading: Reading) -> dict[str, object]:
    """Return a JSON-ready dict for one reading (NaN becomes null)."""
    return {
        "channel": reading.channel_id,
        "timestamp": round(reading.timestamp, 3),
        "value": None if math.isnan(reading.value) else reading.value,
        "unit": reading.unit,
        "quality": reading.quality.names(),
    }


def readings_json_lines(readings: Iterable[Reading]) -> str:
    """Return JSON lines: one compact object per reading, each line ending in a newline."""
    return "".join(json.dumps(reading_json(r), separators=(",", ":")) + "\n" for r in readings)


def _level_style(level: str) -> str:
    return {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "bold red"}.get(
        level, ""
    )


def _forecast_table(status: StatusReply) -> RichTable | None:
    """Each raised failure-forecast rule's newest accepted forecast; None when there is none."""
    standing = {rule: a.forecast for rule, a in status.alarms.items() if a.forecast is not None}
    if not standing:
        return None
    table = RichTable(title="failure forecasts standing (newest accepted)")
    for column in ("rule", "failure UTC", "95 % interval", "from now", "made UTC"):
        table.add_column(column)
    for rule, forecast in standing.items():
        failure_t = forecast.failure_t
        left = "—" if failure_t is None else f"{(failure_t - status.now) / 3600:.1f} h"
        table.add_row(
            rule,
            _day_time(failure_t),
            _interval(forecast.failure_t_low, forecast.failure_t_high),
            left,
            _day_time(forecast.at),
            style=_level_style(status.alarms[rule].level),
        )
    return table


def _interval(low: float | None, high: float | None) -> str:
    """``12-06 03:00 to 10:00``: the end's date only when it is another day."""
    if low is None or high is None:
        return "—"
    end = datetime.fromtimestamp(high, UTC)
    same_day = datetime.fromtimestamp(low, UTC).date() == end.date()
    return (
        f"{_day_time(low)} to {end:%H:%M}" if same_day else f"{_day_time(low)} to {end:%m-%d %H:%M}"
    )


def _day_time(timestamp: float | None) -> str:
    """``12-06 03:00`` (UTC); the reply's times lie in 2000-2100 (``StandingForecast``)."""
    return "—" if timestamp is None else f"{datetime.fromtimestamp(timestamp, UTC):%m-%d %H:%M}"


def status_tables(status: StatusReply) -> Group:
    """Render the agent's status reply: alarms, actuators, channels, buses, device problems."""
    alarms = RichTable(title="alarm rules")
    for column in ("rule", "level", "metrics"):
        alarms.add_column(column)
    for rule, alarm in status.alarms.items():
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in alarm.metrics.items())
        alarms.add_row(rule, alarm.level, metrics, style=_level_style(alarm.level))
    forecasts = _forecast_table(status)
    actuators = RichTable(title="actuators")
    for column in ("actuator", "pattern", "wanted", "read back", "fault"):
        actuators.add_column(column)
    for name, info in status.actuators.items():
        on = ", ".join(k for k, v in info["wanted"].items() if v) or "all off"
        back = ", ".join(k for k, v in info["read_back"].items() if v) or "all off"
        actuators.add_row(name, str(info["pattern"]), on, back, "yes" if info["fault"] else "")
    channels = RichTable(title="channels")
    for column in ("channel", "value", "unit", "quality", "UTC"):
        channels.add_column(column)
    for channel, reading in status.channels.items():
        value = "—" if math.isnan(reading.value) else f"{reading.value:.4g}"
        channels.add_row(channel, value, reading.unit, ",".join(reading.quality), _when(reading.t))
    buses = RichTable(title="buses")
    for column in ("bus", "transactions", "failures", "last success"):
        buses.add_column(column)
    for name, bus in status.buses.items():
        failures = ", ".join(f"{k}={v}" for k, v in bus.failures.items())
        last = "never" if bus.last_success is None else _when(bus.last_success)
        buses.add_row(name, str(bus.transactions), failures, last)
    problems = [Text(line) for line in device_problems(status.devices)]
    shown = (alarms, forecasts) if forecasts is not None else (alarms,)
    return Group(*shown, actuators, channels, buses, *problems)


def alarm_tables(reply: Mapping[str, Any]) -> Group:
    """Render the agent's alarms reply: current level per rule, then recent history."""
    active = RichTable(title="alarm levels")
    active.add_column("rule")
    active.add_column("level")
    for rule, info in reply["active"].items():
        active.add_row(rule, info["level"], style=_level_style(info["level"]))
    history = RichTable(title="recent alarm events")
    for column in ("UTC", "rule", "change", "detail"):
        history.add_column(column)
    for event in reply["history"]:
        change = f"{event.get('from', '')} -> {event.get('to', '')}" if "to" in event else "ack"
        history.add_row(
            _when(event["t"]),
            str(event["rule"]),
            change,
            str(event.get("detail", event.get("by", ""))),
        )
    return Group(active, history)
