"""The quickstart demo end to end: fleet, three stations in a storm, three real gateways."""

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from hardware_sim.harness.waiting import wait_until

CHROMIUM = Path("/usr/bin/chromium")
CONSOLE = re.compile(
    r"county console: (http://127\.0\.0\.1:\d+/) \(sign in with the demo's viewer token (\S+);"
)


def row(out: str, *cells: str) -> str:
    """The first table line holding every one of ``cells``."""
    return next(line for line in out.splitlines() if all(c in line for c in cells))


def read_lines(demo: subprocess.Popen[str], lines: list[str]) -> None:
    """Keep ``lines`` up to date with what the demo prints, line by line."""
    assert demo.stdout is not None
    for line in demo.stdout:
        lines.append(line)


def storm_seen_live_on_the_console(lines: list[str]) -> None:
    """Sign in where the demo said, with its viewer token, and watch the storm turn a site red.

    Once the stations are enrolled, the flooded sites' markers must turn red on the open map,
    without a reload.
    """
    wait_until(lambda: any(CONSOLE.search(line) for line in lines), 60, "the console's address")
    found = next(m for m in map(CONSOLE.search, lines) if m)
    url, token = found.group(1), found.group(2)
    # Opened as soon as the stations are enrolled, before their gateways have uploaded the
    # coordinates in their site files: a site placed later is put on the map when it changes.
    wait_until(lambda: any("roster imported" in line for line in lines), 60, "the roster")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.set_default_timeout(20_000)
            page.goto(url)
            page.locator("#token").fill(token)
            page.keyboard.press("Enter")
            page.locator('#view[data-ready="true"][data-page="overview"]').wait_for()
            page.locator('#live[data-state="on"]').wait_for()
            before = page.evaluate(
                """() => {
                    window.sameDocument = true;
                    return [...document.querySelectorAll('path.site-marker[data-level="4"]')]
                        .map((m) => m.dataset.siteId);
                }"""
            )
            # The flooded sites, not red when the map opened, turn red on it.
            for site in ("creek-village", "river-gauge"):
                assert site not in before, before
                red = page.locator(f'path.site-marker[data-site-id="{site}"][data-level="4"]')
                red.wait_for(state="attached", timeout=150_000)
                assert red.get_attribute("fill") == "#d00000"
            assert page.evaluate("window.sameDocument") is True  # no reload happened
        finally:
            browser.close()


# The storm takes 25 s; a red raised late in it reaches the township up to 40 s later.
@pytest.mark.timeout(240)
def test_demo_storm_sounds_sirens_reaches_the_fleet_and_every_reading_arrives_once(
    tmp_path: Path,
) -> None:
    errors = (tmp_path / "stderr").open("w+")
    demo = subprocess.Popen(
        [sys.executable, "-m", "hardware_sim.cli", "demo", "--duration", "25", "--speed", "600"],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        # Wide tables (one line per row); each line as soon as it is printed.
        env={**os.environ, "COLUMNS": "160", "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines: list[str] = []
        reader = threading.Thread(target=read_lines, args=(demo, lines), daemon=True)
        reader.start()
        # While the demo runs: the printed console, the printed viewer sign-in, the storm live.
        storm_seen_live_on_the_console(lines)
        demo.wait(timeout=220)
        reader.join(timeout=10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        errors.close()
    out = "".join(lines)
    stderr = (tmp_path / "stderr").read_text()
    assert demo.returncode == 0, out[-3000:] + stderr
    # The alarm kernels were compiled (or loaded) before any station's clock started.
    assert out.index("alarm kernels ready (") < out.index("on the console's map")
    for station, site in (
        ("creek_village", "creek-village"),
        ("slope", "slope-road"),
        ("river_gauge", "river-gauge"),
    ):
        assert re.search(rf"enrolled {station} as gw-[0-9a-f]{{10}} \(site {site}\)", out)
    # The alarms reached the fleet through the gateways' event uploads.
    alarms = out[out.index("alarms at the fleet") :]
    assert "red" in row(alarms, "creek_village", "rain_county")
    assert "red" in row(alarms, "river_gauge", "river_stage")
    assert "slope_velocity" in alarms
    # The slope's failure forecast warned: its four-day record leaves 72 h after the onset.
    assert "red" in row(alarms, "slope", "slope_forecast")
    # After the red latched, the fleet showed the gateway's newest forecast (its health),
    # newer than any of the rule's level changes, up to the failure.
    shown = out[out.index("slope-road slope_forecast: the failure forecast the fleet showed") :]
    assert "newest" in row(shown, "│ 6 h "), shown[:3000]
    # The sirens (relay1) and strobes (relay2) switched on in the flooded places.
    coils = out[out.index("relay coil changes") :]
    for station in ("creek_village", "river_gauge"):
        assert "on" in row(coils, station, "relay1")
        assert "on" in row(coils, station, "relay2")
    # The closing check: each gateway's stored readings, exactly once at the fleet.
    check = out[out.index("readings: gateway store vs fleet") :]
    for station in ("creek_village", "slope", "river_gauge"):
        line = row(check, station, "gw-")
        assert line.rstrip(" │").endswith("exact"), line
    assert "exactly once: the fleet holds exactly the" in out
    # 叫应: the village did not answer by its deadline, the township answered by its link.
    assert re.search(r"roster imported \(creek-village: 3 person\(s\), ", out)
    # The county console: its address and a viewer sign-in, and every site on its map.
    assert re.search(r"county console: http://127\.0\.0\.1:\d+/ \(sign in with", out)
    placed = re.search(r"on the console's map: (.*)", out)
    assert placed, out[-2000:]
    for site in ("creek-village", "slope-road", "river-gauge"):
        assert re.search(rf"{site} \(25\.\d+, 111\.\d+\)", placed.group(1)), placed.group(1)
    record = out[out.index("叫应 at ") :]
    for step, person in (
        ("started", ""),
        ("call_sent", "王建国 (village)"),
        ("escalated", ""),
        ("call_sent", "李敏 (township)"),
        ("answer", "李敏 (township)"),
        ("ended", ""),
    ):
        assert row(record, step, person), (step, person)
    assert "nobody answered the village tier by its deadline" in row(record, "escalated")
    assert "answered by 李敏 (township) via link" in out
    assert "the village did not answer in 20 s so the township was called" in out
    assert "MISMATCH" not in out
    assert "Traceback" not in out + stderr
    assert ">>>>>" not in out + stderr  # no raw frame dumps from pymodbus
