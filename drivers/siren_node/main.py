"""Board entry point: the node on an RP2040 board, looping forever under a watchdog.

Deployed as ``/lib/siren_node/`` on the board, whose own ``/main.py`` holds the two lines
``from siren_node.main import run`` and ``run()`` (``run(unit_id=21)`` for another id).
"""

import time

from machine import WDT

from .board import BoardHal
from .node import SirenNode
from .registers import DEFAULT_UNIT_ID

WATCHDOG_MS = 8000
"""Close to the RP2040's longest watchdog period (8.3 s)."""


def run(unit_id: int = DEFAULT_UNIT_ID, baudrate: int = 9600) -> None:
    """Build the node on the board's pins and run it until power-off."""
    node = SirenNode(BoardHal(baudrate=baudrate), unit_id, baudrate)
    # A hung loop must not leave the siren in limbo: the watchdog resets the board and
    # power-up is safe (relay off, fallback armed again after the heartbeat timeout).
    watchdog = WDT(timeout=WATCHDOG_MS)
    while True:
        node.step()
        watchdog.feed()
        time.sleep_ms(1)
