"""Alarm rule files: good rules parse; each mistake is refused naming file, rule, problem."""

import csv
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from alarm_engine import AlarmEngine
from site_schema.rule_specs import (
    ChannelInfo,
    CombinationRule,
    IntensityDurationRule,
    InverseVelocityRule,
    RainWindowRule,
    RateOfRiseRule,
    TangentAngleRule,
)
from site_schema.rules import RuleError, parse_rules

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "site_schema" / "rule_tables" / "jianghua.toml"
# The county's own table, with its source in its header lines (tests/data/README.md).
JIANGHUA_CSV = REPO / "tests" / "data" / "jianghua_critical_rainfall.csv"

CHANNELS = {
    "rain.total": ChannelInfo("rain_total", "mm", 6553.6),
    "rain_sen0575.rain_total": ChannelInfo("rain_total", "mm"),
    "creek.level": ChannelInfo("water_level", "m"),
    "slope.disp": ChannelInfo("displacement", "mm"),
    "slope.tilt": ChannelInfo("tilt_x", "deg"),
    "gnss.up": ChannelInfo("displacement_up", "m"),
}

GOOD = """
[[rule]]
id = "rain_county"
kind = "rain_windows"
channel = "rain.total"
hysteresis = 2.0
hold_s = 3600
latch_from = "red"
[rule.windows]
"1h" = { blue = 35, yellow = 45, orange = 60, red = 80 }
"24h" = { red = 200 }

[[rule]]
id = "ear"
kind = "antecedent_rain"
channel = "rain.total"
decay_per_day = 0.84
thresholds = { yellow = 80, red = 120 }

[[rule]]
id = "id"
kind = "rain_intensity_duration"
channel = "rain.total"
curves = { yellow = { a = 2.20, b = -0.44 }, red = { a = 14.82, b = -0.39 } }

[[rule]]
id = "creek"
kind = "water_level"
channel = "creek.level"
thresholds = { blue = 1.5, orange = 2.5 }

[[rule]]
id = "creek_rise"
kind = "rate_of_rise"
channel = "creek.level"
window_s = 600
thresholds = { yellow = 0.3, red = 1.0 }

[[rule]]
id = "v"
kind = "displacement_velocity"
channel = "slope.disp"
window_s = 3600
thresholds = { blue = 2, red = 50 }

[[rule]]
id = "a"
kind = "displacement_acceleration"
channel = "slope.disp"
window_s = 3600
eval_every_s = 120
thresholds = { red = 10 }

[[rule]]
id = "tangent"
kind = "tangent_angle"
channel = "slope.disp"
window_s = 3600
creep_rate_mm_day = 1.5

[[rule]]
id = "inverse"
kind = "inverse_velocity"
channel = "slope.disp"
window_s = 3600
fit_window_s = 86400
horizons_h = { blue = 168, yellow = 72, orange = 24, red = 6 }

[[rule]]
id = "evacuate"
kind = "all_of"
rules = ["rain_county", "inverse"]
latch_from = "orange"

[[rule]]
id = "anything"
kind = "any_of"
rules = ["evacuate", "creek", "creek_rise"]
"""


def rules_of(text: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = tomllib.loads(text)["rule"]
    return rules


def test_every_rule_kind_parses_with_its_defaults():
    rules = {r.id: r for r in parse_rules(rules_of(GOOD), "site.toml", CHANNELS)}
    rain = rules["rain_county"]
    assert isinstance(rain, RainWindowRule)
    assert [w.name for w in rain.windows] == ["1h", "24h"]
    assert rain.windows[1].thresholds == (None, None, None, 200.0)
    assert (rain.hysteresis, rain.hold_s, rain.latch_from) == (2.0, 3600.0, 4)
    assert rain.counter_modulus == 6553.6  # taken from the channel
    ident = rules["id"]
    assert isinstance(ident, IntensityDurationRule)
    assert (ident.dry_gap_s, ident.min_duration_s) == (21600.0, 600.0)
    tangent = rules["tangent"]
    assert isinstance(tangent, TangentAngleRule)
    assert tangent.thresholds == (None, 45.0, 80.0, 85.0)
    assert tangent.eval_every_s == 60.0
    inverse = rules["inverse"]
    assert isinstance(inverse, InverseVelocityRule)
    assert inverse.min_r2 == 0.8
    rise = rules["creek_rise"]
    assert isinstance(rise, RateOfRiseRule)
    assert rise.eval_every_s == 0.0  # a creek's rise is checked on every sample by default
    combo = rules["evacuate"]
    assert isinstance(combo, CombinationRule)
    assert combo.members == ("rain_county", "inverse")
    assert combo.latch_from == 3


def test_history_needed_covers_the_longest_memory_plus_hold():
    engine = AlarmEngine(parse_rules(rules_of(GOOD), "site.toml", CHANNELS), backend="reference")
    # Antecedent rain with k = 0.84 dominates: a rain's weight falls below 1 % after
    # ln(0.01) / ln(0.84) = 26.4 days; plus the default 30 min hold.
    days = math.log(0.01) / math.log(0.84)
    assert engine.history_needed_s == pytest.approx(days * 86400 + 1800)
    assert days == pytest.approx(26.41, abs=0.01)


BASE = {"id": "r", "kind": "water_level", "channel": "creek.level", "thresholds": {"blue": 1.0}}


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"kind": "snowfall"}, "unknown kind 'snowfall'"),
        ({"channel": "nowhere.x"}, "unknown channel 'nowhere.x'"),
        ({"channel": "slope.disp"}, "channel 'slope.disp' measures displacement"),
        ({"thresholds": {"blue": 2.0, "yellow": 1.0}}, "'thresholds' must increase with level"),
        ({"threshold": 3}, "unknown key(s): threshold"),
        ({"thresholds": {"purple": 1.0}}, "unknown level name(s) in 'thresholds': purple"),
        ({"thresholds": {"red": "high"}}, "'thresholds.red' must be a finite number"),
        ({"hold_s": -1}, "'hold_s' = -1 must be at least 0"),
        ({"hysteresis": True}, "'hysteresis' must be a finite number"),
        ({"latch_from": "crimson"}, "'latch_from' must be one of blue, yellow, orange, red"),
        ({"thresholds": None}, "missing 'thresholds'"),
    ],
)
def test_a_bad_rule_is_refused_naming_file_rule_and_problem(changes, problem):
    raw = {key: value for key, value in {**BASE, **changes}.items() if value is not None}
    with pytest.raises(RuleError) as err:
        parse_rules([raw], "site.toml", CHANNELS)
    assert str(err.value).startswith("site.toml: rule 'r': ")
    assert problem in str(err.value)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"kind": "rain_windows", "channel": "rain.total", "windows": {"2h": {"red": 1}}},
            "unknown window(s): 2h",
        ),
        (
            {"kind": "rain_windows", "channel": "creek.level", "windows": {"1h": {"red": 1}}},
            "channel 'creek.level' measures water_level, this rule needs rain_total",
        ),
        (
            {"kind": "displacement_velocity", "channel": "gnss.up", "window_s": 60},
            "channel 'gnss.up' is in m, this rule needs mm",
        ),
        (
            {"kind": "displacement_velocity", "channel": "slope.tilt", "window_s": 60},
            "measures tilt_x",
        ),
        (
            {"kind": "displacement_velocity", "channel": "slope.disp", "thresholds": {"red": 1}},
            "missing 'window_s'",
        ),
        (
            {
                "kind": "inverse_velocity",
                "channel": "slope.disp",
                "window_s": 60,
                "fit_window_s": 600,
                "horizons_h": {"blue": 6, "red": 24},
            },
            "'horizons_h' must decrease with level: blue = 6, red = 24",
        ),
        (
            {
                "kind": "antecedent_rain",
                "channel": "rain.total",
                "decay_per_day": 1.2,
                "thresholds": {"red": 1},
            },
            "'decay_per_day' = 1.2 must be below 1",
        ),
        (
            {
                "kind": "rain_intensity_duration",
                "channel": "rain.total",
                "curves": {"yellow": {"a": 14.82, "b": -0.39}, "red": {"a": 2.2, "b": -0.44}},
            },
            "'curves' must increase with level",
        ),
        (
            {
                "kind": "tangent_angle",
                "channel": "slope.disp",
                "window_s": 60,
                "creep_rate_mm_day": 1,
                "thresholds": {"red": 95},
            },
            "strictly between 0 and 90 degrees",
        ),
        ({"kind": "any_of", "rules": ["x", "ghost"]}, "unknown rule 'ghost' in 'rules'"),
        ({"kind": "all_of", "rules": ["x"]}, "at least two different rules"),
    ],
)
def test_kind_specific_mistakes_are_named(raw, problem):
    other = {"id": "x", "kind": "water_level", "channel": "creek.level", "thresholds": {"red": 1}}
    with pytest.raises(RuleError) as err:
        parse_rules([other, {"id": "r", **raw}], "site.toml", CHANNELS)
    assert str(err.value).startswith("site.toml: rule 'r': ")
    assert problem in str(err.value)


def test_duplicate_ids_are_refused():
    with pytest.raises(RuleError, match=r"^site.toml: rule 'r': duplicate id$"):
        parse_rules([BASE, BASE], "site.toml", CHANNELS)


def test_a_rule_without_id_is_named_by_position():
    with pytest.raises(RuleError, match=r"^site.toml: rule #2: needs a non-empty 'id'"):
        parse_rules([BASE, {"kind": "water_level"}], "site.toml", CHANNELS)


def test_combinations_forming_a_cycle_are_refused():
    level = {**BASE, "id": "level"}
    a = {"id": "a", "kind": "any_of", "rules": ["level", "b"]}
    b = {"id": "b", "kind": "all_of", "rules": ["level", "a"]}
    with pytest.raises(RuleError) as err:
        parse_rules([level, a, b], "site.toml", CHANNELS)
    assert str(err.value) == "site.toml: rule 'a': combinations form a cycle a -> b -> a"


def test_the_shipped_jianghua_example_matches_the_county_table_with_levels_renumbered():
    with JIANGHUA_CSV.open(encoding="utf-8") as f:
        table = list(csv.DictReader(line for line in f if not line.startswith("#")))
    # The table names its channel {rain}; a site binds it at the include.
    text = EXAMPLE.read_text(encoding="utf-8").replace('"{rain}"', '"rain_sen0575.rain_total"')
    (rule,) = parse_rules(rules_of(text), str(EXAMPLE), CHANNELS)
    assert isinstance(rule, RainWindowRule)
    assert [w.name for w in rule.windows] == ["1h", "3h", "6h", "24h"]
    for row in table:
        # Chinese numbering: table level 4 is our level 1 (blue), table level 1 our 4 (red).
        ours = 5 - int(row["level_num"])
        assert ("blue", "yellow", "orange", "red")[ours - 1] == row["colour"]
        for window in rule.windows:
            assert window.thresholds[ours - 1] == float(row[f"r{window.name}_mm"])
