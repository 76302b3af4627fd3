"""The actuation part of the site file: relay actuators, the clip player, actions per level.

Validated against the devices the site declares, with errors shaped like every other
site-file error ("FILE: item: problem"). A site file names its player and clips; it never
gives a command or a path that the gateway would run or read (see ``agent_settings``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError

from drivers.device_config import DeviceConfig
from drivers.profiles import Table
from drivers.toml_schema import TomlTable, table_problem
from protocol.levels import LEVEL_NAMES
from site_schema.actuation_spec import ActuationSpec, LevelAction, PlayerChoice, RelayActuatorSpec
from site_schema.site_errors import SiteConfigError

#: A player or clip name: letters, digits, '_' and '-', so it can never be a path.
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class ActuatorTable(TomlTable):
    """``[[actuator]]``: a relay module's named coil patterns."""

    id: Annotated[str, Field(min_length=1)]
    device: str
    patterns: dict[str, list[str]] = Field(min_length=1)
    test_pattern: str | None = None


def _actuator(
    source: str, raw: Any, index: int, devices: Mapping[str, DeviceConfig]
) -> RelayActuatorSpec:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise SiteConfigError(source, "needs a table with an 'id'", f"[[actuator]] #{index + 1}")
    item = f"actuator '{raw['id']}'"
    try:
        table = ActuatorTable.model_validate(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, ActuatorTable), item) from None
    device = devices.get(table.device)
    if device is None:
        known = ", ".join(devices) or "none"
        raise SiteConfigError(source, f"unknown device {table.device!r} (devices: {known})", item)
    for name, coils in table.patterns.items():
        for coil in coils:
            try:
                channel = device.profile.channel(coil)
            except KeyError as exc:
                raise SiteConfigError(source, f"pattern '{name}': {exc.args[0]}", item) from None
            if channel.table is not Table.COIL or not channel.writable:
                raise SiteConfigError(
                    source, f"pattern '{name}': '{coil}' is not a writable coil", item
                )
    parsed = {name: tuple(coils) for name, coils in table.patterns.items()}
    test = table.test_pattern
    if test is not None and test not in parsed:
        raise SiteConfigError(source, f"test_pattern '{test}' is not one of its patterns", item)
    return RelayActuatorSpec(table.id, device, parsed, test)


class PlayerTable(TomlTable):
    """``[player]``: the name of a player of the gateway's agent.toml.

    ``command`` is read only from an older local site file, and then only to match it to one
    of those players (``local_settings.bind_player``); a pushed one is refused below.
    """

    name: str | None = None
    command: Annotated[list[str], Field(min_length=1)] | None = None


class LevelActionTable(TomlTable):
    """``[actions.LEVEL]``: ``{ siren = "warble", clip = "evacuate_now" }``.

    Every key but ``clip`` is an actuator id, so this model cannot list them: it takes any
    key whose value is a string (a pattern name), and ``parse_actuation`` refuses an id
    the site does not declare, and a pattern that actuator lacks.
    """

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str]

    clip: str | None = None


class ActionsTable(TomlTable):
    """``[actions]``: one table per alarm level above normal (``LEVEL_NAMES[1:]``).

    Each is kept as a plain table here and checked as a ``LevelActionTable`` after, so a
    problem names its ``[actions.LEVEL]`` rather than a dotted key of ``[actions]``.
    """

    blue: dict[str, Any] | None = None
    yellow: dict[str, Any] | None = None
    orange: dict[str, Any] | None = None
    red: dict[str, Any] | None = None


def _player(source: str, raw: Any, pushed: bool) -> PlayerChoice:
    """The player the site asks for; what it runs is the gateway's business (agent.toml)."""
    if raw is None:
        return PlayerChoice()
    if isinstance(raw, dict) and "clips" in raw:
        # Named apart from the other unknown keys: clips were paths here once.
        raise SiteConfigError(
            source,
            "'clips' is not read from a site file: clips are the shipped ones and the "
            "NAME.wav files of the gateway's clips directory (agent.toml 'clips_dir')",
            "[player]",
        )
    try:
        table = PlayerTable.model_validate(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, PlayerTable), "[player]") from None
    if table.name is not None and table.command is not None:
        raise SiteConfigError(source, "give 'name' or 'command', not both", "[player]")
    if table.command is not None and pushed:
        raise SiteConfigError(
            source,
            "a pushed configuration names its player ('name = \"aplay\"'), never a "
            "command: the gateway runs only the players of its own agent.toml",
            "[player]",
        )
    if table.command is not None:
        return PlayerChoice(command=tuple(table.command))
    name = table.name
    if name is None or not SYMBOL.fullmatch(name):
        raise SiteConfigError(
            source,
            f"'name' must name a player of the gateway's agent.toml (letters, digits, _ "
            f"and -), got {name!r}",
            "[player]",
        )
    return PlayerChoice(name=name)


def _level_action(
    source: str, level_name: str, raw: Any, by_id: Mapping[str, RelayActuatorSpec]
) -> LevelAction:
    item = f"[actions.{level_name}]"
    try:
        table = LevelActionTable.model_validate(raw)
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, LevelActionTable), item) from None
    clip = table.clip
    # Only a name: the gateway looks it up among its own clips, never a path.
    if clip is not None and not SYMBOL.fullmatch(clip):
        raise SiteConfigError(
            source,
            f"clip must be a clip's name (letters, digits, _ and -), not a path: {clip!r}",
            item,
        )
    patterns: dict[str, str] = {}
    for key, value in table.__pydantic_extra__.items():
        if key not in by_id:
            raise SiteConfigError(source, f"unknown actuator '{key}'", item)
        if value not in by_id[key].patterns:
            known = ", ".join(by_id[key].patterns)
            raise SiteConfigError(
                source, f"actuator '{key}' has no pattern {value!r} (patterns: {known})", item
            )
        patterns[key] = value
    return LevelAction(patterns, clip)


def parse_actuation(
    source: str,
    data: Mapping[str, Any],
    devices: Mapping[str, DeviceConfig],
    reassert_s: float,
    test_duration_s: float = 5.0,
    *,
    pushed: bool = False,
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
    player = _player(source, data.get("player"), pushed)
    try:
        levels = ActionsTable.model_validate(data.get("actions", {}))
    except ValidationError as exc:
        raise SiteConfigError(source, table_problem(exc, ActionsTable), "[actions]") from None
    actions = {
        LEVEL_NAMES.index(level_name): _level_action(source, level_name, raw, by_id)
        for level_name, raw in levels.model_dump(exclude_none=True).items()
    }
    return ActuationSpec(actuators, player, actions, reassert_s, test_duration_s)
