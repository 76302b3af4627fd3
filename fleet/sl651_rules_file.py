"""A SL 651 station's rules file: ``[[rule]]`` tables on the station's channels, checked.

The same rule kinds and syntax as a site file's rules (``site_schema.rules``), and the same
``[[include]]`` of a county's shipped rule tables (``site_schema.rule_includes``), but the
channels are the station's: named after the SL 651 elements it reports
(``fleet.sl651_observations.channel_name``: ``rainfall_accumulated``, ``water_level``,
...). A rule on a channel no station reports, or on one that measures something else than
the rule needs, is refused with the reason. The text is kept in the fleet's database, so
it may include shipped tables only (a local file could change or vanish under it)::

    [[rule]]
    id = "creek_level"
    kind = "water_level"
    channel = "water_level"
    thresholds = { blue = 3.0, yellow = 4.0, orange = 5.0, red = 6.0 }

    [[include]]
    rules = "jianghua"
    channels = { rain = "rainfall_accumulated" }

This module never evaluates a sample and never imports the engine: ``fleet sl651
add-station`` checks a file with it without loading numba.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from fleet.sl651_observations import SERIES_CHANNELS, channel_name
from protocol.sl651 import ElementId
from protocol.sl651.elements import NUMBERS
from site_schema.rule_files import shipped_rule_files
from site_schema.rule_includes import check_clashes, expand_includes
from site_schema.rule_specs import ChannelInfo, RuleSpec
from site_schema.rules import RuleError, parse_rules
from site_schema.site_errors import SiteConfigError

#: The station's cumulative rain counter (PT, N(6,1)): it wraps past 99999.9 mm.
RAIN_COUNTER = ElementId.RAINFALL_ACCUMULATED
RAIN_COUNTER_MODULUS = 100000.0
#: Elements that are a water level in metres (a level rule or rate of rise may watch them).
LEVELS = frozenset(
    {
        ElementId.WATER_LEVEL,
        ElementId.UPSTREAM_LEVEL,
        ElementId.DOWNSTREAM_LEVEL,
        *(e for e in ElementId if e.name.startswith("INTAKE_LEVEL_")),
    }
)
#: Rain over a period (1 h, 5 min, a day, ...): not a counter, so no rain rule watches it.
PERIOD_RAIN = "rain_period"
TOP_LEVEL = frozenset({"rule", "include"})


class StationRulesError(ValueError):
    """A station's rules file is refused; the message names the file, the rule and why."""


def _quantity(element: ElementId) -> ChannelInfo:
    unit = NUMBERS[element].unit
    if element is RAIN_COUNTER:
        return ChannelInfo("rain_total", unit, RAIN_COUNTER_MODULUS)
    if element in LEVELS:
        return ChannelInfo("water_level", unit)
    if element.name.startswith("RAINFALL_") or element is ElementId.RAINSTORM_TOTAL:
        return ChannelInfo(PERIOD_RAIN, unit)
    return ChannelInfo(element.name.lower(), unit)


def station_channels() -> dict[str, ChannelInfo]:
    """Every channel a station can report, and what it measures, by channel name."""
    channels = {channel_name(element): _quantity(element) for element in NUMBERS}
    # The 5-minute series: rain (F4) on rainfall_5min, which NUMBERS names already; the
    # relative levels (F5-FC, m against the hour's first) on relative_level_1..8.
    for element in SERIES_CHANNELS:
        channels.setdefault(channel_name(element), ChannelInfo("relative_water_level", "m"))
    return channels


STATION_CHANNELS: Mapping[str, ChannelInfo] = station_channels()


def _watchable() -> str:
    levels = sorted(c for c, info in STATION_CHANNELS.items() if info.quantity == "water_level")
    return (
        f"rain rules watch {channel_name(RAIN_COUNTER)} (the cumulative rain counter, PT); "
        f"level rules watch {', '.join(levels)}"
    )


def _check_channels(source: str, every: list[Any], origin: Mapping[str, str]) -> None:
    """Refuse a rule on a channel no SL 651 station reports, saying which ones it can."""
    for index, raw in enumerate(every):
        if not isinstance(raw, dict):
            continue
        channel = raw.get("channel")
        if not isinstance(channel, str) or channel in STATION_CHANNELS:
            continue
        rule_id = raw.get("id")
        where = f"rule '{rule_id}'" if isinstance(rule_id, str) else f"rule #{index + 1}"
        if isinstance(rule_id, str) and rule_id in origin:
            where = f"{origin[rule_id]}: {where}"
        msg = (
            f"{source}: {where}: channel '{channel}' is not one an SL 651 station reports; "
            f"its channels are named after its elements: {_watchable()}"
        )
        raise StationRulesError(msg)


def _check_includes(source: str, raw: Any) -> None:
    shipped = shipped_rule_files()
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        ref = item.get("rules") if isinstance(item, dict) else None
        if isinstance(ref, str) and ref not in shipped:
            msg = (
                f"{source}: [[include]] #{index + 1}: 'rules' = {ref!r}: a station's rules are "
                f"kept in the fleet database, so they may include shipped rule tables only "
                f"({', '.join(shipped) or 'none'}); copy that file's rules into this one"
            )
            raise StationRulesError(msg)


def parse_station_rules(text: str, source: str) -> tuple[RuleSpec, ...]:
    """The rules of a station's rules file ``text`` (``source`` names it in every error).

    Raises:
        StationRulesError: not TOML, another table than ``[[rule]]``/``[[include]]``, no
            rule at all, an include of a local file, a channel no station reports, or any
            mistake a site file's rules would be refused for.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StationRulesError(f"{source}: not a TOML file: {exc}") from None
    if unknown := sorted(set(data) - TOP_LEVEL):
        msg = (
            f"{source}: unknown table(s) {', '.join(unknown)}: a station's rules file holds "
            "[[rule]] and [[include]] tables only"
        )
        raise StationRulesError(msg)
    own = data.get("rule", [])
    if not isinstance(own, list):
        raise StationRulesError(f"{source}: [[rule]] must be an array of tables")
    _check_includes(source, data.get("include"))
    try:
        included = expand_includes(source, data.get("include"), None, text)
        origin = check_clashes(source, own, included)
    except SiteConfigError as exc:
        raise StationRulesError(str(exc)) from None
    every = [*own, *(rule for block in included for rule in block.rules)]
    if not every:
        msg = (
            f"{source}: no [[rule]] and no [[include]]: give the station at least one rule "
            "(to take its rules away: fleet sl651 set-rules ADDRESS --clear)"
        )
        raise StationRulesError(msg)
    _check_channels(source, every, origin)
    try:
        return parse_rules(every, source, STATION_CHANNELS)
    except RuleError as exc:
        rule_id = exc.rule.removeprefix("rule '").removesuffix("'")
        if rule_id in origin:
            where = f"{origin[rule_id]}: {exc.rule}"
            raise StationRulesError(f"{source}: {where}: {exc.problem}") from None
        raise StationRulesError(str(exc)) from None
