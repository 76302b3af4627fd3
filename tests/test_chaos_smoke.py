"""The random-kill campaign (``bench/chaos.py kill``): its ledger, and a short real run.

The ledger and the siren measure are checked on hand-made rows first, so a campaign
reporting zeros means the rows matched, not that nothing was counted. The short run kills
the broker, then the agent and the fleet, each at random and again inside a commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos_kill import (
    PATTERN_COILS,
    TARGETS,
    Plan,
    compare,
    deck,
    run_campaign,
    siren_on_s,
    siren_outages,
)
from hardware_sim.device import CoilChange

WARBLE = PATTERN_COILS["warble"]
RELAY1, RELAY2 = sorted(WARBLE)


def coil(t: float, address: int, value: bool) -> CoilChange:
    return CoilChange(t, t, address, value)


def test_the_ledger_counts_lost_duplicated_changed_and_unknown_rows() -> None:
    gateway = [(1, 10.0, "rain", 1.0, 0), (2, 20.0, "rain", 1.5, 0), (3, 30.0, "rain", 2.0, 0)]
    fleet = [
        (1, 10.0, "rain", 1.0, 0),
        (3, 30.0, "rain", 2.5, 0),  # changed
        (4, 10.0, "rain", 1.0, 0),  # seq 1's row again, and a seq the gateway lacks
    ]
    ledger = compare(gateway, fleet)
    assert (ledger.stored, ledger.lost, ledger.changed) == (3, 1, 1)
    assert (ledger.duplicated, ledger.unknown) == (1, 1)
    assert compare(gateway, gateway) == compare(gateway, list(reversed(gateway)))
    assert compare(gateway, gateway).lost == 0


def test_a_needed_coil_dropping_out_is_an_outage_but_switching_late_is_not() -> None:
    needed = [(100.0, WARBLE), (500.0, frozenset())]
    log = [
        coil(101.0, RELAY1, True),  # switched on 1 s after the level rose: actuation delay
        coil(101.0, RELAY2, True),
        coil(200.0, RELAY1, False),  # dropped out while the level needs it
        coil(230.0, RELAY1, True),
        coil(400.0, RELAY2, False),  # dropped out, never back before the level fell
        coil(501.0, RELAY1, False),  # switched off after the level fell: not an outage
    ]
    outages = siren_outages(needed, log, 600.0)
    assert sorted((o.coil, o.start, o.seconds) for o in outages) == [
        (RELAY1, 200.0, 30.0),
        (RELAY2, 400.0, 100.0),
    ]
    assert siren_outages(needed, log[:2] + log[-1:], 600.0) == []
    assert siren_on_s(needed, 600.0) == 400.0
    # a campaign too short for the storm to move the level: nothing was needed, no outage
    assert siren_on_s([], 600.0) == 0.0
    assert siren_outages([], log, 600.0) == []


def test_every_part_gets_killed_even_in_a_short_campaign() -> None:
    import random  # noqa: PLC0415

    assert len(set(deck(random.Random(1), 3))) == 3
    targets = deck(random.Random(1), 100)
    assert len(targets) == 100
    assert {targets.count(t) for t in TARGETS} == {100 // len(TARGETS)}


@pytest.mark.timeout(240)
async def test_a_short_kill_campaign_loses_duplicates_and_changes_nothing(tmp_path: Path) -> None:
    # Seed 1 kills the broker, then the agent and the fleet at random and inside a commit.
    result = await run_campaign(Plan(trials=3, seed=1), tmp_path)
    print(result)
    assert result["kills"] == {
        "agent": 1, "fleet": 1, "broker": 1, "agent_in_commit": 1, "fleet_in_commit": 1
    }  # fmt: skip
    assert result["readings"]["stored"] > 100
    assert result["events"]["stored"] > 0
    for stream in ("readings", "events"):
        for what in ("lost", "duplicated", "changed", "unknown"):
            assert result[stream][what] == 0, (stream, what, result)
    assert result["siren_outages"] == 0
    assert result["meets_target"], result
