"""The random-kill campaign of ``bench/chaos.py kill``: SIGKILLs in a storm, then a ledger.

One gateway runs as in the field: a simulated station on Modbus TCP (rain gauge, creek
radar, siren relay module), a real ``edge run``, a real mosquitto with the fleet's access
files and ``fleet serve``, on a fast simulated clock through a series of design storms
whose alarm level rises to red and falls again. Each trial waits a random (seeded) time,
then SIGKILLs the agent, the fleet or the broker, or SIGKILLs the agent or the fleet and
restarts it with its hold-before-commit fault hook so that the next kill lands inside a
commit (the agent's store, the fleet's ingest). What was killed is started again and
the storm goes on.

At the end the agent is stopped, ``edge uplink drain`` empties its backlog, and the
gateway's store is compared row by row with the fleet's database: readings as (seq, time,
channel, value, quality), events as (seq, time, kind, subject, level, detail). The relay
module's own coil log is compared with the actuation events the gateway stored: a siren
outage is a coil the current level's pattern needs switching off before the level lets it.

It only ever signals processes it started itself, and leaves none running.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: this checkout's packages, harness included
    sys.path.insert(0, str(REPO))

from hardware_sim.device import CoilChange, SimulatedDevice  # noqa: E402
from hardware_sim.harness.agent import AgentProcess, SimSite, sim_site  # noqa: E402
from hardware_sim.harness.uplink import (  # noqa: E402
    EDGE,
    ORIGIN,
    PROFILES,
    SITE,
    BrokerProcess,
    FleetProcess,
    enroll,
    gateway_marks,
    make_clock,
    storm_station,
)
from hardware_sim.harness.waiting import wait_for  # noqa: E402
from hardware_sim.scenarios import DesignStorm  # noqa: E402
from ota.crash_points import crash_test_env  # noqa: E402

#: What a trial can kill. ``..._in_commit`` kills the part, restarts it with its fault
#: hook and kills it again while it holds a transaction open, just before COMMIT: the
#: fleet an ingest commit, the agent a commit of readings to its store.
TARGETS = ("agent", "fleet", "broker", "agent_in_commit", "fleet_in_commit")
#: The test site without the red latch, so the level falls after each storm and the
#: siren goes off and on again many times in one campaign.
KILL_SITE = SITE.replace('latch_from = "red"\n', "")
#: A storm every this many simulated seconds; each lasts two hours, peaking at 40 mm/h
#: (the site's red is 30 mm in an hour), and the level falls in the gaps between.
STORM_PERIOD_S = 4 * 3600.0
STORM_DURATION_S = 2 * 3600.0
#: Relay coil addresses per siren pattern, from the site's ``[[actuator]]``.
RELAYS = PROFILES["relay_module_8ch"]
PATTERN_COILS = {
    "strobe": frozenset({RELAYS.channel("relay2").address}),
    "warble": frozenset({RELAYS.channel(c).address for c in ("relay1", "relay2")}),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """How a campaign runs."""

    trials: int
    seed: int
    speed: float = 120.0
    #: Real seconds of storm before each kill, drawn uniformly from this range.
    wait_s: tuple[float, float] = (0.5, 3.0)
    #: Real seconds a killed part stays down, drawn uniformly from this range.
    down_s: tuple[float, float] = (0.0, 1.5)


@dataclass
class Ledger:
    """One stream compared between the gateway and the fleet."""

    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    changed: int = 0
    unknown: int = 0  # rows at the fleet under a seq the gateway never stored


@dataclass
class Campaign:
    """The running parts and what the trials did."""

    tmp: Path
    plan: Plan
    rng: random.Random
    broker: BrokerProcess
    fleet: FleetProcess
    site: SimSite
    agent: AgentProcess
    gateway_id: str
    kills: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TARGETS, 0))

    async def trial(self, number: int, target: str) -> None:
        """Wait a random moment, kill ``target``, start it again; wait until it works."""
        await asyncio.sleep(self.rng.uniform(*self.plan.wait_s))  # the random moment
        down = self.rng.uniform(*self.plan.down_s)
        progress(f"trial {number}: SIGKILL {target}, down {down:.2f} s")
        if target in ("agent", "agent_in_commit"):
            stored = gateway_marks(self.agent.data_dir)["readings"][0]
            self.agent.kill()
            await self.agent.process.wait()
            await asyncio.sleep(down)  # the outage itself, not synchronisation
            if target == "agent_in_commit":
                self.kills["agent"] += 1
                marker = self.tmp / f"holding-{number}"
                env = crash_test_env("edge.store.commit", marker)
                self.agent = await self.site.start_agent("gw", env=env)
                await wait_for(marker.exists, 60, "the agent inside a readings commit")
                self.agent.kill()  # readings written, not committed
                await self.agent.process.wait()
            self.agent = await self.site.start_agent("gw")
            await wait_for(
                lambda: gateway_marks(self.agent.data_dir)["readings"][0] > stored,
                60,
                "the restarted agent to store readings",
            )
        elif target == "broker":
            assert self.broker.mosquitto is not None
            self.broker.mosquitto.process.kill()
            await asyncio.to_thread(self.broker.mosquitto.process.wait)
            await asyncio.sleep(down)
            await asyncio.to_thread(self.broker.start)
        else:
            await asyncio.to_thread(self.fleet.kill)
            await asyncio.sleep(down)
            if target == "fleet_in_commit":
                self.kills["fleet"] += 1
                marker = self.tmp / f"holding-{number}"
                await asyncio.to_thread(
                    self.fleet.start, **crash_test_env("fleet.ingest.commit", marker)
                )
                await wait_for(marker.exists, 60, "the fleet inside an ingest commit")
                await asyncio.to_thread(self.fleet.kill)  # rows written, not committed
            await asyncio.to_thread(self.fleet.start)
        self.kills[target] += 1


def progress(message: str) -> None:
    """One line of progress on stderr (stdout ends with the JSON result)."""
    print(f"[chaos kill {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def deck(rng: random.Random, trials: int) -> list[str]:
    """Targets for ``trials`` trials: each round holds every target once, shuffled.

    So even three trials kill three different parts, and a long campaign kills each
    about equally often, in an order nobody chose.
    """
    order: list[str] = []
    while len(order) < trials:
        round_ = list(TARGETS)
        rng.shuffle(round_)
        order += round_
    return order[:trials]


def storm_rain(seed: int, storms: int) -> Callable[[float], float]:
    """Cumulative rain (mm) of ``storms`` design storms, one per ``STORM_PERIOD_S``."""
    series = [
        DesignStorm(
            ORIGIN + 600 + k * STORM_PERIOD_S, STORM_DURATION_S, 40.0, step_s=300, seed=seed + k
        )
        for k in range(storms)
    ]
    return lambda t: sum(s.cumulative_mm(t) for s in series)


# --- the ledger ---------------------------------------------------------------------------------


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


READINGS_SQL = (
    "SELECT r.seq, r.ts, c.name, r.value, r.quality FROM readings r "
    "JOIN channels c ON c.id = r.channel"
)
EVENTS_SQL = "SELECT e.seq, e.ts, e.kind, e.subject, e.level, e.detail FROM events e"
#: The same at the fleet, for one gateway.
FLEET_SQL = {
    "readings": f"{READINGS_SQL} JOIN gateways g ON g.num = r.gw WHERE g.id = ?",
    "events": f"{EVENTS_SQL} JOIN gateways g ON g.num = e.gw WHERE g.id = ?",
}


def _rows(db: sqlite3.Connection, sql: str, args: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    rows = db.execute(sql, args).fetchall()
    if sql.startswith(EVENTS_SQL):  # detail as parsed JSON: key order is not a change
        return [(*row[:5], json.dumps(json.loads(row[5]), sort_keys=True)) for row in rows]
    return rows


def compare(ours: Iterable[tuple[Any, ...]], theirs: Iterable[tuple[Any, ...]]) -> Ledger:
    """Rows (seq first) the gateway stored against those the fleet stored.

    Lost: a gateway seq the fleet lacks. Changed: same seq, other content. Duplicated: a
    row the fleet holds more than once, under one seq or under two (same content but the
    seq). Unknown: a fleet seq the gateway never stored.
    """
    gateway = {row[0]: row[1:] for row in ours}
    fleet_rows = list(theirs)
    fleet = {row[0]: row[1:] for row in fleet_rows}
    distinct = {row[1:] for row in fleet_rows}
    return Ledger(
        stored=len(gateway),
        lost=len(gateway.keys() - fleet.keys()),
        duplicated=len(fleet_rows) - len(distinct),
        changed=sum(1 for seq, row in gateway.items() if seq in fleet and fleet[seq] != row),
        unknown=len(fleet.keys() - gateway.keys()),
    )


def ledgers(gateway_dir: Path, fleet_dir: Path, gateway_id: str) -> dict[str, Ledger]:
    """Readings and events of one gateway, its store against the fleet's database."""
    result = {}
    with (
        contextlib.closing(_ro(gateway_dir / "store.sqlite")) as ours,
        contextlib.closing(_ro(fleet_dir / "fleet.sqlite")) as theirs,
    ):
        for stream, sql in (("readings", READINGS_SQL), ("events", EVENTS_SQL)):
            fleet_rows = _rows(theirs, FLEET_SQL[stream], (gateway_id,))
            result[stream] = compare(_rows(ours, sql), fleet_rows)
    return result


# --- the siren --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outage:
    """A coil the alarm level needed, off from ``start`` to ``end`` (simulated seconds)."""

    coil: int
    start: float
    end: float

    @property
    def seconds(self) -> float:
        """How long it lasted."""
        return self.end - self.start


def needed_coils(gateway_dir: Path) -> list[tuple[float, frozenset[int]]]:
    """(time, coils the siren pattern needs from then on), from the stored actuation events."""
    with contextlib.closing(_ro(gateway_dir / "store.sqlite")) as db:
        rows = db.execute(
            "SELECT ts, detail FROM events WHERE kind = 'actuation' ORDER BY seq"
        ).fetchall()
    changes = []
    for ts, detail in rows:
        pattern = json.loads(detail)["patterns"].get("siren")
        changes.append((float(ts), PATTERN_COILS.get(pattern or "", frozenset())))
    return changes


def siren_outages(
    needed: list[tuple[float, frozenset[int]]], coil_log: list[CoilChange], end: float
) -> list[Outage]:
    """Every time a needed coil dropped out while the level still needed it.

    A coil is switched after the level changes, so a coil not yet on when the level rises
    is the actuation delay, not an outage: an outage starts when a coil that is needed
    and on goes off, and lasts until it is on again or the level stops needing it.
    """
    timeline: list[tuple[float, int, Any]] = [(t, 0, coils) for t, coils in needed]
    timeline += [(c.sim_time, 1, c) for c in coil_log]
    timeline.sort(key=lambda item: (item[0], item[1]))  # a level change first at a tie
    wanted: frozenset[int] = frozenset()
    dropped: dict[int, float] = {}
    outages = []
    for t, kind, item in timeline:
        if kind == 0:
            wanted = item
            for coil in [c for c in dropped if c not in wanted]:
                outages.append(Outage(coil, dropped.pop(coil), t))
        elif item.value:
            if item.address in dropped:
                outages.append(Outage(item.address, dropped.pop(item.address), t))
        elif item.address in wanted:
            dropped[item.address] = t
    outages += [Outage(coil, start, end) for coil, start in dropped.items()]
    return outages


def siren_on_s(needed: list[tuple[float, frozenset[int]]], end: float) -> float:
    """Simulated seconds the level needed the siren on (none when the level never moved)."""
    total = 0.0
    if not needed:
        return total
    for (t, coils), (t_next, _) in zip(needed, [*needed[1:], (end, frozenset())], strict=True):
        if coils:
            total += t_next - t
    return total


# --- the campaign -------------------------------------------------------------------------------


async def run_campaign(plan: Plan, tmp: Path) -> dict[str, Any]:
    """Run ``plan.trials`` kills in one long storm; the figures as a JSON-ready dict."""
    rng = random.Random(plan.seed)
    clock = make_clock(plan.speed)
    # Enough storms for a generous 15 real seconds per trial, and two more.
    storms = int(plan.trials * 15 * plan.speed / STORM_PERIOD_S) + 2
    rain = SimulatedDevice(
        PROFILES["dfrobot_sen0575"],
        192,
        clock,
        {"rain_total": storm_rain(plan.seed, storms)},
        values={"window_hours": 1},
    )
    devices = [rain, *storm_station(clock, None)[1:]]  # the test station's creek and relays
    relays = devices[2]
    started = time.monotonic()
    broker = BrokerProcess(tmp / "fleet", tmp / "mosquitto")
    await asyncio.to_thread(broker.start)
    fleet = FleetProcess(tmp / "fleet", broker)
    try:
        await asyncio.to_thread(fleet.start)
        gateway_id = await asyncio.to_thread(enroll, tmp / "gw", fleet)
        async with sim_site(tmp, devices, KILL_SITE, clock) as site:
            agent = await site.start_agent("gw")
            await wait_for(
                lambda: gateway_marks(agent.data_dir)["readings"][1] > 0,
                60,
                "the first acknowledged batch",
            )
            progress(f"seed {plan.seed}: {plan.trials} trials at {plan.speed:g}x")
            campaign = Campaign(tmp, plan, rng, broker, fleet, site, agent, gateway_id)
            for number, target in enumerate(deck(rng, plan.trials), start=1):
                await campaign.trial(number, target)
            await asyncio.sleep(rng.uniform(*plan.wait_s))  # storm after the last restart
            progress("stopping the agent and draining its backlog")
            code = await campaign.agent.stop()
            end = clock.now()
        drained = await asyncio.to_thread(
            subprocess_run,
            [*EDGE, "uplink", "drain", "-d", str(tmp / "gw"), "--timeout", "120"],
        )
        streams = ledgers(tmp / "gw", fleet.data_dir, gateway_id)
        needed = needed_coils(tmp / "gw")
        outages = siren_outages(needed, relays.coil_log, end)
    finally:
        fleet.kill()
        broker.stop()
    longest = max(outages, key=lambda o: o.seconds, default=None)
    lost = {f"{s}_{k}": getattr(streams[s], k) for s in streams for k in ("lost", "duplicated")}
    changed = {f"{s}_changed": streams[s].changed for s in streams}
    zero = all(v == 0 for v in (*lost.values(), *changed.values())) and not any(
        streams[s].unknown for s in streams
    )
    return {
        "benchmark": "chaos_kill",
        "seed": plan.seed,
        "speed": plan.speed,
        "trials": plan.trials,
        "kills": campaign.kills,  # an ..._in_commit trial also kills its part at random
        "sigkills": sum(campaign.kills.values()),
        "simulated_h": round((end - ORIGIN) / 3600, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "agent_exit_status": code,
        "drain_ok": drained == 0,
        "readings": streams["readings"].__dict__,
        "events": streams["events"].__dict__,
        **lost,
        **changed,
        "level_changes": len(needed),
        "coil_changes": len(relays.coil_log),
        "siren_needed_s": round(siren_on_s(needed, end), 1),
        "siren_outages": len(outages),
        "longest_siren_outage_s": round(longest.seconds, 3) if longest else 0.0,
        "longest_siren_outage_at": longest.start if longest else None,
        "meets_target": zero and not outages and drained == 0 and code == 0,
    }


def subprocess_run(command: list[str]) -> int:
    """Run ``command`` to completion, its output on stderr; the exit status."""
    import subprocess  # noqa: PLC0415

    return subprocess.run(command, stdout=sys.stderr, check=False, timeout=300).returncode


def kill(args: argparse.Namespace) -> dict[str, Any]:
    """``bench/chaos.py kill``: the campaign in a fresh temporary directory."""
    plan = Plan(trials=args.trials, seed=args.seed, speed=args.speed)
    with tempfile.TemporaryDirectory(prefix="hw-chaos-kill-") as tmp:
        return asyncio.run(run_campaign(plan, Path(tmp)))
