"""Rule files a site file includes, with their channels bound at the include.

A county's rule table (``site_schema/rule_tables/jianghua.toml``) is written once, its
rules naming a channel by a placeholder such as ``channel = "{rain}"``; a site includes it
and binds each placeholder to one of its own channels::

    [[include]]
    rules = "jianghua"                        # a shipped table, or a path (local files only)
    channels = { rain = "rain.rain_total" }   # binds {rain}
    id_prefix = "north_"                      # optional: to include one table twice

This module only finds the file, binds the placeholders and prefixes the ids; the rules
are then validated with the site's own, exactly as if they had been written there. Every
mistake is refused naming the site file, the include (its number and line) and the field.
A pushed configuration may include shipped tables only: this module never reads a file
outside them for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from drivers.toml_schema import TomlTable, table_problem
from drivers.tomlfile import read_toml
from site_schema.rule_files import rule_file_path, shipped_rule_files
from site_schema.site_errors import SiteConfigError

#: A channel placeholder: the whole value is ``{name}``.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_INCLUDE_HEADER = re.compile(r"^\s*\[\[\s*include\s*\]\]")

Name = Annotated[str, Field(min_length=1)]


class IncludeTable(TomlTable):
    """``[[include]]`` of a site file."""

    rules: Name
    channels: dict[str, Name] = Field(default_factory=dict)
    id_prefix: str = Field("", pattern=r"^[A-Za-z0-9_\-]*$")


class RuleFile(TomlTable):
    """The top level of an included rule file: ``[[rule]]`` tables and nothing else."""

    rule: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class IncludedRules:
    """The rule tables one include brings in, bound and prefixed, and where they came from."""

    where: str
    rules: tuple[dict[str, Any], ...]


def include_lines(text: str | None) -> list[int]:
    """The line number of each ``[[include]]`` header of a site file's text, in order."""
    if text is None:
        return []
    return [n for n, line in enumerate(text.splitlines(), 1) if _INCLUDE_HEADER.match(line)]


def _where(index: int, lines: list[int]) -> str:
    line = f" (line {lines[index]})" if index < len(lines) else ""
    return f"[[include]] #{index + 1}{line}"


def _find(ref: str, base_dir: Path | None, source: str, where: str) -> Path:
    path = rule_file_path(ref, base_dir)
    known = ", ".join(shipped_rule_files()) or "none"
    if path is None:
        problem = f"'rules' = {ref!r}: a pushed configuration may include shipped rule "
        raise SiteConfigError(source, problem + f"tables only ({known})", where)
    if not path.is_file():
        problem = f"'rules' = {ref!r}: no such rule file ({path} does not exist; shipped: {known})"
        raise SiteConfigError(source, problem, where)
    return path


def _read(path: Path, source: str, where: str) -> list[dict[str, Any]]:
    def error(p: Path, problem: str) -> SiteConfigError:
        return SiteConfigError(source, f"rule file {p}: {problem}", where)

    data = read_toml(path, "rule file", error)
    try:
        return RuleFile.model_validate(data).rule
    except ValidationError as exc:
        problem = table_problem(exc, RuleFile, "the top level")
        raise SiteConfigError(source, f"rule file {path}: {problem}", where) from None


def _bind(
    raw: list[dict[str, Any]], table: IncludeTable, path: Path, source: str, where: str
) -> list[dict[str, Any]]:
    used: set[str] = set()
    ids = {r.get("id") for r in raw}
    bound: list[dict[str, Any]] = []
    for written in raw:
        rule = dict(written)
        channel = rule.get("channel")
        match = PLACEHOLDER.fullmatch(channel) if isinstance(channel, str) else None
        if match is not None:
            name = match.group(1)
            used.add(name)
            if name not in table.channels:
                problem = (
                    f"'channels': rule {rule.get('id')!r} of {path.name} uses {{{name}}}, which "
                    f'this include does not bind (channels = {{ {name} = "DEVICE.CHANNEL" }})'
                )
                raise SiteConfigError(source, problem, where)
            rule["channel"] = table.channels[name]
        if table.id_prefix:
            if isinstance(rule.get("id"), str):
                rule["id"] = table.id_prefix + rule["id"]
            if isinstance(rule.get("rules"), list):
                rule["rules"] = [table.id_prefix + r if r in ids else r for r in rule["rules"]]
        bound.append(rule)
    if unused := sorted(set(table.channels) - used):
        uses = ", ".join(sorted(used)) or "no placeholder"
        problem = (
            f"'channels' binds {', '.join(unused)}, which {path.name} never uses (it uses: {uses})"
        )
        raise SiteConfigError(source, problem, where)
    return bound


def expand_includes(
    source: str, raw: Any, base_dir: Path | None, text: str | None
) -> list[IncludedRules]:
    """The rules of each ``[[include]]``, channels bound and ids prefixed, in file order.

    Raises:
        SiteConfigError: naming the site file, the include (number and line) and the field:
            an unknown file, a file that is not a rule table, an unbound or unused
            placeholder.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SiteConfigError(source, "must be an array of tables ([[include]])", "include")
    lines = include_lines(text)
    out: list[IncludedRules] = []
    for index, item in enumerate(raw):
        where = _where(index, lines)
        try:
            table = IncludeTable.model_validate(item)
        except ValidationError as exc:
            raise SiteConfigError(source, table_problem(exc, IncludeTable), where) from None
        path = _find(table.rules, base_dir, source, where)
        rules = _bind(_read(path, source, where), table, path, source, where)
        out.append(IncludedRules(f"{where} ({table.rules})", tuple(rules)))
    return out


def check_clashes(source: str, own: list[Any], included: list[IncludedRules]) -> Mapping[str, str]:
    """Refuse a rule id that two places define; return each included id's include.

    Raises:
        SiteConfigError: naming the include and both places of the clashing id.
    """
    seen: dict[str, str] = {
        r["id"]: "this site file's [[rule]]"
        for r in own
        if isinstance(r, dict) and isinstance(r.get("id"), str)
    }
    origin: dict[str, str] = {}
    for block in included:
        for rule in block.rules:
            rule_id = rule.get("id")
            if not isinstance(rule_id, str):
                continue
            if rule_id in seen:
                problem = (
                    f"rule id '{rule_id}' is also defined by {seen[rule_id]}: set id_prefix "
                    "on the include, or rename one of them"
                )
                raise SiteConfigError(source, problem, block.where)
            seen[rule_id] = block.where
            origin[rule_id] = block.where
    return origin
