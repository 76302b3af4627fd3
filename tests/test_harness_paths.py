"""The harness in hardware_sim/harness/ finds the checkout it runs from.

It moved out of tests/; a path counted from its own file must still reach the checkout,
or agents compile into a cache nobody warms and releases are built from the wrong tree.
"""

from __future__ import annotations

from pathlib import Path

from hardware_sim.harness import agent, release

CHECKOUT = Path(__file__).resolve().parents[1]


def test_agents_and_the_suite_share_one_numba_cache_in_the_checkout() -> None:
    assert agent.NUMBA_CACHE == CHECKOUT / ".cache" / "numba"


def test_releases_are_built_from_the_checkout() -> None:
    assert release.REPO == CHECKOUT
    assert (release.REPO / "pyproject.toml").is_file()
    assert release.WHEEL_CACHE == CHECKOUT / ".cache" / "ota-wheels"
