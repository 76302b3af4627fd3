"""A site file includes a rule table with its channel bound at the include (issue 16).

Each mistake is refused naming the site file, the include (number and line) and the field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.site_file import load_site
from site_schema.rule_specs import RainWindowRule
from site_schema.site_config import parse_site_text
from site_schema.site_errors import SiteConfigError

SITE = """[site]
id = "two-gauges"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = 5020

[[device]]
name = "north"
bus = "field"
profile = "generic_rs485_rain"

[[device]]
name = "south"
bus = "field"
profile = "dfrobot_sen0575"
channels = ["rain_total"]

[[rule]]
id = "own_rule"
kind = "rain_windows"
channel = "north.rain_total"
[rule.windows]
"1h" = { red = 50 }

[[include]]
rules = "jianghua"
channels = { rain = "north.rain_total" }
"""

# The line of the [[include]] header in SITE.
INCLUDE_LINE = SITE.splitlines().index("[[include]]") + 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return path


def refusal(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SiteConfigError) as err:
        load_site(path)
    return str(err.value).removeprefix(f"{path}: ")


def test_the_county_table_is_included_with_its_channel_bound(tmp_path: Path):
    site = load_site(write(tmp_path, SITE))
    rules = {r.id: r for r in site.rules}
    assert set(rules) == {"own_rule", "jianghua_critical_rainfall"}
    county = rules["jianghua_critical_rainfall"]
    assert isinstance(county, RainWindowRule)
    assert county.channel == "north.rain_total"
    assert [w.name for w in county.windows] == ["1h", "3h", "6h", "24h"]
    assert county.windows[0].thresholds == (35.0, 45.0, 60.0, 80.0)
    # the generic gauge's counter wraps at 6553.6 mm: the rule knows it from the channel
    assert county.counter_modulus == pytest.approx(6553.6)


def test_one_table_is_included_twice_with_id_prefixes(tmp_path: Path):
    text = SITE + (
        'id_prefix = "north_"\n\n[[include]]\nrules = "jianghua"\n'
        'id_prefix = "south_"\nchannels = { rain = "south.rain_total" }\n'
    )
    site = load_site(write(tmp_path, text))
    channels = {r.id: getattr(r, "channel", None) for r in site.rules}
    assert channels == {
        "own_rule": "north.rain_total",
        "north_jianghua_critical_rainfall": "north.rain_total",
        "south_jianghua_critical_rainfall": "south.rain_total",
    }


def test_a_local_rule_file_is_found_beside_the_site_file(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "creek.toml").write_text(
        '[[rule]]\nid = "creek_rain"\nkind = "rain_windows"\nchannel = "{gauge}"\n'
        '[rule.windows]\n"10m" = { yellow = 10, red = 20 }\n',
        encoding="utf-8",
    )
    text = SITE.replace('rules = "jianghua"', 'rules = "rules/creek.toml"').replace(
        "channels = { rain =", "channels = { gauge ="
    )
    site = load_site(write(tmp_path, text))
    assert [r.id for r in site.rules] == ["own_rule", "creek_rain"]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'rules = "jianghua"',
            'rules = "jianghuaa"',
            ": 'rules' = 'jianghuaa': no such rule file ({tmp}/jianghuaa does not exist; "
            "shipped: jianghua)",
        ),
        (
            'channels = { rain = "north.rain_total" }',
            "",
            ": 'channels': rule 'jianghua_critical_rainfall' of jianghua.toml uses {rain}, which "
            'this include does not bind (channels = { rain = "DEVICE.CHANNEL" })',
        ),
        (
            'channels = { rain = "north.rain_total" }',
            'channels = { rain = "north.rain_total", level = "x.y" }',
            ": 'channels' binds level, which jianghua.toml never uses (it uses: rain)",
        ),
        (
            'id = "own_rule"',
            'id = "jianghua_critical_rainfall"',
            " (jianghua): rule id 'jianghua_critical_rainfall' is also defined by this site "
            "file's [[rule]]: set id_prefix on the include, or rename one of them",
        ),
        (
            'channels = { rain = "north.rain_total" }',
            'channel = "north.rain_total"',
            ": unknown key(s): channel (allowed: channels, id_prefix, rules)",
        ),
    ],
)
def test_a_bad_include_is_refused_naming_its_line_and_field(tmp_path, old, new, problem):
    assert old in SITE
    message = refusal(tmp_path, SITE.replace(old, new))
    where = f"[[include]] #1 (line {INCLUDE_LINE})"
    assert message == where + problem.replace("{tmp}", str(tmp_path))


def test_a_bound_channel_the_site_lacks_is_refused_naming_the_include(tmp_path: Path):
    text = SITE.replace('channels = { rain = "north.rain_total" }', 'channels = { rain = "x.y" }')
    assert refusal(tmp_path, text) == (
        f"[[include]] #1 (line {INCLUDE_LINE}) (jianghua): rule 'jianghua_critical_rainfall': "
        "unknown channel 'x.y'"
    )


def test_a_pushed_configuration_includes_shipped_tables_only(tmp_path: Path):
    site = parse_site_text(SITE, "pushed")
    assert [r.id for r in site.rules] == ["own_rule", "jianghua_critical_rainfall"]
    (tmp_path / "mine.toml").write_text("", encoding="utf-8")
    with pytest.raises(SiteConfigError) as err:
        parse_site_text(SITE.replace('"jianghua"', f'"{tmp_path}/mine.toml"'), "pushed")
    assert str(err.value) == (
        f"pushed: [[include]] #1 (line {INCLUDE_LINE}): 'rules' = '{tmp_path}/mine.toml': a "
        "pushed configuration may include shipped rule tables only (jianghua)"
    )


def test_edge_run_preloads_the_kernels_of_included_rules(tmp_path: Path):
    from edge_agent.alarm_preload import rule_kinds  # noqa: PLC0415

    # The site's own [[rule]] left out: its only rules come from the include.
    only_included = SITE[: SITE.index("[[rule]]")] + SITE[SITE.index("[[include]]") :]
    path = write(tmp_path, only_included)
    assert [r.id for r in load_site(path).rules] == ["jianghua_critical_rainfall"]
    assert rule_kinds(path) == {"rain_windows"}
    # A file that cannot be found: every kernel loads, and the site loader says why.
    write(tmp_path, only_included.replace('"jianghua"', '"missing.toml"'))
    assert rule_kinds(path) is None
