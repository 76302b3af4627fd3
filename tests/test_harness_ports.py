"""The harness's free ports: never from the range outgoing connections take theirs from.

A port from the kernel's ephemeral range can become the local port of a test's own
client before the server it was chosen for binds it; that server then fails to start.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from hardware_sim.harness.ports import EPHEMERAL_RANGE, free_port, wait_listening

pytestmark = pytest.mark.skipif(
    not EPHEMERAL_RANGE.exists(), reason="the ephemeral port range is Linux's /proc setting"
)


def ephemeral() -> range:
    low, high = (int(n) for n in EPHEMERAL_RANGE.read_text().split())
    return range(low, high + 1)


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert not set(ports) & set(ephemeral())
    for port in ports[:20]:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))


def test_a_port_in_use_is_passed_over() -> None:
    first = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first + 1))  # the next one in turn, taken
        holder.listen()
        assert free_port() not in (first, first + 1)


def test_waiting_for_a_process_that_exits_fails_at_once_naming_it() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    began = time.monotonic()
    with pytest.raises(AssertionError, match=r"the test server: python[\d.]* exited with 3"):
        wait_listening(process, free_port(), 30, "the test server")
    assert time.monotonic() - began < 15
