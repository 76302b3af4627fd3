"""A site file of one relay board with a siren, for tests of actuation, players and settings.

Also ``running_actuation``, which runs an actuation loop for a test and stops it after.
Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from drivers.bus import ModbusBus
from edge_agent.actuation import Actuation

#: A relay module (unit 10) on a Modbus TCP bus; relay 1 is the siren's ``warble``.
RELAY_SITE = """
[site]
id = "creek-village"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = @PORT@

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"
unit_id = 10

[[actuator]]
id = "siren"
device = "relays"
patterns = { warble = ["relay1"] }
@PLAYER@
[actions]
@ACTIONS@
"""


def relay_site(
    port: int = 5020,
    clips: dict[str, str] | None = None,
    player: str = "",
) -> str:
    """The site's text: each level in ``clips`` (default red) sounds the siren and its clip.

    ``player`` is put in as it is (a ``[player]`` table, or nothing).
    """
    actions = "\n".join(
        f'{level} = {{ siren = "warble", clip = "{clip}" }}'
        for level, clip in (clips or {"red": "evacuate_now"}).items()
    )
    return (
        RELAY_SITE.replace("@PORT@", str(port))
        .replace("@PLAYER@", player)
        .replace("@ACTIONS@", actions)
    )


@asynccontextmanager
async def running_actuation(
    actuation: Actuation, buses: Mapping[str, ModbusBus]
) -> AsyncIterator[None]:
    """Run ``actuation``'s loop for the ``async with``; then stop it and close ``buses``."""
    running = asyncio.create_task(actuation.run())
    try:
        yield
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        for bus in buses.values():
            await bus.close()
