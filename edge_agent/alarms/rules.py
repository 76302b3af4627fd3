"""Parse and validate the ``[[rule]]`` tables of a site file into typed alarm rules.

Every mistake is refused at the door with a message shaped ``"SOURCE: rule 'ID': problem"``;
the parser never guesses a missing value and never evaluates a sample.

TOML format (thresholds are tables keyed by colour, any non-empty subset of blue, yellow,
orange, red, strictly increasing with level; horizons strictly decreasing)::

    [[rule]]
    id = "rain_county"
    kind = "rain_windows"          # cumulative-counter rain over sliding windows
    channel = "rain_sen0575.rain_total"     # site channel "device.channel", rain_total in mm
    hysteresis = 2.0               # optional, metric units, default 0
    hold_s = 3600                  # optional, default 1800
    latch_from = "red"             # optional, default: never latches
    counter_modulus = 6553.6       # optional (rain kinds), default from the channel
    description = "..."            # optional, free text
    [rule.windows]                 # any subset of 10m, 1h, 3h, 6h, 12h, 24h; mm
    "1h" = { blue = 35, yellow = 45, orange = 60, red = 80 }

    kind = "antecedent_rain"       # decay_per_day = k (0 < k < 1), thresholds = {...} in mm
    kind = "rain_intensity_duration"  # curves = { yellow = { a = 2.2, b = -0.44 }, ... };
                                   # dry_gap_s = 21600, min_duration_s = 600,
                                   # max_duration_s = 864000 (curves must rise with level
                                   # over the whole min..max duration range; a restart
                                   # replays max_duration_s + dry_gap_s of history)
    kind = "water_level"           # thresholds = {...} in channel units
    kind = "rate_of_rise"          # window_s, eval_every_s = 0, thresholds in units per hour
    kind = "displacement_velocity" # window_s, eval_every_s = 60, thresholds in mm/day
    kind = "displacement_acceleration"  # window_s, eval_every_s = 60, thresholds mm/day^2
    kind = "tangent_angle"         # window_s, eval_every_s = 60, creep_rate_mm_day,
                                   # thresholds = { yellow = 45, orange = 80, red = 85 }
    kind = "inverse_velocity"      # window_s, fit_window_s, eval_every_s = 60, min_r2 = 0.8,
                                   # horizons_h = { blue = 168, yellow = 72, orange = 24, red = 6 }
    kind = "failure_forecast"      # Voight's law fitted to the displacement (see
                                   # forecast_kernels.py): window_s = 1209600,
                                   # eval_every_s = 3600, bin_s = 3600, min_bins = 24,
                                   # min_span_s = 86400, alpha_range = [1.5, 2.5],
                                   # min_evidence = 100, max_spread = 0.5,
                                   # confirm = 2, horizons_h =
                                   # { yellow = 168, orange = 72, red = 36 }
    kind = "all_of" | "any_of"     # rules = ["id1", "id2"]; optional latch_from, description
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any, NoReturn

from edge_agent.alarms.specs import (
    LEVEL_BY_NAME,
    AntecedentRainRule,
    ChannelInfo,
    CombinationRule,
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    FailureForecastRule,
    IntensityDurationRule,
    InverseVelocityRule,
    LevelThresholds,
    PowerLaw,
    RainWindow,
    RainWindowRule,
    RateOfRiseRule,
    RuleSpec,
    TangentAngleRule,
    WaterLevelRule,
)

#: Window names a rain-window rule may use, shortest first, in seconds.
WINDOWS_S = {
    "10m": 600.0,
    "1h": 3600.0,
    "3h": 10800.0,
    "6h": 21600.0,
    "12h": 43200.0,
    "24h": 86400.0,
}

RAIN_QUANTITIES = frozenset({"rain_total"})
LEVEL_QUANTITIES = frozenset({"water_level"})
DISPLACEMENT_QUANTITIES = frozenset(
    {"displacement", "displacement_east", "displacement_north", "displacement_up", "crack_width"}
)
TANGENT_DEFAULTS: LevelThresholds = (None, 45.0, 80.0, 85.0)
#: Forecasts a failure-forecast level may wait for in a row (see ``confirm``).
MAX_CONFIRM = 6

_COMMON = {"id", "kind", "channel", "hysteresis", "hold_s", "latch_from", "description"}
_SLOPE = _COMMON | {"window_s", "eval_every_s", "thresholds"}
_KEYS: dict[str, set[str]] = {
    "rain_windows": _COMMON | {"windows", "counter_modulus"},
    "antecedent_rain": _COMMON | {"decay_per_day", "thresholds", "counter_modulus"},
    "rain_intensity_duration": _COMMON
    | {"curves", "dry_gap_s", "min_duration_s", "max_duration_s", "counter_modulus"},
    "water_level": _COMMON | {"thresholds"},
    "rate_of_rise": _SLOPE,
    "displacement_velocity": _SLOPE,
    "displacement_acceleration": _SLOPE,
    "tangent_angle": _SLOPE | {"creep_rate_mm_day"},
    "inverse_velocity": (_SLOPE - {"thresholds"}) | {"fit_window_s", "min_r2", "horizons_h"},
    "failure_forecast": _COMMON
    | {
        "window_s",
        "eval_every_s",
        "bin_s",
        "min_bins",
        "min_span_s",
        "alpha_range",
        "min_evidence",
        "max_spread",
        "confirm",
        "horizons_h",
    },
    "all_of": {"id", "kind", "rules", "latch_from", "description"},
    "any_of": {"id", "kind", "rules", "latch_from", "description"},
}


class RuleError(ValueError):
    """A rule is invalid; the message names the file, the rule and the problem."""

    def __init__(self, source: str, rule: str, problem: str) -> None:
        self.source = source
        self.rule = rule
        self.problem = problem
        super().__init__(f"{source}: {rule}: {problem}")


class _RuleTable:
    """Typed access to one ``[[rule]]`` table; every failure names file and rule."""

    def __init__(self, source: str, where: str, table: Mapping[str, Any]) -> None:
        self.source, self.where, self.table = source, where, table

    def fail(self, problem: str) -> NoReturn:
        raise RuleError(self.source, self.where, problem)

    def check_keys(self, allowed: set[str]) -> None:
        if unknown := sorted(set(self.table) - allowed):
            self.fail(
                f"unknown key(s): {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
            )

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            self.fail(f"missing '{key}'")
        if not isinstance(value, str) or (not value and default is None):
            self.fail(f"'{key}' must be a non-empty string, got {value!r}")
        return value

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        above: float | None = None,
        at_least: float | None = None,
        below: float | None = None,
        at_most: float | None = None,
        value: Any = None,
    ) -> float:
        raw = self.table.get(key, default) if value is None else value
        if raw is None:
            self.fail(f"missing '{key}'")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            self.fail(f"'{key}' must be a finite number, got {raw!r}")
        x = float(raw)
        if above is not None and not x > above:
            self.fail(f"'{key}' = {raw} must be above {above:g}")
        if at_least is not None and not x >= at_least:
            self.fail(f"'{key}' = {raw} must be at least {at_least:g}")
        if below is not None and not x < below:
            self.fail(f"'{key}' = {raw} must be below {below:g}")
        if at_most is not None and not x <= at_most:
            self.fail(f"'{key}' = {raw} must be at most {at_most:g}")
        return x

    def level(self, key: str) -> int:
        name = self.table.get(key)
        if name is None:
            return 0
        if not isinstance(name, str) or name not in LEVEL_BY_NAME:
            self.fail(f"'{key}' must be one of {', '.join(LEVEL_BY_NAME)}, got {name!r}")
        return LEVEL_BY_NAME[name]

    def subtable(self, key: str, raw: Any = None) -> Mapping[str, Any]:
        value = self.table.get(key) if raw is None else raw
        if value is None:
            self.fail(f"missing '{key}'")
        if not isinstance(value, dict) or not value:
            self.fail(f"'{key}' must be a non-empty table, got {value!r}")
        return value

    def levels(
        self, key: str, raw: Any = None, *, descending: bool = False, positive: bool = False
    ) -> LevelThresholds:
        """Read a ``{ blue = .., red = .. }`` table, checking names, numbers and order."""
        table = self.subtable(key, raw)
        if unknown := sorted(set(table) - set(LEVEL_BY_NAME)):
            self.fail(
                f"unknown level name(s) in '{key}': {', '.join(unknown)} "
                f"(levels: {', '.join(LEVEL_BY_NAME)})"
            )
        values: list[float | None] = [None] * 4
        for name, level in LEVEL_BY_NAME.items():
            if name in table:
                values[level - 1] = self.number(
                    f"{key}.{name}", value=table[name], above=0.0 if positive else None
                )
        given = [(i, x) for i, x in enumerate(values) if x is not None]
        for (lo, x_lo), (hi, x_hi) in itertools.pairwise(given):
            if (x_hi >= x_lo) if descending else (x_hi <= x_lo):
                trend = "decrease" if descending else "increase"
                names = list(LEVEL_BY_NAME)
                self.fail(
                    f"'{key}' must {trend} with level: {names[lo]} = {x_lo:g}, "
                    f"{names[hi]} = {x_hi:g}"
                )
        return (values[0], values[1], values[2], values[3])

    def channel(
        self, channels: Mapping[str, ChannelInfo], quantities: frozenset[str], unit: str | None
    ) -> tuple[str, ChannelInfo]:
        channel_id = self.text("channel")
        info = channels.get(channel_id)
        if info is None:
            self.fail(f"unknown channel '{channel_id}'")
        if info.quantity not in quantities:
            self.fail(
                f"channel '{channel_id}' measures {info.quantity}, this rule needs "
                f"{' or '.join(sorted(quantities))}"
            )
        if unit is not None and info.unit != unit:
            self.fail(f"channel '{channel_id}' is in {info.unit}, this rule needs {unit}")
        return channel_id, info


def _common(r: _RuleTable, rule_id: str, channel: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "channel": channel,
        "hysteresis": r.number("hysteresis", 0.0, at_least=0.0),
        "hold_s": r.number("hold_s", 1800.0, at_least=0.0),
        "latch_from": r.level("latch_from"),
        "description": r.text("description", ""),
    }


def _modulus(r: _RuleTable, info: ChannelInfo) -> float | None:
    if "counter_modulus" in r.table:
        return r.number("counter_modulus", above=0.0)
    return info.counter_modulus


def _rain(r: _RuleTable, kind: str, rule_id: str, channels: Mapping[str, ChannelInfo]) -> RuleSpec:
    channel, info = r.channel(channels, RAIN_QUANTITIES, "mm")
    common = _common(r, rule_id, channel)
    modulus = _modulus(r, info)
    if kind == "rain_windows":
        table = r.subtable("windows")
        if unknown := sorted(set(table) - set(WINDOWS_S)):
            r.fail(f"unknown window(s): {', '.join(unknown)} (windows: {', '.join(WINDOWS_S)})")
        windows = tuple(
            RainWindow(name, seconds, r.levels(f"windows.{name}", table[name], positive=True))
            for name, seconds in WINDOWS_S.items()
            if name in table
        )
        return RainWindowRule(**common, windows=windows, counter_modulus=modulus)
    if kind == "antecedent_rain":
        return AntecedentRainRule(
            **common,
            decay_per_day=r.number("decay_per_day", above=0.0, below=1.0),
            thresholds=r.levels("thresholds", positive=True),
            counter_modulus=modulus,
        )
    min_s = r.number("min_duration_s", 600.0, above=0.0)
    max_s = r.number("max_duration_s", 864000.0, above=min_s)
    return IntensityDurationRule(
        **common,
        curves=_curves(r, min_s / 3600.0, max_s / 3600.0),
        dry_gap_s=r.number("dry_gap_s", 21600.0, above=0.0),
        min_duration_s=min_s,
        max_duration_s=max_s,
        counter_modulus=modulus,
    )


def _curves(
    r: _RuleTable, min_h: float, max_h: float
) -> tuple[PowerLaw | None, PowerLaw | None, PowerLaw | None, PowerLaw | None]:
    table = r.subtable("curves")
    if unknown := sorted(set(table) - set(LEVEL_BY_NAME)):
        r.fail(f"unknown level name(s) in 'curves': {', '.join(unknown)}")
    curves: list[PowerLaw | None] = [None] * 4
    for name, level in LEVEL_BY_NAME.items():
        if name not in table:
            continue
        raw = r.subtable(f"curves.{name}", table[name])
        if sorted(raw) != ["a", "b"]:
            r.fail(f"'curves.{name}' needs exactly 'a' and 'b', got {', '.join(sorted(raw))}")
        a = r.number(f"curves.{name}.a", value=raw["a"], above=0.0)
        b = r.number(f"curves.{name}.b", value=raw["b"], above=-1.0, at_most=0.0)
        curves[level - 1] = PowerLaw(a, b)
    given = [(name, c) for name, c in zip(LEVEL_BY_NAME, curves, strict=True) if c is not None]
    # Two power laws cross at most once in log-log space, so checking both ends of the
    # valid duration range proves the order holds over all of it.
    for (lo_name, lo), (hi_name, hi) in itertools.pairwise(given):
        for d in (min_h, max_h):
            if hi.at(d) <= lo.at(d):
                r.fail(
                    f"'curves' must increase with level: at D = {d:g} h {lo_name} gives "
                    f"{lo.at(d):.4g} mm/h, {hi_name} {hi.at(d):.4g} mm/h"
                )
    return (curves[0], curves[1], curves[2], curves[3])


def _slope(r: _RuleTable, kind: str, rule_id: str, channels: Mapping[str, ChannelInfo]) -> RuleSpec:
    if kind == "rate_of_rise":
        channel, _ = r.channel(channels, LEVEL_QUANTITIES, None)
    else:
        channel, _ = r.channel(channels, DISPLACEMENT_QUANTITIES, "mm")
    common = _common(r, rule_id, channel)
    common["window_s"] = r.number("window_s", above=0.0)
    common["eval_every_s"] = r.number(
        "eval_every_s", 0.0 if kind == "rate_of_rise" else 60.0, at_least=0.0
    )
    if kind == "rate_of_rise":
        return RateOfRiseRule(**common, thresholds=r.levels("thresholds"))
    if kind == "displacement_velocity":
        return DisplacementVelocityRule(**common, thresholds=r.levels("thresholds"))
    if kind == "displacement_acceleration":
        return DisplacementAccelerationRule(**common, thresholds=r.levels("thresholds"))
    if kind == "tangent_angle":
        thresholds = r.levels("thresholds") if "thresholds" in r.table else TANGENT_DEFAULTS
        if any(x is not None and not 0.0 < x < 90.0 for x in thresholds):
            r.fail("tangent-angle thresholds must lie strictly between 0 and 90 degrees")
        return TangentAngleRule(
            **common,
            creep_rate_mm_day=r.number("creep_rate_mm_day", above=0.0),
            thresholds=thresholds,
        )
    return InverseVelocityRule(
        **common,
        fit_window_s=r.number("fit_window_s", above=0.0),
        min_r2=r.number("min_r2", 0.8, at_least=0.0, at_most=1.0),
        horizons_h=r.levels("horizons_h", descending=True, positive=True),
    )


def _forecast(
    r: _RuleTable, rule_id: str, channels: Mapping[str, ChannelInfo]
) -> FailureForecastRule:
    channel, _ = r.channel(channels, DISPLACEMENT_QUANTITIES, "mm")
    defaults = FailureForecastRule(id=rule_id, channel=channel, horizons_h=(None,) * 4)
    window_s = r.number("window_s", defaults.window_s, at_least=86400.0)
    bin_s = r.number("bin_s", defaults.bin_s, above=0.0, at_most=window_s / 8.0)
    alpha = r.table.get("alpha_range", list(defaults.alpha_range))
    if not isinstance(alpha, list) or len(alpha) != 2:
        r.fail(f"'alpha_range' must be [low, high], got {alpha!r}")
    low = r.number("alpha_range[0]", value=alpha[0], above=1.0)
    high = r.number("alpha_range[1]", value=alpha[1], at_least=low, at_most=4.0)
    confirm = r.number("confirm", defaults.confirm, at_least=1.0, at_most=MAX_CONFIRM)
    min_bins = r.number("min_bins", defaults.min_bins, at_least=8.0)
    if confirm != int(confirm) or min_bins != int(min_bins):
        r.fail("'confirm' and 'min_bins' must be whole numbers")
    return FailureForecastRule(
        **_common(r, rule_id, channel),
        window_s=window_s,
        eval_every_s=r.number("eval_every_s", defaults.eval_every_s, above=0.0),
        bin_s=bin_s,
        min_bins=int(min_bins),
        min_span_s=r.number("min_span_s", defaults.min_span_s, above=0.0, at_most=window_s),
        alpha_range=(low, high),
        min_evidence=r.number("min_evidence", defaults.min_evidence, above=0.0),
        max_spread=r.number("max_spread", defaults.max_spread, above=0.0),
        confirm=int(confirm),
        horizons_h=r.levels("horizons_h", descending=True, positive=True),
    )


def _combination(r: _RuleTable, kind: str, rule_id: str) -> CombinationRule:
    members = r.table.get("rules")
    if members is None:
        r.fail("missing 'rules'")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        r.fail(f"'rules' must be a list of rule ids, got {members!r}")
    if len(set(members)) != len(members) or len(members) < 2:
        r.fail(f"'rules' must name at least two different rules, got {members!r}")
    if rule_id in members:
        r.fail("a combination cannot contain itself")
    return CombinationRule(
        id=rule_id,
        kind="all_of" if kind == "all_of" else "any_of",
        members=tuple(members),
        latch_from=r.level("latch_from"),
        description=r.text("description", ""),
    )


def _parse_one(source: str, raw: Any, index: int, channels: Mapping[str, ChannelInfo]) -> RuleSpec:
    if not isinstance(raw, dict):
        raise RuleError(source, f"rule #{index + 1}", "must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError(source, f"rule #{index + 1}", f"needs a non-empty 'id', got {rule_id!r}")
    r = _RuleTable(source, f"rule '{rule_id}'", raw)
    kind = r.text("kind")
    if kind not in _KEYS:
        r.fail(f"unknown kind '{kind}' (kinds: {', '.join(_KEYS)})")
    r.check_keys(_KEYS[kind])
    if kind in ("all_of", "any_of"):
        return _combination(r, kind, rule_id)
    if kind in ("rain_windows", "antecedent_rain", "rain_intensity_duration"):
        return _rain(r, kind, rule_id, channels)
    if kind == "failure_forecast":
        return _forecast(r, rule_id, channels)
    if kind == "water_level":
        channel, _ = r.channel(channels, LEVEL_QUANTITIES, None)
        return WaterLevelRule(**_common(r, rule_id, channel), thresholds=r.levels("thresholds"))
    return _slope(r, kind, rule_id, channels)


def combination_order(rules: tuple[RuleSpec, ...]) -> list[CombinationRule]:
    """Return the combinations ordered so that every member comes before its user.

    Raises:
        ValueError: naming the rule, when a member is unknown or combinations form a cycle.
    """
    by_id = {rule.id: rule for rule in rules}
    combos = {rule.id: rule for rule in rules if isinstance(rule, CombinationRule)}
    order: list[CombinationRule] = []
    state: dict[str, str] = {}

    def visit(rule_id: str, path: list[str]) -> None:
        if state.get(rule_id) == "done":
            return
        if state.get(rule_id) == "open":
            cycle = [*path[path.index(rule_id) :], rule_id]
            msg = f"rule '{rule_id}': combinations form a cycle {' -> '.join(cycle)}"
            raise ValueError(msg)
        state[rule_id] = "open"
        for member in combos[rule_id].members:
            if member not in by_id:
                msg = f"rule '{rule_id}': unknown rule '{member}' in 'rules'"
                raise ValueError(msg)
            if member in combos:
                visit(member, [*path, rule_id])
        state[rule_id] = "done"
        order.append(combos[rule_id])

    for rule_id in combos:
        visit(rule_id, [])
    return order


def parse_rules(
    raw: list[dict[str, Any]], source: str, channels: Mapping[str, ChannelInfo]
) -> tuple[RuleSpec, ...]:
    """Validate the ``[[rule]]`` tables of a site file.

    Args:
        raw: the list of rule tables as parsed from TOML.
        source: the file name, used as the first part of every error message.
        channels: site channel id ("device.channel") -> what the channel measures.

    Returns:
        The rules in file order.

    Raises:
        RuleError: shaped ``"SOURCE: rule 'ID': problem"``.
    """
    if not isinstance(raw, list):
        raise RuleError(source, "[[rule]]", "must be an array of tables")
    rules = tuple(_parse_one(source, item, i, channels) for i, item in enumerate(raw))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise RuleError(source, f"rule '{rule.id}'", "duplicate id")
        seen.add(rule.id)
    try:
        combination_order(rules)
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")
        raise RuleError(source, where, problem) from exc
    return rules
