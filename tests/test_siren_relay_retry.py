"""A siren the relay module missed at the alarm's onset is tried again within seconds.

A real Modbus TCP relay board (the simulator's ``relay_module_8ch``) that is not yet
listening when the level rises, then comes up: the siren must sound soon after, not one
whole re-assertion period (here a minute) later.
"""

from __future__ import annotations

import time
from typing import Any

from drivers.bus import ModbusBus
from drivers.clock import ManualClock
from drivers.profiles import builtin_profiles
from edge_agent.actuation import Actuation
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.ports import free_port
from hardware_sim.harness.relay_site import relay_site, running_actuation
from hardware_sim.harness.waiting import wait_for
from hardware_sim.server import serve_tcp
from site_schema.site_config import parse_site_text

#: The re-assertion period of the site: far longer than the test waits for the siren.
REASSERT_S = 60


async def test_a_siren_write_that_failed_is_retried_long_before_the_next_reassertion() -> None:
    port = free_port()
    text = f"[agent]\nreassert_s = {REASSERT_S}\n" + relay_site(port, {"red": "none"})
    site = parse_site_text(text, "site.toml")
    assert site.actuation.reassert_s == REASSERT_S
    buses = {b.name: ModbusBus(b) for b in site.buses}
    events: list[tuple[Any, ...]] = []
    actuation = Actuation(site.actuation, buses, lambda *e: events.append(e))
    async with running_actuation(actuation, buses):
        actuation.set_level(4, "test")
        await wait_for(lambda: any(e[0] == "actuator_fault" for e in events), 10, "the fault")
        fault = next(e for e in events if e[0] == "actuator_fault")
        assert fault[1] == "siren"
        assert "cannot connect to bus field" in fault[3]["detail"]
        relays = SimulatedDevice(builtin_profiles()["relay_module_8ch"], 10, ManualClock(0.0))
        async with serve_tcp([relays], port=port):
            up = time.monotonic()
            await wait_for(lambda: relays.coil(0), 10, "the siren relay on")
            assert time.monotonic() - up < REASSERT_S / 4
            await wait_for(lambda: events[-1][0] == "actuator_ok", 10, "the actuator's recovery")
    assert [e[0] for e in events] == ["actuation", "actuator_fault", "actuator_ok"]
