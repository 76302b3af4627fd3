"""The gateway's local agent settings (``DATA_DIR/agent.toml``): the players it may run.

A site file, local or pushed from the fleet, only names a player and its clips; this file,
written by the technician on the gateway itself, says what each player name runs and where
extra clips live. The agent only reads it: nothing received over the network ever writes
it or adds a command, and a clip is a file the gateway has, found by name, never a path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from drivers.toml_schema import TomlTable, table_problem
from drivers.tomlfile import read_toml
from edge_agent.actuation import SHIPPED_CLIPS, PlayerSpec
from protocol.levels import LEVEL_NAMES
from site_schema.actuation_spec import DEFAULT_PLAYER_NAME
from site_schema.site_actuation import SYMBOL
from site_schema.site_config import SiteConfig
from site_schema.site_errors import SiteConfigError

SETTINGS_FILE = "agent.toml"
#: Always allowed, and what a site file without ``[player]`` gets.
BUILTIN_PLAYERS: Mapping[str, tuple[str, ...]] = {DEFAULT_PLAYER_NAME: ("aplay", "-q", "{clip}")}


class LocalSettingsError(ValueError):
    """agent.toml is invalid; the message names the file, the item and the problem."""

    def __init__(self, source: str | Path, problem: str, item: str | None = None) -> None:
        where = f"{source}: {item}" if item else str(source)
        super().__init__(f"{where}: {problem}")


def _clips_in(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.wav")) if SYMBOL.fullmatch(p.stem)}


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """What this gateway allows: player commands by name, and clip files by name."""

    source: str = "built-in defaults"
    players: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(BUILTIN_PLAYERS))
    clips: Mapping[str, Path] = field(default_factory=lambda: _clips_in(SHIPPED_CLIPS))


class AgentFile(TomlTable):
    """agent.toml: each ``[players.NAME]`` is checked as a ``PlayerTable`` after."""

    players: dict[str, Any] = Field(default_factory=dict)
    clips_dir: Annotated[str, Field(min_length=1)] = "clips"


class PlayerTable(TomlTable):
    """``[players.NAME]``: the command that player runs, ``{clip}`` standing for the file."""

    command: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


def _validated(source: Path, model: type[TomlTable], raw: Any, item: str | None) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise LocalSettingsError(source, table_problem(exc, model), item) from None


def _players(source: Path, raw: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    players = dict(BUILTIN_PLAYERS)
    for name, given in raw.items():
        item = f"[players.{name}]"
        if not SYMBOL.fullmatch(name):
            raise LocalSettingsError(source, "a player's name takes letters, digits, _ and -", item)
        table: PlayerTable = _validated(source, PlayerTable, given, item)
        if not any("{clip}" in part for part in table.command):
            raise LocalSettingsError(source, "'command' must contain {clip}", item)
        players[name] = tuple(table.command)
    return players


def load_local_settings(path: Path) -> LocalSettings:
    """Read ``path``; a missing file means the defaults: aplay, and the shipped clips.

    ``clips_dir`` (default ``clips`` beside the file, whether the file exists or not) adds
    its ``NAME.wav`` files to the shipped clips, a local recording replacing a shipped one
    of the same name.

    Raises:
        LocalSettingsError: when the file cannot be read, is not TOML, or is invalid.
    """
    data = read_toml(path, "agent settings", LocalSettingsError) if path.exists() else {}
    settings: AgentFile = _validated(path, AgentFile, data, None)
    folder = path.parent / settings.clips_dir
    if "clips_dir" in data and not folder.is_dir():
        raise LocalSettingsError(path, f"'clips_dir': no folder {folder}")
    clips = _clips_in(SHIPPED_CLIPS)
    if folder.is_dir():
        clips.update(_clips_in(folder))
    return LocalSettings(str(path), _players(path, settings.players), clips)


def bind_player(site: SiteConfig, settings: LocalSettings) -> PlayerSpec:
    """The command and clips the site's broadcasts will use, from the allowed ones only.

    Raises:
        SiteConfigError: naming the site file, when it asks for a player or a clip this
            gateway does not allow.
    """
    choice = site.actuation.player
    allowed = ", ".join(sorted(settings.players))
    if choice.command is not None:
        name = next((n for n, c in settings.players.items() if c == choice.command), None)
        if name is None:
            raise SiteConfigError(
                site.source,
                f"command {list(choice.command)} is not one of this gateway's players "
                f"({allowed}; {settings.source}): name one with 'name = \"...\"'; only the "
                "gateway's agent.toml can add a command",
                "[player]",
            )
    else:
        name = choice.name
        if name not in settings.players:
            raise SiteConfigError(
                site.source,
                f"player {name!r} is not one of this gateway's players ({allowed}; "
                f"{settings.source})",
                "[player]",
            )
    for level, action in site.actuation.actions.items():
        if action.clip is not None and action.clip not in settings.clips:
            known = ", ".join(sorted(settings.clips))
            raise SiteConfigError(
                site.source,
                f"unknown clip {action.clip!r} (clips on this gateway: {known})",
                f"[actions.{LEVEL_NAMES[level]}]",
            )
    return PlayerSpec(settings.players[name], dict(settings.clips))
