"""SL 651 stations where the county looks for gateways, and never in a rollout.

The REST API the console reads (``/api/v1/gateways``, ``/api/v1/sites``) on a real fleet
app and SQLite file, with a station's report stored by the registry as the centre stores
it; rollouts and configs through REST and storage, with a station in the group.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fleet.cli import app as fleet_cli
from fleet.main import create_app
from fleet.repository import ConflictError, NewRollout, Role
from fleet.settings import FleetSettings
from fleet.sl651_rules import EngineRules
from fleet.sl651_stations import Observation, StationRegistry
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import auth
from hardware_sim.harness.release_rest import register_release
from hardware_sim.simgateway import enrollment_request
from ota.document import DocumentKind
from protocol import EnrollmentResponse, Quality
from site_schema.rule_specs import WaterLevelRule

SITE = "creek-village"
STATION = "sl651-0012345678"
QUIET = "sl651-0012345679"
WHEELS = {"hazardwatch-1.4.0-py3-none-any.whl": b"PK\x03\x04 hazardwatch 1.4.0 " * 40}


@dataclass
class Console:
    http: httpx.AsyncClient
    repository: SQLiteRepository
    registry: StationRegistry
    tokens: dict[Role, str]

    def as_(self, role: Role) -> dict[str, str]:
        return auth(self.tokens[role])

    async def enroll(self) -> str:
        created = await self.http.post(
            "/api/v1/enrollment-tokens", json={"site_id": SITE}, headers=self.as_(Role.ADMIN)
        )
        answer = await self.http.post(
            "/api/v1/enroll", json=enrollment_request(created.json()["token"]).model_dump()
        )
        assert answer.status_code == 201, answer.text
        return EnrollmentResponse.model_validate(answer.json()).gateway_id

    async def get(self, path: str) -> Any:
        answer = await self.http.get(path, headers=self.as_(Role.VIEWER))
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    settings = FleetSettings(
        data_dir=tmp_path, broker="external", mqtt_url="mqtt://127.0.0.1:9", ingest=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        repository: SQLiteRepository = app.state.repository
        registry = StationRegistry(repository.path, durable=False)
        tokens = {r: repository.create_api_token(r.value, r, time.time())[1] for r in Role}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as http:
            yield Console(http, repository, registry, tokens)
        registry.close()


def report(console: Console, address: str, at: float) -> None:
    """The station's report, stored as the receiving centre stores one at ``at``."""
    station = console.registry.add_station(address, 0x5A7C, SITE, at - 10)
    console.registry.store(station, [Observation(at - 5, "water_level", 2.5, Quality.OK)], at)


async def test_stations_are_listed_with_the_gateways_with_their_last_report_and_state(
    console: Console,
) -> None:
    gateway = await console.enroll()
    now = time.time()
    report(console, "0012345678", now - 600)  # reported 10 minutes ago: online
    report(console, "0012345679", now - 3 * 3600)  # silent three hours: offline
    listed = {g["id"]: g for g in await console.get("/api/v1/gateways")}
    assert listed[gateway]["kind"] == "gateway"
    assert listed[gateway]["status"] == "never_seen"
    station = listed[STATION]
    assert (station["kind"], station["site_id"], station["status"]) == (
        "sl651_station",
        SITE,
        "online",  # a gateway 10 minutes silent would be offline (3 missed healths)
    )
    assert station["last_seen"] == pytest.approx(now - 600)
    assert station["agent_version"] == "SL 651-2014 station"
    assert listed[QUIET]["status"] == "offline"

    (site,) = await console.get("/api/v1/sites")
    strip = {g["gateway_id"]: (g["kind"], g["state"]) for g in site["gateways"]}
    assert strip == {
        gateway: ("gateway", "never_seen"),
        STATION: ("sl651_station", "online"),
        QUIET: ("sl651_station", "offline"),
    }


def test_fleet_sl651_stations_prints_the_last_report_and_state(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    runner = CliRunner()
    added = runner.invoke(
        fleet_cli,
        ["sl651", "add-station", "0012345678", "--password", "5A7C", "--site", SITE, *data],
    )
    assert added.exit_code == 0, added.output
    registry = StationRegistry(tmp_path / "fleet.sqlite", durable=False)
    try:
        (station,) = registry.stations()
        at = time.time() - 60
        registry.store(station, [Observation(at, "water_level", 2.5, Quality.OK)], at)
    finally:
        registry.close()
    listed = runner.invoke(fleet_cli, ["sl651", "stations", *data])
    address, site, gateway_id, when, state = listed.output.split()
    assert (address, site, gateway_id, state) == ("0012345678", SITE, STATION, "online")
    assert when == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


async def test_a_rollout_to_a_group_with_a_station_skips_the_station(console: Console) -> None:
    gateway = await console.enroll()
    report(console, "0012345678", time.time())
    admin = console.as_(Role.ADMIN)
    await register_release(console.http, admin, WHEELS)
    grouped = await console.http.put(
        "/api/v1/groups/north", json={"gateways": [gateway, STATION]}, headers=admin
    )
    assert grouped.status_code == 200, grouped.text
    rollout = await console.http.post(
        "/api/v1/rollouts", json={"release": "1.4.0", "group": "north"}, headers=admin
    )
    assert rollout.status_code == 201, rollout.text
    assert rollout.json()["skipped"] == [STATION]
    devices = [d["gateway_id"] for d in rollout.json()["devices"]]
    assert devices == [gateway]
    # nothing was queued for the station: its record takes no signed document
    queued = console.repository.ota.claim_documents(time.time())
    assert [q.gateway_id for q in queued] == [gateway]


async def test_a_rollout_or_config_naming_only_stations_is_refused(console: Console) -> None:
    report(console, "0012345678", time.time())
    admin = console.as_(Role.ADMIN)
    await register_release(console.http, admin, WHEELS)
    rollout = await console.http.post(
        "/api/v1/rollouts", json={"release": "1.4.0", "gateways": [STATION]}, headers=admin
    )
    assert rollout.status_code == 422
    assert "only SL 651 stations are targeted (sl651-0012345678)" in rollout.json()["detail"]
    site_toml = (
        Path(__file__).parent.parent / "edge_agent/examples/creek_village.toml"
    ).read_text()
    config = await console.http.post(
        "/api/v1/configs", json={"gateway_id": STATION, "site_toml": site_toml}, headers=admin
    )
    assert config.status_code == 409, config.text
    assert config.json()["detail"] == (
        "sl651-0012345678: SL 651 stations take no signed config or release"
    )
    # storage refuses a station as a rollout device whoever plans the waves
    new = NewRollout(
        kind=DocumentKind.RELEASE,
        release_version="1.4.0",
        config_id=None,
        group=None,
        waves=(("100%", (STATION,)),),
        success_threshold=0.9,
        error_threshold=0.1,
        device_timeout_s=600.0,
        created_by="test",
    )
    with pytest.raises(ConflictError, match="SL 651 stations take no signed config or release"):
        console.repository.ota.create_rollout(new, time.time())


async def test_acknowledging_a_station_s_alarm_queues_no_command_it_could_never_take(
    console: Console,
) -> None:
    level = WaterLevelRule(id="creek_level", channel="water_level", thresholds=(1, 2, 3, 4))
    rules = EngineRules([level], backend="reference")
    station = console.registry.add_station("0012345678", 0x5A7C, SITE, time.time())
    now = time.time()
    stored = console.registry.store(
        station, [Observation(now - 5, "water_level", 4.5, Quality.OK)], now, rules
    )
    assert stored.alarms == 1  # red
    operator = console.as_(Role.OPERATOR)
    (alarm,) = await console.get("/api/v1/alarms?active=true")
    assert (alarm["gateway_id"], alarm["level"]) == (STATION, 4)
    acked = await console.http.post(
        f"/api/v1/alarms/{alarm['id']}/acknowledge", json={"note": "seen"}, headers=operator
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "operator"
    assert console.repository.claim_commands(time.time()) == []  # nothing for the station
