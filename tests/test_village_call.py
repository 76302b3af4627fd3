"""叫应 at a gateway cut off from the county: it texts the village itself and takes answers.

The real agent (``edge run``, not enrolled, so nothing reaches a county) against simulated
Modbus devices over TCP and the simulated cellular modem on a socat pty pair: a red water
level is texted to the village tier through the modem after the grace period; a reply SMS
and a press of the confirm button are each recorded once, durably, as events (which the
uplink carries to the fleet exactly once with the others; see tests/test_callans.py for the
fleet's side). The last test takes the broker away from an enrolled gateway and checks
that its village answers reach the real fleet once when it returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.clock import ManualClock, ScaledClock
from drivers.profiles import builtin_profiles
from edge_agent.store import LocalStore
from edge_agent.village_call import VillageCaller, open_modem
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import events, readings, sim_site
from hardware_sim.harness.site_toml import CREEK_LEVEL_RULE, CREEK_RADAR, SIREN_RELAYS, tcp_site
from hardware_sim.harness.uplink import (
    SITE_ID,
    assert_exactly_once,
    drain,
    fleet_and_gateway,
    fleet_caught_up,
    gateway_marks,
)
from hardware_sim.harness.waiting import wait_for
from hardware_sim.modem import SimulatedModem
from hardware_sim.pty_link import PtyPair
from protocol.events import StandingForecast
from site_schema.site_config import parse_site_text
from site_schema.site_errors import SiteConfigError
from site_schema.village_call_config import VillageCallSpec, VillagePerson

PROFILES = builtin_profiles()
ORIGIN = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
MONITOR = "+8613800000001"
HEAD = "+8613800000002"
STRANGER = "+8613999999999"
MONITOR_DOMESTIC = "13800000001"

SITE = tcp_site(
    "creek-village",
    [CREEK_RADAR, dataclasses.replace(SIREN_RELAYS, channels=("relay1", "input1"))],
    poll_s=30,
    after_devices=[
        CREEK_LEVEL_RULE,
        """[village_call]
modem = "MODEM"
from_level = "orange"
grace_s = 120
repeat_s = 600
poll_s = 5
confirm = ["relays.input1"]
country_code = "86"

[[village_call.person]]
name = "王建国"
role = "群测群防员"
mobile = "+8613800000001"

[[village_call.person]]
name = "张村长"
role = "村主任"
mobile = "+8613800000002"
""",
    ],
)


class Creek:
    """A water level the test raises and lowers, with a little ripple (never 'stuck')."""

    def __init__(self) -> None:
        self.level_mm = 800.0

    def __call__(self, t: float) -> float:
        return self.level_mm + 3 * math.sin(t / 97)


@pytest.fixture
async def modem(tmp_path: Path) -> AsyncIterator[tuple[SimulatedModem, Path]]:
    with PtyPair(tmp_path / "modem-agent", tmp_path / "modem-device") as pair:
        sim = SimulatedModem(pair.device_end)
        await sim.start()
        try:
            yield sim, pair.agent_end
        finally:
            await sim.stop()


def answers(data_dir: Path) -> list[dict[str, Any]]:
    return events(data_dir, "village_answer")


def sent(data_dir: Path) -> list[dict[str, Any]]:
    return [e for e in events(data_dir, "village_call") if e["status"] == "sent"]


async def test_cut_off_the_gateway_texts_the_village_and_a_reply_sms_answers_once(
    tmp_path: Path, modem: tuple[SimulatedModem, Path]
) -> None:
    sim, port = modem
    clock = ScaledClock(60, origin=ORIGIN)
    creek = Creek()
    devices = [
        SimulatedDevice(PROFILES["hlk_ld8001h"], 1, clock, {"water_level": creek}),
        SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock),
    ]
    text = SITE.replace("MODEM", str(port))
    async with sim_site(tmp_path, devices, text, clock) as site:
        agent = await site.start_agent()
        creek.level_mm = 3800.0
        raised = await wait_for(
            lambda: [e for e in events(agent.data_dir, "alarm") if e["level"] == 4], 60, "red"
        )
        await wait_for(lambda: len(sim.outbox) >= 2, 60, "the texts to the village")
        # Not before the grace period: the county had two minutes to take the alarm.
        first = min(e["ts"] for e in events(agent.data_dir, "village_call"))
        assert first >= raised[0]["ts"] + 120
        assert {m.number for m in sim.outbox} == {MONITOR, HEAD}
        assert all("红色预警" in m.text and "creek-village" in m.text for m in sim.outbox)

        def both_sent() -> list[dict[str, Any]] | None:
            recorded = sent(agent.data_dir)[:2]
            return recorded if len(recorded) == 2 else None

        calls = await wait_for(both_sent, 30, "both texts recorded as sent")
        assert {c["person"] for c in calls} == {"王建国 (village)", "张村长 (village)"}
        # The record names the person and a masked number, never the number itself.
        assert all(MONITOR not in str(c) and HEAD not in str(c) for c in calls)
        # `edge status` shows what the gateway is texting about, and that the modem works.
        shown = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "status", "-d", str(agent.data_dir), "--json",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(shown.communicate(), 60)
        assert shown.returncode == 0
        village = json.loads(out)["village_call"]
        assert (village["modem_error"], village["persons"]) == (None, 2)
        assert [(c["rule"], c["level"]) for c in village["calling"]] == [("creek", "red")]

        sim.deliver(STRANGER, "收到")  # not on the list: no answer
        # Shorter, different numbers that end like the monitor's stand for nobody.
        sim.deliver(MONITOR_DOMESTIC[1:], "收到")
        sim.deliver(MONITOR_DOMESTIC[2:], "收到")
        # Many networks report the sender in the domestic form; country_code = "86" says how
        # to read it.
        sim.deliver(MONITOR_DOMESTIC, "收到。")
        (answer,) = await wait_for(lambda: answers(agent.data_dir), 60, "the reply to count")
        assert (answer["person"], answer["via"]) == ("王建国 (village)", "sms reply")
        assert answer["alarm_seq"] == raised[0]["seq"]
        # Answered: no more texts, even after the repeat interval has passed twice.
        texts = len(sim.outbox)
        await wait_for(lambda: clock.now() > answer["ts"] + 1300, 60, "two repeat intervals")
        await wait_for(lambda: not sim.storage, 30, "the replies to be read and deleted")
        assert len(sim.outbox) == texts
        assert len(answers(agent.data_dir)) == 1
        log = agent.log.read_text()
        assert MONITOR not in log
        assert MONITOR_DOMESTIC not in log
        assert STRANGER not in log
        assert log.count("not on the village list") == 3
        assert await agent.stop() == 0


async def test_a_press_of_the_confirm_button_answers_and_a_restart_does_not_text_again(
    tmp_path: Path, modem: tuple[SimulatedModem, Path]
) -> None:
    sim, port = modem
    clock = ScaledClock(60, origin=ORIGIN)
    creek = Creek()
    relays = SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock)
    devices = [SimulatedDevice(PROFILES["hlk_ld8001h"], 1, clock, {"water_level": creek}), relays]
    text = SITE.replace("MODEM", str(port))
    async with sim_site(tmp_path, devices, text, clock) as site:
        agent = await site.start_agent()
        creek.level_mm = 3800.0
        await wait_for(lambda: len(sent(agent.data_dir)) >= 2, 90, "the texts to the village")
        texts = len(sim.outbox)
        # SIGKILL, as in a power cut: the texts sent are in the store, so none goes again
        # within the repeat interval after the restart.
        agent.kill()
        await agent.process.wait()
        restarted_at = clock.now()
        agent = await site.start_agent()
        await wait_for(
            lambda: [r for r in readings(agent.data_dir, "relays.input1") if r[0] > restarted_at],
            60,
            "the restarted agent to read the button",
        )
        relays.set_value("input1", 1.0)  # the village monitor presses confirm at the siren
        (answer,) = await wait_for(lambda: answers(agent.data_dir), 60, "the button to count")
        assert answer["via"] == "confirm button"
        assert answer["person"] == "village monitor at relays.input1"
        relays.set_value("input1", 0.0)
        assert len(sim.outbox) == texts
        assert await agent.stop() == 0


async def test_with_ring_s_each_text_is_followed_by_a_ring_and_its_outcome_is_recorded(
    tmp_path: Path, modem: tuple[SimulatedModem, Path]
) -> None:
    sim, port = modem
    sim.picks_up.add(HEAD)  # the village head picks up; the monitor sleeps through it
    clock = ScaledClock(60, origin=ORIGIN)
    creek = Creek()
    devices = [
        SimulatedDevice(PROFILES["hlk_ld8001h"], 1, clock, {"water_level": creek}),
        SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock),
    ]
    text = SITE.replace("MODEM", str(port)).replace("poll_s = 5\n", "poll_s = 5\nring_s = 40\n")
    async with sim_site(tmp_path, devices, text, clock) as site:
        agent = await site.start_agent()
        creek.level_mm = 3800.0

        def rang() -> list[dict[str, Any]]:
            return [e for e in events(agent.data_dir, "village_call") if e["status"] == "rang"]

        rings = await wait_for(lambda: rang()[:2] if len(rang()) >= 2 else None, 90, "two rings")
        outcomes = {r["person"]: r["detail"] for r in rings}
        assert outcomes == {"王建国 (village)": "not picked up", "张村长 (village)": "picked up"}
        # every ring follows that person's text, and every call was hung up
        assert [r.number for r in sim.rings[:2]] == [m.number for m in sim.outbox[:2]]
        # both texts went out before the first phone rang (a ring holds the modem)
        order = [c.split("=")[0][:6] for c in sim.commands if c.startswith(("AT+CMGS", "ATD"))]
        assert order[:3] == ["AT+CMG", "AT+CMG", "ATD+86"], order[:3]
        assert all(r.ended for r in sim.rings)
        unanswered = next(r for r in sim.rings if r.number == MONITOR)
        assert unanswered.checks >= 30  # rang its 40 s, looked at every second
        # picking up is not an answer: nobody has answered yet
        assert answers(agent.data_dir) == []
        assert MONITOR not in agent.log.read_text()
        assert await agent.stop() == 0


def test_a_village_call_table_is_checked_when_the_site_loads() -> None:
    base = SITE.replace("{port}", "1502").replace("MODEM", "/dev/ttyUSB2")
    assert parse_site_text(base, "site.toml").village_call is not None
    bad_number = base.replace('mobile = "+8613800000002"', 'mobile = "13800000002"')
    with pytest.raises(SiteConfigError) as caught:
        parse_site_text(bad_number, "site.toml")
    assert "E.164" in str(caught.value)
    assert "13800000002" not in str(caught.value)
    not_an_input = base.replace('confirm = ["relays.input1"]', 'confirm = ["creek.water_level"]')
    with pytest.raises(SiteConfigError, match="not a bool input"):
        parse_site_text(not_an_input, "site.toml")
    unpolled = base.replace('confirm = ["relays.input1"]', 'confirm = ["relays.input2"]')
    with pytest.raises(SiteConfigError, match="not polled"):
        parse_site_text(unpolled, "site.toml")
    twice = base.replace("+8613800000002", MONITOR)
    with pytest.raises(SiteConfigError, match="listed twice"):
        parse_site_text(twice, "site.toml")
    for code in ('"+86"', '"086"', '"8613"', "86"):
        bad_code = base.replace('country_code = "86"', f"country_code = {code}")
        with pytest.raises(SiteConfigError, match="country_code"):
            parse_site_text(bad_code, "site.toml")
    zone = base.replace('country_code = "86"', 'country_code = "86"\nutc_offset_h = 5.75')
    assert parse_site_text(zone, "site.toml").village_call.utc_offset_h == 5.75  # type: ignore[union-attr]
    far = base.replace('country_code = "86"', 'country_code = "86"\nutc_offset_h = 15')
    with pytest.raises(SiteConfigError, match="utc_offset_h"):
        parse_site_text(far, "site.toml")


async def test_answers_taken_during_a_broker_outage_reach_the_fleet_once_when_it_returns(
    tmp_path: Path, modem: tuple[SimulatedModem, Path]
) -> None:
    sim, port = modem
    clock = ScaledClock(60, origin=ORIGIN)
    lower, upper = Creek(), Creek()
    relays = SimulatedDevice(PROFILES["relay_module_8ch"], 10, clock)
    devices = [
        SimulatedDevice(PROFILES["hlk_ld8001h"], 1, clock, {"water_level": lower}),
        relays,
        SimulatedDevice(PROFILES["hlk_ld8001h"], 2, clock, {"water_level": upper}),
    ]
    upper_creek = """
[[device]]
name = "upper"
bus = "field"
profile = "hlk_ld8001h"
unit_id = 2
poll_interval_s = 30
timeout_s = 0.2
channels = ["water_level"]

[[rule]]
id = "upper_creek"
kind = "water_level"
channel = "upper.water_level"
thresholds = { blue = 1500, yellow = 2000, orange = 2500, red = 3500 }
hold_s = 600
"""
    text = (
        SITE.replace("MODEM", str(port))
        .replace('id = "creek-village"', f'id = "{SITE_ID}"')
        .replace("\n[village_call]", upper_creek + "\n[village_call]")
    )
    with fleet_and_gateway(tmp_path) as (broker, fleet, gateway_id):
        async with sim_site(tmp_path, devices, text, clock) as site:
            agent = await site.start_agent("gw")
            await wait_for(
                lambda: gateway_marks(agent.data_dir)["readings"][1] > 0, 60, "the uplink"
            )
            broker.stop()  # the county is out of reach from here on
            lower.level_mm = 3800.0
            await wait_for(lambda: len(sim.outbox) >= 2, 90, "the texts to the village")
            sim.deliver(MONITOR, "1")
            await wait_for(lambda: answers(agent.data_dir), 60, "the reply to count")
            upper.level_mm = 3800.0
            await wait_for(
                lambda: [
                    e for e in events(agent.data_dir, "alarm") if e["subject"] == "upper_creek"
                ],
                60,
                "the upper creek's alarm",
            )
            relays.set_value("input1", 1.0)
            await wait_for(lambda: len(answers(agent.data_dir)) == 2, 60, "the button to count")
            assert gateway_marks(agent.data_dir)["events"][1] < max(
                e["seq"] for e in answers(agent.data_dir)
            )  # nothing of this reached the fleet yet

            broker.start()
            await wait_for(
                lambda: fleet_caught_up(fleet.data_dir, gateway_id, agent.data_dir),
                90,
                "the fleet to catch up after the outage",
            )
            # The gateway told the fleet what its site file says (for the county's map).
            told = fleet.rest("GET", f"/api/v1/sites/{SITE_ID}")
            rules = {r["id"]: r for r in told["rules"]}
            assert rules["upper_creek"]["thresholds"]["red"] == 3500
            assert MONITOR not in json.dumps(told)  # the summary carries no person
            alarms = fleet.rest("GET", "/api/v1/alarms", params={"gateway_id": gateway_id})
            receipts = {
                a["rule"]: [(r["person"], r["via"], r["recorded_by"]) for r in a["receipts"]]
                for a in alarms
            }
            assert receipts == {
                "creek": [("王建国 (village)", "sms reply (at the gateway)", "gateway")],
                "upper_creek": [
                    (
                        "village monitor at relays.input1",
                        "confirm button (at the gateway)",
                        "gateway",
                    )
                ],
            }
            assert await agent.stop() == 0
        drain(agent.data_dir)
        figures = assert_exactly_once(fleet.data_dir, gateway_id, agent.data_dir)
        assert figures["events"] > 0


async def test_the_pause_between_rounds_ends_when_the_sites_clock_reaches_the_next_round(
    tmp_path: Path,
) -> None:
    """On a manual clock the pause follows the clock, not the wall (an hour is not waited)."""
    spec = VillageCallSpec(
        modem="/dev/ttyUSB3", baudrate=115200, from_level=3, grace_s=60.0, repeat_s=600.0,
        poll_s=3600.0, confirm=(), persons=(),
    )  # fmt: skip
    clock = ManualClock(ORIGIN)

    async def record(*_args: Any) -> int:
        raise AssertionError("a pause records nothing")

    caller = VillageCaller(
        spec, "site", LocalStore(tmp_path), clock, dict, record, lambda: open_modem(spec)
    )
    pause = asyncio.create_task(caller._pause())
    advanced = 0.0
    async with asyncio.timeout(5):
        while not pause.done():
            clock.advance(600.0)
            advanced += 600.0
            await asyncio.sleep(0)  # a turn of the loop for the pause, not a wait on time
    assert spec.poll_s <= advanced < 2 * spec.poll_s  # not before its time, nor an hour late


def beijing(t: float) -> str:
    """``t`` as a text tells it: month, day and time of day in 北京时间 (UTC+8)."""
    local = datetime.fromtimestamp(t + 8 * 3600, UTC)
    return f"{local.month}月{local.day}日{local:%H:%M}"


async def test_a_slope_forecast_red_is_followed_by_a_text_with_its_failure_time(
    tmp_path: Path, modem: tuple[SimulatedModem, Path]
) -> None:
    """The real modem driver on the simulated modem; the caller on a manual clock."""
    sim, port = modem
    spec = VillageCallSpec(
        modem=str(port), baudrate=115200, from_level=3, grace_s=60.0, repeat_s=600.0,
        poll_s=5.0, confirm=(), persons=(VillagePerson("王建国", "群测群防员", MONITOR),),
    )  # fmt: skip
    clock = ManualClock(ORIGIN)
    red_forecast = {
        "lead_h": 30.0,
        "failure_t": ORIGIN + 30 * 3600,
        "failure_t_low": ORIGIN + 21 * 3600,
        "failure_t_high": ORIGIN + 44 * 3600,
    }
    standing: dict[str, StandingForecast] = {}
    async with LocalStore(tmp_path / "data") as store:
        detail = {"from": "orange", "to": "red", "kind": "rise", "at": ORIGIN,
                  "forecast": red_forecast}  # fmt: skip
        await store.record_event(ORIGIN, "alarm", "slope_forecast", 4, detail)
        caller = VillageCaller(
            spec, "slope-road", store, clock, lambda: {"slope_forecast": 4},
            store.record_event, lambda: open_modem(spec), lambda: standing,
        )  # fmt: skip
        clock.advance(120.0)  # past the grace: the county has not taken the alarm
        async with open_modem(spec) as line:
            await caller.round(line, first=True)
            warning, words = [m.text for m in sim.outbox]
            assert "红色预警" in warning
            earliest, likely = beijing(ORIGIN + 21 * 3600), beijing(ORIGIN + 30 * 3600)
            assert words == f"滑坡预测：最早{earliest}，最可能{likely}（北京时间）。"  # noqa: RUF001
            # The rule's standing forecast, made after the red, is the one a repeat tells.
            standing["slope_forecast"] = StandingForecast(
                failure_t=ORIGIN + 28 * 3600, failure_t_low=ORIGIN + 24 * 3600, at=ORIGIN + 3600
            )
            clock.advance(600.0)
            await caller.round(line)
            assert len(sim.outbox) == 4
            assert f"最早{beijing(ORIGIN + 24 * 3600)}" in sim.outbox[3].text
    assert [e["status"] for e in sent(tmp_path / "data")] == ["sent", "sent"]
