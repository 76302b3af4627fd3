"""What-if replay: re-evaluate a site's rules over the readings stored on a gateway.

Reads the store and prints; it never writes to the store and never touches a bus.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alarm_engine import AlarmEngine, LevelChange
from edge_agent.store import LocalStore
from protocol.levels import LEVEL_NAMES
from site_schema.rule_specs import ChannelRule
from site_schema.site_config import SiteConfig


def replay_store(
    site: SiteConfig,
    data_dir: Path,
    start: float | None,
    end: float | None,
    backend: str = "auto",
) -> list[dict[str, Any]]:
    """Return the level changes the site's rules give over stored history.

    Raises:
        FileNotFoundError: when ``data_dir`` holds no store.
    """
    store = LocalStore(data_dir)
    if not store.path.exists():
        msg = f"no store at {store.path}"
        raise FileNotFoundError(msg)
    store.open()
    try:
        engine = AlarmEngine(site.rules, backend)
        channels = sorted({r.channel for r in site.rules if isinstance(r, ChannelRule)})
        series = {}
        for channel in channels:
            h = store.history(channel, since=start if start is not None else 0.0, until=end)
            series[channel] = (h.t, h.value, h.good)
        changes = engine.replay(series)
    finally:
        store.close()
    return change_rows(changes)


def change_rows(changes: list[LevelChange]) -> list[dict[str, Any]]:
    """Level changes as printable rows (JSON-ready)."""
    return [
        {
            "time": datetime.fromtimestamp(c.t, UTC).isoformat(timespec="seconds"),
            "t": c.t,
            "rule": c.rule_id,
            "from": LEVEL_NAMES[c.old],
            "to": LEVEL_NAMES[c.new],
            "kind": c.kind,
            "detail": c.detail,
        }
        for c in changes
    ]
