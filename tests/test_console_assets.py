"""The console's files as the fleet serves them.

The page and its CSP, every asset from the package itself (nothing from another origin),
the county's map settings, and the wheel's package data covering every asset.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
import tomllib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fleet import console
from fleet.console.map_settings import SAMPLE_BOUNDARY, load_county_map
from fleet.repository import Role
from fleet.sqlite_repository import SQLiteRepository
from protocol.levels import AlarmLevel

REPO = Path(__file__).resolve().parent.parent
STATIC = console.STATIC_DIR


def client(data_dir: Path, role: Role | None = Role.VIEWER) -> TestClient:
    """The console on a bare app with the fleet's real repository; ``role``'s API token."""
    app = FastAPI()
    repository = SQLiteRepository(data_dir / "fleet.sqlite")
    app.state.repository = repository
    console.install(app, data_dir)
    headers = {}
    if role is not None:
        _token, secret = repository.create_api_token(f"test-{role.value}", role, time.time())
        headers["Authorization"] = f"Bearer {secret}"
    return TestClient(app, headers=headers)


def write_settings(data_dir: Path, text: str) -> Path:
    folder = data_dir / "console"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "console.toml").write_text(text, encoding="utf-8")
    return folder


def test_the_page_is_served_at_the_root_with_a_policy_that_keeps_it_on_the_fleet(
    tmp_path: Path,
) -> None:
    answer = client(tmp_path).get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert "img-src 'self' data:;" in policy  # no tile server configured: no other origin
    assert "frame-ancestors 'none'" in policy


def test_every_asset_the_page_names_is_served_from_the_package(tmp_path: Path) -> None:
    http = client(tmp_path)
    page = http.get("/").text
    names = re.findall(r'(?:src|href)="(/console/static/[^"]+)"', page)
    modules = re.findall(
        r'from "\./([\w-]+\.js)"',
        "".join(p.read_text(encoding="utf-8") for p in (STATIC / "js").glob("*.js")),
    )
    names += [f"/console/static/js/{m}" for m in modules]
    assert "/console/static/js/app.js" in names
    assert "/console/static/vendor/leaflet/leaflet.js" in names
    assert "/console/static/vendor/uplot/uPlot.iife.min.js" in names
    for name in set(names):
        assert http.get(name).status_code == 200, name


def test_the_page_preloads_every_module_so_they_load_at_once_not_import_by_import(
    tmp_path: Path,
) -> None:
    page = client(tmp_path).get("/").text
    preloaded = set(
        re.findall(r'<link rel="modulepreload" href="/console/static/js/([\w-]+\.js)"', page)
    )
    assert preloaded == {p.name for p in (STATIC / "js").glob("*.js")} - {"app.js"}


def test_the_page_is_public_and_the_countys_map_needs_a_viewer(tmp_path: Path) -> None:
    anonymous = client(tmp_path, role=None)
    assert anonymous.get("/").status_code == 200  # the sign-in form is on it
    assert anonymous.get("/console/static/js/app.js").status_code == 200
    for path in ("/console/map", "/console/county.geojson"):
        assert anonymous.get(path).status_code == 401, path


def test_no_asset_of_ours_loads_anything_from_another_origin() -> None:
    own = [p for p in STATIC.rglob("*") if p.is_file() and "vendor" not in p.parts]
    assert own
    for path in own:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path


def test_vendored_libraries_ship_with_their_licences() -> None:
    for library in ("leaflet", "uplot"):
        licence = (STATIC / "vendor" / library / "LICENSE").read_text(encoding="utf-8")
        assert "Permission" in licence or "Redistribution" in licence


def test_a_path_outside_the_static_folder_is_not_served(tmp_path: Path) -> None:
    http = client(tmp_path)
    for path in ("/console/static/../__init__.py", "/console/static/%2e%2e/__init__.py"):
        assert http.get(path).status_code == 404


def test_without_settings_the_sample_county_is_drawn(tmp_path: Path) -> None:
    http = client(tmp_path)
    assert http.get("/console/map").json() == {
        "boundary_url": "/console/county.geojson",
        "tile_url": None,
        "tile_attribution": "",
        "problem": None,
    }
    boundary = http.get("/console/county.geojson")
    assert boundary.headers["content-type"] == "application/geo+json"
    assert boundary.json() == json.loads(SAMPLE_BOUNDARY.read_text(encoding="utf-8"))


def test_the_countys_own_boundary_and_tile_server_are_used(tmp_path: Path) -> None:
    folder = write_settings(
        tmp_path,
        'boundary = "mine.geojson"\n'
        'tile_url = "http://tiles.county.lan:8081/{z}/{x}/{y}.png"\n'
        'tile_attribution = "县测绘局"\n',
    )
    mine = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Point", "coordinates": [1, 2]},
    }
    (folder / "mine.geojson").write_text(json.dumps(mine), encoding="utf-8")
    http = client(tmp_path)
    settings = http.get("/console/map").json()
    assert settings["tile_url"] == "http://tiles.county.lan:8081/{z}/{x}/{y}.png"
    assert settings["tile_attribution"] == "县测绘局"
    assert settings["problem"] is None
    assert http.get("/console/county.geojson").json() == mine
    assert (
        "img-src 'self' data: http://tiles.county.lan:8081;"
        in http.get("/").headers["content-security-policy"]
    )


@pytest.mark.parametrize(
    ("settings", "files", "problem"),
    [
        ("boundary = [1\n", {}, "console.toml"),
        ('boundry = "x.geojson"\n', {}, "unknown key(s) boundry"),
        ('boundary = "gone.geojson"\n', {}, "gone.geojson"),
        ('boundary = "b.geojson"\n', {"b.geojson": "{not json"}, "not JSON"),
        ('boundary = "b.geojson"\n', {"b.geojson": '{"type": "Topology"}'}, "'Topology'"),
        ('tile_url = "http://tiles.lan/{z}/{x}.png"\n', {}, "lacks {y}"),
        ('tile_url = "ftp://tiles.lan/{z}/{x}/{y}"\n', {}, "not an http(s) URL"),
        ('tile_url = "http://u:p@tiles.lan/{z}/{x}/{y}"\n', {}, "no user or password"),
    ],
)
def test_unusable_map_settings_fall_back_to_the_sample_and_say_why(
    tmp_path: Path, settings: str, files: dict[str, str], problem: str
) -> None:
    folder = write_settings(tmp_path, settings)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    county = load_county_map(tmp_path)
    assert county.boundary == SAMPLE_BOUNDARY
    assert county.tile_url is None
    assert county.problem is not None
    assert problem in county.problem
    # The fleet keeps serving: the page loads and the sample is drawn.
    http = client(tmp_path)
    assert http.get("/").status_code == 200
    assert http.get("/console/map").json()["problem"] == county.problem


def test_the_wheel_package_data_covers_every_console_asset() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["fleet.console"]
    root = STATIC.parent
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(root).as_posix()
            covered = [p for p in patterns if fnmatch.fnmatch(relative, p)]
            # fnmatch's * also crosses "/", so check the depth as setuptools' glob would.
            covered = [p for p in covered if p.count("/") == relative.count("/")]
            assert covered, f"{relative} would be missing from the wheel"


def test_the_console_names_levels_as_the_protocol_does() -> None:
    source = (STATIC / "js" / "i18n.js").read_text(encoding="utf-8")
    table = source[
        source.index("const LEVELS = {") : source.index("};", source.index("const LEVELS"))
    ]
    for lang, attribute in (("zh", "display_zh"), ("en", "display_en")):
        block = table[table.index(f"{lang}: [") : table.index("]", table.index(f"{lang}: ["))]
        names = re.findall(r'"([^"]+)"', block)
        assert names == [getattr(level, attribute) for level in AlarmLevel], lang
