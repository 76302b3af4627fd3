"""The gateway and its siren node together: heartbeat, SIGKILL during a storm, take-over.

The node's firmware logic runs behind a socat pty; the real agent polls it over RTU.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from drivers.clock import ScaledClock
from hardware_sim.harness.agent import SimSite, events
from hardware_sim.harness.waiting import wait_for
from hardware_sim.scenarios import DesignStorm
from hardware_sim.siren_node import serve_siren_node

ORIGIN = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
SPEED = 120.0
HEARTBEAT_TIMEOUT_S = 120.0
FALLBACK_MM = 10.0

SITE = """
[site]
id = "node-village"

[agent]
reassert_s = 1

[[bus]]
name = "rs485"
kind = "serial"
device = "{agent_end}"
baudrate = 9600

[[device]]
name = "node"
bus = "rs485"
profile = "siren_node"
unit_id = 20
poll_interval_s = 20
timeout_s = 0.3

[[siren_node]]
device = "node"
heartbeat_timeout_s = 120
fallback_rain_mm = 10
fallback_window_s = 3600
mm_per_tip = 0.2
fallback_level = "red"

[[rule]]
id = "node_rain"
kind = "rain_windows"
channel = "node.rain_total"
windows = {{ "1h" = {{ yellow = {yellow}, red = {red} }} }}

[[actuator]]
id = "siren"
device = "node"
patterns = {{ on = ["siren"] }}

[actions]
red = {{ siren = "on" }}
"""


def make_clock() -> ScaledClock:
    return ScaledClock(SPEED, origin=ORIGIN, anchor=round(time.time(), 3))


def storm() -> DesignStorm:
    # About 20 mm in the wettest hour: over the node's 10 mm well before it ends.
    return DesignStorm(ORIGIN + 60, 7200, 30.0, step_s=300, seed=5)


async def test_while_the_agent_runs_the_node_obeys_it_and_never_sounds_by_itself(tmp_path):
    clock = make_clock()
    rain = storm()
    async with serve_siren_node(clock, rain.cumulative_mm) as (bus, node):
        site = SimSite(clock, None, tmp_path, SITE.format(agent_end=bus.device, yellow=8, red=14))
        await site.start_agent()
        try:
            # Red at 14 mm in the hour: the agent commands the siren on.
            await wait_for(lambda: node.siren, 120, "the siren on the agent's command")
            assert node.node.fallback.activations == 0
            assert node.node.siren_command is True
            # The node's own 10 mm are long passed; give it several heartbeat timeouts.
            since = clock.now()
            await wait_for(lambda: clock.now() > since + 3 * HEARTBEAT_TIMEOUT_S, 60, "time")
        finally:
            await site.kill_all()
    assert node.node.fallback.activations == 0
    assert all(change.value for change in node.siren_log)  # never switched off meanwhile


async def test_sigkill_in_a_storm_the_node_sounds_alone_and_the_agent_takes_over_without_a_gap(
    tmp_path,
):
    clock = make_clock()
    rain = storm()
    # The agent's own thresholds are out of reach: any siren now is the node's doing.
    text = SITE.format(agent_end="{agent_end}", yellow=500, red=900)
    async with serve_siren_node(clock, rain.cumulative_mm) as (bus, node):
        site = SimSite(clock, None, tmp_path, text.replace("{agent_end}", bus.device))
        try:
            agent = await site.start_agent()
            await wait_for(
                lambda: node.node.heartbeat.last_ms > 0, 60, "a heartbeat from the agent"
            )
            killed_at = clock.now()
            agent.kill()
            await agent.process.wait()
            await wait_for(lambda: node.siren, 600 / SPEED + 120, "the node's own siren")
            sounded_at = node.siren_log[-1].sim_time

            # Its own gauge counts 0.2 mm tips and may run up to 1/60 of the window ahead of
            # the true sum; it must not sound before either condition could hold, and must
            # sound within one rain sample (1 s) of both holding for sure.
            def first(condition):
                return next(
                    t for t in range(int(killed_at) - 3600, int(sounded_at) + 3600) if condition(t)
                )

            rain_surely = first(lambda t: rain.window_sum_mm(t, 3600) >= FALLBACK_MM + 0.2)
            assert rain.window_sum_mm(sounded_at, 3600) >= FALLBACK_MM * 59 / 60 - 0.2
            assert (
                sounded_at >= killed_at + HEARTBEAT_TIMEOUT_S - 20 - 1
            )  # last beat <= 1 poll early
            step = 0.05 * SPEED  # the simulated node steps every few real milliseconds
            latest = max(killed_at + HEARTBEAT_TIMEOUT_S, rain_surely) + 1 + step
            assert sounded_at <= latest
            ons_before_restart = len(node.siren_log)
            restarted = await site.start_agent()
            took_over = lambda: any(  # noqa: E731
                e["kind"] == "siren_node_fallback" for e in events(restarted.data_dir)
            )
            await wait_for(took_over, 60, "the agent noticing the node's fallback")
            await wait_for(lambda: node.node.siren_command, 30, "the agent commanding the siren")
            await wait_for(lambda: not node.node.fallback.sounding, 30, "the fallback handed over")
            await restarted.stop()
        finally:
            await site.kill_all()
    # The relay never dropped between the node's fallback and the agent's command.
    assert node.siren_log[ons_before_restart - 1 :] == node.siren_log[-1:]
    assert node.siren is True
    assert node.node.fallback.end == 1  # ended by the gateway's siren write
    levels = [e["level"] for e in events(restarted.data_dir, "actuation")]
    assert levels[0] == 4  # red from the node's fallback, before anything else
