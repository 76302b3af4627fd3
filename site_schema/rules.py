"""Parse and validate the ``[[rule]]`` tables of a site file into typed alarm rules.

Every mistake is refused at the door with a message shaped ``"SOURCE: rule 'ID': problem"``;
the parser never guesses a missing value and never evaluates a sample. Each kind is a
pydantic model (unknown keys refused, strict types and simple bounds), chosen by ``kind``
as a discriminated union; what a model cannot check alone (level tables and their order,
channels, bounds that depend on another key) is checked after it.

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
                                   # max_drift = max_spread / 2, confirm = 2, caution = 0,
                                   # unconfirmed_h (unset: an unconfirmed forecast raises nothing),
                                   # horizons_h = { yellow = 168, orange = 72, red = 36 }
    kind = "all_of" | "any_of"     # rules = ["id1", "id2"]; optional latch_from, description
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NoReturn

from pydantic import Field, TypeAdapter, ValidationError

from drivers.toml_schema import TomlTable, table_problem
from site_schema.rule_specs import (
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
#: A forecast's window and its bins are bounded: every hourly fit walks every bin, and a
#: pushed config must not be able to stall a gateway's alarm path.
MAX_FORECAST_WINDOW_S = 60 * 86400.0
MAX_FORECAST_BINS = 2000
#: Forecasts a failure-forecast level may wait for in a row (see ``confirm``).
MAX_CONFIRM = 6

Name = Annotated[str, Field(min_length=1)]
#: A table checked after the model: level names, their order, windows, curves.
Table = dict[str, Any]
_FORECAST = FailureForecastRule(id="", channel="", horizons_h=(None, None, None, None))


class _Rule(TomlTable):
    id: Name
    latch_from: str | None = None  # a level name, checked with the rule's own words
    description: str = ""


class _ChannelRule(_Rule):
    channel: Name
    hysteresis: float = Field(0.0, ge=0.0)
    hold_s: float = Field(1800.0, ge=0.0)


class _RainRule(_ChannelRule):
    counter_modulus: float | None = Field(None, gt=0.0)  # default: the channel's


class RainWindowsTable(_RainRule):
    """``kind = "rain_windows"``."""

    kind: Literal["rain_windows"]
    windows: Table | None = None


class AntecedentRainTable(_RainRule):
    """``kind = "antecedent_rain"``."""

    kind: Literal["antecedent_rain"]
    decay_per_day: float | None = Field(None, gt=0.0, lt=1.0)
    thresholds: Table | None = None


class IntensityDurationTable(_RainRule):
    """``kind = "rain_intensity_duration"``; ``max_duration_s`` above the minimum."""

    kind: Literal["rain_intensity_duration"]
    curves: Table | None = None
    dry_gap_s: float = Field(21600.0, gt=0.0)
    min_duration_s: float = Field(600.0, gt=0.0)
    max_duration_s: float = 864000.0


class WaterLevelTable(_ChannelRule):
    """``kind = "water_level"``."""

    kind: Literal["water_level"]
    thresholds: Table | None = None


class _SlopeRule(_ChannelRule):
    window_s: float | None = Field(None, gt=0.0)
    eval_every_s: float = Field(60.0, ge=0.0)


class RateOfRiseTable(_SlopeRule):
    """``kind = "rate_of_rise"``: evaluated on every sample unless told otherwise."""

    kind: Literal["rate_of_rise"]
    eval_every_s: float = Field(0.0, ge=0.0)
    thresholds: Table | None = None


class DisplacementVelocityTable(_SlopeRule):
    """``kind = "displacement_velocity"``."""

    kind: Literal["displacement_velocity"]
    thresholds: Table | None = None


class DisplacementAccelerationTable(_SlopeRule):
    """``kind = "displacement_acceleration"``."""

    kind: Literal["displacement_acceleration"]
    thresholds: Table | None = None


class TangentAngleTable(_SlopeRule):
    """``kind = "tangent_angle"``; thresholds default to 45, 80, 85 degrees."""

    kind: Literal["tangent_angle"]
    thresholds: Table | None = None
    creep_rate_mm_day: float | None = Field(None, gt=0.0)


class InverseVelocityTable(_SlopeRule):
    """``kind = "inverse_velocity"``."""

    kind: Literal["inverse_velocity"]
    fit_window_s: float | None = Field(None, gt=0.0)
    min_r2: float = Field(0.8, ge=0.0, le=1.0)
    horizons_h: Table | None = None


class FailureForecastTable(_ChannelRule):
    """``kind = "failure_forecast"``; bounds that depend on ``window_s`` are checked after."""

    kind: Literal["failure_forecast"]
    window_s: float = Field(_FORECAST.window_s, ge=86400.0, le=MAX_FORECAST_WINDOW_S)
    eval_every_s: float = Field(_FORECAST.eval_every_s, gt=0.0)
    bin_s: float = Field(_FORECAST.bin_s, ge=60.0)
    min_bins: float = Field(_FORECAST.min_bins, ge=8.0)
    min_span_s: float = Field(_FORECAST.min_span_s, gt=0.0)
    alpha_range: list[float] = Field(default_factory=lambda: list(_FORECAST.alpha_range))
    min_evidence: float = Field(_FORECAST.min_evidence, gt=0.0)
    max_spread: float = Field(_FORECAST.max_spread, gt=0.0)
    max_drift: float | None = Field(None, gt=0.0)
    confirm: float = Field(_FORECAST.confirm, ge=1.0, le=MAX_CONFIRM)
    caution: float = Field(_FORECAST.caution, ge=0.0, le=1.0)
    unconfirmed_h: float | None = None
    horizons_h: Table | None = None


class CombinationTable(_Rule):
    """``kind = "all_of"`` or ``"any_of"``."""

    kind: Literal["all_of", "any_of"]
    rules: list[Name] | None = None


RuleTable = (
    RainWindowsTable
    | AntecedentRainTable
    | IntensityDurationTable
    | WaterLevelTable
    | RateOfRiseTable
    | DisplacementVelocityTable
    | DisplacementAccelerationTable
    | TangentAngleTable
    | InverseVelocityTable
    | FailureForecastTable
    | CombinationTable
)
#: The schema of a ``[[rule]]`` table, by kind: one model per kind, chosen by ``kind``.
RULE_KINDS: dict[str, type[RuleTable]] = {
    "rain_windows": RainWindowsTable,
    "antecedent_rain": AntecedentRainTable,
    "rain_intensity_duration": IntensityDurationTable,
    "water_level": WaterLevelTable,
    "rate_of_rise": RateOfRiseTable,
    "displacement_velocity": DisplacementVelocityTable,
    "displacement_acceleration": DisplacementAccelerationTable,
    "tangent_angle": TangentAngleTable,
    "inverse_velocity": InverseVelocityTable,
    "failure_forecast": FailureForecastTable,
    "all_of": CombinationTable,
    "any_of": CombinationTable,
}
_RULE_TABLE: TypeAdapter[RuleTable] = TypeAdapter(Annotated[RuleTable, Field(discriminator="kind")])


class RuleError(ValueError):
    """A rule is invalid; the message names the file, the rule and the problem."""

    def __init__(self, source: str, rule: str, problem: str) -> None:
        self.source = source
        self.rule = rule
        self.problem = problem
        super().__init__(f"{source}: {rule}: {problem}")


class _RuleTable:
    """The checks a rule's model cannot make alone, each failure naming file and rule.

    Level tables (names, numbers, order), windows, curves and bounds that depend on
    another key of the rule.
    """

    def __init__(self, source: str, where: str) -> None:
        self.source, self.where = source, where

    def fail(self, problem: str) -> NoReturn:
        raise RuleError(self.source, self.where, problem)

    def number(
        self,
        key: str,
        *,
        value: Any,
        above: float | None = None,
        at_least: float | None = None,
        below: float | None = None,
        at_most: float | None = None,
    ) -> float:
        finite = isinstance(value, int | float) and math.isfinite(value)
        if isinstance(value, bool) or not finite:
            self.fail(f"'{key}' must be a finite number, got {value!r}")
        x = float(value)
        if above is not None and not x > above:
            self.fail(f"'{key}' = {value} must be above {above:g}")
        if at_least is not None and not x >= at_least:
            self.fail(f"'{key}' = {value} must be at least {at_least:g}")
        if below is not None and not x < below:
            self.fail(f"'{key}' = {value} must be below {below:g}")
        if at_most is not None and not x <= at_most:
            self.fail(f"'{key}' = {value} must be at most {at_most:g}")
        return x

    def level(self, key: str, name: str | None) -> int:
        if name is None:
            return 0
        if not isinstance(name, str) or name not in LEVEL_BY_NAME:
            self.fail(f"'{key}' must be one of {', '.join(LEVEL_BY_NAME)}, got {name!r}")
        return LEVEL_BY_NAME[name]

    def subtable(self, key: str, value: Any) -> Mapping[str, Any]:
        if value is None:
            self.fail(f"missing '{key}'")
        if not isinstance(value, dict) or not value:
            self.fail(f"'{key}' must be a non-empty table, got {value!r}")
        return value

    def levels(
        self, key: str, raw: Any, *, descending: bool = False, positive: bool = False
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
        self,
        channel_id: str,
        channels: Mapping[str, ChannelInfo],
        quantities: frozenset[str],
        unit: str | None,
    ) -> tuple[str, ChannelInfo]:
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


def _common(r: _RuleTable, t: _ChannelRule) -> dict[str, Any]:
    return {
        "id": t.id,
        "channel": t.channel,
        "hysteresis": t.hysteresis,
        "hold_s": t.hold_s,
        "latch_from": r.level("latch_from", t.latch_from),
        "description": t.description,
    }


def _required(r: _RuleTable, key: str, value: float | None) -> float:
    if value is None:
        r.fail(f"missing '{key}'")
    return value


def _rain(
    r: _RuleTable,
    t: RainWindowsTable | AntecedentRainTable | IntensityDurationTable,
    channels: Mapping[str, ChannelInfo],
) -> RuleSpec:
    _, info = r.channel(t.channel, channels, RAIN_QUANTITIES, "mm")
    common = _common(r, t)
    modulus = info.counter_modulus if t.counter_modulus is None else t.counter_modulus
    if isinstance(t, RainWindowsTable):
        table = r.subtable("windows", t.windows)
        if unknown := sorted(set(table) - set(WINDOWS_S)):
            r.fail(f"unknown window(s): {', '.join(unknown)} (windows: {', '.join(WINDOWS_S)})")
        windows = tuple(
            RainWindow(name, seconds, r.levels(f"windows.{name}", table[name], positive=True))
            for name, seconds in WINDOWS_S.items()
            if name in table
        )
        return RainWindowRule(**common, windows=windows, counter_modulus=modulus)
    if isinstance(t, AntecedentRainTable):
        return AntecedentRainRule(
            **common,
            decay_per_day=_required(r, "decay_per_day", t.decay_per_day),
            thresholds=r.levels("thresholds", t.thresholds, positive=True),
            counter_modulus=modulus,
        )
    min_s = t.min_duration_s
    max_s = r.number("max_duration_s", value=t.max_duration_s, above=min_s)
    return IntensityDurationRule(
        **common,
        curves=_curves(r, t.curves, min_s / 3600.0, max_s / 3600.0),
        dry_gap_s=t.dry_gap_s,
        min_duration_s=min_s,
        max_duration_s=max_s,
        counter_modulus=modulus,
    )


def _curves(
    r: _RuleTable, raw: Table | None, min_h: float, max_h: float
) -> tuple[PowerLaw | None, PowerLaw | None, PowerLaw | None, PowerLaw | None]:
    table = r.subtable("curves", raw)
    if unknown := sorted(set(table) - set(LEVEL_BY_NAME)):
        r.fail(f"unknown level name(s) in 'curves': {', '.join(unknown)}")
    curves: list[PowerLaw | None] = [None] * 4
    for name, level in LEVEL_BY_NAME.items():
        if name not in table:
            continue
        law = r.subtable(f"curves.{name}", table[name])
        if sorted(law) != ["a", "b"]:
            r.fail(f"'curves.{name}' needs exactly 'a' and 'b', got {', '.join(sorted(law))}")
        a = r.number(f"curves.{name}.a", value=law["a"], above=0.0)
        b = r.number(f"curves.{name}.b", value=law["b"], above=-1.0, at_most=0.0)
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


SlopeTable = (
    RateOfRiseTable
    | DisplacementVelocityTable
    | DisplacementAccelerationTable
    | TangentAngleTable
    | InverseVelocityTable
)


def _slope(r: _RuleTable, t: SlopeTable, channels: Mapping[str, ChannelInfo]) -> RuleSpec:
    if isinstance(t, RateOfRiseTable):
        r.channel(t.channel, channels, LEVEL_QUANTITIES, None)
    else:
        r.channel(t.channel, channels, DISPLACEMENT_QUANTITIES, "mm")
    common = _common(r, t)
    common["window_s"] = _required(r, "window_s", t.window_s)
    common["eval_every_s"] = t.eval_every_s
    if isinstance(t, RateOfRiseTable):
        return RateOfRiseRule(**common, thresholds=r.levels("thresholds", t.thresholds))
    if isinstance(t, DisplacementVelocityTable):
        return DisplacementVelocityRule(**common, thresholds=r.levels("thresholds", t.thresholds))
    if isinstance(t, DisplacementAccelerationTable):
        thresholds = r.levels("thresholds", t.thresholds)
        return DisplacementAccelerationRule(**common, thresholds=thresholds)
    if isinstance(t, TangentAngleTable):
        angles = TANGENT_DEFAULTS if t.thresholds is None else r.levels("thresholds", t.thresholds)
        if any(x is not None and not 0.0 < x < 90.0 for x in angles):
            r.fail("tangent-angle thresholds must lie strictly between 0 and 90 degrees")
        return TangentAngleRule(
            **common,
            creep_rate_mm_day=_required(r, "creep_rate_mm_day", t.creep_rate_mm_day),
            thresholds=angles,
        )
    return InverseVelocityRule(
        **common,
        fit_window_s=_required(r, "fit_window_s", t.fit_window_s),
        min_r2=t.min_r2,
        horizons_h=r.levels("horizons_h", t.horizons_h, descending=True, positive=True),
    )


def _forecast(
    r: _RuleTable, t: FailureForecastTable, channels: Mapping[str, ChannelInfo]
) -> FailureForecastRule:
    r.channel(t.channel, channels, DISPLACEMENT_QUANTITIES, "mm")
    bin_s = r.number("bin_s", value=t.bin_s, at_most=t.window_s / 8.0)
    if t.window_s / bin_s > MAX_FORECAST_BINS:
        r.fail(
            f"window_s / bin_s = {t.window_s / bin_s:g} bins; at most {MAX_FORECAST_BINS} "
            "(every fit goes over all of them): lengthen bin_s or shorten window_s"
        )
    if len(t.alpha_range) != 2:
        r.fail(f"'alpha_range' must be [low, high], got {t.alpha_range!r}")
    low = r.number("alpha_range[0]", value=t.alpha_range[0], above=1.0)
    high = r.number("alpha_range[1]", value=t.alpha_range[1], at_least=low, at_most=4.0)
    if t.confirm != int(t.confirm) or t.min_bins != int(t.min_bins):
        r.fail("'confirm' and 'min_bins' must be whole numbers")
    horizons = r.levels("horizons_h", t.horizons_h, descending=True, positive=True)
    unconfirmed_h = None
    if t.unconfirmed_h is not None:
        yellow = horizons[LEVEL_BY_NAME["yellow"] - 1]
        if yellow is None:
            r.fail("'unconfirmed_h' raises yellow, so 'horizons_h' must set yellow")
        unconfirmed_h = r.number("unconfirmed_h", value=t.unconfirmed_h, above=0.0)
        if unconfirmed_h > yellow:
            r.fail(
                f"'unconfirmed_h' = {unconfirmed_h:g} reaches past the yellow horizon"
                f" ({yellow:g} h): an unconfirmed forecast would warn where a confirmed"
                " one does not"
            )
    return FailureForecastRule(
        **_common(r, t),
        window_s=t.window_s,
        eval_every_s=t.eval_every_s,
        bin_s=bin_s,
        min_bins=int(t.min_bins),
        min_span_s=r.number("min_span_s", value=t.min_span_s, at_most=t.window_s),
        alpha_range=(low, high),
        min_evidence=t.min_evidence,
        max_spread=t.max_spread,
        max_drift=t.max_drift,
        confirm=int(t.confirm),
        caution=t.caution,
        unconfirmed_h=unconfirmed_h,
        horizons_h=horizons,
    )


def _combination(r: _RuleTable, t: CombinationTable) -> CombinationRule:
    members = t.rules
    if members is None:
        r.fail("missing 'rules'")
    if len(set(members)) != len(members) or len(members) < 2:
        r.fail(f"'rules' must name at least two different rules, got {members!r}")
    if t.id in members:
        r.fail("a combination cannot contain itself")
    return CombinationRule(
        id=t.id,
        kind=t.kind,
        members=tuple(members),
        latch_from=r.level("latch_from", t.latch_from),
        description=t.description,
    )


def _parse_one(source: str, raw: Any, index: int, channels: Mapping[str, ChannelInfo]) -> RuleSpec:
    if not isinstance(raw, dict):
        raise RuleError(source, f"rule #{index + 1}", "must be a table")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not rule_id:
        raise RuleError(source, f"rule #{index + 1}", f"needs a non-empty 'id', got {rule_id!r}")
    r = _RuleTable(source, f"rule '{rule_id}'")
    kind = raw.get("kind")
    if kind is None:
        r.fail("missing 'kind'")
    if kind not in RULE_KINDS:
        r.fail(f"unknown kind {kind!r} (kinds: {', '.join(RULE_KINDS)})")
    try:
        t = _RULE_TABLE.validate_python(raw)
    except ValidationError as exc:
        r.fail(table_problem(exc, RULE_KINDS))
    if isinstance(t, CombinationTable):
        return _combination(r, t)
    if isinstance(t, RainWindowsTable | AntecedentRainTable | IntensityDurationTable):
        return _rain(r, t, channels)
    if isinstance(t, FailureForecastTable):
        return _forecast(r, t, channels)
    if isinstance(t, WaterLevelTable):
        r.channel(t.channel, channels, LEVEL_QUANTITIES, None)
        return WaterLevelRule(**_common(r, t), thresholds=r.levels("thresholds", t.thresholds))
    return _slope(r, t, channels)


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
