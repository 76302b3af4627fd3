"""The county console under load in real Chromium: 1,000 sites, 50 active alarms.

The real fleet runs as ``fleet serve`` (its own process, the embedded broker on a free
port, no gateway connected) on a SQLite file seeded beforehand through
``SQLiteRepository``, as ingest would store it: N enrolled gateways, one per site, each
with its site summary (coordinates over the sample county, a water-level channel and
rule) in its retained ``online`` state; A active alarms; and 30 days of 1-minute readings
(43,200 rows) of one site's water level. Playwright drives Debian's ``/usr/bin/chromium``
signed in as a viewer, at 1366 x 768.

Measured in one run:

1. overview load to interactive: a new tab opens ``/#/overview`` (the session cookie is
   kept); from navigation start (``performance.now()`` 0) to the animation frame after
   the page's own readiness signal (``#view[data-ready=true][data-page=overview]``, set
   once the map has every marker and the alarm list its 叫应 states); each time the map
   must hold N markers and the list A alarms.
2. level change to colour: with one overview open and its live feed on, C level changes
   are committed one at a time through ``repository.commit`` in this process (the file
   the fleet reads), alternately a quiet site rising and that site falling back to
   normal, each after a random pause of up to 0.5 s (the fleet's look-for-changes
   interval, so commits fall at every point of its cycle); from the commit's return
   (``time.time()``) to the animation frame after the marker's fill turned to the
   level's colour (``Date.now()`` in the page: the same host's wall clock).
3. the site page's 30-day chart of the 43,200-reading channel: a new tab opens
   ``/#/site/ID?period=30d``; from navigation start to the animation frame after the
   page's readiness signal with the chart's canvas drawn (720 points).

Baselines in the same run (the raw thing): the REST calls those pages make, timed with
httpx from this process: ``GET /api/v1/sites``, ``GET /api/v1/alarms?active=true``, and
the 30-day readings query (``step`` 3600 s). Prints a JSON object as its last line with
every figure, the targets and whether each is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from agent_harness_bench import emit, fleet_process, percentile  # noqa: E402
from playwright.async_api import Browser, BrowserContext, Page, async_playwright  # noqa: E402

from fleet.repository import NewGateway, Received, Role  # noqa: E402
from fleet.sqlite_repository import SQLiteRepository  # noqa: E402
from hardware_sim.harness.ports import free_port  # noqa: E402
from protocol import (  # noqa: E402
    MAX_READING_ROWS,
    DataBatch,
    EventBatch,
    EventRow,
    GatewayState,
    ReadingRow,
    SiteChannel,
    SiteRule,
    SiteSummary,
)
from protocol.levels import LEVEL_NAMES  # noqa: E402
from protocol.payloads import LevelValues  # noqa: E402

SEED = 20261203
CHROMIUM = Path("/usr/bin/chromium")
TARGET_LOAD_S = 2.0
TARGET_CHANGE_P99_S = 2.0
TARGET_CHART_S = 1.0
FLEET_START_S = 60.0
#: Up to this long between one change showing and the next commit, at random: the fleet
#: looks for changes every 0.5 s, and a commit made right after each change shows would
#: land at the same point of that cycle every time (always just after a look: the worst).
PACING_S = 0.5
#: How long one level change may take to show before the run counts it as lost.
CHANGE_TIMEOUT_S = 15.0
CHANNEL = "creek.water_level"
RULE = "creek_level"
THRESHOLDS: LevelValues = {"blue": 806.0, "yellow": 810.0, "orange": 815.0, "red": 820.0}
#: The page's fill colours of levels 0..4 (fleet/console/static/js/fleet.js LEVEL_COLOURS).
LEVEL_COLOURS = ["#3d7a45", "#1f5fbf", "#f2c300", "#f07800", "#d00000"]
CHART_DAYS = 30
READING_STEP_S = 60
CHART_STEP_S = CHART_DAYS * 86400 / 720  # the site page's 720 buckets per period

#: Installed in every tab before the page's own scripts: when ``#view`` says it is ready,
#: note the page, the time since navigation start at the next animation frame, and what
#: the page shows (markers, alarm items, chart points). Level markers' fills are watched
#: too: ``__hw.fills["site:colour"]`` is the wall-clock time of the frame that shows it.
WATCH = """
(() => {
  const hw = (window.__hw = { ready: {}, fills: {} });
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const el = m.target;
      if (m.attributeName === "data-ready" && el.id === "view" && el.dataset.ready === "true") {
        const page = el.dataset.page;
        const seen = performance.now();
        requestAnimationFrame(() => {
          hw.ready[page] = {
            signal_ms: seen,
            frame_ms: performance.now(),
            markers: document.querySelectorAll("path.site-marker").length,
            alarms: document.querySelectorAll("#active-alarms .alarm").length,
            canvases: document.querySelectorAll("figure.chart canvas").length,
            points: Number(document.querySelector("figure.chart")?.dataset.points ?? 0),
            requests: performance.getEntriesByType("resource").map((r) => [
              r.name.replace(location.origin, ""), r.responseEnd,
            ]),
            dom_ms: performance.getEntriesByType("navigation")[0]?.domContentLoadedEventEnd,
          };
        });
      } else if (m.attributeName === "fill" && el.classList?.contains("site-marker")) {
        const key = `${el.dataset.siteId}:${el.getAttribute("fill")}`;
        requestAnimationFrame(() => {
          if (!(key in hw.fills)) hw.fills[key] = Date.now();
        });
      }
    }
  }).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-ready", "fill"]});
})();
"""


@dataclass(frozen=True, slots=True)
class Site:
    """One bench site and its one gateway."""

    index: int
    site_id: str
    gateway_id: str
    lat: float
    lon: float

    @classmethod
    def numbered(cls, index: int, rng: random.Random) -> Site:
        """Site ``index``, placed at random over the sample county (25.0-25.4 N, 111.4-111.8 E)."""
        return cls(
            index,
            f"site-{index:04d}",
            f"gw-{index + 1:010d}",
            round(rng.uniform(25.0, 25.4), 5),
            round(rng.uniform(111.4, 111.8), 5),
        )

    def summary(self) -> SiteSummary:
        """What its gateway says of its site file: where, a water level and its rule."""
        return SiteSummary(
            site_id=self.site_id,
            name=f"监测点{self.index:04d}",
            lat=self.lat,
            lon=self.lon,
            channels=[SiteChannel(channel=CHANNEL, quantity="water_level", unit="cm")],
            rules=[SiteRule(id=RULE, kind="water_level", channel=CHANNEL, thresholds=THRESHOLDS)],
        )


@dataclass
class Store:
    """The bench's own writer to the fleet's SQLite file, as ingest writes it."""

    repository: SQLiteRepository
    seqs: dict[str, int] = field(default_factory=dict)

    def alarm(self, site: Site, level: int, previous: int) -> float:
        """Commit ``site``'s level change from ``previous``; the time the commit returned."""
        seq = self.seqs[site.gateway_id] = self.seqs.get(site.gateway_id, 0) + 1
        now = time.time()
        detail = {
            "from": LEVEL_NAMES[previous],
            "to": LEVEL_NAMES[level],
            "kind": "rise" if level > previous else "fall",
        }
        row = EventRow(seq=seq, ts=now, kind="alarm", subject=RULE, level=level, detail=detail)
        batch = EventBatch(gateway_id=site.gateway_id, first_seq=seq, last_seq=seq, rows=[row])
        self.repository.commit([Received(site.gateway_id, now, batch)])
        return time.time()


def say(text: str) -> None:
    """Progress on stderr (the JSON record alone goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def stats(values: Sequence[float], digits: int = 3) -> dict[str, Any]:
    """median/p50/p99/max and n of a list of durations in seconds."""
    if not values:
        return {"n": 0}
    listed = list(values)
    return {
        "median": round(statistics.median(listed), digits),
        "p50": round(percentile(listed, 50), digits),
        "p99": round(percentile(listed, 99), digits),
        "max": round(max(listed), digits),
        "n": len(listed),
    }


# --- set-up (not timed) ---------------------------------------------------------------------


def seed_fleet(
    db_path: Path, sites: Sequence[Site], alarmed: Sequence[Site], rng: random.Random
) -> tuple[Store, str, dict[str, int]]:
    """Enroll every site's gateway, tell its site, raise the alarms, store 30 days of readings.

    Returns the writer, a viewer's API token secret and the level of each alarmed site.
    """
    repository = SQLiteRepository(db_path, durable=False)
    now = time.time()
    for site in sites:
        _token, secret = repository.create_enrollment_token(
            site.site_id, now + 3600, None, None, now
        )
        repository.redeem_enrollment_token(
            secret, NewGateway(site.gateway_id, "k" * 44, "$7$x", None, None), now
        )
    for start in range(0, len(sites), 100):
        repository.commit(
            [
                Received(s.gateway_id, now, GatewayState(state="online", ts=now, site=s.summary()))
                for s in sites[start : start + 100]
            ]
        )
    store = Store(repository)
    levels = {}
    for site in alarmed:
        levels[site.site_id] = rng.randint(1, 4)
        store.alarm(site, levels[site.site_id], 0)
    chart = alarmed[0] if alarmed else sites[0]
    start_ts = now - CHART_DAYS * 86400
    rows: list[ReadingRow] = [
        (
            seq,
            start_ts + (seq - 1) * READING_STEP_S,
            CHANNEL,
            round(803 + 6 * math.sin(seq / 1440 * math.tau) + rng.gauss(0, 0.3), 2),
            0,
        )
        for seq in range(1, CHART_DAYS * 86400 // READING_STEP_S + 1)
    ]
    for first in range(0, len(rows), MAX_READING_ROWS):
        part = rows[first : first + MAX_READING_ROWS]
        batch = DataBatch(
            gateway_id=chart.gateway_id, first_seq=part[0][0], last_seq=part[-1][0], rows=part
        )
        repository.commit([Received(chart.gateway_id, now, batch)])
    viewer = repository.create_api_token("bench-viewer", Role.VIEWER, now)[1]
    return store, viewer, levels


# --- measurements ---------------------------------------------------------------------------


async def baseline(url: str, viewer: str, chart: Site, repeats: int) -> dict[str, Any]:
    """Median seconds of each bare REST call the measured pages make."""
    until = time.time()
    calls: dict[str, tuple[str, dict[str, str | float]]] = {
        "sites_s": ("/api/v1/sites", {}),
        "active_alarms_s": ("/api/v1/alarms", {"active": "true", "limit": 500}),
        "readings_30d_s": (
            f"/api/v1/gateways/{chart.gateway_id}/readings",
            {
                "channel": CHANNEL,
                "since": until - CHART_DAYS * 86400,
                "until": until,
                "step": CHART_STEP_S,
            },
        ),
    }
    result: dict[str, Any] = {"repeats": repeats}
    headers = {"Authorization": f"Bearer {viewer}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for name, (path, params) in calls.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                answer = await http.get(path, params=params)
                answer.raise_for_status()
                answer.json()
                times.append(time.perf_counter() - start)
            result[name] = round(statistics.median(times), 4)
    return result


#: Where a page's time goes: the moment each of these requests was answered (the last of
#: several), by a pattern its path starts with.
PHASES = {
    "overview": {
        "sites_answered": r"/api/v1/sites",
        "alarms_answered": r"/api/v1/alarms\?",
        "alarm_details_answered": r"/api/v1/alarms/",
    },
    "site": {
        "site_answered": r"/api/v1/sites/[^/?]+$",
        "readings_answered": r"/api/v1/gateways/",
        "alarms_answered": r"/api/v1/alarms\?",
        "events_answered": r"/api/v1/sites/[^/?]+/events",
    },
}


def phases(page_name: str, seen: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds from navigation start to each phase of a page's load."""
    out = {"scripts_loaded": seen["dom_ms"]}
    for phase, prefix in PHASES[page_name].items():
        ends = [end for path, end in seen["requests"] if re.match(prefix, path)]
        if ends:
            out[phase] = max(ends)
        if phase == "alarm_details_answered":
            out["alarm_details"] = len(ends)
    out["ready"] = seen["signal_ms"]
    out["frame"] = seen["frame_ms"]
    return {k: round(v) for k, v in out.items()}


async def open_tab(
    context: BrowserContext, route: str, page_name: str
) -> tuple[Page, dict[str, Any]]:
    """A new tab at ``route``; what the WATCH script saw when ``page_name`` was ready."""
    tab = await context.new_page()
    tab.set_default_timeout(60_000)
    await tab.goto(route)
    await tab.wait_for_function("(name) => window.__hw?.ready[name]", arg=page_name)
    seen: dict[str, Any] = await tab.evaluate(f"window.__hw.ready[{page_name!r}]")
    return tab, seen


async def overview_loads(
    context: BrowserContext, repeats: int, sites: int, alarms: int
) -> tuple[list[float], Page, dict[str, Any]]:
    """Seconds from navigation to the overview ready, ``repeats`` times; the last tab stays.

    Also the phases of the slowest load.
    """
    times: list[float] = []
    slowest: dict[str, Any] = {}
    tab: Page | None = None
    for _ in range(repeats):
        if tab is not None:
            await tab.close()
        tab, seen = await open_tab(context, "/#/overview", "overview")
        if seen["markers"] != sites or seen["alarms"] != alarms:
            msg = f"the overview showed {seen['markers']} markers and {seen['alarms']} alarms"
            raise RuntimeError(msg)
        if not times or seen["frame_ms"] / 1000 > max(times):
            slowest = phases("overview", seen)
        times.append(seen["frame_ms"] / 1000)
    assert tab is not None
    return times, tab, slowest


async def level_changes(
    tab: Page, store: Store, quiet: Sequence[Site], count: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """Seconds from each committed change to its colour on the open map: rises, falls."""
    await tab.locator('#live[data-state="on"]').wait_for()
    rises: list[float] = []
    falls: list[float] = []
    risen: tuple[Site, int] | None = None
    pool = list(quiet)
    rng.shuffle(pool)
    for _ in range(count):
        if risen is None:
            site, previous, level = pool.pop(), 0, rng.randint(1, 4)
        else:
            (site, previous), level = risen, 0
        key = f"{site.site_id}:{LEVEL_COLOURS[level]}"
        await asyncio.sleep(rng.uniform(0, PACING_S))  # pacing, not waiting for anything
        await tab.evaluate(f"delete window.__hw.fills[{key!r}]")
        committed = store.alarm(site, level, previous)
        await tab.wait_for_function(
            "(key) => window.__hw.fills[key] !== undefined",
            arg=key,
            timeout=CHANGE_TIMEOUT_S * 1000,
        )
        shown = await tab.evaluate(f"window.__hw.fills[{key!r}]") / 1000
        (rises if level > previous else falls).append(shown - committed)
        risen = (site, level) if level > 0 else None
    return rises, falls


async def site_charts(
    context: BrowserContext, site: Site, repeats: int
) -> tuple[list[float], dict[str, Any]]:
    """Seconds from navigation to the site's 30-day chart drawn, ``repeats`` times.

    Also the phases of the slowest.
    """
    times: list[float] = []
    slowest: dict[str, Any] = {}
    for _ in range(repeats):
        tab, seen = await open_tab(context, f"/#/site/{site.site_id}?period=30d", "site")
        await tab.close()
        if seen["canvases"] < 1 or seen["points"] != 720:
            msg = f"the 30-day chart showed {seen['canvases']} canvases, {seen['points']} points"
            raise RuntimeError(msg)
        if not times or seen["frame_ms"] / 1000 > max(times):
            slowest = phases("site", seen)
        times.append(seen["frame_ms"] / 1000)
    return times, slowest


async def in_browser(
    url: str, viewer: str, rig: Rig, args: argparse.Namespace, rng: random.Random
) -> dict[str, Any]:
    """Sign in once, then the three measurements; every page error fails the run."""
    faults: list[str] = []
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            context = await browser.new_context(
                viewport={"width": 1366, "height": 768}, base_url=url
            )
            context.on(
                "page",
                lambda tab: tab.on("pageerror", lambda error: faults.append(f"uncaught: {error}")),
            )
            await context.add_init_script(WATCH)
            first = await context.new_page()
            await first.goto("/")
            await first.locator("#token").fill(viewer)
            await first.locator("#token").press("Enter")
            await first.wait_for_function("() => window.__hw?.ready.overview")
            await first.close()
            say(f"overview loads ({args.loads})")
            loads, tab, load_phases = await overview_loads(
                context, args.loads, len(rig.sites), len(rig.alarmed)
            )
            say(f"level changes ({args.changes})")
            rises, falls = await level_changes(tab, rig.store, rig.quiet, args.changes, rng)
            await tab.close()
            say(f"30-day charts ({args.charts})")
            charts, chart_phases = await site_charts(context, rig.chart, args.charts)
            await context.close()
        finally:
            await browser.close()
    if faults:
        raise RuntimeError(f"the page threw: {faults[:3]}")
    return {
        "loads": loads,
        "rises": rises,
        "falls": falls,
        "charts": charts,
        "load_phases": load_phases,
        "chart_phases": chart_phases,
    }


@dataclass
class Rig:
    """The seeded county of one run."""

    sites: list[Site]
    alarmed: list[Site]
    quiet: list[Site]
    chart: Site
    store: Store


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Seed, start the fleet, measure; the record (without ``met``) on failure too."""
    rng = random.Random(SEED)
    sites = [Site.numbered(i, rng) for i in range(args.sites)]
    alarmed = rng.sample(sites, args.alarms)
    alarmed_ids = {s.site_id for s in alarmed}
    quiet = [s for s in sites if s.site_id not in alarmed_ids]
    result: dict[str, Any] = {
        "sites": args.sites,
        "active_alarms": args.alarms,
        "changes": args.changes,
        "chart_readings": CHART_DAYS * 86400 // READING_STEP_S,
        "seed": SEED,
    }
    with contextlib.ExitStack() as stack:
        work = (
            args.keep
            if args.keep
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-console-")))
        )
        data_dir = work / "fleet"
        data_dir.mkdir(parents=True)
        say(f"seeding {args.sites} sites, {args.alarms} alarms, 30 days of readings")
        start = time.perf_counter()
        store, viewer, _levels = seed_fleet(data_dir / "fleet.sqlite", sites, alarmed, rng)
        result["seed_s"] = round(time.perf_counter() - start, 1)
        stack.callback(store.repository.close)
        rig = Rig(sites, alarmed, quiet, alarmed[0] if alarmed else sites[0], store)
        port = free_port()
        stack.enter_context(
            fleet_process(data_dir, port, "--log-level", "warning", start_s=FLEET_START_S)
        )
        url = f"http://127.0.0.1:{port}"
        say("baseline REST calls")
        result["baseline_s"] = await baseline(url, viewer, rig.chart, args.loads)
        measured = await in_browser(url, viewer, rig, args, rng)
    changes = measured["rises"] + measured["falls"]
    result["overview_load_s"] = stats(measured["loads"])
    result["overview_load_s"]["first"] = round(measured["loads"][0], 3)
    result["level_change_s"] = stats(changes)
    result["level_change_s"]["rises"] = stats(measured["rises"])
    result["level_change_s"]["falls"] = stats(measured["falls"])
    result["chart_30d_s"] = stats(measured["charts"])
    result["slowest_phases_ms"] = {
        "overview": measured["load_phases"],
        "chart_30d": measured["chart_phases"],
    }
    base = result["baseline_s"]
    result["overview_load_vs_bare_sites"] = round(
        result["overview_load_s"]["median"] / base["sites_s"], 1
    )
    result["chart_30d_vs_bare_readings"] = round(
        result["chart_30d_s"]["median"] / base["readings_30d_s"], 1
    )
    result["targets"] = {
        "overview_load_s": TARGET_LOAD_S,
        "level_change_p99_s": TARGET_CHANGE_P99_S,
        "chart_30d_s": TARGET_CHART_S,
    }
    result["met"] = {
        "overview_load": result["overview_load_s"]["max"] <= TARGET_LOAD_S,
        "level_change": result["level_change_s"]["p99"] <= TARGET_CHANGE_P99_S,
        "chart_30d": result["chart_30d_s"]["max"] <= TARGET_CHART_S,
    }
    return result


def main() -> None:
    """Parse the options, run, print the JSON record last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--alarms", type=int, default=50, help="active alarms (≤ sites / 2)")
    parser.add_argument("--changes", type=int, default=50, help="level changes to time")
    parser.add_argument("--loads", type=int, default=5, help="overview loads to time")
    parser.add_argument("--charts", type=int, default=5, help="30-day charts to time")
    parser.add_argument(
        "--quick", action="store_true", help="100 sites, 10 alarms, 10 changes, 2 loads, 2 charts"
    )
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it")
    args = parser.parse_args()
    if args.quick:
        args.sites, args.alarms, args.changes, args.loads, args.charts = 100, 10, 10, 2, 2
    if not 1 <= args.alarms <= args.sites // 2 or min(args.changes, args.loads, args.charts) < 1:
        parser.error("need 1 <= --alarms <= --sites / 2 and at least one change, load and chart")
    if not CHROMIUM.exists():
        parser.error("needs Debian's chromium: apt-get install chromium")
    emit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
