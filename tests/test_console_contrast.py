"""The console's text is readable: every text colour of its stylesheet against its ground.

WCAG 2.1 AA: a contrast ratio of at least 4.5:1 for text (the console has no large text
it relies on), computed from the sRGB relative luminance. The colours are read from
``fleet/console/static/console.css`` itself (custom properties resolved), so a colour
changed there is checked here; a new text colour the table below does not pair with a
ground fails the test until it is paired. The level badges' colours are the map's too
(``LEVEL_COLOURS`` in ``fleet.js``). The pages as drawn are checked in Chromium by
``tests/test_console_browser.py`` (every visible piece of text on its ground).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).parent.parent / "fleet" / "console" / "static"
CSS = STATIC / "console.css"
#: WCAG 2.1 AA (1.4.3) for text; 3:1 (1.4.11) for what is not text, such as a focus ring.
AA_TEXT = 4.5
AA_NON_TEXT = 3.0

#: (what, text colour from (selector, property), its ground from (selector, property)).
TEXT_ON_GROUND: list[tuple[str, tuple[str, str], tuple[str, str]]] = [
    ("body text on the page", (":root", "color"), (":root", "background")),
    ("body text on a panel", (":root", "color"), (".panel", "background")),
    ("muted text on a panel", (".loading, .muted", "color"), (".panel", "background")),
    ("muted text on the page", (".loading, .muted", "color"), (":root", "background")),
    ("muted text in a table head", (".loading, .muted", "color"), ("th", "background")),
    ("a 叫应 label", (".calls dt", "color"), (".panel", "background")),
    ("alarm details", (".alarm-meta", "color"), (".panel", "background")),
    ("a step of the calling", (".calls-end, .calls-step", "color"), (".panel", "background")),
    ("a forecast's facts", (".facts dt", "color"), (".panel", "background")),
    ("a link", ("a", "color"), (".panel", "background")),
    ("good news", (".ok", "color"), (".panel", "background")),
    ("a warning", (".warn", "color"), (".panel", "background")),
    ("the countdown to the next tier", (".countdown", "color"), (".panel", "background")),
    ("a problem with the map", (".map-note", "color"), (".panel", "background")),
    ("online count", (".count.online", "color"), (".panel", "background")),
    ("offline count", (".count.offline, .count.never", "color"), (".panel", "background")),
    ("a clock off", (".clock-ahead, .clock-behind", "color"), (".panel", "background")),
    ("the notice bar", (".notice", "color"), (".notice", "background")),
    ("a form's error", (".form-error", "color"), (".signin", "background")),
    ("a button", ("button", "color"), ("button", "background")),
    (
        "a secondary button",
        ('.form-buttons button[type="button"]', "color"),
        ('.form-buttons button[type="button"]', "background"),
    ),
    ("a field", ("input, select", "color"), ("input, select", "background")),
    ("a link drawn as a button", (".button-link", "color"), (".button-link", "background")),
    (
        "a link drawn as a button, nothing chosen",
        (".button-link[aria-disabled]", "color"),
        (".button-link[aria-disabled]", "background"),
    ),
    ("the top bar", (".topbar", "color"), (".topbar", "background")),
    (
        "the top bar's buttons",
        ('button[type="button"].lang, #signout', "color"),
        (".topbar", "background"),
    ),
    ("a page link", ("#nav a", "color"), (".topbar", "background")),
    ("the current page", ("#nav a[aria-current]", "color"), ("#nav a[aria-current]", "background")),
    ("live connection lost", (".live.off", "color"), (".topbar", "background")),
    (
        "the chosen period",
        (".period[aria-current]", "color"),
        (".period[aria-current]", "background"),
    ),
    ("a chip", (":root", "color"), (".chip", "background")),
    ("a table head", (":root", "color"), ("th", "background")),
    ("the skip link", ("a", "color"), (".skip:focus", "background")),
    *[
        (f"level {n} badge", (f".level-{n}", "color"), (f".level-{n}", "background"))
        for n in range(5)
    ],
]

#: Rules whose colour is not the colour of text (the focus ring is checked on its own).
NOT_TEXT = {":focus-visible", ".topbar :focus-visible"}


def stylesheet() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Top-level rules of console.css (selector -> declarations) and its custom properties.

    The phone rules under ``@media`` change layout only (the test below holds them to it).
    """
    text = re.sub(r"/\*.*?\*/", "", CSS.read_text(encoding="utf-8"), flags=re.S)
    media = re.findall(r"@media[^{]*\{((?:[^{}]*\{[^{}]*\})*)\s*\}", text)
    for block in media:
        assert "color" not in block, block
        assert "background" not in block, block
    text = re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*\s*\}", "", text)
    rules: dict[str, dict[str, str]] = {}
    for selector, body in re.findall(r"([^{}]+)\{([^{}]*)\}", text):
        declarations = rules.setdefault(" ".join(selector.split()), {})
        for part in body.split(";"):
            if ":" in part:
                name, value = part.split(":", 1)
                declarations[name.strip()] = value.strip()
    variables = {k: v for k, v in rules[":root"].items() if k.startswith("--")}
    return rules, variables


def colour(
    rules: dict[str, dict[str, str]], variables: dict[str, str], where: tuple[str, str]
) -> str:
    selector, prop = where
    value = rules[selector][prop]
    value = re.sub(r"var\((--[\w-]+)\)", lambda m: variables[m.group(1)], value)
    if value == "transparent":
        raise AssertionError(f"{selector} {prop} is transparent: pair it with what is under it")
    named = {"#fff": "#ffffff", "#000": "#000000"}
    value = named.get(value, value)
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", value), f"{selector} {prop}: {value} is not #rrggbb"
    return value


def luminance(hex_colour: str) -> float:
    """WCAG relative luminance of an sRGB colour."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_is_computed_as_wcag_defines_it() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize(
    ("what", "text", "ground"), TEXT_ON_GROUND, ids=[p[0] for p in TEXT_ON_GROUND]
)
def test_every_text_colour_reads_at_aa_on_its_ground(
    what: str, text: tuple[str, str], ground: tuple[str, str]
) -> None:
    rules, variables = stylesheet()
    ink, paper = colour(rules, variables, text), colour(rules, variables, ground)
    ratio = contrast(ink, paper)
    print(f"{what}: {ink} on {paper} = {ratio:.2f}:1")
    assert ratio >= AA_TEXT, f"{what}: {ink} on {paper} is {ratio:.2f}:1, below {AA_TEXT}:1"


def test_no_text_colour_goes_unchecked() -> None:
    rules, _ = stylesheet()
    paired = {text[0] for _, text, _ in TEXT_ON_GROUND}
    coloured = {s for s, d in rules.items() if "color" in d} - NOT_TEXT
    assert coloured <= paired, f"text colours with no ground in the table: {coloured - paired}"


def test_the_focus_ring_shows_on_white_and_on_the_top_bar() -> None:
    rules, variables = stylesheet()
    ring = rules[":focus-visible"]
    outline = re.sub(r"var\((--[\w-]+)\)", lambda m: variables[m.group(1)], ring["outline"])
    dark, amber = outline.split()[-1], variables["--focus"]
    assert "var(--focus)" in ring["box-shadow"]
    for where in ((".panel", "background"), (":root", "background")):
        assert contrast(dark, colour(rules, variables, where)) >= AA_NON_TEXT
    topbar = colour(rules, variables, (".topbar", "background"))
    assert "var(--focus)" in rules[".topbar :focus-visible"]["outline-color"]
    assert contrast(amber, topbar) >= AA_NON_TEXT


def test_the_maps_level_colours_are_the_badges() -> None:
    rules, variables = stylesheet()
    script = (STATIC / "js" / "fleet.js").read_text(encoding="utf-8")
    listed = re.search(r"LEVEL_COLOURS = \[([^\]]*)\]", script)
    assert listed is not None
    map_colours = re.findall(r'"(#[0-9a-fA-F]{6})"', listed.group(1))
    badges = [colour(rules, variables, (f".level-{n}", "background")) for n in range(5)]
    assert [c.lower() for c in map_colours] == [c.lower() for c in badges]
