"""Site files are checked with the gateway's own parser before the fleet signs them.

The one place the fleet runs gateway code, until the site-file schema moves to a package
both sides import (DESIGN section 11): ``parse_site_text`` reads the text only, held to
what a pushed configuration may name, so it never opens a port or reads a file the site
file names. Whether a named player or clip exists is left to the gateway's agent.toml,
which the fleet cannot see: the gateway refuses those with its reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import HTTPException, status

from fleet.roster import Person
from fleet.village_roster import VillageRosterError, with_village_roster

#: How the fleet names the file in its messages ("site.toml: device 'x': ...").
SOURCE = "site.toml"


def check_site_toml(text: str) -> None:
    """Refuse (422, with the gateway parser's message) a site file a gateway would refuse."""
    # Imported here: the parser brings the Modbus drivers and the alarm rules, which
    # only this check needs, and `fleet` otherwise starts without them.
    from edge_agent.site_config import parse_site_text  # noqa: PLC0415
    from edge_agent.site_errors import SiteConfigError  # noqa: PLC0415

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
