"""Console sign-in: an API token opens an HttpOnly, SameSite=Strict session cookie.

The cookie stands for its token on every REST route with the same roles; a request that
changes something needs the session's CSRF token as well; a forged cookie, a revoked token
or an ended session is refused. The fleet app runs in-process with its real SQLite store.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleet.console_session import COOKIE, ConsoleSessions
from fleet.main import create_app
from fleet.repository import Role
from fleet.settings import FleetSettings
from fleet.sqlite_repository import SQLiteRepository


@dataclass
class Console:
    app_url: str
    transport: httpx.ASGITransport
    repository: SQLiteRepository
    secrets: dict[Role, str]
    data_dir: Path

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url=self.app_url)

    @contextlib.asynccontextmanager
    async def signed_in(self, role: Role) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
        async with self.client() as client:
            answer = await client.post("/console/session", json={"token": self.secrets[role]})
            assert answer.status_code == 200, answer.text
            yield client, answer.json()["csrf"]


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    settings = FleetSettings(
        data_dir=tmp_path, broker="external", mqtt_url="mqtt://127.0.0.1:9", ingest=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        repository: SQLiteRepository = app.state.repository
        secrets = {r: repository.create_api_token(f"{r.value}-1", r, time.time())[1] for r in Role}
        yield Console("http://fleet", httpx.ASGITransport(app=app), repository, secrets, tmp_path)


async def test_a_token_opens_an_httponly_strict_session_that_stands_for_it(
    console: Console,
) -> None:
    async with console.client() as client:
        answer = await client.post("/console/session", json={"token": console.secrets[Role.VIEWER]})
        assert answer.status_code == 200, answer.text
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/" in cookie
        assert console.secrets[Role.VIEWER] not in cookie  # the cookie holds no secret
        body = answer.json()
        assert (body["name"], body["role"]) == ("viewer-1", "viewer")
        # The cookie alone, no bearer token: REST answers as for the token.
        assert (await client.get("/api/v1/gateways")).status_code == 200
        me = (await client.get("/console/session")).json()
        assert me["csrf"] == body["csrf"]


async def test_a_change_needs_the_csrf_token_and_the_role(console: Console) -> None:
    async with console.signed_in(Role.OPERATOR) as (operator, csrf):
        url = "/api/v1/alarms/999/acknowledge"
        forged = await operator.post(url, json={"note": "x"})  # a cross-site form would do this
        assert forged.status_code == 403
        assert "CSRF" in forged.json()["detail"]
        wrong = await operator.post(url, json={"note": "x"}, headers={"X-CSRF-Token": "abc"})
        assert wrong.status_code == 403
        allowed = await operator.post(url, json={"note": "x"}, headers={"X-CSRF-Token": csrf})
        assert allowed.status_code == 404  # past the checks: there is no alarm 999
    async with console.signed_in(Role.VIEWER) as (viewer, csrf):
        refused = await viewer.post(url, json={"note": "x"}, headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 403
        assert "operator role" in refused.json()["detail"]
    # Another session's CSRF token does not fit this one.
    async with (
        console.signed_in(Role.OPERATOR) as (first, _),
        console.signed_in(Role.OPERATOR) as (_second, other_csrf),
    ):
        crossed = await first.post(url, json={"note": "x"}, headers={"X-CSRF-Token": other_csrf})
        assert crossed.status_code == 403


async def test_a_forged_cookie_a_bad_token_and_a_revoked_token_are_refused(
    console: Console,
) -> None:
    async with console.client() as client:
        bad = await client.post("/console/session", json={"token": "not-a-token"})
        assert bad.status_code == 401
        assert COOKIE not in bad.headers.get("set-cookie", "")
        client.cookies.set(COOKIE, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        assert (await client.get("/api/v1/gateways")).status_code == 401
    # A cookie signed with another fleet's key is not this fleet's.
    other = ConsoleSessions(b"k" * 32)
    token_id = console.repository.list_api_tokens()[0].id
    cookie, _ = other.open(token_id, time.time() + 600)
    async with console.client() as client:
        client.cookies.set(COOKIE, cookie)
        assert (await client.get("/api/v1/gateways")).status_code == 401
    async with console.signed_in(Role.ADMIN) as (admin, _csrf):
        assert (await admin.get("/api/v1/gateways")).status_code == 200
        token = next(t for t in console.repository.list_api_tokens() if t.name == "admin-1")
        console.repository.revoke_api_token(token.id, time.time())
        assert (await admin.get("/api/v1/gateways")).status_code == 401  # at once


async def test_an_ended_session_is_refused_and_sign_out_clears_the_cookie(
    console: Console,
) -> None:
    sessions = ConsoleSessions.load_or_create(console.data_dir)
    token_id = console.repository.list_api_tokens()[0].id
    ended, _ = sessions.open(token_id, time.time() - 1)
    async with console.client() as client:
        client.cookies.set(COOKIE, ended)
        answer = await client.get("/api/v1/gateways")
        assert answer.status_code == 401
        assert "ended" in answer.json()["detail"]
    async with console.signed_in(Role.VIEWER) as (viewer, csrf):
        assert (await viewer.delete("/console/session")).status_code == 403  # no CSRF
        out = await viewer.delete("/console/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert COOKIE not in viewer.cookies
        assert (await viewer.get("/api/v1/gateways")).status_code == 401
