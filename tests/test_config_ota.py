"""Configuration over the air on a real gateway: real mosquitto, fleet, agent and devices.

Good and broken configurations go through the fleet's REST API (stored, signed, published
retained); the bad documents a fleet would never sign (tampered, unsigned, another key)
are published straight to the broker. Evidence comes from the agent's own store (its
``ota`` events, which travel to the fleet exactly once), its site file and process, and
the fleet's record of each gateway's configuration state.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import aiomqtt

from edge_agent.config_state import Taking, candidate_path
from fleet.broker_files import FleetAccount
from fleet.repository import Role
from fleet.signing import SigningKey
from hardware_sim.harness.agent import AgentProcess, events, sim_site
from hardware_sim.harness.uplink import (
    ORIGIN,
    SITE,
    FleetProcess,
    fleet_and_gateway,
    make_clock,
    storm_station,
)
from hardware_sim.harness.waiting import wait_for
from hardware_sim.scenarios import DesignStorm
from ota.crash_points import crash_test_env
from ota.document import Document, DocumentKind, Target, sign_document


async def publish_config(fleet_dir: Path, port: int, gateway_id: str, envelope: bytes) -> None:
    """Publish ``envelope`` retained on the gateway's config topic, as the fleet does."""
    account = FleetAccount.load_or_create(fleet_dir)
    async with aiomqtt.Client(
        "127.0.0.1", port, username=account.username, password=account.password
    ) as client:
        await client.publish(f"hw/v1/{gateway_id}/config", envelope, qos=1, retain=True)


def config_doc(version: int, gateway_id: str, text: str) -> Document:
    """A configuration document for one gateway."""
    return Document(DocumentKind.CONFIG, version, Target((gateway_id,)), 1.0, {"site_toml": text})


def ota_reports(agent: AgentProcess) -> list[dict[str, Any]]:
    """The agent's configuration reports, oldest first."""
    return [e for e in events(agent.data_dir, "ota") if e["subject"] == "config"]


def report(agent: AgentProcess, version: int, state: str) -> dict[str, Any] | None:
    """The report of ``state`` for ``version``, once the agent has stored it."""
    return next(
        (r for r in ota_reports(agent) if r["version"] == version and r["state"] == state), None
    )


def starts(agent: AgentProcess) -> int:
    """How many times the agent started on this data directory."""
    return len(events(agent.data_dir, "agent_start"))


def post_config(fleet: FleetProcess, gateway_id: str, text: str) -> int:
    """Create a config for one gateway through REST; the signed document's version."""
    created = fleet.rest(
        "POST",
        "/api/v1/configs",
        Role.CONFIGURATOR,
        json={"gateway_id": gateway_id, "site_toml": text},
    )
    return int(created["version"])


def fleet_state(fleet: FleetProcess, gateway_id: str, version: int) -> dict[str, Any] | None:
    """The fleet's config state of the gateway once it reached a final state for ``version``."""
    state: dict[str, Any] = fleet.rest("GET", f"/api/v1/gateways/{gateway_id}/config")
    final = state["version"] == version and state["state"] in ("applied", "rejected", "rolled_back")
    return state if final else None


def site_text(port: int | None, replace: tuple[str, str] | None = None) -> str:
    """The test site with the simulator's port, optionally with one edit."""
    assert port is not None
    text = SITE.replace("{port}", str(port))
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    return text


async def test_a_good_configuration_is_applied_after_a_restart_in_place_keeping_alarms(
    tmp_path: Path,
) -> None:
    clock = make_clock(600)
    storm = DesignStorm(ORIGIN + 600, 7200, 60.0, step_s=300, seed=3)
    devices = storm_station(clock, storm)
    with fleet_and_gateway(tmp_path) as (broker, fleet, gateway_id):
        key = SigningKey.load_or_create(fleet.data_dir)
        async with sim_site(tmp_path, devices, SITE, clock) as site:
            assert site.bus is not None
            agent = await site.start_agent("gw")
            await wait_for(
                lambda: any(e["to"] == "red" for e in events(agent.data_dir, "alarm")),
                60,
                "the latched red alarm",
            )
            new_text = site_text(site.bus.port, ("reassert_s = 1", "reassert_s = 2"))
            version = post_config(fleet, gateway_id, new_text)

            applied = await wait_for(lambda: report(agent, version, "applied"), 60, "applied")
            assert report(agent, version, "delivered") is not None
            shown = await wait_for(lambda: fleet_state(fleet, gateway_id, version), 30, "fleet")
            assert shown["state"] == "applied"
            assert site.site_path.read_text() == new_text
            assert agent.process.returncode is None  # restarted in place: the same process
            assert starts(agent) == 2
            # The unchanged, latched rule is still red after the restart: nothing fell.
            rain = [e for e in events(agent.data_dir, "alarm") if e["subject"] == "rain_1h"]
            assert rain[-1]["to"] == "red"
            assert all(e["kind"] == "rise" for e in rain)
            assert devices[2].coil(0)  # the siren stayed on
            state = json.loads((agent.data_dir / "config_ota.json").read_text())
            assert state["installed_version"] == version
            assert state["confirming"] is None
            assert applied["reason"] is None

            # The retained document comes back after every reconnect: it is not applied
            # twice. The agent handles documents in order, so once the next config is
            # applied, the copy sent before it has been dealt with.
            copy = sign_document(config_doc(version, gateway_id, new_text), key)
            await publish_config(fleet.data_dir, broker.port, gateway_id, copy)
            newer = post_config(
                fleet, gateway_id, new_text.replace("reassert_s = 2", "reassert_s = 3")
            )
            await wait_for(lambda: report(agent, newer, "applied"), 60, "the next config")
            assert starts(agent) == 3  # one restart per config, none for the copy
            applied = [r["version"] for r in ota_reports(agent) if r["state"] == "applied"]
            assert applied == [version, newer]
            assert await agent.stop() == 0


async def test_an_agent_killed_in_the_probe_takes_the_configuration_again_after_its_restart(
    tmp_path: Path,
) -> None:
    """SIGKILLed in the probe, as in a power cut: after the restart it is taken again.

    The retained document comes again; it is reported delivered once, then applied.
    """
    clock = make_clock(600)
    storm = DesignStorm(ORIGIN + 7 * 86400, 7200, 60.0, step_s=300, seed=3)  # days away
    devices = storm_station(clock, storm)
    with fleet_and_gateway(tmp_path) as (_broker, fleet, gateway_id):
        async with sim_site(tmp_path, devices, SITE, clock) as site:
            assert site.bus is not None
            marker = tmp_path / "frozen-in-probe"
            frozen = await site.start_agent("gw", env=crash_test_env("edge.config.probe", marker))
            await wait_for(lambda: starts(frozen) == 1, 30, "the agent to start")
            new_text = site_text(site.bus.port, ("reassert_s = 1", "reassert_s = 2"))
            version = post_config(fleet, gateway_id, new_text)
            await wait_for(marker.exists, 60, "the agent frozen in the probe")
            frozen.kill()
            await frozen.process.wait()
            assert Taking.load(frozen.data_dir) == Taking(version, 1, delivered=True)

            again = await site.start_agent("gw")
            await wait_for(lambda: report(again, version, "applied"), 90, "applied after restart")
            delivered = [r for r in ota_reports(again) if r["version"] == version]
            assert [r["state"] for r in delivered] == ["delivered", "applied"]
            assert site.site_path.read_text() == new_text
            assert Taking.load(again.data_dir) is None
            assert await again.stop() == 0


async def test_a_configuration_that_breaks_the_bus_is_rolled_back_and_alarms_keep_working(
    tmp_path: Path,
) -> None:
    clock = make_clock(600)
    storm = DesignStorm(ORIGIN + 1800, 7200, 60.0, step_s=300, seed=3)
    devices = storm_station(clock, storm)
    relays = devices[2]
    with fleet_and_gateway(tmp_path) as (_broker, fleet, gateway_id):
        async with sim_site(tmp_path, devices, SITE, clock) as site:
            assert site.bus is not None
            agent = await site.start_agent("gw")
            await wait_for(lambda: starts(agent) == 1, 30, "the agent to start")
            original = site.site_path.read_text()
            # Valid on paper, but no device answers at unit 7 on that bus.
            broken = site_text(
                site.bus.port,
                ('profile = "hlk_ld8001h"\n', 'profile = "hlk_ld8001h"\nunit_id = 7\n'),
            )
            version = post_config(fleet, gateway_id, broken)

            rolled = await wait_for(
                lambda: report(agent, version, "rolled_back"), 60, "rolled back"
            )
            assert "device creek (unit 7) did not answer" in rolled["reason"]
            shown = await wait_for(lambda: fleet_state(fleet, gateway_id, version), 30, "fleet")
            assert shown["state"] == "rolled_back"
            assert "device creek (unit 7) did not answer" in shown["reason"]
            assert site.site_path.read_text() == original
            assert not candidate_path(site.site_path).exists()
            assert starts(agent) == 1  # never switched, never restarted
            # The storm arrives afterwards: the old configuration raises red and sounds.
            await wait_for(
                lambda: any(e["to"] == "red" for e in events(agent.data_dir, "alarm")),
                60,
                "red on the old configuration",
            )
            await wait_for(lambda: relays.coil(0), 10, "the siren on the old configuration")
            assert report(agent, version, "applied") is None
            assert await agent.stop() == 0


async def test_bad_documents_are_each_rejected_with_their_reason_and_change_nothing(
    tmp_path: Path,
) -> None:
    clock = make_clock(60)
    devices = storm_station(clock, None)
    with fleet_and_gateway(tmp_path) as (broker, fleet, gateway_id):
        key = SigningKey.load_or_create(fleet.data_dir)
        other_key = SigningKey.load_or_create(tmp_path / "impostor")
        async with sim_site(tmp_path, devices, SITE, clock) as site:
            assert site.bus is not None
            agent = await site.start_agent("gw")
            await wait_for(lambda: starts(agent) == 1, 30, "the agent to start")
            original = site.site_path.read_text()
            good_text = site_text(site.bus.port, ("reassert_s = 1", "reassert_s = 3"))

            def tampered() -> bytes:
                envelope = json.loads(sign_document(config_doc(2, gateway_id, good_text), key))
                envelope["body"] = envelope["body"].replace("reassert_s = 3", "reassert_s = 9")
                return json.dumps(envelope).encode()

            def unsigned() -> bytes:
                envelope = json.loads(sign_document(config_doc(3, gateway_id, good_text), key))
                del envelope["signature"]
                return json.dumps(envelope).encode()

            # Thresholds that fall with rising level: the fleet refuses to sign it with the
            # gateway parser's words; signed anyway (an older fleet did), the gateway
            # refuses it with the same words.
            invalid = site_text(site.bus.port, ("orange = 20, red = 30", "orange = 20, red = 15"))
            answer = fleet.request(
                "POST",
                "/api/v1/configs",
                Role.CONFIGURATOR,
                json={"gateway_id": gateway_id, "site_toml": invalid},
            )
            assert answer.status_code == 422
            assert answer.json()["detail"] == (
                "site.toml: rule 'rain_1h': 'windows.1h' must increase with level: "
                "orange = 20, red = 15"
            )
            cases = [
                (
                    sign_document(config_doc(1, gateway_id, invalid), key),
                    1,
                    "configuration v1: rule 'rain_1h': 'windows.1h' must increase with level",
                ),
                (tampered(), 2, "bad_signature"),
                (unsigned(), 3, "unsigned"),
                (sign_document(config_doc(4, gateway_id, good_text), other_key), 4, "unknown_key"),
                (
                    sign_document(config_doc(5, "gw-someone-else", good_text), key),
                    5,
                    "wrong_target",
                ),
                (sign_document(config_doc(7, gateway_id, invalid), key), 7, "rule 'rain_1h'"),
                (sign_document(config_doc(6, gateway_id, good_text), key), 6, "stale_version"),
            ]
            for envelope, version, reason in cases:
                await publish_config(fleet.data_dir, broker.port, gateway_id, envelope)
                refused = await wait_for(
                    functools.partial(report, agent, version, "rejected"),
                    30,
                    f"refusal of v{version}",
                )
                assert reason in refused["reason"], refused
                print(f"v{version}: {refused['reason']}")
            assert site.site_path.read_text() == original
            assert starts(agent) == 1
            assert not any(r["state"] == "applied" for r in ota_reports(agent))
            assert await agent.stop() == 0


#: A rule the storm-free test station meets at once (the creek stands at about 800 mm),
#: and a red action that plays a clip.
FIRES_AT_ONCE = """
[[rule]]
id = "creek_now"
kind = "water_level"
channel = "creek.water_level"
thresholds = { blue = 100, yellow = 200, orange = 300, red = 400 }
"""


def with_player(port: int | None, player: str) -> str:
    """The test site with a rule that is red at once, a clip for red, and ``player``."""
    text = site_text(
        port, ('red = { siren = "warble" }', 'red = { siren = "warble", clip = "evacuate_now" }')
    )
    return text.replace("[[actuator]]", f"{FIRES_AT_ONCE}\n{player}\n[[actuator]]", 1)


async def test_a_config_that_names_a_command_is_refused_and_nothing_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "owned"
    cliplog = tmp_path / "clips.log"
    attack = f'[player]\ncommand = ["sh", "-c", "id > {marker}; echo {{clip}}"]\n'
    clock = make_clock(60)
    devices = storm_station(clock, None)
    # The gateway's own agent.toml allows aplay (built in) and a player that logs its clips.
    (tmp_path / "gw").mkdir()
    logger = f"import sys; open({str(cliplog)!r}, 'a').write(sys.argv[1] + chr(10))"
    (tmp_path / "gw" / "agent.toml").write_text(
        f"[players.cliplog]\ncommand = {json.dumps([sys.executable, '-c', logger, '{clip}'])}\n"
    )
    with fleet_and_gateway(tmp_path) as (broker, fleet, gateway_id):
        key = SigningKey.load_or_create(fleet.data_dir)
        async with sim_site(tmp_path, devices, SITE, clock) as site:
            assert site.bus is not None
            agent = await site.start_agent("gw")
            await wait_for(lambda: starts(agent) == 1, 30, "the agent to start")
            original = site.site_path.read_text()
            port = site.bus.port

            # An operator, who acknowledges alarms, may not sign configurations at all.
            as_operator = fleet.request(
                "POST",
                "/api/v1/configs",
                Role.OPERATOR,
                json={"gateway_id": gateway_id, "site_toml": with_player(port, attack)},
            )
            assert as_operator.status_code == 403
            # A configurator may, but the fleet refuses a command before signing it.
            refused = fleet.request(
                "POST",
                "/api/v1/configs",
                Role.CONFIGURATOR,
                json={"gateway_id": gateway_id, "site_toml": with_player(port, attack)},
            )
            assert refused.status_code == 422
            assert refused.json()["detail"].startswith(
                "site.toml: [player]: a pushed configuration names its player"
            )
            # A player by name passes the fleet; this gateway has none of that name.
            version = post_config(fleet, gateway_id, with_player(port, '[player]\nname = "sh"'))
            shown = await wait_for(lambda: fleet_state(fleet, gateway_id, version), 30, "fleet")
            assert (shown["state"], shown["reason"]) == (
                "rejected",
                f"configuration v{version}: [player]: player 'sh' is not one of this gateway's "
                f"players (aplay, cliplog; {agent.data_dir / 'agent.toml'})",
            )
            # Signed with the fleet's own key all the same (a fleet that did not check):
            # the gateway refuses it and runs nothing.
            signed = sign_document(config_doc(2, gateway_id, with_player(port, attack)), key)
            await publish_config(fleet.data_dir, broker.port, gateway_id, signed)
            rejected = await wait_for(lambda: report(agent, 2, "rejected"), 30, "the refusal")
            assert rejected["reason"].startswith(
                "configuration v2: [player]: a pushed configuration names its player"
            )
            assert site.site_path.read_text() == original
            assert starts(agent) == 1

            # The same configuration naming an allowed player is applied, and its red
            # action plays the clip through that player: rule and action do fire at once.
            allowed = with_player(port, '[player]\nname = "cliplog"')
            signed = sign_document(config_doc(3, gateway_id, allowed), key)
            await publish_config(fleet.data_dir, broker.port, gateway_id, signed)
            await wait_for(lambda: report(agent, 3, "applied"), 60, "the allowed player")
            await wait_for(cliplog.exists, 30, "the clip to be played")
            assert Path(cliplog.read_text().split()[0]).name == "evacuate_now.wav"
            assert not marker.exists()
            assert await agent.stop() == 0
