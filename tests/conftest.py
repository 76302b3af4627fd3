"""Shared fixtures: a socat pty pair standing in for an RS485 cable."""

from collections.abc import Iterator

import pytest

from hardware_sim.pty_link import PtyPair


@pytest.fixture
def pty_pair() -> Iterator[PtyPair]:
    """Two linked pseudo-terminals; the simulator opens device_end, clients agent_end."""
    with PtyPair() as pair:
        yield pair
