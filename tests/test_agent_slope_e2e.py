"""A creeping slope that accelerates to failure: the agent warns in order, before it fails.

The extensometer follows an inverse-velocity (Fukuzono/Voight) slope with a known failure
time; the real agent polls it over Modbus TCP on a clock running 6000x.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from drivers.clock import ScaledClock
from drivers.profiles import builtin_profiles
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import events, sim_site
from hardware_sim.harness.waiting import wait_for
from hardware_sim.scenarios import CreepingSlope, ExtensometerProjection

ORIGIN = datetime(2026, 8, 1, tzinfo=UTC).timestamp()
ONSET = ORIGIN + 12 * 3600
FAILURE = ORIGIN + 48 * 3600

SITE = """
[site]
id = "slope-village"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = {port}

[[device]]
name = "ext"
bus = "field"
profile = "wire_extensometer"
poll_interval_s = 300
timeout_s = 0.2
channels = ["extension"]

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"
poll_interval_s = 300
timeout_s = 0.2
channels = ["relay1"]

# Improved tangent angle: 45 / 80 / 85 degrees for yellow / orange / red. The creep rate
# is the operator's estimate of the steady stage, a little above the measured 2 mm/day so
# that noise in steady creep does not read as acceleration.
[[rule]]
id = "slope_angle"
kind = "tangent_angle"
channel = "ext.extension"
window_s = 21600
eval_every_s = 300
creep_rate_mm_day = 2.5
thresholds = { blue = 30, yellow = 45, orange = 80, red = 85 }
hysteresis = 2
hold_s = 21600

# Inverse velocity: red when the predicted failure is within 6 hours.
[[rule]]
id = "slope_failure_time"
kind = "inverse_velocity"
channel = "ext.extension"
window_s = 10800
fit_window_s = 43200
eval_every_s = 300
min_r2 = 0.8
horizons_h = { orange = 24, red = 6 }
hold_s = 21600

[[actuator]]
id = "siren"
device = "relays"
patterns = { on = ["relay1"] }

[actions]
red = { siren = "on" }
"""


async def test_slope_levels_rise_in_order_before_failure_and_the_lead_time_is_reported(tmp_path):
    clock = ScaledClock(6000, origin=ORIGIN, anchor=round(time.time(), 3))
    slope = CreepingSlope.from_creep_rate(
        FAILURE, ONSET, 2.0, ORIGIN - 10 * 86400, noise_mm=0.02, seed=11
    )
    extensometer = SimulatedDevice(
        builtin_profiles()["wire_extensometer"], 3, clock,
        {"extension": ExtensometerProjection(slope).extension_mm},
    )  # fmt: skip
    relays = SimulatedDevice(builtin_profiles()["relay_module_8ch"], 10, clock)
    async with sim_site(tmp_path, [extensometer, relays], SITE, clock) as site:
        agent = await site.start_agent()
        await wait_for(lambda: relays.coil(0), 60, "the siren on a red slope alarm")
        await agent.stop()
    site_levels = [(e["ts"], e["level"]) for e in events(agent.data_dir, "actuation")]
    first_rise: dict[int, float] = {}
    for ts, level in site_levels:
        first_rise.setdefault(level, ts)
    assert [level for level in first_rise if level] == [1, 2, 3, 4]  # blue, yellow, orange, red
    assert all(t < FAILURE for t in first_rise.values())
    reds = [e for e in events(agent.data_dir, "alarm") if e["to"] == "red" and e["kind"] == "rise"]
    assert reds[0]["at"] < FAILURE
    predicted = [e for e in reds if e["subject"] == "slope_failure_time"]
    assert "predicted failure at" in predicted[0]["detail"]
    lead_h = (FAILURE - first_rise[4]) / 3600
    said = predicted[0]["detail"]
    print(f"red lead time: {lead_h:.2f} h before the known failure; agent said: {said}")
    assert lead_h > 0.5
