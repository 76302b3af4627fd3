"""The village tier of a site's roster, written into its site file before the fleet signs it.

A gateway cut off from the county texts the village itself (``[village_call]``), so the
numbers it needs travel inside its signed configuration; the roster stays the one place
they are kept. Only the village tier, and only name, role and mobile, go to the gateway.
Never logs a number, and never accepts persons written into the site file by hand.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Sequence

from fleet.roster import Person, Tier


class VillageRosterError(ValueError):
    """The site file and the roster cannot be joined; the message says why (no numbers)."""


def with_village_roster(site_toml: str, roster_of: Callable[[str], Sequence[Person]]) -> str:
    """``site_toml`` with its ``[village_call]`` persons from the roster (unchanged without one).

    Raises:
        VillageRosterError: persons already written in the file, or nobody to text.
    """
    try:
        document = tomllib.loads(site_toml)
    except tomllib.TOMLDecodeError:
        return site_toml  # the site-file check that follows names the syntax error
    village_call = document.get("village_call")
    site = document.get("site")
    if not isinstance(village_call, dict) or not isinstance(site, dict):
        return site_toml
    if "person" in village_call:
        msg = (
            "[village_call] must not list persons: the fleet writes the village tier of "
            "the site's roster there (PUT /api/v1/sites/{site}/roster)"
        )
        raise VillageRosterError(msg)
    site_id = str(site.get("id", ""))
    persons = [p for p in roster_of(site_id) if p.tier is Tier.VILLAGE and p.mobile]
    if not persons:
        msg = (
            f"[village_call]: the roster of site '{site_id}' has no village person with a "
            "mobile number for the gateway to text"
        )
        raise VillageRosterError(msg)
    # JSON strings are TOML basic strings (same escapes); Chinese names stay readable.
    tables = "".join(
        "\n[[village_call.person]]\n"
        f"name = {json.dumps(p.name, ensure_ascii=False)}\n"
        f"role = {json.dumps(p.role, ensure_ascii=False)}\n"
        f"mobile = {json.dumps(p.mobile)}\n"
        for p in persons
    )
    header = (
        "\n# The village tier of the site's roster, written by the fleet when it signed this.\n"
    )
    joined = site_toml.rstrip("\n") + "\n" + header + tables
    try:
        tomllib.loads(joined)
    except tomllib.TOMLDecodeError:
        msg = "write [village_call] as a table of its own, not an inline table"
        raise VillageRosterError(msg) from None
    return joined
