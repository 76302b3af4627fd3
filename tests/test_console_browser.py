"""The county console in real Chromium against a real county.

Mosquitto, ``fleet serve`` and two enrolled gateways (``edge run``) polling simulated
stations over Modbus TCP. ``upper-village`` rains from the start, so it has a red alarm,
readings and marks to show; ``lower-village`` stays dry until a test opens its rain,
and the open map must turn it red without a reload. Each village's siren relays switch
with its level. ``slope-road`` is a slope site whose gateway's record (a seeded creeping
slope accelerating to failure) and failure-forecast events, made by the gateway's own
alarm engine over that record, are committed to the fleet's store as ingest would.
Playwright drives Debian's ``/usr/bin/chromium`` (no browser download). Screenshots of
every page go to ``HAZARDWATCH_SCREENSHOTS`` (default: a pytest temporary directory,
printed at the end).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from alarm_engine import AlarmEngine
from drivers.clock import ScaledClock
from drivers.profiles import builtin_profiles
from edge_agent.agent import _alarm_event, wire_forecasts
from edge_agent.site_file import load_site
from edge_agent.site_summary import site_summary
from edge_agent.upload_source import event_row
from fleet.repository import NewGateway, Received, Role
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import sim_site
from hardware_sim.harness.uplink import FleetProcess, enroll, running_broker, running_fleet
from hardware_sim.harness.waiting import wait_for
from hardware_sim.harness.webhook_inbox import WebhookInbox
from hardware_sim.scenarios import DesignStorm
from hardware_sim.slope_corpus import failure_record
from protocol import (
    MAX_READING_ROWS,
    DataBatch,
    EventBatch,
    EventRow,
    GatewayState,
    Health,
)
from protocol.events import ALARM_EVENT_KIND, StandingForecast
from protocol.levels import AlarmLevel

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="the browser tests need Debian's chromium: apt-get install chromium",
    ),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(240),
]

PROFILES = builtin_profiles()
#: Simulated seconds per real second: an hour of storm in 7.5 s.
SPEED = 480.0
#: Simulated time starts 22 h back: the module's two minutes or so (16 simulated hours)
#: stay in the browser's past and within the site charts' "last 24 h".
ORIGIN_AGO_S = 22 * 3600
UPPER, MIDDLE, LOWER = "upper-village", "middle-village", "lower-village"
RED_ZH = "红色预警（Ⅰ级）"  # noqa: RUF001 - as county staff read it
#: The page's colours of red and of the four threshold bands (drawn at 20 % opacity).
RED = (208, 0, 0)
BAND_TINTS = {
    "blue": (0x1F, 0x5F, 0xBF),
    "yellow": (0xF2, 0xC3, 0x00),
    "orange": (0xF0, 0x78, 0x00),
    "red": (0xD0, 0x00, 0x00),
}

SITE = """
[site]
id = "{site_id}"
name = "{name}"
lat = {lat}
lon = {lon}

[agent]
reassert_s = 1

[uplink]
batch_rows = 200
ack_timeout_s = 2
health_interval_s = 1
reconnect_min_s = 0.2
reconnect_max_s = 1

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = {{port}}

[[device]]
name = "rain"
bus = "field"
profile = "dfrobot_sen0575"
poll_interval_s = 60
timeout_s = 0.5
channels = ["rain_total"]

[[device]]
name = "creek"
bus = "field"
profile = "hlk_ld8001h"
poll_interval_s = 60
timeout_s = 0.5
channels = ["water_level"]

[[rule]]
id = "rain_1h"
kind = "rain_windows"
channel = "rain.rain_total"
latch_from = "red"
windows = {{ "1h" = {{ blue = 5, yellow = 12, orange = 20, red = 30 }} }}

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"
poll_interval_s = 60
timeout_s = 0.5
channels = ["relay1", "relay2"]

[[rule]]
id = "creek_level"
kind = "water_level"
channel = "creek.water_level"
thresholds = {{ blue = 806, yellow = 810, orange = 815, red = 820 }}

[[actuator]]
id = "siren"
device = "relays"
patterns = {{ strobe = ["relay2"], warble = ["relay1", "relay2"] }}

[actions]
orange = {{ siren = "strobe" }}
red = {{ siren = "warble" }}
"""

#: The slope site: the example site file of the slope above the road.
SLOPE = "slope-road"
EXAMPLE_SITE = (
    Path(__file__).parent.parent / "edge_agent" / "examples" / "creek_village.toml"
).read_text()
SLOPE_FILE = Path(__file__).parent.parent / "edge_agent" / "examples" / "slope_road.toml"
SLOPE_GATEWAY = "gw-5107e00001"
EXTENSION = "scarp_extensometer.extension"
#: The seeded slope fails this long after the module starts (its forecast is red by then).
SLOPE_AHEAD_S = 48 * 3600
#: Failure record 7: yellow and orange days ahead, red eleven hours before the module.
SLOPE_RECORD = 7
#: The colour of the predicted failure's line on the 1/v chart, and of actuation marks.
FAILURE_INK = (0x1A, 0x1A, 0x1A)
ACTUATION_INK = (0x7B, 0x1F, 0xA2)

SITES = {
    UPPER: ("上游村", 25.235, 111.52),
    MIDDLE: ("中游村", 25.2, 111.585),
    LOWER: ("下游村", 25.16, 111.66),
}


class RainTap:
    """A rain gauge's cumulative rain: none until ``open``, then a design storm."""

    def __init__(self) -> None:
        self.storm: DesignStorm | None = None

    def open(self, now: float) -> None:
        """A long storm from a simulated minute after ``now``: red within about an hour.

        It peaks at 80 mm/h after half an hour and keeps the hourly rain above the red
        threshold for more than a simulated day (the whole module); a red alarm latches
        besides.
        """
        self.storm = DesignStorm(now + 60, 48 * 3600, 80.0, peak_position=0.01, step_s=300, seed=3)

    def cumulative_mm(self, t: float) -> float:
        return 0.0 if self.storm is None else self.storm.cumulative_mm(t)


def station(clock: ScaledClock, tap: RainTap) -> list[SimulatedDevice]:
    rain = SimulatedDevice(
        PROFILES["dfrobot_sen0575"],
        192,
        clock,
        {"rain_total": tap.cumulative_mm},
        values={"window_hours": 1},
    )
    creek = SimulatedDevice(
        PROFILES["hlk_ld8001h"], 1, clock, {"water_level": lambda t: 800 + 4 * math.sin(t / 3438)}
    )
    relays = SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock)
    return [rain, creek, relays]


def seed_slope_site(fleet_dir: Path, now: float) -> tuple[float, dict[str, StandingForecast]]:
    """slope-road's gateway: 20 days of its extensometer up to ``now``, and its forecast.

    The record is ``hardware_sim.slope_corpus`` failure record 7 (10-minute readings),
    moved to fail ``SLOPE_AHEAD_S`` after ``now``. The gateway's own alarm engine (as in
    ``edge run``) evaluates the site file's rules over it, and each level change becomes
    the event the agent stores (``_alarm_event``) and uploads (``event_row``); both streams
    are committed to the fleet's store the way ingest commits a gateway's batches, and so
    is its health report, with the newest forecast since the red (``wire_forecasts``).
    Returns the time of the red's level change, and the gateway's standing forecasts.
    """
    site = load_site(SLOPE_FILE)
    record = failure_record(SLOPE_RECORD, 600.0)
    ts = record.t + (now + SLOPE_AHEAD_S - record.failure_t)
    keep = (ts < now) & (ts >= now - 20 * 86400)
    ts, xs = ts[keep], record.x[keep]
    engine = AlarmEngine(site.rules, "auto")
    changes = engine.replay({EXTENSION: (ts, xs, np.ones(len(ts), dtype=np.bool_))})
    assert any(c.rule_id == "slope_forecast" and c.new == 4 for c in changes), changes
    # The red latched hours ago; the gateway's health carries its newest forecast since.
    standing = wire_forecasts(engine)
    red_at = next(c.t for c in changes if c.rule_id == "slope_forecast" and c.new == 4)
    assert (standing["slope_forecast"].at or 0.0) > red_at + 3600
    repository = SQLiteRepository(fleet_dir / "fleet.sqlite")
    try:
        _token, secret = repository.create_enrollment_token(SLOPE, now + 60, None, None, now)
        gateway = NewGateway(SLOPE_GATEWAY, "k" * 44, "$7$x", None, None)
        repository.redeem_enrollment_token(secret, gateway, now)
        state = GatewayState(state="online", ts=now, site=site_summary(site))
        batches: list[Any] = [state]
        rows = [
            (seq, float(t), EXTENSION, float(x), 0)
            for seq, (t, x) in enumerate(zip(ts, xs, strict=True), 1)
        ]
        for first in range(0, len(rows), MAX_READING_ROWS):
            part = rows[first : first + MAX_READING_ROWS]
            batches.append(
                DataBatch(
                    gateway_id=SLOPE_GATEWAY, first_seq=part[0][0], last_seq=part[-1][0], rows=part
                )
            )
        events = [
            event_row(seq, c.t, ALARM_EVENT_KIND, c.rule_id, c.new, json.dumps(_alarm_event(c)))
            for seq, c in enumerate(changes, 1)
        ]
        batches.append(
            EventBatch(gateway_id=SLOPE_GATEWAY, first_seq=1, last_seq=len(events), rows=events)
        )
        batches.append(
            Health(
                gateway_id=SLOPE_GATEWAY, ts=now, uptime_s=3600.0, agent_version="0.1.0",
                alarm_level=4, forecasts=standing,
            )
        )  # fmt: skip
        repository.commit([Received(SLOPE_GATEWAY, now, batch) for batch in batches])
    finally:
        repository.close()
    return red_at, standing


def slope_health(
    county: County, forecasts: dict[str, StandingForecast], sent: float | None = None
) -> None:
    """A health report from slope-road's gateway with ``forecasts``, committed as ingest would.

    ``sent`` is the report's time on the gateway's clock (default now); the fleet takes no
    forecast made after the report that carries it.
    """
    repository = SQLiteRepository(county.fleet.data_dir / "fleet.sqlite")
    try:
        now = time.time()
        report = Health(
            gateway_id=SLOPE_GATEWAY, ts=sent or now, uptime_s=7200.0, agent_version="0.1.0",
            alarm_level=4, forecasts=forecasts,
        )  # fmt: skip
        repository.commit([Received(SLOPE_GATEWAY, now, report)])
    finally:
        repository.close()


@dataclass
class County:
    fleet: FleetProcess
    clock: ScaledClock
    gateways: dict[str, str]
    taps: dict[str, RainTap]
    shots: Path
    robots: WebhookInbox
    slope_red_at: float  # when slope-road's forecast went red (its level change)
    slope_standing: dict[str, StandingForecast]  # its gateway's newest forecasts since
    secrets: dict[Role, str] = field(default_factory=dict)

    def secret(self, role: Role) -> str:
        """The secret of the fleet's ``test-{role}`` API token (made on first use)."""
        self.fleet.request("GET", "/api/v1/gateways", role)
        return self.fleet.api_tokens[role]

    def alarms(self, site_id: str, **params: Any) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self.fleet.rest(
            "GET", "/api/v1/alarms", params={"gateway_id": self.gateways[site_id], **params}
        )
        return answer


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    wanted = os.environ.get("HAZARDWATCH_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    yield path
    print(f"\nconsole screenshots: {path}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def county(tmp_path_factory: pytest.TempPathFactory, shots: Path) -> AsyncIterator[County]:
    tmp = tmp_path_factory.mktemp("county")
    now = time.time()
    clock = ScaledClock(SPEED, origin=round(now) - ORIGIN_AGO_S, anchor=round(now, 3))
    taps = {site_id: RainTap() for site_id in SITES}
    taps[UPPER].open(clock.now())
    with ExitStack() as processes:
        broker = processes.enter_context(running_broker(tmp / "fleet", tmp / "mosquitto"))
        fleet = processes.enter_context(running_fleet(tmp / "fleet", broker))
        slope_red_at, slope_standing = seed_slope_site(fleet.data_dir, now)
        # middle-village's 群测群防员 is called on a work-chat robot, which takes the call:
        # the calling then waits on the village tier, and the overview counts down.
        robots = processes.enter_context(WebhookInbox().running())
        gateways = {}
        async with AsyncExitStack() as sites:
            for site_id, (name, lat, lon) in SITES.items():
                text = SITE.format(site_id=site_id, name=name, lat=lat, lon=lon)
                gateways[site_id] = enroll(tmp / site_id / "gw", fleet, fleet.token(site=site_id))
                site = await sites.enter_async_context(
                    sim_site(tmp / site_id, station(clock, taps[site_id]), text, clock)
                )
                await site.start_agent("gw")
            county = County(
                fleet, clock, gateways, taps, shots, robots, slope_red_at, slope_standing
            )
            fleet.rest(
                "PUT",
                f"/api/v1/sites/{MIDDLE}/roster",
                Role.ADMIN,
                json=[
                    {
                        "tier": "village",
                        "name": "李梅",
                        "role": "群测群防员",
                        "webhook": robots.url("middle"),
                    }
                ],
            )
            await wait_for(
                lambda: any(a["level"] == 4 for a in county.alarms(UPPER, active="true")),
                90,
                "a red alarm at upper-village",
            )
            yield county


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, county: County) -> AsyncIterator[Page]:
    """A fresh browser context (no cookie, no stored language) at 1366 x 768.

    Afterwards, the page must have thrown no error and broken no rule of its CSP.
    """
    context = await browser.new_context(
        viewport={"width": 1366, "height": 768}, base_url=county.fleet.url
    )
    tab = await context.new_page()
    tab.set_default_timeout(20_000)
    faults: list[str] = []
    tab.on("pageerror", lambda error: faults.append(f"uncaught: {error}"))
    tab.on(
        "console",
        lambda message: (
            faults.append(f"CSP: {message.text}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield tab
    finally:
        await context.close()
    assert not faults, faults


async def sign_in(page: Page, secret: str) -> None:
    """Sign in with the keyboard alone and wait for the overview."""
    await page.goto("/")
    await page.locator("#token").wait_for()
    await page.keyboard.type(secret)  # the token field has the focus
    await page.keyboard.press("Enter")
    await ready(page, "overview")


async def ready(page: Page, name: str) -> None:
    await page.locator(f'#view[data-ready="true"][data-page="{name}"]').wait_for()


async def marker_level(page: Page, site_id: str) -> str | None:
    return await page.locator(f'path.site-marker[data-site-id="{site_id}"]').get_attribute(
        "data-level"
    )


async def colour_pixels(
    page: Page, selector: str, colour: tuple[int, int, int], alpha: float
) -> int:
    """Pixels of the (transparent) canvas under ``selector`` painted ``colour`` at ``alpha``."""
    return int(
        await page.evaluate(
            """([selector, colour, alpha]) => {
                const canvas = document.querySelector(selector);
                const ctx = canvas.getContext("2d");
                const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
                const want = [...colour, alpha * 255];
                let n = 0;
                for (let i = 0; i < data.length; i += 4) {
                    if (want.every((c, k) => Math.abs(data[i + k] - c) <= 6)) n += 1;
                }
                return n;
            }""",
            [selector, list(colour), alpha],
        )
    )


def stored_at(county: County, site_id: str, level: str) -> float:
    """When the fleet stored the gateway's first alarm event rising to ``level``."""
    path = county.fleet.data_dir / "fleet.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT min(e.received_at) FROM events e JOIN gateways g ON g.num = e.gw "
            "WHERE g.id = ? AND e.kind = 'alarm' AND json_extract(e.detail, '$.to') = ?",
            (county.gateways[site_id], level),
        ).fetchone()
    assert row[0] is not None, f"no {level} alarm event stored for {site_id}"
    return float(row[0])


#: Pieces of the page that run past their box by design: Leaflet's panes (clipped by the
#: map), tables that scroll sideways in their own frame, and the skip link until focused.
CUT_OFF_EXEMPT = ".leaflet-pane, .leaflet-control-container, .table-wrap, .skip"


async def cut_off(page: Page) -> list[str]:
    """Visible elements that stick out of the viewport's width or whose text is clipped."""
    found: list[str] = await page.evaluate(
        """(exempt) => {
            const width = document.documentElement.clientWidth;
            const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                [...el.classList].map((c) => "." + c).join("");
            const found = [];
            for (const el of document.querySelectorAll("body *")) {
                if (el.closest(exempt)) continue;
                const style = getComputedStyle(el);
                if (style.visibility === "hidden") continue;
                const box = el.getBoundingClientRect();
                if (box.width === 0 || box.height === 0) continue;
                if (box.left < -1 || box.right > width + 1) {
                    const span = `${Math.round(box.left)}..${Math.round(box.right)}`;
                    found.push(`${name(el)} spans ${span}`);
                }
                const hides = ["hidden", "clip"].includes(style.overflowX);
                const map = el.classList.contains("leaflet-container");
                if (hides && !map && el.scrollWidth > el.clientWidth + 1) {
                    found.push(`${name(el)} clips ${el.scrollWidth - el.clientWidth} px`);
                }
            }
            return found;
        }""",
        CUT_OFF_EXEMPT,
    )
    return found


def contrast_ratio(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG contrast of two sRGB colours (0..255 channels)."""

    def luminance(rgb: tuple[float, ...]) -> float:
        linear = [
            c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
            for c in (v / 255 for v in rgb[:3])
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def text_colours(page: Page) -> list[dict[str, Any]]:
    """Each visible piece of text with its colour and the opaque ground under it.

    The ground is the element's own background or its nearest ancestor's, blended down to
    the first opaque one (the page's white otherwise). Disabled controls are left out (WCAG
    exempts them), as is text over the map's tiles or canvases.
    """
    rows: list[dict[str, Any]] = await page.evaluate(
        r"""() => {
            const rgba = (text) => (text.match(/[\d.]+/g) || []).map(Number);
            const out = [];
            const seen = new Set();
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                if (!node.textContent.trim()) continue;
                const el = node.parentElement;
                const skip = "[hidden], .leaflet-pane, button:disabled, script, style";
                if (!el || el.closest(skip)) continue;
                const style = getComputedStyle(el);
                if (style.visibility === "hidden" || style.display === "none") continue;
                const box = el.getBoundingClientRect();
                if (box.width === 0 || box.height === 0 || box.right < 0) continue;
                let ground = [255, 255, 255];
                const layers = [];
                for (let at = el; at; at = at.parentElement) {
                    const [r, g, b, a = 1] = rgba(getComputedStyle(at).backgroundColor);
                    if (a > 0) layers.push([r, g, b, a]);
                    if (a >= 1) break;
                }
                const over = (top, under) => top.slice(0, 3).map(
                    (c, i) => c * (top[3] ?? 1) + under[i] * (1 - (top[3] ?? 1)));
                for (const layer of layers.reverse()) ground = over(layer, ground);
                const ink = over(rgba(style.color), ground);
                const key = `${ink}|${ground}`;
                if (seen.has(key)) continue;
                seen.add(key);
                out.push({text: node.textContent.trim().slice(0, 40), ink, ground,
                          cls: el.className && String(el.className)});
            }
            return out;
        }"""
    )
    return rows


async def low_contrast(page: Page) -> list[str]:
    """Text on the page below WCAG AA (4.5:1), each as 'text: ratio'."""
    return [
        f"{row['text']!r} ({row['cls']}): {contrast_ratio(row['ink'], row['ground']):.2f}:1"
        for row in await text_colours(page)
        if contrast_ratio(row["ink"], row["ground"]) < 4.5
    ]


async def test_sign_in_refuses_a_bad_token_and_opens_the_overview_with_a_good_one(
    page: Page, county: County
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto("/")
    await page.locator("#token").fill("not-a-token")
    await page.locator("#token").press("Enter")
    await page.locator("#signin-error").get_by_text("令牌无效").wait_for()
    await page.screenshot(path=county.shots / "signin.png")

    await sign_in(page, county.secret(Role.VIEWER))
    assert await page.locator("#who").inner_text() == "test-viewer · 查看员"
    for site_id in SITES:
        assert await marker_level(page, site_id) is not None
    # The cookie is HttpOnly: the page's scripts cannot read it.
    assert "hw_session" not in await page.evaluate("document.cookie")
    await page.locator("#active-alarms .alarm").first.wait_for()
    await page.screenshot(path=county.shots / "overview.png")
    # Offline by design: every request went to the fleet itself.
    assert requests
    assert all(url.startswith(county.fleet.url) for url in requests), requests


async def test_a_storm_turns_its_site_red_on_the_open_map_without_a_reload(
    page: Page, county: County
) -> None:
    await sign_in(page, county.secret(Role.VIEWER))
    assert await marker_level(page, LOWER) == "0"
    await page.locator('#live[data-state="on"]').wait_for()
    await page.evaluate(
        """(site) => {
            window.sameDocument = true;
            const marker = document.querySelector(`path.site-marker[data-site-id="${site}"]`);
            new MutationObserver(() => {
                if (marker.dataset.level === "4" && !window.redAt) window.redAt = Date.now() / 1000;
            }).observe(marker, {attributes: true});
        }""",
        LOWER,
    )

    # The keyboard is on an alarm's site link: the list redrawn under it keeps it there.
    first = page.locator("#active-alarms .alarm").first
    kept = await first.get_attribute("data-alarm-id")
    await first.locator("a").focus()

    county.taps[LOWER].open(county.clock.now())
    marker = page.locator(f'path.site-marker[data-site-id="{LOWER}"][data-level="4"]')
    await marker.wait_for(state="attached", timeout=90_000)

    assert await page.evaluate("window.sameDocument") is True  # no reload happened
    # Within 2 s of the fleet storing the red level change (same host, same clock).
    latency = await page.evaluate("window.redAt") - stored_at(county, LOWER, "red")
    print(f"\nred stored -> red on the map: {latency:.2f} s")
    assert 0 <= latency <= 2.0
    assert await marker.get_attribute("fill") == "#d00000"
    red = county.alarms(LOWER, active="true")
    assert any(a["level"] == 4 for a in red)
    lower_alarm = page.locator(f'#active-alarms .alarm[data-alarm-id="{red[0]["id"]}"]')
    await lower_alarm.locator(".level-4").get_by_text(RED_ZH).wait_for()
    focus = await page.evaluate(
        "document.activeElement.closest('[data-alarm-id]')?.dataset.alarmId ?? null"
    )
    assert focus == kept
    # Its 叫应 state: the tier being called, by name (the fleet here has no channel, so
    # nobody can be reached and the calling moves up the tiers).
    tier = await lower_alarm.locator(".calls dl div").first.locator("dd").inner_text()
    assert tier in {"村级", "乡镇级", "县级"}
    step = lower_alarm.locator(".calls .calls-step")
    await step.wait_for()
    # Chinese first: the fleet's words for the step are in Chinese too, a level by name.
    assert not re.search(r"[A-Za-z]", await step.inner_text()), await step.inner_text()
    await page.screenshot(path=county.shots / "overview-storm.png")


async def test_the_health_strip_follows_a_gateways_backlog_and_battery_live(
    page: Page, county: County
) -> None:
    await sign_in(page, county.secret(Role.VIEWER))
    await page.locator('#live[data-state="on"]').wait_for()
    await page.evaluate("window.sameDocument = true")
    # slope-road's gateway reports a backlog and a low battery, committed as ingest would.
    repository = SQLiteRepository(county.fleet.data_dir / "fleet.sqlite")
    try:
        now = time.time()
        health = Health(
            gateway_id=SLOPE_GATEWAY,
            ts=now,
            uptime_s=600,
            agent_version="1.0",
            backlog_readings=777,
            battery_v=10.9,
        )
        repository.commit([Received(SLOPE_GATEWAY, now, health)])
    finally:
        repository.close()
    chip = page.locator(f'#health-strip .chip[data-gateway-id="{SLOPE_GATEWAY}"]')
    await chip.get_by_text("待上传 777").wait_for(timeout=20_000)
    assert "电池 10.9 V" in await chip.inner_text()
    assert await page.evaluate("window.sameDocument") is True  # no reload


async def test_an_operator_acknowledges_an_alarm_and_records_an_answer(
    page: Page, county: County
) -> None:
    alarm = next(a for a in county.alarms(UPPER, active="true") if a["level"] == 4)
    await sign_in(page, county.secret(Role.OPERATOR))
    await page.goto(f"/#/alarms?site={UPPER}")
    await ready(page, "alarms")
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{alarm["id"]}"]')

    if alarm["acknowledged_at"] is None:
        await row.locator(".act-ack").click()
        await row.locator(".ack-form input[name=note]").fill("已电话通知村支书")
        await row.locator(".ack-form button[type=submit]").click()
        await row.get_by_text("test-operator").first.wait_for()
        stored = county.fleet.rest("GET", f"/api/v1/alarms/{alarm['id']}")
        assert stored["acknowledged_by"] == "test-operator"
        assert stored["ack_note"] == "已电话通知村支书"
    assert await row.locator(".act-ack").count() == 0  # acknowledged: no second button

    await row.locator(".act-answer").click()
    await row.locator(".answer-form input[name=person]").fill("王建国")
    await row.locator(".answer-form select[name=via]").select_option("phone")
    await row.locator(".answer-form button[type=submit]").click()
    await row.get_by_text("王建国 (电话)").wait_for()
    receipts = county.fleet.rest("GET", f"/api/v1/alarms/{alarm['id']}")["receipts"]
    assert [(r["person"], r["via"], r["recorded_by"]) for r in receipts][-1] == (
        "王建国",
        "phone",
        "test-operator",
    )
    await page.screenshot(path=county.shots / "alarms.png", full_page=True)

    # The overview's 叫应 state of the alarm now names who answered.
    await page.goto("/#/overview")
    await ready(page, "overview")
    item = page.locator(f'#active-alarms .alarm[data-alarm-id="{alarm["id"]}"]')
    await item.locator(".calls dd.ok", has_text="王建国").wait_for()


async def test_a_live_change_waits_while_an_operator_types_an_answer(
    page: Page, county: County
) -> None:
    alarm = next(a for a in county.alarms(UPPER, active="true") if a["level"] == 4)
    await sign_in(page, county.secret(Role.OPERATOR))
    await page.goto("/#/alarms")
    await ready(page, "alarms")
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{alarm["id"]}"]')
    await row.locator(".act-answer").click()
    person = row.locator(".answer-form input[name=person]")
    await person.fill("赵六")

    county.taps[MIDDLE].open(county.clock.now())  # level changes arrive on the stream
    await page.locator('#alarm-rows[data-reload-waiting="true"]').wait_for(state="attached")
    assert await person.input_value() == "赵六"  # the form was not wiped under the typing

    await row.locator(".answer-form button[type=submit]").click()
    await row.get_by_text("赵六").wait_for()
    # Sent: the waiting reload ran, and the new alarm of middle-village is in the table.
    await wait_for(lambda: county.alarms(MIDDLE), 60, "an alarm at middle-village")
    middle = county.alarms(MIDDLE)[-1]
    await page.locator(f'#alarm-rows tr[data-alarm-id="{middle["id"]}"]').wait_for()


async def test_the_overview_counts_down_to_the_next_tier(page: Page, county: County) -> None:
    if county.taps[MIDDLE].storm is None:  # run on its own: the storm of middle-village
        county.taps[MIDDLE].open(county.clock.now())
    await wait_for(lambda: county.robots.to("middle"), 90, "the village tier called")
    alarm = next(a for a in county.alarms(MIDDLE, active="true") if a["level"] >= 3)
    await sign_in(page, county.secret(Role.VIEWER))
    item = page.locator(f'#active-alarms .alarm[data-alarm-id="{alarm["id"]}"]')
    # Who was called, on what, and that the call went out; nobody has answered yet.
    called = re.compile("李梅（接口·已(发送|送达)）")  # noqa: RUF001 - as the page writes it
    await item.locator(".calls dd", has_text=called).wait_for()
    await item.locator(".calls dd.warn", has_text="未应答").wait_for()
    # The time left before the township tier is called, from the policy's village deadline.
    countdown = item.locator(".countdown")
    await countdown.wait_for()
    deadline = float(await countdown.get_attribute("data-deadline") or 0)
    left_min = (deadline - time.time()) / 60
    assert 0 < left_min <= 10
    shown = re.fullmatch(r"(\d+) 分 后升级呼叫", await countdown.inner_text())
    assert shown is not None
    assert abs(int(shown.group(1)) - left_min) <= 1
    await page.screenshot(path=county.shots / "overview-countdown.png")


def old_ended_alarm(county: County, now: float) -> int:
    """A gateway of ``old-ford`` whose yellow rose 3 days before ``now`` and fell 2 days before.

    Its events are committed to the fleet's store as ingest would; returns the alarm's id.
    """
    gateway_id = "gw-01d0000001"
    repository = SQLiteRepository(county.fleet.data_dir / "fleet.sqlite")
    try:
        _token, secret = repository.create_enrollment_token("old-ford", now + 60, None, None, now)
        repository.redeem_enrollment_token(
            secret, NewGateway(gateway_id, "k" * 44, "$7$x", None, None), now
        )
        rows = [
            EventRow(seq=1, ts=now - 3 * 86400, kind="alarm", subject="ford", level=2, detail={}),
            EventRow(seq=2, ts=now - 2 * 86400, kind="alarm", subject="ford", level=0, detail={}),
        ]
        batch = EventBatch(gateway_id=gateway_id, first_seq=1, last_seq=2, rows=rows)
        repository.commit([Received(gateway_id, now, batch)])
    finally:
        repository.close()
    (alarm,) = county.fleet.rest("GET", "/api/v1/alarms", params={"gateway_id": gateway_id})
    assert alarm["cleared_at"] is not None
    return int(alarm["id"])


async def test_the_alarm_history_filters_by_site_level_and_answer(
    page: Page, county: County
) -> None:
    answered = county.alarms(UPPER)[0]
    county.fleet.rest(
        "POST", f"/api/v1/alarms/{answered['id']}/receipts", json={"person": "周敏", "via": "sms"}
    )
    await sign_in(page, county.secret(Role.VIEWER))

    async def shown(query: str) -> set[int]:
        await page.goto(f"/#/alarms?{query}")
        await page.locator(f'#view[data-ready="true"][data-route="#/alarms?{query}"]').wait_for()
        ids = await page.locator("#alarm-rows tr").evaluate_all(
            "(rows) => rows.map((row) => Number(row.dataset.alarmId))"
        )
        return set(ids)

    assert answered["id"] in await shown("answered=yes")
    assert answered["id"] not in await shown("answered=no")
    assert await shown(f"site={UPPER}") == {a["id"] for a in county.alarms(UPPER)}
    assert answered["id"] not in await shown(f"site={LOWER}")
    reds = await shown("level=4")
    assert answered["id"] in reds
    assert await page.locator("#alarm-rows .level").all_inner_texts() == [RED_ZH] * len(reds)
    # The filters show what is chosen, for the keyboard as for the eye.
    assert await page.locator("#filter-level").input_value() == "4"
    # The period: the alarms active at any time in it (still active, or ended within it),
    # such as slope-road's red, raised days ago and still active, in the last 24 h; not a
    # gateway's yellow that rose three days ago and fell the day after.
    now = time.time()
    ended = old_ended_alarm(county, now)
    everything = county.fleet.rest("GET", "/api/v1/alarms", params={"limit": 2000})

    def active_within(days: int) -> set[int]:
        return {
            a["id"]
            for a in everything
            if a["cleared_at"] is None or a["cleared_at"] >= now - days * 86400
        }

    assert ended not in await shown("period=24h")
    assert ended in await shown("period=7d")
    assert await shown("period=24h") == active_within(1)
    assert await shown("period=30d") == active_within(30)
    slope = county.fleet.rest("GET", "/api/v1/alarms", params={"gateway_id": SLOPE_GATEWAY})
    assert any(a["raised_at"] < now - 86400 for a in slope if a["id"] in active_within(1))


async def test_a_viewer_sees_no_buttons_and_a_post_without_the_csrf_token_is_refused(
    page: Page, county: County, browser: Browser
) -> None:
    alarm = county.alarms(UPPER)[0]
    await sign_in(page, county.secret(Role.VIEWER))
    await page.goto("/#/alarms")
    await ready(page, "alarms")
    assert await page.locator("#alarm-rows tr").count() > 0
    assert await page.locator("#view button").count() == 0
    # No page shows a viewer a button (the top bar's language and sign-out are not in it,
    # nor are the map's zoom controls, links that change nothing).
    for route, name in (
        ("#/overview", "overview"),
        (f"#/site/{UPPER}", "site"),
        (f"#/site/{SLOPE}", "site"),
        ("#/gateways", "gateways"),
    ):
        await page.goto(f"/{route}")
        await ready(page, name)
        assert await page.locator("#view button").count() == 0, route

    # An operator's session whose page (or another site) posts without the CSRF token.
    context = await browser.new_context(base_url=county.fleet.url)
    try:
        operator = await context.new_page()
        await sign_in(operator, county.secret(Role.OPERATOR))
        forged = await operator.evaluate(
            """async (id) => {
                const answer = await fetch(`/api/v1/alarms/${id}/receipts`, {
                    method: "POST", credentials: "same-origin",
                    headers: {"Content-Type": "application/json"},
                    body: JSON.stringify({person: "forged", via: "phone"}),
                });
                return [answer.status, (await answer.json()).detail];
            }""",
            alarm["id"],
        )
    finally:
        await context.close()
    assert forged[0] == 403, forged
    assert "CSRF" in forged[1] or "csrf" in forged[1], forged
    receipts = county.fleet.rest("GET", f"/api/v1/alarms/{alarm['id']}")["receipts"]
    assert all(r["person"] != "forged" for r in receipts)


async def test_the_english_switch_translates_every_page_and_is_remembered(
    page: Page, county: County
) -> None:
    await sign_in(page, county.secret(Role.VIEWER))
    await page.locator("#lang").click()
    await ready(page, "overview")
    assert await page.locator('#nav a[data-route="alarms"]').inner_text() == "Alarms"
    badge = page.locator("#active-alarms .alarm .level-4").first
    await badge.get_by_text("Red warning (level I)").wait_for()

    await page.reload()
    await ready(page, "overview")
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert await page.locator("#who").inner_text() == "test-viewer · viewer"
    # Never a bare number for a level: every badge carries its name.
    names = {level.display_en for level in AlarmLevel}
    for text in await page.locator("#view .level").all_inner_texts():
        assert text in names
    await page.screenshot(path=county.shots / "overview-en.png")


async def test_the_site_page_draws_its_charts_with_threshold_bands_and_alarm_marks(
    page: Page, county: County
) -> None:
    county.fleet.rest(
        "PUT",
        f"/api/v1/sites/{UPPER}/roster",
        Role.ADMIN,
        json=[
            {"tier": "village", "name": "王建国", "role": "群测群防员", "mobile": "+8613800000000"}
        ],
    )
    await sign_in(page, county.secret(Role.VIEWER))
    await page.goto(f"/#/site/{UPPER}")
    await ready(page, "site")

    level = page.locator('figure.chart[data-channel="creek.water_level"]')
    rain = page.locator('figure.chart[data-channel="rain.rain_total"]:not([data-window])')
    hourly = page.locator('figure.chart[data-channel="rain.rain_total"][data-window="1h"]')
    for chart in (level, rain, hourly):
        await chart.locator("canvas").wait_for()
    assert int(await rain.get_attribute("data-points") or 0) > 10
    # Water-level thresholds on the level itself; the rain rule's on the rain of its hour,
    # never against the gauge's cumulative counter.
    assert await level.get_attribute("data-bands") == "4"
    assert await hourly.get_attribute("data-bands") == "4"
    assert await rain.get_attribute("data-bands") == "0"
    # Every chart's readings were asked for before the site's alarms came back, not one
    # after another behind them (a 30-day chart is the page's slowest answer).
    asked = await page.evaluate(
        """() => performance.getEntriesByType("resource").map((r) => [r.name, r.startTime,
            r.responseEnd])"""
    )
    readings_sent = [start for url, start, _ in asked if "/readings?" in url]
    alarms_back = [end for url, _, end in asked if "/api/v1/alarms?gateway_id=" in url]
    channels = county.fleet.rest("GET", f"/api/v1/sites/{UPPER}", Role.VIEWER)["channels"]
    assert len(readings_sent) == len(channels) == 4  # rain, creek and the two siren relays
    assert alarms_back
    assert max(readings_sent) < min(alarms_back), asked
    band_canvases = {
        "water level": '[data-channel="creek.water_level"] canvas',
        "hourly rain": '[data-channel="rain.rain_total"][data-window="1h"] canvas',
    }
    await page.screenshot(path=county.shots / "site.png", full_page=True)
    for chart, canvas in band_canvases.items():
        for name, colour in BAND_TINTS.items():
            painted = await colour_pixels(page, canvas, colour, 0.2)
            assert painted > 100, f"the {name} band of the {chart} is not drawn"
    await hourly.locator(".thresholds").get_by_text(f"{RED_ZH} ≥ 30").wait_for()
    # The red alarm is marked on the time axis, in the red of the level.
    counter = '[data-channel="rain.rain_total"]:not([data-window]) canvas'
    assert await colour_pixels(page, counter, RED, 1.0) > 20
    # So are the sirens switching: on (strobe at orange, warble at red) and off before.
    switched = county.fleet.rest("GET", f"/api/v1/sites/{UPPER}/events", params={"limit": 500})
    actuations = [e for e in switched if e["kind"] == "actuation"]
    assert any(e["outputs"] == {"siren": "warble"} for e in actuations), actuations
    assert int(await rain.get_attribute("data-actuations") or 0) == len(actuations)
    assert await colour_pixels(page, counter, ACTUATION_INK, 1.0) > 20
    # The recent events, newest first: the sirens by what they do, levels by name.
    panel = page.locator("#site-events")
    await panel.locator('li[data-kind="actuation"]', has_text="siren: warble").first.wait_for()
    await panel.locator('li[data-kind="alarm"] .level', has_text=RED_ZH).first.wait_for()
    names = {level.display_zh for level in AlarmLevel}
    assert set(await panel.locator(".level").all_inner_texts()) <= names
    times = await panel.locator("li time").evaluate_all(
        "(items) => items.map((item) => Date.parse(item.getAttribute('datetime')))"
    )
    assert times == sorted(times, reverse=True)
    roster = page.locator("#roster")
    await roster.get_by_text("王建国").wait_for()
    assert "13800000000" not in await roster.inner_text()  # a viewer sees the mobile masked
    await page.screenshot(path=county.shots / "site.png", full_page=True)

    await page.locator(".periods a", has_text="7 天").click()
    await page.locator('.periods a[aria-current="true"]', has_text="7 天").wait_for()
    await ready(page, "site")
    await level.locator("canvas").wait_for()


async def test_a_slope_sites_page_shows_its_forecast_and_draws_inverse_velocity(
    page: Page, county: County
) -> None:
    # The gateway's health carries its newest forecast (as seeded; another test may have
    # sent a health report of its own since).
    slope_health(county, county.slope_standing)
    slope = county.fleet.rest("GET", f"/api/v1/sites/{SLOPE}/slope", Role.VIEWER)
    forecast = slope["rules"][0]["forecast"]
    assert (forecast["state"], forecast["level_name"]) == ("forecast", "red")
    # The red's event is hours old; the forecast shown is the gateway's newest since.
    assert forecast["source"] == "latest"
    assert forecast["as_of"] > county.slope_red_at + 3600
    await sign_in(page, county.secret(Role.VIEWER))
    await page.goto(f"/#/site/{SLOPE}")
    await ready(page, "site")

    rule = page.locator('#slope .slope-rule[data-rule="slope_forecast"]')
    assert await rule.get_attribute("data-forecast-state") == "forecast"
    # The forecast as the gateway reported it: time, interval, lead, alpha, evidence, as of.
    local = """(t) => { const d = new Date(t * 1000); const p = (n) => String(n).padStart(2, "0");
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
               `${p(d.getHours())}:${p(d.getMinutes())}`; }"""
    failure_at = await page.evaluate(local, forecast["failure_t"])
    assert await page.locator("#failure-slope_forecast").inner_text() == failure_at
    facts = await rule.locator(".facts").inner_text()
    for told in (
        await page.evaluate(local, forecast["failure_t_low"]),
        f"{forecast['lead_h']:.1f}",
        f"{forecast['alpha']:.2f}",
        f"{forecast['evidence']:.0f}",
        await page.evaluate(local, forecast["as_of"]),
        RED_ZH,
    ):
        assert told in facts, (told, facts)
    source = await page.locator("#source-slope_forecast").inner_text()
    assert source == "网关最新预报（级别升高期间随健康报告更新）"  # noqa: RUF001 - as the page

    chart = rule.locator("figure.iv-chart")
    await chart.locator("canvas").wait_for()
    picture = slope["rules"][0]["inverse_velocity"]
    assert int(await chart.get_attribute("data-points") or 0) == len(picture["points"]) > 100
    # Hours that had no positive velocity are said, not drawn.
    if picture["not_moving"]:
        await chart.locator(".iv-notes").get_by_text("速度为零或负").wait_for()
    # The level horizons (yellow 168 h, orange 144 h, red 48 h before the predicted failure)
    # as bands on the time axis, and the predicted failure marked on it.
    assert await chart.get_attribute("data-bands") == "3"
    canvas = '#slope figure.iv-chart[data-rule="slope_forecast"] canvas'
    for name in ("yellow", "orange", "red"):
        painted = await colour_pixels(page, canvas, BAND_TINTS[name], 0.2)
        assert painted > 100, f"the {name} horizon band is not drawn"
    assert await colour_pixels(page, canvas, FAILURE_INK, 1.0) > 20
    await chart.locator(".thresholds").get_by_text(f"{RED_ZH} ≤ 48 h").wait_for()
    # The gateway's alarm events are the site's recent events.
    await page.locator(
        '#site-events li[data-kind="alarm"]', has_text="slope_forecast"
    ).first.wait_for()
    await page.screenshot(path=county.shots / "site-slope.png", full_page=True)

    await page.locator("#lang").click()
    await ready(page, "site")
    state = rule.locator(".forecast-state")
    await state.get_by_text("slope_forecast: failure predicted").wait_for()
    await chart.locator("figcaption").get_by_text("Inverse velocity 1/v (days/mm)").wait_for()
    await page.screenshot(path=county.shots / "site-slope-en.png", full_page=True)

    # An hour on, the gateway's next report puts the failure two hours later: the page
    # follows it live, without a reload.
    await page.evaluate("window.sameDocument = true")
    standing = county.slope_standing["slope_forecast"]
    assert standing.at is not None
    assert standing.failure_t is not None
    later = standing.model_copy(
        update={
            "at": standing.at + 3600,
            "failure_t": standing.failure_t + 7200,
            "lead_h": (standing.lead_h or 0.0) + 1.0,
        }
    )
    slope_health(county, {"slope_forecast": later}, sent=max(time.time(), standing.at + 3660))
    moved = await page.evaluate(local, later.failure_t)
    await page.locator("#failure-slope_forecast", has_text=moved).wait_for(timeout=20_000)
    assert await page.evaluate("window.sameDocument") is True


async def test_the_gateways_page_lists_every_gateway_with_its_health(
    page: Page, county: County
) -> None:
    await sign_in(page, county.secret(Role.VIEWER))
    await page.locator('#nav a[data-route="gateways"]').click()
    await ready(page, "gateways")
    for site_id, gateway_id in county.gateways.items():
        row = page.locator(f'#gateway-rows tr[data-gateway-id="{gateway_id}"]')
        await row.get_by_text(SITES[site_id][0]).wait_for()
        assert await row.locator(".chip.online").inner_text() == "在线"
        # Its clock against the fleet's: these gateways run on simulated time, which began
        # 22 h back and runs fast, so each is told hours behind (unlike a real gateway).
        clock = row.locator("td.clock")
        assert await clock.get_attribute("class") == "clock clock-behind"
        assert re.fullmatch(r"慢 \d+ (小时|分)", await clock.inner_text())
    await page.locator("#rollouts").get_by_text("没有推送任务。").wait_for()
    await page.screenshot(path=county.shots / "gateways.png", full_page=True)


def config_rollout_in_waves(county: County, now: float) -> dict[str, Any]:
    """A config rolled out through REST in two waves to three gateways of ``east-ford``.

    The gateways are enrolled straight in the store and grouped; the first wave is one of
    them, the second the other two.

    The gateways never connect, so the first wave stays in progress and the second waits.
    """
    gateways = [f"gw-ea5f0{n:05d}" for n in range(1, 4)]
    repository = SQLiteRepository(county.fleet.data_dir / "fleet.sqlite")
    try:
        for gateway_id in gateways:
            _token, secret = repository.create_enrollment_token(
                "east-ford", now + 60, None, None, now
            )
            repository.redeem_enrollment_token(
                secret, NewGateway(gateway_id, "k" * 44, "$7$x", None, None), now
            )
    finally:
        repository.close()
    configurator = Role.CONFIGURATOR
    county.fleet.rest("PUT", "/api/v1/groups/east", configurator, json={"gateways": gateways})
    config = county.fleet.rest(
        "POST",
        "/api/v1/configs",
        configurator,
        json={"group": "east", "site_toml": EXAMPLE_SITE, "publish": False},
    )
    rollout: dict[str, Any] = county.fleet.rest(
        "POST",
        "/api/v1/rollouts",
        configurator,
        json={"config_id": config["id"], "waves": ["1", "100%"]},
    )
    assert [(w["spec"], w["size"], w["status"]) for w in rollout["waves"]] == [
        ("1", 1, "in_progress"),
        ("100%", 2, "waiting"),
    ]
    return rollout


async def test_the_gateways_page_shows_a_config_rollout_with_its_waves(
    page: Page, county: County
) -> None:
    rollout = config_rollout_in_waves(county, time.time())
    await sign_in(page, county.secret(Role.VIEWER))
    await page.locator('#nav a[data-route="gateways"]').click()
    await ready(page, "gateways")
    shown = page.locator("#rollouts ul.rollouts > li").filter(
        has=page.locator("strong", has_text=f"#{rollout['id']} ")
    )
    head = shown.locator("strong")
    await head.wait_for()
    assert await head.inner_text() == f"#{rollout['id']} 配置 #{rollout['config_id']}"
    assert " · 进行中 · " in await shown.inner_text()
    waves = shown.locator("ol.waves > li")
    assert await waves.all_inner_texts() == [
        "批次 1 (1, 1): 进行中 · 成功 0 · 失败 0 · 未完成 1",
        "批次 2 (100%, 2): 等待 · 成功 0 · 失败 0 · 未完成 2",
    ]
    await page.screenshot(path=county.shots / "gateways-rollout.png", full_page=True)

    await page.locator("#lang").click()
    await ready(page, "gateways")
    await head.get_by_text(f"#{rollout['id']} config #{rollout['config_id']}").wait_for()
    assert " · running · " in await shown.inner_text()
    assert await waves.all_inner_texts() == [
        "Wave 1 (1, 1): in progress · done 0 · failed 0 · pending 1",
        "Wave 2 (100%, 2): waiting · done 0 · failed 0 · pending 2",
    ]
    await page.screenshot(path=county.shots / "gateways-rollout-en.png", full_page=True)


async def test_the_keyboard_opens_a_site_and_signs_out(page: Page, county: County) -> None:
    await sign_in(page, county.secret(Role.VIEWER))
    # An alarmed site on the map takes the focus and opens with Enter.
    await page.locator(f'path.site-marker[data-site-id="{UPPER}"]').focus()
    await page.keyboard.press("Enter")
    await ready(page, "site")
    assert page.url.endswith(f"#/site/{UPPER}")
    await page.goto("/#/overview")
    await ready(page, "overview")

    # The list of every site: arrow keys walk it without leaving the page, Enter opens.
    await page.locator("#site-jump").focus()
    await page.keyboard.press("ArrowDown")  # the first site, the most alarmed
    await page.keyboard.press("ArrowDown")
    assert page.url.endswith("#/overview")
    chosen = await page.locator("#site-jump").input_value()
    await page.keyboard.press("Enter")
    await ready(page, "site")
    assert page.url.endswith(f"#/site/{chosen}")
    # A period chosen with the keyboard redraws the page and keeps the keyboard's place.
    await page.locator("#period-7d").focus()
    await page.keyboard.press("Enter")
    await page.locator('#view[data-ready="true"][data-route$="period=7d"]').wait_for()
    assert await page.evaluate("document.activeElement.id") == "period-7d"

    await page.locator("#signout").focus()
    await page.keyboard.press("Enter")
    await page.locator("#token").wait_for()
    # The session is over on the server too, not only in the page.
    gone = await page.evaluate("fetch('/console/session').then((answer) => answer.status)")
    assert gone == 401


async def test_every_page_fits_a_phone_with_nothing_cut_off(page: Page, county: County) -> None:
    await page.set_viewport_size({"width": 390, "height": 844})
    await sign_in(page, county.secret(Role.OPERATOR))  # the operator's buttons too
    await page.locator("#active-alarms .alarm .calls").first.wait_for()
    for route, name, drawn in (
        ("#/overview", "overview", "#map path.site-marker"),
        (f"#/site/{UPPER}", "site", 'figure.chart[data-channel="creek.water_level"] canvas'),
        (f"#/site/{SLOPE}", "site", "#slope figure.iv-chart canvas"),
        ("#/alarms", "alarms", "#alarm-rows tr"),
        ("#/gateways", "gateways", "#gateway-rows tr"),
    ):
        await page.goto(f"/{route}")
        await ready(page, name)
        await page.locator(drawn).first.wait_for(state="attached")
        # No sideways scrolling, and nothing sticks out of the screen or is clipped.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390, route
        assert await cut_off(page) == [], route
        shot = f"{name}-{route.rsplit('/', 1)[-1]}" if name == "site" else name
        await page.screenshot(path=county.shots / f"{shot}-phone.png", full_page=True)
    # One column in reading order, the order the keyboard takes: health, alarms, map.
    await page.goto("/#/overview")
    await ready(page, "overview")
    tops = await page.evaluate(
        """() => [".health-panel", ".alarms-panel", ".map-panel"].map(
            (s) => document.querySelector(s).getBoundingClientRect().top)"""
    )
    assert tops == sorted(tops), tops


async def test_the_wide_layout_fits_1366_by_768(page: Page, county: County) -> None:
    await sign_in(page, county.secret(Role.OPERATOR))
    await page.locator("#active-alarms .alarm .calls").first.wait_for()
    # The overview fills one screen: map beside the alarms, nothing below the fold.
    assert await page.evaluate("document.documentElement.scrollHeight") <= 768
    map_box = await page.locator(".map-panel").bounding_box()
    alarms_box = await page.locator(".alarms-panel").bounding_box()
    assert map_box is not None
    assert alarms_box is not None
    assert map_box["x"] + map_box["width"] <= alarms_box["x"]
    for route, name in (
        ("#/overview", "overview"),
        (f"#/site/{UPPER}", "site"),
        ("#/alarms", "alarms"),
        ("#/gateways", "gateways"),
    ):
        await page.goto(f"/{route}")
        await ready(page, name)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 1366, route
        assert await cut_off(page) == [], route


async def focused(locator: Any) -> bool:
    return bool(await locator.evaluate("(el) => el === document.activeElement"))


async def tab_to(page: Page, target: Any, most: int = 60) -> list[float]:
    """Press Tab until ``target`` has the focus; the top of each line the focus visited."""
    tops: list[float] = []
    for _ in range(most):
        await page.keyboard.press("Tab")
        tops.append(
            await page.evaluate(
                """() => { const el = document.activeElement;
                    const line = el.closest("tr, .filters, header") || el;
                    return line.getBoundingClientRect().top; }"""
            )
        )
        if await focused(target):
            return tops
    raise AssertionError(f"{most} presses of Tab never reached {target}")


async def test_the_keyboard_alone_acknowledges_an_alarm_and_records_an_answer(
    page: Page, county: County
) -> None:
    if county.taps[LOWER].storm is None:  # run on its own: the storm of lower-village
        county.taps[LOWER].open(county.clock.now())
    alarm = await wait_for(
        lambda: next(
            (a for a in county.alarms(LOWER, active="true") if a["acknowledged_at"] is None),
            None,
        ),
        90,
        "an alarm not yet acknowledged at lower-village",
    )
    await sign_in(page, county.secret(Role.OPERATOR))
    await page.goto(f"/#/alarms?site={LOWER}")
    await ready(page, "alarms")
    row = page.locator(f'#alarm-rows tr[data-alarm-id="{alarm["id"]}"]')
    ack = row.locator(".act-ack")
    await ack.wait_for()

    # Tab from the top of the page, as a person would, until acknowledge has the focus;
    # on the way the focus follows the page's reading order (never jumps back up).
    await page.locator("body").focus()
    tops = await tab_to(page, ack)
    assert tops == sorted(tops), tops
    # The focus shows: a ring drawn around the button.
    ring = await ack.evaluate(
        """(el) => { const s = getComputedStyle(el);
            return [el.matches(":focus-visible"), s.outlineStyle, parseFloat(s.outlineWidth)]; }"""
    )
    assert ring[0] is True, ring
    assert ring[1] == "solid", ring
    assert ring[2] >= 2, ring
    await page.screenshot(path=county.shots / "alarms-keyboard.png")

    # Enter opens the form with the keyboard in it; Escape cancels back to the button.
    await page.keyboard.press("Enter")
    note = row.locator(".ack-form input[name=note]")
    await note.wait_for()
    assert await focused(note)
    await page.keyboard.press("Escape")
    await row.locator(".ack-form").wait_for(state="detached")
    assert await focused(ack)
    await page.keyboard.press("Enter")
    await note.wait_for()
    await page.keyboard.type("键盘确认")
    await page.keyboard.press("Enter")
    await row.get_by_text("test-operator").first.wait_for()
    stored = county.fleet.rest("GET", f"/api/v1/alarms/{alarm['id']}")
    assert (stored["acknowledged_by"], stored["ack_note"]) == ("test-operator", "键盘确认")

    # The keyboard goes on to the row's next action: recording who answered.
    answer = row.locator(".act-answer")
    await wait_for(lambda: focused(answer), 5, "the focus on record-answer")
    await page.keyboard.press("Enter")
    person = row.locator(".answer-form input[name=person]")
    await person.wait_for()
    assert await focused(person)
    await page.keyboard.type("李强")
    await page.keyboard.press("Tab")  # how they answered: phone, then SMS
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("Tab")  # to the submit button
    await page.keyboard.press("Enter")
    await row.get_by_text("李强 (短信)").wait_for()
    receipts = county.fleet.rest("GET", f"/api/v1/alarms/{alarm['id']}")["receipts"]
    assert [(r["person"], r["via"]) for r in receipts][-1] == ("李强", "sms")


async def test_every_pages_text_reads_at_wcag_aa_contrast(page: Page, county: County) -> None:
    # Every colour of text on every page as drawn, Chinese and English, including the
    # level badges of all the levels on show and an operator's buttons.
    await sign_in(page, county.secret(Role.OPERATOR))
    await page.locator("#active-alarms .alarm .calls").first.wait_for()
    problems: dict[str, list[str]] = {}
    checked = 0
    for route, name in (
        ("#/overview", "overview"),
        (f"#/site/{UPPER}", "site"),
        (f"#/site/{SLOPE}", "site"),
        ("#/alarms?period=all", "alarms"),
        ("#/gateways", "gateways"),
    ):
        await page.goto(f"/{route}")
        await ready(page, name)
        checked += len(await text_colours(page))
        if found := await low_contrast(page):
            problems[route] = found
    # A form open, with its buttons; and the notice bar's warning.
    await page.goto("/#/alarms?period=all")
    await ready(page, "alarms")
    await page.locator(".act-answer").first.click()
    await page.evaluate(
        """() => { const n = document.getElementById("notice"); n.hidden = false;
            n.textContent = "test notice"; }"""
    )
    if found := await low_contrast(page):
        problems["alarms with a form"] = found
    badges = set(
        await page.locator("#alarm-rows .level").evaluate_all(
            "(els) => els.map((el) => el.dataset.level)"
        )
    )
    assert {"4"} <= badges
    assert checked > 50
    assert problems == {}, problems
