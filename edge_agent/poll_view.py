"""How the technician sees readings: a rich table, or JSON for scripts.

Pure formatting of readings the poller already produced; never talks to a device.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from rich.table import Table as RichTable

from drivers.model import Reading
from drivers.poller import DeviceHealth


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


def reading_json(reading: Reading) -> dict[str, object]:
    """Return a JSON-ready dict for one reading (NaN becomes null)."""
    return {
        "channel": reading.channel_id,
        "timestamp": round(reading.timestamp, 3),
        "value": None if math.isnan(reading.value) else reading.value,
        "unit": reading.unit,
        "quality": reading.quality.names(),
    }


def readings_json_line(readings: Iterable[Reading]) -> str:
    """Return one JSON line holding a batch of readings."""
    return json.dumps({"readings": [reading_json(r) for r in readings]})
