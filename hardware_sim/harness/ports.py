"""Loopback TCP ports for the parts a test, bench or the demo starts.

``free_port`` never hands out a port from the kernel's ephemeral range. That range is
where the kernel takes the local port of every outgoing connection from, and where it
finds a port for ``bind(("", 0))``: a port chosen that way could be taken by a test's own
client (to the broker, the fleet, a database) between the choosing and the server binding
it, and the server would then fail to start. Below that range no connection takes one.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

from hardware_sim.harness.waiting import wait_until

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: How many ports below the ephemeral range are handed out, in turn.
POOL_SIZE = 10_000
#: Ports below this need privileges.
FIRST_UNPRIVILEGED = 1024


def _pool() -> range:
    """The ports handed out: the ``POOL_SIZE`` below the ephemeral range, if it is known."""
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(max(FIRST_UNPRIVILEGED, low - POOL_SIZE), low)


_POOL = _pool()
# Each process goes round the pool from its own place, so that two processes (a test and
# the demo it runs) seldom hand out the same port; one process never does until it wraps.
_turn = os.getpid() * 7919


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody uses right now, outside the ephemeral range.

    Where the ephemeral range cannot be read (not Linux), the kernel's choice.
    """
    global _turn  # noqa: PLW0603 - the pool's cursor, private to this module
    for _ in range(len(_POOL)):
        port = _POOL[_turn % len(_POOL)]
        _turn += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (or lingering): the next one
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_listening(process: subprocess.Popen[bytes], port: int, within_s: float, what: str) -> None:
    """Wait until ``port`` accepts connections while ``process`` runs.

    Raises:
        AssertionError: at once when ``process`` exits, saying with what; or when
            ``within_s`` passes (``wait_until``'s message).
    """
    argv = process.args
    program = Path(str(argv[0] if isinstance(argv, list | tuple) else argv)).name

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what}: {program} exited with {process.returncode}")
        return port_open(port)

    wait_until(listening, within_s, what)
