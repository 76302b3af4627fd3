"""Builds the county console: the FastAPI app, its routers, and the fleet in its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fleet import access_log, console
from fleet.call_forecast import forecast_reader
from fleet.console_session import ConsoleSessions
from fleet.escalation import running_engine
from fleet.leases import ESCALATION_LEASE, ROLLOUTS_LEASE, Leadership, new_holder_id
from fleet.live_feed import LiveFeed
from fleet.rollouts import RolloutTiming, running_scheduler
from fleet.routers import (
    alarms,
    answers,
    api_tokens,
    configs,
    console_session,
    enrollment,
    gateways,
    ingest,
    readings,
    releases,
    rollouts,
    roster,
    site_events,
    site_slope,
    sites,
    stream,
)
from fleet.service import ingest_client_id, run_fleet
from fleet.settings import FleetSettings
from ota.own_version import own_version

API_VERSION = own_version()  # the installed release, not a constant


def create_app(
    settings: FleetSettings,
    rollout_timing: RolloutTiming | None = None,
    escalation_clock: Callable[[], float] | None = None,
) -> FastAPI:
    """The REST app; its lifespan runs storage, broker, ingest, rollouts and the 叫应 engine.

    ``rollout_timing`` sets the rollout scheduler's clock and tick, ``escalation_clock``
    the escalation engine's (tests inject a clock).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One holder id per process: of several replicas on one database, the one holding
        # a loop's lease runs it (fleet.leases); the others serve REST and the console.
        holder = new_holder_id()
        async with run_fleet(settings, client_id=ingest_client_id(settings)) as service:
            app.state.service = service
            app.state.repository = service.repository
            app.state.enrollment = service.enrollment
            app.state.ingest = service.ingest
            wake_outbox = service.ingest.wake_outbox if service.ingest else None
            leases = service.repository.leases
            app.state.leadership = {
                name: Leadership(leases, name, holder, settings.lease_s)
                for name in (ROLLOUTS_LEASE, ESCALATION_LEASE)
            }
            async with (
                running_scheduler(
                    service.repository,
                    service.enrollment.signing_key,
                    rollout_timing,
                    wake_outbox,
                    app.state.leadership[ROLLOUTS_LEASE],
                ) as scheduler,
                running_engine(
                    service.repository.escalation,
                    settings.escalation,
                    settings.data_dir,
                    settings.fleet_url,
                    escalation_clock,
                    service.repository.open_alarm_watch,
                    app.state.leadership[ESCALATION_LEASE],
                    forecast_reader(service.repository, settings.escalation.utc_offset_h),
                ) as engine,
            ):
                app.state.rollouts = scheduler
                app.state.escalation = engine
                repository = service.repository
                app.state.live = LiveFeed(repository.live_cursor, repository.live_changes)
                try:
                    yield
                finally:
                    await app.state.live.close()

    access_log.install()
    app = FastAPI(
        title="HazardWatch fleet",
        version=API_VERSION,
        summary=(
            "County console: gateways, readings, alarms, enrollment, API tokens, "
            "configs, releases and rollouts."
        ),
        lifespan=lifespan,
    )
    app.state.sessions = ConsoleSessions.load_or_create(settings.data_dir)
    for module in (
        gateways,
        readings,
        alarms,
        enrollment,
        api_tokens,
        ingest,
        roster,
        sites,
        site_slope,
        site_events,
        stream,
        console_session,
    ):
        app.include_router(module.router)
    app.include_router(answers.link_router)
    app.include_router(answers.sms_router)
    app.include_router(enrollment.enroll_router)
    for router in (*configs.routers, releases.router, rollouts.router):
        app.include_router(router)
    console.install(app, settings.data_dir)
    app.add_exception_handler(RequestValidationError, _validation_error)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = default_openapi()  # made once, then cached on the app
        schemas = schema.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = VALIDATION_ERROR_SCHEMA
        _document_unreadable_bodies(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


#: The OpenAPI schema of every 422 answer, in place of FastAPI's (which says ``detail`` is
#: the list): one line a person reads in ``detail``, and for request validation the list
#: of problems a program reads in ``errors``. Routes that refuse a body's content
#: themselves (a site file, a release file, waves) answer 422 with ``detail`` alone.
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "string",
            "title": "Detail",
            "description": "what is wrong, in one line: 'where: problem; where: problem'",
        },
        "errors": {
            "type": "array",
            "title": "Errors",
            "items": {"$ref": "#/components/schemas/ValidationError"},
            "description": "each problem with its location (request validation only)",
        },
    },
}


def _document_unreadable_bodies(schema: dict[str, Any]) -> None:
    """Declare the 400 FastAPI itself answers when a JSON body cannot even be decoded."""
    unreadable = {
        "description": "the body could not be read as JSON",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                operation["responses"].setdefault("400", unreadable)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 whose ``detail`` says in one line what is wrong, with the full list in ``errors``.

    Its shape is ``VALIDATION_ERROR_SCHEMA``, which the OpenAPI schema documents.
    """
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    problems = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {error.get('msg', 'invalid')}")
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={
            "detail": "; ".join(problems),
            "errors": [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors],
        },
    )
