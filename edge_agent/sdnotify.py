"""systemd's notify protocol: tell the service manager we are ready, and feed its watchdog.

A datagram to $NOTIFY_SOCKET; without that variable (not under systemd) it does nothing.
While a start takes long (the alarm state rebuilt from stored readings), the agent asks
for more start-up time with ``EXTEND_TIMEOUT_USEC`` (systemd 236 and later) instead of
being killed at the unit's ``TimeoutStartSec`` and restarted into the same long start.
Never sends READY=1 itself: only the agent knows when it polls, and never blocks or
raises: a notify socket nobody reads, or one that is gone, must not stop the event loop
that polls the sensors and sounds the sirens.
"""

from __future__ import annotations

import logging
import os
import socket

_log = logging.getLogger(__name__)
_unsent: set[str] = set()


def notify(state: str) -> bool:
    """Send ``state`` (e.g. "READY=1", "WATCHDOG=1"); return True when it was sent.

    False without ``$NOTIFY_SOCKET``, and when the socket is gone or its queue is full
    (nobody reads it): the first such failure per socket is logged, none is raised.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address  # @: abstract
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(target)
            sock.send(state.encode())
    except OSError as exc:
        if address not in _unsent:
            _unsent.add(address)
            _log.warning("systemd notify socket %s: note not sent (%s)", address, exc)
        return False
    return True


#: Each note while starting asks for this much more time (microseconds): three notes' worth.
STARTING_EXTENSION_US = 60_000_000
#: Notes while starting are sent at most this far apart.
STARTING_NOTE_S = 20.0


def starting_note_interval_s() -> float:
    """How often to ask for more start-up time: 20 s, or the watchdog's interval if shorter."""
    watchdog = watchdog_interval_s()
    return STARTING_NOTE_S if watchdog is None else min(STARTING_NOTE_S, watchdog)


#: Notes to the watchdog go at most this often, however short the timeout asked for: a
#: microsecond timeout would otherwise spin the event loop on notes.
MIN_WATCHDOG_NOTE_S = 0.05


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd asked for, or None when there is no watchdog.

    0, or anything but digits, is no watchdog: a zero interval would send notes in a loop;
    a timeout shorter than ``2 * MIN_WATCHDOG_NOTE_S`` is fed every ``MIN_WATCHDOG_NOTE_S``.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    return max(int(usec) / 2_000_000, MIN_WATCHDOG_NOTE_S)
