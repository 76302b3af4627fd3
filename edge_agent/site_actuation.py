"""The actuation part of the site file: relay actuators, the clip player, actions per level.

Validated against the devices the site declares, with errors shaped like every other
site-file error ("FILE: item: problem").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drivers.poller import DeviceConfig
from drivers.profiles import Table
from edge_agent.actuation import (
    LEVEL_NAMES,
    SHIPPED_CLIPS,
    ActuationSpec,
    LevelAction,
    PlayerSpec,
    RelayActuatorSpec,
)
from edge_agent.site_errors import SiteConfigError

DEFAULT_PLAYER = ("aplay", "-q", "{clip}")


def _actuator(
    source: str, raw: Any, index: int, devices: Mapping[str, DeviceConfig]
) -> RelayActuatorSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise SiteConfigError(source, "needs a table with an 'id'", f"[[actuator]] #{index + 1}")
    item = f"actuator '{raw['id']}'"
    if unknown := sorted(set(raw) - {"id", "device", "patterns", "test_pattern"}):
        raise SiteConfigError(source, f"unknown key(s): {', '.join(unknown)}", item)
    device = devices.get(str(raw.get("device")))
    if device is None:
        known = ", ".join(devices) or "none"
        raise SiteConfigError(
            source, f"unknown device {raw.get('device')!r} (devices: {known})", item
        )
    patterns = raw.get("patterns")
    if not isinstance(patterns, dict) or not patterns:
        raise SiteConfigError(source, "'patterns' must name at least one pattern", item)
    parsed: dict[str, tuple[str, ...]] = {}
    for name, coils in patterns.items():
        if not isinstance(coils, list) or not all(isinstance(c, str) for c in coils):
            raise SiteConfigError(source, f"pattern '{name}' must be a list of coil names", item)
        for coil in coils:
            try:
                channel = device.profile.channel(coil)
            except KeyError as exc:
                raise SiteConfigError(source, f"pattern '{name}': {exc.args[0]}", item) from None
            if channel.table is not Table.COIL or not channel.writable:
                raise SiteConfigError(
                    source, f"pattern '{name}': '{coil}' is not a writable coil", item
                )
        parsed[name] = tuple(coils)
    test = raw.get("test_pattern")
    if test is not None and test not in parsed:
        raise SiteConfigError(source, f"test_pattern '{test}' is not one of its patterns", item)
    return RelayActuatorSpec(raw["id"], device, parsed, test)


def _player(source: str, base_dir: Path, raw: Any) -> PlayerSpec:
    clips = {p.stem: p for p in SHIPPED_CLIPS.glob("*.wav")}
    if raw is None:
        return PlayerSpec(DEFAULT_PLAYER, clips)
    if not isinstance(raw, dict) or set(raw) - {"command", "clips"}:
        raise SiteConfigError(source, "[player] takes only 'command' and 'clips'", "[player]")
    command = raw.get("command", list(DEFAULT_PLAYER))
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise SiteConfigError(source, "'command' must be a non-empty list of strings", "[player]")
    if not any("{clip}" in part for part in command):
        raise SiteConfigError(source, "'command' must contain {clip}", "[player]")
    for name, path in (raw.get("clips") or {}).items():
        clip = (base_dir / str(path)).resolve()
        if not clip.is_file():
            raise SiteConfigError(source, f"clip '{name}': no file {clip}", "[player]")
        clips[name] = clip
    return PlayerSpec(tuple(command), clips)


def parse_actuation(
    source: str,
    base_dir: Path,
    data: Mapping[str, Any],
    devices: Mapping[str, DeviceConfig],
    reassert_s: float,
    test_duration_s: float = 5.0,
) -> ActuationSpec:
    """Validate [[actuator]], [player] and [actions.LEVEL] of a site document.

    Raises:
        SiteConfigError: naming the file, the actuator or level, and the problem.
    """
    raw_actuators = data.get("actuator", [])
    if not isinstance(raw_actuators, list):
        raise SiteConfigError(source, "[[actuator]] must be an array of tables")
    actuators = tuple(_actuator(source, raw, i, devices) for i, raw in enumerate(raw_actuators))
    by_id = {a.id: a for a in actuators}
    if len(by_id) != len(actuators):
        raise SiteConfigError(source, "two actuators share an id")
    player = _player(source, base_dir, data.get("player"))
    actions: dict[int, LevelAction] = {}
    raw_actions = data.get("actions", {})
    if not isinstance(raw_actions, dict):
        raise SiteConfigError(source, "[actions] must be a table of levels")
    for level_name, raw in raw_actions.items():
        item = f"[actions.{level_name}]"
        if level_name not in LEVEL_NAMES[1:]:
            raise SiteConfigError(
                source, f"unknown level (levels: {', '.join(LEVEL_NAMES[1:])})", item
            )
        if not isinstance(raw, dict):
            raise SiteConfigError(source, "must be a table", item)
        clip = raw.get("clip")
        if clip is not None and clip not in player.clips:
            known = ", ".join(sorted(player.clips))
            raise SiteConfigError(source, f"unknown clip {clip!r} (clips: {known})", item)
        patterns: dict[str, str] = {}
        for key, value in raw.items():
            if key == "clip":
                continue
            if key not in by_id:
                raise SiteConfigError(source, f"unknown actuator '{key}'", item)
            if value not in by_id[key].patterns:
                known = ", ".join(by_id[key].patterns)
                raise SiteConfigError(
                    source, f"actuator '{key}' has no pattern {value!r} (patterns: {known})", item
                )
            patterns[key] = value
        actions[LEVEL_NAMES.index(level_name)] = LevelAction(patterns, clip)
    return ActuationSpec(actuators, player, actions, reassert_s, test_duration_s)
