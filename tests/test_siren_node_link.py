"""The gateway's link to a siren node owns its tasks: settings after a restart, heartbeat.

A simulated node (the board's firmware code behind a socat pty) on the agent's own
``ModbusBus``; the link runs as the agent runs it, one task whose TaskGroup holds the
heartbeat and the settings writer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from drivers.bus import ModbusBus
from drivers.clock import ManualClock
from drivers.device_config import DeviceConfig
from drivers.model import Quality, Reading
from drivers.profiles import builtin_profiles
from drivers.siren_node.registers import (
    DEFAULT_UNIT_ID,
    REG_FALLBACK_WINDOW_S,
    REG_HEARTBEAT,
    REG_HEARTBEAT_TIMEOUT_S,
)
from edge_agent.siren_node_link import SirenNodeLink
from hardware_sim.harness.waiting import wait_for
from hardware_sim.siren_node import serve_siren_node
from site_schema.siren_node import SirenNodeSpec

T0 = 1_700_000_000.0
PROFILE = builtin_profiles()["siren_node"]


def uptime(t: float, seconds: float) -> Reading:
    return Reading(t, "node.uptime_s", seconds, "s", Quality.OK, None)


async def test_a_node_restart_gets_its_settings_again_and_no_task_outlives_the_link() -> None:
    clock = ManualClock(T0)
    events: list[tuple[Any, ...]] = []
    async with serve_siren_node(clock) as (bus_config, node):
        bus = ModbusBus(bus_config)
        device = DeviceConfig("node", bus_config.name, PROFILE, DEFAULT_UNIT_ID, 10.0, 1.0)
        spec = SirenNodeSpec(device, heartbeat_timeout_s=300.0, fallback_window_s=1800.0)
        link = SirenNodeLink(spec, bus, clock, lambda *event: events.append(event))
        running = asyncio.create_task(link.run())
        try:
            await wait_for(lambda: node.node.config[REG_HEARTBEAT] == 1, 10, "the first beat")
            # The link's settings are not on the node (it powered up with its own) ...
            assert node.node.config[REG_HEARTBEAT_TIMEOUT_S] == 120
            link.observe([uptime(T0, 500.0)])
            link.observe([uptime(T0 + 10, 3.0)])  # ... and it has just restarted.
            await wait_for(
                lambda: node.node.config[REG_HEARTBEAT_TIMEOUT_S] == 300, 10, "the settings"
            )
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await bus.close()
    assert node.node.config[REG_FALLBACK_WINDOW_S] == 1800
    assert ("siren_node_restart", "node", None, {"uptime_s": 3.0}) in events
    # The heartbeat and the settings writer were the link's tasks and ended with it.
    assert not [t for t in asyncio.all_tasks() if t.get_name().endswith(" node")]
