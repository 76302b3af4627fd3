"""Configs, groups, releases and rollouts over REST; the release and rollout CLI.

Reports from gateways are committed through the repository as ingest does after they
arrive; the MQTT round trip itself is in ``test_rollout_mosquitto``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from fleet.cli import app as fleet_cli
from fleet.main import create_app
from fleet.repository import Role
from fleet.settings import FleetSettings
from fleet.signing import SigningKey
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import auth
from hardware_sim.harness.ports import free_port
from hardware_sim.harness.release_rest import manifest_of
from hardware_sim.harness.release_rest import register_release as register_via_rest
from hardware_sim.harness.waiting import wait_for
from hardware_sim.simgateway import enrollment_request
from ota.document import DocumentKind, verify_document
from ota.manifest import MANIFEST_FILE
from ota.report import OtaReport, OtaState, OtaSubject
from protocol import EnrollmentResponse
from site_schema.site_config import parse_site_text
from tests.ota_fixtures import commit_ota_report

EXAMPLES = Path(__file__).parent.parent / "edge_agent" / "examples"
SITE = (EXAMPLES / "creek_village.toml").read_text()
OWN_WHEEL = "hazardwatch-1.4.0-py3-none-any.whl"
WHEELS = {
    OWN_WHEEL: b"PK\x03\x04 hazardwatch 1.4.0 " * 40,
    "tinydep-2.0-py3-none-any.whl": b"PK\x03\x04 tinydep " * 9,
}


@dataclass
class Console:
    http: httpx.AsyncClient
    repository: SQLiteRepository
    key: SigningKey
    tokens: dict[Role, str]
    seqs: dict[str, int] = field(default_factory=dict)

    def as_(self, role: Role) -> dict[str, str]:
        return auth(self.tokens[role])

    async def enroll(self, site_id: str = "creek-village") -> EnrollmentResponse:
        created = await self.http.post(
            "/api/v1/enrollment-tokens", json={"site_id": site_id}, headers=self.as_(Role.ADMIN)
        )
        answer = await self.http.post(
            "/api/v1/enroll", json=enrollment_request(created.json()["token"]).model_dump()
        )
        assert answer.status_code == 201, answer.text
        return EnrollmentResponse.model_validate(answer.json())

    def report(
        self, gateway_id: str, subject: OtaSubject, version: int, state: OtaState, reason: str = ""
    ) -> None:
        """Store an ``ota`` event as ingest does once it arrived from the gateway."""
        report = OtaReport(subject, version, state, reason or None)
        commit_ota_report(self.repository, self.seqs, gateway_id, report, time.time())


def settings_for(tmp_path: Path) -> FleetSettings:
    # REST alone: no broker, no ingest (as with `fleet serve` beside a separate `fleet ingest`).
    return FleetSettings(
        data_dir=tmp_path, broker="external", mqtt_url="mqtt://127.0.0.1:9", ingest=False
    )


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    app = create_app(settings_for(tmp_path))
    async with app.router.lifespan_context(app):
        repository: SQLiteRepository = app.state.repository
        tokens = {r: repository.create_api_token(r.value, r, time.time())[1] for r in Role}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as http:
            yield Console(http, repository, app.state.enrollment.signing_key, tokens)


async def register_release(console: Console, files: dict[str, bytes] = WHEELS) -> None:
    await register_via_rest(console.http, console.as_(Role.ADMIN), files)


# --- configs ----------------------------------------------------------------------------------


async def test_a_config_that_is_not_a_site_file_is_refused_at_once(console: Console) -> None:
    gateway_id = (await console.enroll()).gateway_id
    configurator = console.as_(Role.CONFIGURATOR)
    cases = {
        "[site\nid = 1": "site.toml: not valid TOML: ",
        SITE.replace('[site]\nid = "', '[place]\nid = "'): "site.toml: a [site] table",
    }
    for text, reason in cases.items():
        answer = await console.http.post(
            "/api/v1/configs",
            json={"gateway_id": gateway_id, "site_toml": text},
            headers=configurator,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(reason), answer.json()["detail"]
    both = await console.http.post(
        "/api/v1/configs",
        json={"gateway_id": gateway_id, "group": "north", "site_toml": SITE},
        headers=configurator,
    )
    assert both.status_code == 422
    assert "give either gateway_id or group" in both.json()["detail"]
    listed = await console.http.get("/api/v1/configs", headers=configurator)
    assert listed.json() == []
    assert console.repository.ota.claim_documents(time.time()) == []


async def test_a_site_file_a_gateway_would_refuse_is_refused_before_it_is_signed(
    console: Console,
) -> None:
    gateway_id = (await console.enroll()).gateway_id
    configurator = console.as_(Role.CONFIGURATOR)
    bus = 'kind = "tcp"\nhost = "127.0.0.1"\nport = 5020'
    cases = [
        (
            ("red = 80 }", "red = 50 }"),
            "site.toml: rule 'rain_county': 'windows.1h' must increase with level",
        ),
        (("unit_id = 192", "unitid = 192"), "site.toml: device 'rain_sen0575': unknown key(s)"),
        (
            (
                "[actions]",
                '[player]\ncommand = ["sh", "-c", "id > /tmp/x; echo {clip}"]\n[actions]',
            ),
            "site.toml: [player]: a pushed configuration names its player",
        ),
        (
            ('profile = "dfrobot_sen0575"', 'profile = "../../var/lib/hazardwatch/key.toml"'),
            "site.toml: device 'rain_sen0575': profile '../../var/lib/hazardwatch/key.toml': "
            "a pushed configuration may use shipped profiles only",
        ),
        (
            (bus, 'kind = "serial"\ndevice = "/dev/sda"'),
            "site.toml: bus 'cabinet-gateway': device '/dev/sda': a pushed configuration may "
            "open serial ports only",
        ),
        (
            ('clip = "evacuate_now"', 'clip = "../../../etc/shadow"'),
            "site.toml: [actions.red]: clip must be a clip's name",
        ),
        (
            ("[actions]", '[player]\nclips = { evacuate_now = "/etc/shadow" }\n[actions]'),
            "site.toml: [player]: 'clips' is not read from a site file",
        ),
    ]
    for (old, new), reason in cases:
        assert old in SITE
        answer = await console.http.post(
            "/api/v1/configs",
            json={"gateway_id": gateway_id, "site_toml": SITE.replace(old, new, 1)},
            headers=configurator,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"].startswith(reason), answer.json()["detail"]
    assert console.repository.ota.claim_documents(time.time()) == []  # nothing was signed
    # A player by name and a serial port are fine: whether the gateway has that player is
    # for its own agent.toml to say.
    allowed = SITE.replace(bus, 'kind = "serial"\ndevice = "/dev/ttyUSB0"').replace(
        "[actions]", '[player]\nname = "usb_speaker"\n[actions]'
    )
    answer = await console.http.post(
        "/api/v1/configs",
        json={"gateway_id": gateway_id, "site_toml": allowed},
        headers=configurator,
    )
    assert answer.status_code == 201, answer.text


async def test_a_gateways_config_state_follows_its_reports(console: Console) -> None:
    gateway_id = (await console.enroll()).gateway_id
    configurator = console.as_(Role.CONFIGURATOR)
    state_url = f"/api/v1/gateways/{gateway_id}/config"
    before = (await console.http.get(state_url, headers=console.as_(Role.VIEWER))).json()
    assert (before["state"], before["history"]) == (None, [])

    created = await console.http.post(
        "/api/v1/configs",
        json={"gateway_id": gateway_id, "site_toml": SITE, "note": "new radar"},
        headers=configurator,
    )
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["revision"]) == (1, 1)
    [queued] = console.repository.ota.claim_documents(time.time())
    document = verify_document(
        queued.document, console.key.public_key_b64, gateway_id, DocumentKind.CONFIG, 0
    )
    assert document.payload == {"site_toml": SITE}
    console.repository.ota.finish_documents([queued], [], time.time())

    async def state() -> dict[str, Any]:
        answer = await console.http.get(state_url, headers=console.as_(Role.VIEWER))
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    shown = await state()
    assert (shown["state"], shown["version"]) == ("pending", 1)
    assert shown["history"][0]["published_at"] is not None
    console.report(gateway_id, OtaSubject.CONFIG, 1, OtaState.DELIVERED)
    assert (await state())["state"] == "delivered"
    console.report(gateway_id, OtaSubject.CONFIG, 1, OtaState.APPLIED)
    assert (await state())["state"] == "applied"

    for version, outcome, why in (
        (2, OtaState.REJECTED, "site.toml: device 'x': profile problem: unknown profile"),
        (3, OtaState.ROLLED_BACK, "probe: device 'creek_radar' did not answer"),
    ):
        again = await console.http.post(
            "/api/v1/configs",
            json={"gateway_id": gateway_id, "site_toml": SITE},
            headers=configurator,
        )
        assert again.json()["version"] == version
        console.report(gateway_id, OtaSubject.CONFIG, version, outcome, why)
        shown = await state()
        assert (shown["state"], shown["version"], shown["reason"]) == (outcome.value, version, why)
    assert [(h["version"], h["state"]) for h in shown["history"]] == [
        (3, "rolled_back"),
        (2, "rejected"),
        (1, "applied"),
    ]


async def test_a_newer_config_supersedes_one_still_pending(console: Console) -> None:
    gateway_id = (await console.enroll()).gateway_id
    configurator = console.as_(Role.CONFIGURATOR)
    for _ in range(2):
        await console.http.post(
            "/api/v1/configs",
            json={"gateway_id": gateway_id, "site_toml": SITE},
            headers=configurator,
        )
    [queued] = console.repository.ota.claim_documents(time.time())
    assert queued.version == 2  # the broker retains only the newest for the topic
    history = (
        await console.http.get(f"/api/v1/gateways/{gateway_id}/config", headers=configurator)
    ).json()["history"]
    assert [(h["version"], h["state"]) for h in history] == [(2, "pending"), (1, "superseded")]


async def test_a_failed_publish_is_retried_and_the_newest_document_is_published_last(
    console: Console,
) -> None:
    gateway_id = (await console.enroll()).gateway_id
    ota, now = console.repository.ota, time.time()

    async def publish_config() -> None:
        answer = await console.http.post(
            "/api/v1/configs",
            json={"gateway_id": gateway_id, "site_toml": SITE},
            headers=console.as_(Role.CONFIGURATOR),
        )
        assert answer.status_code == 201, answer.text

    await publish_config()
    [attempt] = ota.claim_documents(now)
    ota.finish_documents([], [attempt], now)  # the broker was unreachable
    [retry] = ota.claim_documents(now)
    assert retry.version == attempt.version == 1
    # Two ingest workers: one still publishing version 1 while the other publishes 2.
    await publish_config()
    [newer] = ota.claim_documents(now)
    ota.finish_documents([newer], [], now)
    ota.finish_documents([retry], [], now)  # version 1 reached the broker last
    [again] = ota.claim_documents(now)
    assert (again.version, again.document) == (2, newer.document)
    ota.finish_documents([again], [], now)
    assert ota.claim_documents(now) == []


async def test_a_group_config_goes_to_every_member_under_one_newer_version(
    console: Console,
) -> None:
    a, b = [(await console.enroll()).gateway_id for _ in range(2)]
    configurator = console.as_(Role.CONFIGURATOR)
    unknown = await console.http.put(
        "/api/v1/groups/north", json={"gateways": [a, "gw-nosuchthing"]}, headers=configurator
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "no gateway 'gw-nosuchthing'"
    group = await console.http.put(
        "/api/v1/groups/north", json={"gateways": [b, a]}, headers=configurator
    )
    assert group.status_code == 200, group.text
    assert sorted(group.json()["gateways"]) == sorted([a, b])
    empty = await console.http.put(
        "/api/v1/groups/empty", json={"gateways": []}, headers=configurator
    )
    assert empty.status_code == 200

    created = await console.http.post(
        "/api/v1/configs", json={"group": "north", "site_toml": SITE}, headers=configurator
    )
    assert created.status_code == 201, created.text
    assert sorted(created.json()["gateways"]) == sorted([a, b])
    docs = console.repository.ota.claim_documents(time.time())
    assert {(d.gateway_id, d.version) for d in docs} == {(a, 1), (b, 1)}
    document = verify_document(
        docs[0].document, console.key.public_key_b64, docs[0].gateway_id, DocumentKind.CONFIG, 0
    )
    assert (sorted(document.target.gateways), document.target.group) == (sorted([a, b]), "north")

    single = await console.http.post(
        "/api/v1/configs", json={"gateway_id": a, "site_toml": SITE}, headers=configurator
    )
    assert single.json()["version"] == 2
    by_gateway = await console.http.get(
        "/api/v1/configs", params={"gateway_id": a}, headers=configurator
    )
    assert [c["version"] for c in by_gateway.json()] == [2, 1]
    by_group = await console.http.get(
        "/api/v1/configs", params={"group": "north"}, headers=configurator
    )
    assert [c["id"] for c in by_group.json()] == [created.json()["id"]]
    nobody = await console.http.post(
        "/api/v1/configs", json={"group": "empty", "site_toml": SITE}, headers=configurator
    )
    assert nobody.status_code == 409
    assert nobody.json()["detail"] == "group 'empty' has no gateways: add some to it first"


async def test_roles_guard_configs_releases_and_rollouts(console: Console) -> None:
    gateway_id = (await console.enroll()).gateway_id
    viewer = await console.http.post(
        "/api/v1/configs",
        json={"gateway_id": gateway_id, "site_toml": SITE},
        headers=console.as_(Role.VIEWER),
    )
    assert viewer.status_code == 403
    operator = console.as_(Role.OPERATOR)
    # Acknowledging alarms does not make a token fit to sign what every siren does.
    config = await console.http.post(
        "/api/v1/configs", json={"gateway_id": gateway_id, "site_toml": SITE}, headers=operator
    )
    assert config.status_code == 403
    assert config.json()["detail"] == (
        "this needs the configurator role; API token 'operator' has the operator role"
    )
    stored = await console.http.post(
        "/api/v1/configs",
        json={"gateway_id": gateway_id, "site_toml": SITE, "publish": False},
        headers=console.as_(Role.CONFIGURATOR),
    )
    assert stored.status_code == 201, stored.text
    config_rollout = await console.http.post(
        "/api/v1/rollouts", json={"config_id": stored.json()["id"]}, headers=operator
    )
    assert config_rollout.status_code == 403
    assert config_rollout.json()["detail"] == (
        "rolling out a config needs the configurator role; API token 'operator' has the "
        "operator role"
    )
    release = await console.http.post(
        "/api/v1/releases", json=manifest_of(WHEELS).model_dump(mode="json"), headers=operator
    )
    assert release.status_code == 403
    rollout = await console.http.post(
        "/api/v1/rollouts", json={"release": "1.4.0", "gateways": [gateway_id]}, headers=operator
    )
    assert rollout.status_code == 403
    assert rollout.json()["detail"] == (
        "rolling out a release needs the admin role; API token 'operator' has the operator role"
    )
    pause = await console.http.post("/api/v1/rollouts/1/pause", headers=console.as_(Role.VIEWER))
    assert pause.status_code == 403


# --- releases ---------------------------------------------------------------------------------


async def test_a_release_file_is_kept_only_when_it_matches_its_manifest(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    manifest = manifest_of(WHEELS)
    body = manifest.model_dump(mode="json")
    assert (
        await console.http.post("/api/v1/releases", json=body, headers=admin)
    ).status_code == 201
    again = await console.http.post("/api/v1/releases", json=body, headers=admin)
    assert again.status_code == 200  # an interrupted publish may simply run again
    other = manifest_of({"other-1.0-py3-none-any.whl": b"x"})
    clash = await console.http.post(
        "/api/v1/releases", json=other.model_dump(mode="json") | {"version": "1.4.0"}, headers=admin
    )
    assert clash.status_code == 409

    name, data = next(iter(WHEELS.items()))
    url = f"/api/v1/releases/1.4.0/files/{name}"
    corrupt = await console.http.put(url, content=b"X" + data[1:], headers=admin)
    assert corrupt.status_code == 422
    assert f"{name}: sha256 " in corrupt.json()["detail"]
    assert "does not match the manifest's" in corrupt.json()["detail"]
    longer = await console.http.put(url, content=data + b"!", headers=admin)
    assert longer.status_code == 422
    assert longer.json()["detail"] == f"{name}: more than the {len(data)} bytes the manifest says"
    unknown = await console.http.put(
        "/api/v1/releases/1.4.0/files/evil-1.0-py3-none-any.whl", content=b"x", headers=admin
    )
    assert unknown.status_code == 404
    assert "has no file 'evil-1.0-py3-none-any.whl'" in unknown.json()["detail"]

    stored = await console.http.put(url, content=data, headers=admin)
    assert stored.status_code == 200
    assert (stored.json()["complete"], [f["uploaded"] for f in stored.json()["files"]]) == (
        False,
        [True, False],
    )
    leftovers = [p.name for p in (console.repository.path.parent / "releases/1.4.0").iterdir()]
    assert leftovers == [name]  # refused uploads leave nothing behind


async def test_gateways_download_release_files_in_ranges(console: Console) -> None:
    enrolled = await console.enroll()
    await register_release(console)
    name, data = next(iter(WHEELS.items()))
    url = f"/api/v1/releases/1.4.0/files/{name}"
    gateway = httpx.BasicAuth(enrolled.mqtt.username, enrolled.mqtt.password)

    whole = await console.http.get(url, auth=gateway)
    assert (whole.status_code, whole.content) == (200, data)
    assert whole.headers["accept-ranges"] == "bytes"
    part = await console.http.get(url, auth=gateway, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    rest = await console.http.get(url, auth=gateway, headers={"Range": f"bytes={len(data) - 7}-"})
    assert (rest.status_code, rest.content) == (206, data[-7:])
    beyond = await console.http.get(url, auth=gateway, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416

    viewer = await console.http.get(url, headers=console.as_(Role.VIEWER))
    assert viewer.status_code == 200
    wrong = await console.http.get(url, auth=httpx.BasicAuth(enrolled.gateway_id, "guess"))
    assert wrong.status_code == 401
    nobody = await console.http.get(url)
    assert nobody.status_code == 401
    assert nobody.json()["detail"].startswith("missing API token")
    missing = await console.http.get("/api/v1/releases/9.9/files/x.whl", auth=gateway)
    assert (missing.status_code, missing.json()["detail"]) == (404, "no release '9.9'")


# --- rollouts ---------------------------------------------------------------------------------


async def test_rollouts_that_cannot_work_are_refused_with_a_reason(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    gateways = [(await console.enroll()).gateway_id for _ in range(3)]
    manifest = manifest_of(WHEELS)
    await console.http.post(
        "/api/v1/releases", json=manifest.model_dump(mode="json"), headers=admin
    )

    async def create(**body: Any) -> httpx.Response:
        return await console.http.post(
            "/api/v1/rollouts", json={"release": "1.4.0"} | body, headers=admin
        )

    incomplete = await create(gateways=gateways)
    assert incomplete.status_code == 409
    assert incomplete.json()["detail"] == (
        "release 1.4.0 lacks hazardwatch-1.4.0-py3-none-any.whl, tinydep-2.0-py3-none-any.whl: "
        "upload every file before rolling it out"
    )
    await register_release(console)
    bad_wave = await create(gateways=gateways, waves=["1", "30x"])
    assert bad_wave.status_code == 422
    assert (
        "wave '30x': use a gateway count like 1 or a percentage like 25%"
        in (bad_wave.json()["detail"])
    )
    short = await create(gateways=gateways, waves=["1", "50%"])
    assert (short.status_code, short.json()["detail"]) == (
        422,
        "the waves reach 2 of 3 gateways: make the last wave 100%",
    )
    unknown = await create(gateways=[*gateways, "gw-nosuchthing"])
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "no gateway 'gw-nosuchthing'")

    first = await create(gateways=gateways[:2], waves=["1", "100%"])
    assert first.status_code == 201, first.text
    assert (first.json()["state"], first.json()["current_wave"]) == ("running", 1)
    overlap = await create(gateways=gateways[1:])
    assert overlap.status_code == 409
    assert overlap.json()["detail"] == (
        f"gateway(s) {gateways[1]} belong to release rollout 1 (running); "
        "abort that rollout first or leave them out"
    )
    resume = await console.http.post("/api/v1/rollouts/1/resume", headers=admin)
    assert (resume.status_code, resume.json()["detail"]) == (
        409,
        "rollout 1 is running and cannot be resumed: it is running",
    )
    aborted = await console.http.post("/api/v1/rollouts/1/abort", headers=admin)
    assert aborted.json()["state"] == "aborted"
    assert [d["state"] for d in aborted.json()["devices"]] == ["cancelled", "cancelled"]
    assert (await create(gateways=gateways[1:])).status_code == 201  # the gateways are free
    ended = await console.http.post("/api/v1/rollouts/1/pause", headers=admin)
    assert ended.json()["detail"] == "rollout 1 is aborted and cannot be paused: it has ended"


async def test_a_stored_config_rolls_out_to_its_group_in_waves(console: Console) -> None:
    configurator = console.as_(Role.CONFIGURATOR)
    gateways = sorted([(await console.enroll()).gateway_id for _ in range(4)])
    await console.http.put(
        "/api/v1/groups/north", json={"gateways": gateways}, headers=configurator
    )
    config = await console.http.post(
        "/api/v1/configs",
        json={"group": "north", "site_toml": SITE, "publish": False},
        headers=configurator,
    )
    assert config.json()["version"] is None
    assert console.repository.ota.claim_documents(time.time()) == []  # stored, not sent

    rollout = await console.http.post(
        "/api/v1/rollouts",
        json={"config_id": config.json()["id"], "waves": ["1", "100%"]},
        headers=configurator,
    )
    assert rollout.status_code == 201, rollout.text
    shown = rollout.json()
    assert (shown["kind"], shown["group"]) == ("config", "north")
    assert [(w["spec"], w["size"], w["status"]) for w in shown["waves"]] == [
        ("1", 1, "in_progress"),
        ("100%", 3, "waiting"),
    ]
    state = await console.http.get(f"/api/v1/gateways/{gateways[0]}/config", headers=configurator)
    assert (state.json()["state"], state.json()["history"][0]["rollout_id"]) == ("pending", 1)
    direct = await console.http.post(
        "/api/v1/configs", json={"gateway_id": gateways[3], "site_toml": SITE}, headers=configurator
    )
    assert direct.status_code == 409  # the rollout holds it until it ends


# --- the CLI against a running fleet ----------------------------------------------------------


def write_bundle(directory: Path, files: dict[str, bytes]) -> Path:
    (directory / "wheels").mkdir(parents=True)
    for name, data in files.items():
        (directory / "wheels" / name).write_bytes(data)
    (directory / MANIFEST_FILE).write_text(manifest_of(files).model_dump_json(indent=2))
    return directory


async def test_release_publish_and_rollout_commands_drive_a_running_fleet(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path / "fleet"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: server.started, 10, "the fleet to listen")
        repository: SQLiteRepository = app.state.repository
        admin = repository.create_api_token("release-manager", Role.ADMIN, time.time())[1]
        fleet = ["--fleet", f"http://127.0.0.1:{port}", "--token", admin]
        runner = CliRunner()

        async def run(*args: str) -> str:
            result = await asyncio.to_thread(runner.invoke, fleet_cli, list(args))
            assert result.exit_code == 0, result.output
            return str(result.output)

        bundle = write_bundle(tmp_path / "bundle", WHEELS)
        out = await run("release", "publish", str(bundle), *fleet)
        own, total = len(WHEELS[OWN_WHEEL]), sum(map(len, WHEELS.values()))
        assert f"{OWN_WHEEL}: uploaded ({own} bytes), sha256 verified" in out
        assert out.rstrip().endswith(f"release 1.4.0: 2 files, {total} bytes, complete")
        again = await run("release", "publish", str(bundle), *fleet)
        assert again.count("already on the fleet") == 2
        assert f"1.4.0\t2 files\t{total} bytes\tcomplete\tfrom 1.0" in await run(
            "release", "list", *fleet
        )

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            created = await http.post(
                "/api/v1/enrollment-tokens", json={"site_id": "ridge"}, headers=auth(admin)
            )
            request = enrollment_request(created.json()["token"])
            gateway_id = (await http.post("/api/v1/enroll", json=request.model_dump())).json()[
                "gateway_id"
            ]
        created_out = await run(
            *("rollout", "create", "--release", "1.4.0", "--gateway", gateway_id),
            *("--waves", "100%", "--device-timeout", "30m", *fleet),
        )
        assert created_out.startswith("rollout 1 (release 1.4.0): running, wave 1 of 1")
        status = await run("rollout", "status", "1", *fleet)
        assert f"{gateway_id}\twave 1\tin_progress" in status
        assert "paused" in await run("rollout", "pause", "1", *fleet)
        assert "running" in await run("rollout", "resume", "1", *fleet)
        aborted = await run("rollout", "abort", "1", *fleet)
        assert aborted.startswith("rollout 1 (release 1.4.0): aborted")
        assert f"{gateway_id}\twave 1\tcancelled - rollout aborted" in aborted

        refused = await asyncio.to_thread(
            runner.invoke, fleet_cli, ["rollout", "resume", "1", *fleet]
        )
        assert refused.exit_code == 1
        assert "fleet refused (409): rollout 1 is aborted and cannot be resumed" in refused.output
    finally:
        server.should_exit = True
        await serving


async def test_the_village_tier_of_the_roster_goes_into_the_signed_config_and_nowhere_else(
    console: Console,
) -> None:
    gateway_id = (await console.enroll()).gateway_id
    village_call = '\n[village_call]\nmodem = "/dev/ttyUSB2"\nconfirm = ["siren_relays.input1"]\n'
    site = SITE + village_call
    body = {"gateway_id": gateway_id, "site_toml": site}
    configurator = console.as_(Role.CONFIGURATOR)
    refused = await console.http.post("/api/v1/configs", json=body, headers=configurator)
    assert refused.status_code == 422
    assert "roster of site 'creek-village' has no village person" in refused.text
    roster = [
        {"tier": "village", "name": "王建国", "role": "群测群防员", "mobile": "+8613800000001"},
        {"tier": "village", "name": "张村长", "role": "村主任", "email": "z@village.example.cn"},
        {"tier": "township", "name": "李敏", "role": "乡镇值班", "mobile": "+8613900000002"},
    ]
    put = await console.http.put(
        "/api/v1/sites/creek-village/roster", json=roster, headers=console.as_(Role.ADMIN)
    )
    assert put.status_code == 200, put.text
    created = await console.http.post("/api/v1/configs", json=body, headers=configurator)
    assert created.status_code == 201, created.text
    [queued] = console.repository.ota.claim_documents(time.time())
    document = verify_document(
        queued.document, console.key.public_key_b64, gateway_id, DocumentKind.CONFIG, 0
    )
    signed = document.payload["site_toml"]
    parsed = parse_site_text(signed, "site.toml")
    assert parsed.village_call is not None
    # Only the village tier, only those with a mobile number; no township number.
    assert [(p.name, p.mobile) for p in parsed.village_call.persons] == [
        ("王建国", "+8613800000001")
    ]
    assert "+8613900000002" not in signed
    # What a viewer reads back is the file as written, without the numbers.
    shown = await console.http.get(
        f"/api/v1/configs/{created.json()['id']}", headers=console.as_(Role.VIEWER)
    )
    assert shown.json()["site_toml"] == site
    assert "+8613800000001" not in shown.text
    # Persons written by hand would go stale beside the roster: refused.
    by_hand = site + '\n[[village_call.person]]\nname = "x"\nmobile = "+8613800000009"\n'
    refused = await console.http.post(
        "/api/v1/configs", json={**body, "site_toml": by_hand}, headers=configurator
    )
    assert refused.status_code == 422
    assert "must not list persons" in refused.text


VILLAGE_SITE = (
    SITE + '\n[village_call]\nmodem = "/dev/ttyUSB2"\nconfirm = ["siren_relays.input1"]\n'
)


def signed_village_list(console: Console, gateway_id: str, queued: bytes) -> list[tuple[str, str]]:
    """The village persons in a queued config document, as the gateway will read them."""
    document = verify_document(
        queued, console.key.public_key_b64, gateway_id, DocumentKind.CONFIG, 0
    )
    parsed = parse_site_text(document.payload["site_toml"], "site.toml")
    assert parsed.village_call is not None
    return [(p.name, p.mobile) for p in parsed.village_call.persons]


async def test_a_new_village_monitor_reaches_the_gateway_at_once_in_a_re_signed_config(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    gateway_id = (await console.enroll()).gateway_id
    other_site = (await console.enroll("hill-road")).gateway_id
    admin = console.as_(Role.ADMIN)
    roster_url = "/api/v1/sites/creek-village/roster"
    township = {"tier": "township", "name": "李敏", "role": "乡镇值班", "mobile": "+8613900000002"}
    old = {"tier": "village", "name": "王建国", "role": "群测群防员", "mobile": "+8613800000001"}
    put = await console.http.put(roster_url, json=[old, township], headers=admin)
    assert put.status_code == 200, put.text
    site = VILLAGE_SITE
    body = {"gateway_id": gateway_id, "site_toml": site, "note": "first"}
    configurator = console.as_(Role.CONFIGURATOR)
    created = await console.http.post("/api/v1/configs", json=body, headers=configurator)
    assert created.status_code == 201, created.text
    # a gateway of another site, with a config of its own that texts nobody
    plain = {"gateway_id": other_site, "site_toml": SITE.replace("creek-village", "hill-road")}
    assert (await console.http.post("/api/v1/configs", json=plain, headers=configurator)).is_success
    assert len(console.repository.ota.claim_documents(time.time())) == 2

    def village_list(queued: bytes) -> list[tuple[str, str]]:
        return signed_village_list(console, gateway_id, queued)

    # The township changes: nothing the gateway holds changed, nothing is sent.
    township["mobile"] = "+8613900000003"
    assert (await console.http.put(roster_url, json=[old, township], headers=admin)).is_success
    assert console.repository.ota.claim_documents(time.time()) == []

    # A new village monitor: the same site file goes again, signed with the new number.
    new = {"tier": "village", "name": "赵红", "role": "群测群防员", "mobile": "+8613800000007"}
    assert (await console.http.put(roster_url, json=[new, township], headers=admin)).is_success
    [queued] = console.repository.ota.claim_documents(time.time())
    assert village_list(queued.document) == [("赵红", "+8613800000007")]
    configs = (
        await console.http.get("/api/v1/configs", params={"gateway_id": gateway_id}, headers=admin)
    ).json()
    assert [(c["note"], c["site_toml"]) for c in configs][:2] == [
        ("sent again: the village tier of the site's roster changed", site),
        ("first", site),
    ]

    # Adding a second village person and deleting one each send the list again.
    added = await console.http.post(roster_url, json=old, headers=admin)
    assert added.status_code == 201, added.text
    [queued] = console.repository.ota.claim_documents(time.time())
    assert sorted(village_list(queued.document)) == [
        ("王建国", "+8613800000001"),
        ("赵红", "+8613800000007"),
    ]
    gone = await console.http.delete(f"{roster_url}/{added.json()['id']}", headers=admin)
    assert gone.status_code == 204
    [queued] = console.repository.ota.claim_documents(time.time())
    assert village_list(queued.document) == [("赵红", "+8613800000007")]

    # Nobody left to text: the gateway keeps its old list (and the log says so), rather
    # than a config it would have to refuse.
    caplog.clear()
    assert (await console.http.put(roster_url, json=[township], headers=admin)).is_success
    assert console.repository.ota.claim_documents(time.time()) == []
    assert f"{gateway_id} keeps its old list" in caplog.text
    assert "no village person with a mobile" in caplog.text
    assert "+86138" not in caplog.text


async def test_a_roster_imported_with_the_cli_sends_the_new_village_list_too(
    console: Console, tmp_path: Path
) -> None:
    gateway_id = (await console.enroll()).gateway_id
    monitor = {
        "tier": "village",
        "name": "王建国",
        "role": "群测群防员",
        "mobile": "+8613800000001",
    }
    roster_url = "/api/v1/sites/creek-village/roster"
    put = await console.http.put(roster_url, json=[monitor], headers=console.as_(Role.ADMIN))
    assert put.status_code == 200, put.text
    body = {"gateway_id": gateway_id, "site_toml": VILLAGE_SITE}
    created = await console.http.post(
        "/api/v1/configs", json=body, headers=console.as_(Role.CONFIGURATOR)
    )
    assert created.status_code == 201, created.text
    assert len(console.repository.ota.claim_documents(time.time())) == 1
    # The county's spreadsheet, imported with the CLI beside the running fleet.
    sheet = tmp_path / "roster.csv"
    sheet.write_text(
        "site_id,tier,name,role,mobile,email,webhook\n"
        "creek-village,village,钱多,群测群防员,+8613800000009,,\n",
        encoding="utf-8",
    )
    imported = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleet.cli", "roster", "import", str(sheet),
        "--data-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(imported.communicate(), 60)
    assert imported.returncode == 0, err.decode()
    assert f"{gateway_id}: config " in out.decode()
    assert "+86138" not in (out + err).decode()
    [queued] = console.repository.ota.claim_documents(time.time())
    assert signed_village_list(console, gateway_id, queued.document) == [("钱多", "+8613800000009")]
