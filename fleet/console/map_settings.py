"""The county's own map for the console: its boundary GeoJSON and an optional tile server.

A county puts ``console/console.toml`` in the fleet's data directory::

    boundary = "county.geojson"          # relative to that directory, or absolute
    tile_url = "http://tiles.county.lan/{z}/{x}/{y}.png"
    tile_attribution = "County surveying bureau"

Without the file the console draws the sample boundary shipped in the package. A file
that cannot be used never stops the fleet: the console falls back to the sample and
shows the problem, because the map is a convenience and alarms must keep flowing. This
module never fetches anything from the network; a tile URL is only handed to the browser.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SETTINGS_FILE = Path("console") / "console.toml"
SAMPLE_BOUNDARY = Path(__file__).parent / "static" / "county-sample.geojson"
#: A boundary larger than this would make every console load slow; simplify it first.
MAX_BOUNDARY_BYTES = 20 * 1024 * 1024
_GEOJSON_TYPES = {"FeatureCollection", "Feature", "Polygon", "MultiPolygon", "LineString"}
_KNOWN_KEYS = {"boundary", "tile_url", "tile_attribution"}


@dataclass(frozen=True, slots=True)
class CountyMap:
    """What the console draws under the sites; ``problem`` says why a setting was not used."""

    boundary: Path
    tile_url: str | None = None
    tile_attribution: str = ""
    problem: str | None = None

    @property
    def tile_origin(self) -> str | None:
        """``scheme://host[:port]`` of the tile server (the page's CSP must allow it)."""
        if self.tile_url is None:
            return None
        parts = urlsplit(self.tile_url)
        return f"{parts.scheme}://{parts.netloc}"


class MapSettingsError(ValueError):
    """A console.toml or boundary file that cannot be used; the message names the place."""


def load_county_map(data_dir: Path) -> CountyMap:
    """The county's map settings from ``data_dir``, or the sample with the problem named."""
    path = data_dir / SETTINGS_FILE
    if not path.exists():
        return CountyMap(SAMPLE_BOUNDARY)
    try:
        return _parse(path)
    except MapSettingsError as exc:
        return CountyMap(SAMPLE_BOUNDARY, problem=str(exc))


def _parse(path: Path) -> CountyMap:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MapSettingsError(f"{path}: {exc}") from exc
    unknown = sorted(set(doc) - _KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(_KNOWN_KEYS))
        msg = f"{path}: unknown key(s) {', '.join(unknown)}; known: {known}"
        raise MapSettingsError(msg)
    boundary = SAMPLE_BOUNDARY
    if "boundary" in doc:
        if not isinstance(doc["boundary"], str) or not doc["boundary"]:
            raise MapSettingsError(f"{path}: boundary: a file name")
        boundary = path.parent / doc["boundary"]
        check_boundary(boundary)
    tile_url = doc.get("tile_url")
    if tile_url is not None:
        check_tile_url(tile_url, f"{path}: tile_url")
    attribution = doc.get("tile_attribution", "")
    if not isinstance(attribution, str) or len(attribution) > 200:
        raise MapSettingsError(f"{path}: tile_attribution: text of at most 200 characters")
    return CountyMap(boundary, tile_url, attribution)


def check_tile_url(url: object, where: str) -> None:
    """An http(s) URL with ``{z}``, ``{x}`` and ``{y}``, and no credentials in it."""
    if not isinstance(url, str):
        raise MapSettingsError(
            f"{where}: a URL such as http://tiles.county.lan/{{z}}/{{x}}/{{y}}.png"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MapSettingsError(f"{where}: {url!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise MapSettingsError(f"{where}: no user or password in the URL (browsers would show it)")
    missing = [p for p in ("{z}", "{x}", "{y}") if p not in url]
    if missing:
        raise MapSettingsError(f"{where}: {url!r} lacks {', '.join(missing)}")


def check_boundary(path: Path) -> None:
    """A readable GeoJSON file of reasonable size whose top level is a geometry or feature(s)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MapSettingsError(f"boundary {path}: {exc.strerror or exc}") from exc
    if size > MAX_BOUNDARY_BYTES:
        msg = (
            f"boundary {path}: {size} bytes, at most {MAX_BOUNDARY_BYTES}: "
            "simplify it (e.g. mapshaper -simplify 10%)"
        )
        raise MapSettingsError(msg)
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise MapSettingsError(f"boundary {path}: not JSON ({exc})") from exc
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind not in _GEOJSON_TYPES:
        msg = f"boundary {path}: GeoJSON type {kind!r}; one of {', '.join(sorted(_GEOJSON_TYPES))}"
        raise MapSettingsError(msg)
