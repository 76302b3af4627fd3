"""A restart never silences a siren the stored alarm level says is sounding.

Found by ``bench/chaos.py kill``: the agent was SIGKILLed after storing the alarm event a
reading raised but before that reading was committed. On restart the replayed history
came out lower than the stored level, and the siren relay was switched off until the next
reading raised the level again. Here the store holds the alarm event and no reading at
all; the relay holds its coil as relays do; the restarted agent must keep it on.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.store import LocalStore
from hardware_sim.harness.agent import events, sim_site
from hardware_sim.harness.uplink import PROFILES, SITE, gateway_marks, make_clock, storm_station
from hardware_sim.harness.waiting import wait_for

#: The test site without an uplink: this is about the gateway alone.
LOCAL_SITE = SITE[: SITE.index("[uplink]")] + SITE[SITE.index("[[bus]]") :]
STROBE = PROFILES["relay_module_8ch"].channel("relay2").address


async def test_a_restart_keeps_the_siren_at_the_stored_level_without_its_readings(
    tmp_path: Path,
) -> None:
    clock = make_clock(60)
    devices = storm_station(clock, None)  # no rain now: only the stored event says blue
    relays = devices[2]
    relays.set_value("relay2", 1)  # the strobe the agent switched on before it died
    gateway = tmp_path / "gw"
    async with LocalStore(gateway) as store:
        detail = {"from": "normal", "to": "blue", "kind": "rise", "metric": 7.2, "detail": ""}
        store.add_event(clock.now() - 60, "alarm", "rain_1h", 1, detail)
        assert await store.write_events() == 1
    switched = len(relays.coil_log)
    async with sim_site(tmp_path, devices, LOCAL_SITE, clock) as site:
        agent = await site.start_agent("gw")
        # A few poll cycles after the restart (hold_s is 1800 simulated s, 30 s real).
        await wait_for(lambda: gateway_marks(gateway)["readings"][0] >= 16, 60, "four polls")
        assert await agent.stop() == 0
    assert relays.coil(STROBE)
    assert [c for c in relays.coil_log[switched:] if not c.value] == []
    assert [e["to"] for e in events(gateway, "actuation")] == ["blue"]
