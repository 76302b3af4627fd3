"""Site files are checked with the gateway's own parser before the fleet signs them.

The parser is ``site_schema``, the package both sides import, so the fleet runs no
gateway code: ``parse_site_text`` reads the text only, held to what a pushed
configuration may name, so it never opens a port or reads a file the site file names.
Whether a named player or clip exists is left to the gateway's agent.toml, which the
fleet cannot see: the gateway refuses those with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import HTTPException, status

from fleet.roster import Person
from fleet.village_roster import VillageRosterError, with_village_roster
from site_schema.site_config import parse_site_text
from site_schema.site_errors import SiteConfigError

#: How the fleet names the file in its messages ("site.toml: device 'x': ...").
SOURCE = "site.toml"


def check_site_toml(text: str) -> None:
    """Refuse (422, with the gateway parser's message) a site file a gateway would refuse."""
    try:
        parse_site_text(text, SOURCE)
    except SiteConfigError as exc:
        raise _refuse(str(exc)) from exc


def checked_for_signing(text: str, roster_of: Callable[[str], Sequence[Person]]) -> str:
    """``text`` as a gateway will get it (the village roster written in), checked; or 422."""
    try:
        signed = with_village_roster(text, roster_of)
    except VillageRosterError as exc:
        raise _refuse(str(exc)) from None
    check_site_toml(signed)
    return signed


def _refuse(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)
