"""The county REST console: roles on every endpoint, enrollment rules, readings, clear 4xx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from fleet.main import create_app
from fleet.postgres_repository import PostgresRepository
from fleet.repository import API_TOKEN_TTL_S, Received, Repository, Role
from fleet.settings import FleetSettings
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.mosquitto import auth
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.simgateway import enrollment_request
from protocol import BAD_QUALITY_MASK, DataBatch, EnrollmentResponse

T0 = 1_750_000_000.0


@dataclass
class Console:
    http: httpx.AsyncClient
    repository: Repository
    tokens: dict[Role, str]

    def as_(self, role: Role) -> dict[str, str]:
        return auth(self.tokens[role])

    async def new_token(self, site_id: str = "creek-village", ttl_s: float = 3600) -> str:
        answer = await self.http.post(
            "/api/v1/enrollment-tokens",
            json={"site_id": site_id, "ttl_s": ttl_s},
            headers=self.as_(Role.ADMIN),
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])

    async def enroll(self, token: str) -> httpx.Response:
        return await self.http.post(
            "/api/v1/enroll", json=enrollment_request(token, "pi-01").model_dump()
        )


@pytest.fixture(params=("sqlite", "postgresql"))
async def console(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Console]:
    """The console on each backend (``fleet serve --database`` for PostgreSQL)."""
    if request.param == "sqlite":
        async for console in _console(tmp_path, None):
            yield console
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        async for console in _console(tmp_path, url):
            yield console


async def _console(tmp_path: Path, database: str | None) -> AsyncIterator[Console]:
    # REST alone: no broker, no ingest (as with `fleet serve` beside a separate `fleet ingest`).
    settings = FleetSettings(
        data_dir=tmp_path,
        broker="external",
        mqtt_url="mqtt://127.0.0.1:9",
        ingest=False,
        database=database,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        repository: Repository = app.state.repository
        tokens = {
            role: repository.create_api_token(role.value, role, time.time())[1] for role in Role
        }
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as http:
            yield Console(http, repository, tokens)


#: Routes reached without an API token by design: an answer link (its token is signed), and
#: Kannel's callbacks (a key in the query); without those they answer 404 and do nothing.
OPEN_BY_DESIGN = {"/a/{token}", "/api/v1/sms/dlr", "/api/v1/sms/mo"}


async def test_every_endpoint_but_enroll_needs_an_api_token(console: Console) -> None:
    schema = (await console.http.get("/openapi.json")).json()
    checked = 0
    for template, operations in schema["paths"].items():
        path = template.replace("{gateway_id}", "gw-0000000000").replace("{alarm_id}", "1")
        path = path.replace("{token_id}", "1").replace("{site_id}", "creek-village")
        path = path.replace("{person_id}", "1").replace("{token}", "AAAA")
        for method in operations:
            answer = await console.http.request(
                method, path, params={"key": "x", "call": 1, "type": 1, "from": "1"}
            )
            if (method, template) in (("post", "/api/v1/enroll"), ("post", "/console/session")):
                assert answer.status_code == 422  # no body; no API token expected
                continue
            if template in OPEN_BY_DESIGN:
                assert answer.status_code == 404, (method, path, answer.text)
                continue
            assert answer.status_code == 401, (method, path, answer.text)
            assert "missing API token" in answer.json()["detail"]
            checked += 1
    assert checked >= 14


async def test_a_viewer_cannot_create_enrollment_tokens_or_api_tokens(console: Console) -> None:
    answer = await console.http.post(
        "/api/v1/enrollment-tokens", json={"site_id": "x"}, headers=console.as_(Role.VIEWER)
    )
    assert answer.status_code == 403
    assert answer.json()["detail"] == (
        "this needs the admin role; API token 'viewer' has the viewer role"
    )
    answer = await console.http.post(
        "/api/v1/api-tokens",
        json={"name": "x", "role": "admin"},
        headers=console.as_(Role.OPERATOR),
    )
    assert answer.status_code == 403


async def test_a_revoked_or_unknown_api_token_is_refused(console: Console) -> None:
    created = await console.http.post(
        "/api/v1/api-tokens",
        json={"name": "script", "role": "viewer"},
        headers=console.as_(Role.ADMIN),
    )
    assert created.status_code == 201
    secret, token_id = created.json()["token"], created.json()["id"]
    assert (await console.http.get("/api/v1/gateways", headers=auth(secret))).status_code == 200
    assert (
        await console.http.delete(f"/api/v1/api-tokens/{token_id}", headers=console.as_(Role.ADMIN))
    ).status_code == 200
    answer = await console.http.get("/api/v1/gateways", headers=auth(secret))
    assert answer.status_code == 401
    assert answer.json()["detail"].startswith("unknown, revoked or expired API token")
    stored = [t.name for t in console.repository.list_api_tokens()]
    assert "script" in stored
    hashes = [h for (h,) in stored_rows(console, "SELECT token_hash FROM api_tokens")]
    assert secret not in hashes


async def test_api_tokens_expire_after_90_days_unless_rotated(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    created = await console.http.post(
        "/api/v1/api-tokens", json={"name": "script", "role": "viewer"}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["expires_at"] - created.json()["created_at"] == API_TOKEN_TTL_S

    # One made 91 days ago with the default lifetime has expired.
    long_ago = time.time() - 91 * 86400
    old, old_secret = console.repository.create_api_token("cron", Role.VIEWER, long_ago)
    answer = await console.http.get("/api/v1/gateways", headers=auth(old_secret))
    assert answer.status_code == 401
    assert "expired" in answer.json()["detail"]
    assert "fleet apitoken rotate" in answer.json()["detail"]

    rotated = await console.http.post(
        f"/api/v1/api-tokens/{old.id}/rotate", json={"ttl_s": 3600}, headers=admin
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["token"]
    assert (rotated.json()["id"], rotated.json()["name"]) == (old.id, "cron")
    assert 3500 < rotated.json()["expires_at"] - time.time() <= 3600
    assert (await console.http.get("/api/v1/gateways", headers=auth(new_secret))).status_code == 200
    assert (await console.http.get("/api/v1/gateways", headers=auth(old_secret))).status_code == 401

    # No body: the default lifetime. The secret it replaces stops at once.
    again = await console.http.post(f"/api/v1/api-tokens/{old.id}/rotate", headers=admin)
    assert again.status_code == 200, again.text
    assert (await console.http.get("/api/v1/gateways", headers=auth(new_secret))).status_code == 401

    await console.http.delete(f"/api/v1/api-tokens/{old.id}", headers=admin)
    revoked = await console.http.post(f"/api/v1/api-tokens/{old.id}/rotate", headers=admin)
    assert revoked.status_code == 409
    assert "was revoked at" in revoked.json()["detail"]
    missing = await console.http.post("/api/v1/api-tokens/99999/rotate", headers=admin)
    assert (missing.status_code, missing.json()["detail"]) == (404, "no API token with id 99999")
    operator = await console.http.post(
        f"/api/v1/api-tokens/{old.id}/rotate", headers=console.as_(Role.OPERATOR)
    )
    assert operator.status_code == 403


@pytest.mark.parametrize("ttl_s", [True, 0, 3 * 365 * 86400])
async def test_api_token_lifetimes_are_bounded_and_never_a_bool(
    console: Console, ttl_s: object
) -> None:
    answer = await console.http.post(
        "/api/v1/api-tokens",
        json={"name": "x", "role": "viewer", "ttl_s": ttl_s},
        headers=console.as_(Role.ADMIN),
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("ttl_s: ")


async def test_a_bool_is_no_enrollment_token_lifetime(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    answer = await console.http.post(
        "/api/v1/enrollment-tokens", json={"site_id": "ridge", "ttl_s": True}, headers=admin
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("ttl_s: Input should be a valid number")
    answer = await console.http.post(
        "/api/v1/enrollment-tokens", json={"site_id": "ridge", "ttl_s": 60}, headers=admin
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["expires_at"] - answer.json()["created_at"] == 60


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", f"/api/v1/alarms/{2**63}", {}),
        ("GET", f"/api/v1/alarms/{2**64 + 1}", {}),
        ("POST", f"/api/v1/alarms/{2**63}/acknowledge", {}),
        ("DELETE", f"/api/v1/api-tokens/{2**63}", {}),
        ("POST", f"/api/v1/api-tokens/{2**63}/rotate", {}),
        ("DELETE", f"/api/v1/enrollment-tokens/{2**63}", {}),
        ("GET", f"/api/v1/configs/{2**63}", {}),
        ("GET", f"/api/v1/rollouts/{2**63}", {}),
        ("POST", f"/api/v1/rollouts/{2**63}/abort", {}),
        ("GET", "/api/v1/alarms/0", {}),
        ("GET", "/api/v1/alarms", {"since": "inf"}),
        ("GET", "/api/v1/alarms", {"until": "nan"}),
        ("GET", "/api/v1/gateways/gw-0000000000/readings", {"channel": "x", "since": "-inf"}),
        ("GET", "/api/v1/gateways/gw-0000000000/readings", {"channel": "x", "step": "inf"}),
    ],
)
async def test_ids_beyond_64_bits_and_non_finite_times_are_refused_not_500(
    console: Console, method: str, path: str, params: dict[str, str]
) -> None:
    answer = await console.http.request(
        method, path, params=params, json={}, headers=console.as_(Role.ADMIN)
    )
    assert answer.status_code == 422, answer.text
    assert isinstance(answer.json()["detail"], str)


async def test_the_largest_64_bit_id_is_simply_not_found(console: Console) -> None:
    answer = await console.http.get(f"/api/v1/alarms/{2**63 - 1}", headers=console.as_(Role.ADMIN))
    assert (answer.status_code, answer.json()["detail"]) == (404, f"no alarm with id {2**63 - 1}")


async def test_a_422_answer_has_the_shape_the_openapi_schema_documents(console: Console) -> None:
    schema = (await console.http.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    documented = components["HTTPValidationError"]
    item = components["ValidationError"]
    create = schema["paths"]["/api/v1/enrollment-tokens"]["post"]["responses"]["422"]
    ref = create["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/HTTPValidationError"

    answer = await console.http.post(
        "/api/v1/enrollment-tokens",
        json={"site_id": "Creek Village!", "ttl_s": -1},
        headers=console.as_(Role.ADMIN),
    )
    assert answer.status_code == 422
    body = answer.json()
    assert set(body) <= set(documented["properties"])
    assert set(documented["required"]) <= set(body)
    assert documented["properties"]["detail"]["type"] == "string"
    assert isinstance(body["detail"], str)
    assert documented["properties"]["errors"]["type"] == "array"
    assert len(body["errors"]) == 2
    for error in body["errors"]:
        assert set(item["required"]) <= set(error) <= set(item["properties"])
        assert all(isinstance(part, str | int) for part in error["loc"])
        assert isinstance(error["msg"], str)
        assert isinstance(error["type"], str)


async def test_every_refusal_a_route_gives_is_in_the_openapi_schema(console: Console) -> None:
    schema = (await console.http.get("/openapi.json")).json()
    undocumented = []
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            expected = set()
            if operation.get("security"):
                expected |= {"401", "403"}
            if "{" in template:
                expected.add("404")
            missing = expected - set(operation["responses"])
            if missing:
                undocumented.append((method, template, sorted(missing)))
            for code in expected & set(operation["responses"]):
                content = operation["responses"][code]["content"]["application/json"]
                assert content["schema"]["$ref"] == "#/components/schemas/ErrorOut"
    assert undocumented == []
    conflicts = {
        ("post", "/api/v1/alarms/{alarm_id}/acknowledge"),
        ("delete", "/api/v1/enrollment-tokens/{token_id}"),
        ("post", "/api/v1/api-tokens/{token_id}/rotate"),
        ("post", "/api/v1/rollouts/{rollout_id}/abort"),
        ("post", "/api/v1/configs"),
    }
    for method, template in conflicts:
        assert "409" in schema["paths"][template][method]["responses"], (method, template)
    enroll = schema["paths"]["/api/v1/enroll"]["post"]["responses"]
    assert {"400", "403", "410", "422"} <= set(enroll)


async def test_a_body_that_is_not_even_text_gets_the_documented_400(console: Console) -> None:
    schema = (await console.http.get("/openapi.json")).json()
    answer = await console.http.post(
        "/api/v1/api-tokens",
        content=b"\xff\xfe\x00",
        headers={**console.as_(Role.ADMIN), "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    documented = schema["paths"]["/api/v1/api-tokens"]["post"]["responses"]["400"]
    assert documented["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert isinstance(answer.json()["detail"], str)


async def test_a_stored_health_with_an_infinity_still_shows_the_gateway(console: Console) -> None:
    # Stored by a version that let Infinity through: the page answered 500.
    gateway_id = (await console.enroll(await console.new_token())).json()["gateway_id"]
    health = f'{{"gateway_id":"{gateway_id}","ts":{T0},"uptime_s":Infinity,"agent_version":"0.1"}}'
    stored_rows(
        console,
        "UPDATE gateways SET health = ?, health_at = ? WHERE id = ?",
        health,
        T0,
        gateway_id,
    )
    answer = await console.http.get(
        f"/api/v1/gateways/{gateway_id}", headers=console.as_(Role.VIEWER)
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["health"], answer.json()["health_at"]) == (None, T0)


def stored_rows(console: Console, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run ``query`` (``?`` placeholders) on the console's database itself, committed."""
    repository = console.repository
    if isinstance(repository, SQLiteRepository):
        with repository._db() as db:
            return [tuple(row) for row in db.execute(query, params)]
    assert isinstance(repository, PostgresRepository)
    with psycopg.connect(repository.url) as conn:
        cursor = conn.execute(query.replace("?", "%s").encode(), params)
        return cursor.fetchall() if cursor.description else []


def owner_only(path: Path) -> bool:
    return path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("console", ["sqlite"], indirect=True)  # PostgreSQL owns its files
async def test_the_database_file_is_readable_by_the_owner_only(console: Console) -> None:
    # Created under this process's umask (0022 unless the caller set another).
    assert isinstance(console.repository, SQLiteRepository)
    database = console.repository.path
    for name in (database.name, f"{database.name}-wal", f"{database.name}-shm"):
        assert owner_only(database.with_name(name)), name


async def test_an_enrollment_token_works_once(console: Console) -> None:
    token = await console.new_token()
    first = await console.enroll(token)
    assert first.status_code == 201, first.text
    enrolled = EnrollmentResponse.model_validate(first.json())
    assert enrolled.site_id == "creek-village"
    assert enrolled.mqtt.username == enrolled.gateway_id
    assert enrolled.topic_prefix == f"hw/v1/{enrolled.gateway_id}"
    assert enrolled.broker_url == "mqtt://127.0.0.1:9"

    again = await console.enroll(token)
    assert again.status_code == 410
    assert "already used" in again.json()["detail"]
    # Whoever holds a copy of the token learns nothing about the gateway it enrolled.
    assert enrolled.gateway_id not in again.json()["detail"]
    assert "gw-" not in again.json()["detail"]
    listed = (
        await console.http.get("/api/v1/enrollment-tokens", headers=console.as_(Role.ADMIN))
    ).json()
    assert [(t["status"], t["gateway_id"]) for t in listed] == [("used", enrolled.gateway_id)]


async def test_expired_unknown_and_revoked_tokens_are_refused_with_a_reason(
    console: Console,
) -> None:
    expired = await console.new_token(ttl_s=0.001)
    answer = await console.enroll(expired)
    assert answer.status_code == 410
    assert "expired at" in answer.json()["detail"]

    answer = await console.enroll("hwe_" + "n" * 43)
    assert answer.status_code == 403
    assert "unknown enrollment token" in answer.json()["detail"]

    revoked = await console.new_token()
    token_id = (
        await console.http.get("/api/v1/enrollment-tokens", headers=console.as_(Role.ADMIN))
    ).json()[0]["id"]
    await console.http.delete(
        f"/api/v1/enrollment-tokens/{token_id}", headers=console.as_(Role.ADMIN)
    )
    answer = await console.enroll(revoked)
    assert answer.status_code == 410
    assert "revoked" in answer.json()["detail"]


async def test_an_enrollment_signed_with_another_key_is_refused(console: Console) -> None:
    token = await console.new_token()
    request = enrollment_request(token)
    forged = request.model_copy(update={"public_key": enrollment_request(token).public_key})
    answer = await console.http.post("/api/v1/enroll", json=forged.model_dump())
    assert answer.status_code == 403
    assert "signature does not verify" in answer.json()["detail"]
    # The token was not spent on the forgery.
    assert (await console.enroll(token)).status_code == 201


async def test_an_offline_bundle_carries_the_trust_anchor_and_a_working_token(
    console: Console,
) -> None:
    answer = await console.http.post(
        "/api/v1/enrollment-tokens/bundles",
        json={"site_id": "ridge"},
        headers=console.as_(Role.ADMIN),
    )
    assert answer.status_code == 201, answer.text
    bundle = answer.json()
    assert bundle["format"] == "hazardwatch-enrollment-bundle"
    assert bundle["expires_at"] - time.time() > 29 * 24 * 3600
    enrolled = (await console.enroll(bundle["token"])).json()
    assert enrolled["fleet_signing_key"] == bundle["fleet_signing_key"]
    assert enrolled["site_id"] == "ridge"


async def test_bad_requests_say_what_is_wrong(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    answer = await console.http.post(
        "/api/v1/enrollment-tokens", json={"site_id": "Creek Village!"}, headers=admin
    )
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("site_id: String should match pattern")

    answer = await console.http.post("/api/v1/enroll", json={"token": "x"})
    assert answer.status_code == 422
    assert "public_key: Field required" in answer.json()["detail"]

    answer = await console.http.get("/api/v1/gateways/gw-nosuchthing", headers=admin)
    assert answer.status_code == 404
    assert answer.json()["detail"] == "no gateway 'gw-nosuchthing'"

    answer = await console.http.post(
        "/api/v1/alarms/999/acknowledge", json={}, headers=console.as_(Role.OPERATOR)
    )
    assert answer.status_code == 404
    assert answer.json()["detail"] == "no alarm with id 999"

    gateway_id = (await console.enroll(await console.new_token())).json()["gateway_id"]
    readings = f"/api/v1/gateways/{gateway_id}/readings"
    answer = await console.http.get(readings, params={"channel": "nope"}, headers=admin)
    assert answer.status_code == 404
    assert answer.json()["detail"] == f"gateway {gateway_id} has no channel 'nope' (has: none yet)"
    answer = await console.http.get(
        readings, params={"channel": "x", "since": 10, "until": 5}, headers=admin
    )
    assert answer.status_code == 400
    assert answer.json()["detail"] == "since (10.0) must be before until (5.0)"
    answer = await console.http.get(
        readings, params={"channel": "x", "since": 0, "until": 86400, "step": 1}, headers=admin
    )
    assert answer.status_code == 400
    assert "86400 buckets; at most 10000" in answer.json()["detail"]
    answer = await console.http.get(readings, params={"channel": "x", "step": -1}, headers=admin)
    assert answer.status_code == 422
    assert answer.json()["detail"] == "query.step: Input should be greater than 0"


async def test_readings_downsample_to_min_avg_max_of_good_values(console: Console) -> None:
    gateway_id = (await console.enroll(await console.new_token())).json()["gateway_id"]
    rows = [(s, T0 + s, "level", float(s), 0) for s in range(1, 121)]
    rows[10] = (11, T0 + 11, "level", 999.0, BAD_QUALITY_MASK & 0b100000)  # a spike
    batch = DataBatch(gateway_id=gateway_id, first_seq=1, last_seq=120, rows=rows)
    console.repository.commit([Received(gateway_id, time.time(), batch)])
    answer = await console.http.get(
        f"/api/v1/gateways/{gateway_id}/readings",
        params={"channel": "level", "since": T0, "until": T0 + 120, "step": 60},
        headers=console.as_(Role.VIEWER),
    )
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["buckets"]
    assert (first["count"], first["bad"], first["min"], first["max"]) == (58, 1, 1.0, 59.0)
    assert (second["count"], second["min"], second["max"], second["avg"]) == (60, 60.0, 119.0, 89.5)
    raw = await console.http.get(
        f"/api/v1/gateways/{gateway_id}/readings",
        params={"channel": "level", "since": T0, "until": T0 + 200, "limit": 100},
        headers=console.as_(Role.VIEWER),
    )
    assert len(raw.json()["readings"]) == 100
    assert raw.json()["truncated"] is True


async def test_the_openapi_schema_documents_every_resource(console: Console) -> None:
    schema = (await console.http.get("/openapi.json")).json()
    assert {
        "/api/v1/gateways",
        "/api/v1/gateways/{gateway_id}",
        "/api/v1/gateways/{gateway_id}/readings",
        "/api/v1/alarms",
        "/api/v1/alarms/{alarm_id}/acknowledge",
        "/api/v1/alarms/{alarm_id}/receipts",
        "/api/v1/enroll",
        "/api/v1/enrollment-tokens",
        "/api/v1/enrollment-tokens/bundles",
        "/api/v1/api-tokens",
    } <= set(schema["paths"])


async def test_simultaneous_enrollments_all_succeed_and_every_gateway_gets_broker_access(
    console: Console, tmp_path: Path
) -> None:
    tokens = [await console.new_token() for _ in range(6)]
    answers = await asyncio.gather(*(console.enroll(t) for t in tokens))
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    ids = {a.json()["gateway_id"] for a in answers}
    passwd = await asyncio.to_thread(lambda: next(tmp_path.rglob("passwd")).read_text())
    assert ids <= {line.split(":", 1)[0] for line in passwd.splitlines()}
