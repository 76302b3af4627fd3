"""The county console in the browser: its page, its assets and the county's map, at ``/``.

Everything the browser needs is served from the package (``static/``: the page, its ES
modules and the vendored Leaflet and uPlot), so the console works on an intranet with no
internet. The page and its assets are public (the sign-in form is one of them); the
county's map settings and boundary need a viewer, like the API. The page reads and
changes nothing but through ``/api/v1`` and ``/console/session``, which enforce the
roles. This module must never serve a file from outside ``static/`` and the county's
configured boundary, and never let the page load a script or a style from another
origin (its CSP says so).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from fleet.console.map_settings import load_county_map
from fleet.dependencies import require
from fleet.repository import Role

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/console/static"


def content_security_policy(tile_origin: str | None) -> str:
    """Scripts, styles and data from the fleet only; images also from the county's tiles.

    Leaflet and uPlot position elements with inline ``style`` attributes, hence
    ``'unsafe-inline'`` for styles (never for scripts).
    """
    images = "'self' data:" + (f" {tile_origin}" if tile_origin else "")
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"img-src {images}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def console_router(data_dir: Path) -> APIRouter:
    """The page at ``/`` and the county's map settings, for the fleet in ``data_dir``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> HTMLResponse:
        county = load_county_map(data_dir)
        html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": content_security_policy(county.tile_origin),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    viewer = [Depends(require(Role.VIEWER))]

    @router.get("/console/map", dependencies=viewer)
    def county_map() -> JSONResponse:
        county = load_county_map(data_dir)
        return JSONResponse(
            {
                "boundary_url": "/console/county.geojson",
                "tile_url": county.tile_url,
                "tile_attribution": county.tile_attribution,
                "problem": county.problem,
            }
        )

    @router.get("/console/county.geojson", dependencies=viewer)
    def county_boundary() -> FileResponse:
        return FileResponse(load_county_map(data_dir).boundary, media_type="application/geo+json")

    return router


def install(app: FastAPI, data_dir: Path) -> None:
    """Serve the console on ``app``: the page at ``/`` and the assets under ``/console/static``."""
    app.include_router(console_router(data_dir))
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")
