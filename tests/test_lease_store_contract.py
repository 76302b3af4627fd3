"""The lease store's contract (``fleet.leases.LeaseStore``), run on SQLite and PostgreSQL.

Each test runs once per backend (a fresh SQLite file; a fresh schema of a real PostgreSQL
cluster the session starts). Time is passed in, never read: ``T0`` and offsets from it.
Also ``Leadership`` against each store: only one of two holders runs, and the other takes
over once the first stops renewing.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.leases import (
    MAX_LEASE_S,
    Leadership,
    LeaseLostError,
    LeaseStore,
    holder_is_gone,
    new_holder_id,
)
from fleet.postgres_repository import PostgresRepository
from fleet.roster import PersonIn, Tier
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.postgres import PostgresCluster
from hardware_sim.harness.waiting import wait_for

T0 = 1_750_000_000.0
TTL = 10.0
A, B = "host-a/1/100/aa", "host-b/1/200/bb"


@pytest.fixture(params=("sqlite", "postgresql"))
def repository(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[SQLiteRepository | PostgresRepository]:
    """An empty repository of each backend."""
    if request.param == "sqlite":
        sqlite = SQLiteRepository(tmp_path / "fleet.sqlite", durable=False)
        yield sqlite
        sqlite.close()
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    with cluster.fresh_schema() as url:
        postgres = PostgresRepository(url, pool_size=2)
        try:
            yield postgres
        finally:
            postgres.close()


@pytest.fixture
def leases(repository: SQLiteRepository | PostgresRepository) -> LeaseStore:
    """An empty lease store of each backend."""
    return repository.leases


def test_a_free_lease_is_taken_and_the_other_holder_is_refused_until_it_expires(
    leases: LeaseStore,
) -> None:
    assert leases.lease("escalation") is None
    taken = leases.take("escalation", A, T0, TTL)
    assert (taken.holder, taken.expires_at, taken.term) == (A, T0 + TTL, 1)
    refused = leases.take("escalation", B, T0 + TTL - 0.001, TTL)
    assert refused == taken  # unchanged, naming the holder
    assert leases.lease("escalation") == taken
    after = leases.take("escalation", B, T0 + TTL, TTL)  # expired at exactly expires_at
    assert (after.holder, after.expires_at, after.term) == (B, T0 + 2 * TTL, 2)


def test_the_holder_renews_its_lease_without_a_new_term(leases: LeaseStore) -> None:
    leases.take("escalation", A, T0, TTL)
    renewed = leases.take("escalation", A, T0 + 3, TTL)
    assert (renewed.holder, renewed.expires_at, renewed.term) == (A, T0 + 3 + TTL, 1)
    assert leases.take("escalation", B, T0 + TTL + 1, TTL).holder == A  # renewal counted


def test_leases_of_different_loops_are_independent(leases: LeaseStore) -> None:
    leases.take("escalation", A, T0, TTL)
    assert leases.take("rollouts", B, T0, TTL).holder == B
    assert leases.take("escalation", B, T0, TTL).holder == A


def test_a_given_up_lease_is_free_at_once_and_only_its_holder_can_give_it_up(
    leases: LeaseStore,
) -> None:
    leases.take("escalation", A, T0, TTL)
    leases.give_up("escalation", B)  # not B's: nothing happens
    assert leases.take("escalation", B, T0 + 1, TTL).holder == A
    leases.give_up("escalation", A)
    taken = leases.take("escalation", B, T0 + 1, TTL)
    assert (taken.holder, taken.term) == (B, 2)


def test_a_holder_named_as_replaced_loses_its_lease_before_expiry(leases: LeaseStore) -> None:
    leases.take("escalation", A, T0, TTL)
    assert leases.take("escalation", B, T0 + 1, TTL, replacing="someone-else").holder == A
    assert leases.take("escalation", B, T0 + 1, TTL, replacing=A).holder == B


class Clock:
    """Time the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_leadership_goes_to_one_holder_and_to_the_other_after_the_expiry(
    leases: LeaseStore,
) -> None:
    clock = Clock()
    first = Leadership(leases, "escalation", A, TTL, clock)
    second = Leadership(leases, "escalation", B, TTL, clock)
    assert first.try_take()
    assert not second.try_take()
    assert (first.held, second.held) == (True, False)
    clock.now += TTL - 1  # first renews in time; second still refused
    assert first.try_take()
    assert not second.try_take()
    clock.now += TTL  # first stopped renewing (killed): it no longer counts itself holder
    assert not first.held
    assert second.try_take()
    assert not first.try_take()
    lease = leases.lease("escalation")
    assert lease is not None
    assert lease.term == 2


def test_a_holder_whose_process_is_gone_is_replaced_at_once(leases: LeaseStore) -> None:
    child = subprocess.run(  # a process of this machine that has ended: its holder id
        [sys.executable, "-c", "from fleet.leases import new_holder_id; print(new_holder_id())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = child.stdout.strip()
    assert holder_is_gone(dead)
    assert not holder_is_gone(new_holder_id())  # this process
    assert not holder_is_gone(B)  # another host: only the expiry tells
    leases.take("escalation", dead, T0, TTL)
    clock = Clock()
    clock.now = T0 + 1
    assert Leadership(leases, "escalation", f"{new_holder_id()}", TTL, clock).try_take()
    assert os.getpid() == int(
        (leases.lease("escalation") or pytest.fail("no lease")).holder.split("/")[2]
    )


@pytest.mark.parametrize("ttl_s", [0.0, -1.0, math.nan, math.inf, MAX_LEASE_S + 1, 2.0**63])
def test_a_lease_length_out_of_bounds_is_refused(leases: LeaseStore, ttl_s: float) -> None:
    # NaN compares false with everything: such a lease would never be held, nor expire.
    with pytest.raises(ValueError, match="a lease length must be above 0 and at most 300 s"):
        Leadership(leases, "escalation", A, ttl_s)


@pytest.mark.parametrize("renew_s", [0.0, -1.0, math.nan, TTL, TTL + 1])
def test_a_renewal_period_not_shorter_than_the_lease_is_refused(
    leases: LeaseStore, renew_s: float
) -> None:
    with pytest.raises(ValueError, match="renew_s must be above 0 and below ttl_s"):
        Leadership(leases, "escalation", A, TTL, renew_s=renew_s)


async def test_only_the_holders_loop_runs_and_the_other_starts_when_it_stops_or_loses_it(
    leases: LeaseStore,
) -> None:
    running: dict[str, asyncio.Event] = {A: asyncio.Event(), B: asyncio.Event()}
    overlaps: list[str] = []

    def loop(holder: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def work() -> None:
            if any(event.is_set() for event in running.values()):
                overlaps.append(holder)
            running[holder].set()
            try:
                await asyncio.Event().wait()
            finally:
                running[holder].clear()

        return work

    first = Leadership(leases, "rollouts", A, ttl_s=1.5)
    second = Leadership(leases, "rollouts", B, ttl_s=1.5)
    first_task = asyncio.create_task(first.run(loop(A)))
    await wait_for(running[A].is_set, 10, "the first holder's loop")
    second_task = asyncio.create_task(second.run(loop(B)))
    await wait_for(lambda: second.looks >= 2, 5, "the second to look twice")
    assert (second.taken, running[B].is_set()) == (0, False)

    first_task.cancel()  # stopped cleanly: gives the lease up at once
    await asyncio.gather(first_task, return_exceptions=True)
    assert not running[A].is_set()
    await wait_for(running[B].is_set, 5, "the second holder's loop")

    # Another holder is named as replacing B (B's process was judged gone): B's loop stops.
    leases.take("rollouts", A, time.time(), 60, replacing=B)
    await wait_for(lambda: not running[B].is_set(), 5, "the loop of a holder that lost it")
    second_task.cancel()
    await asyncio.gather(second_task, return_exceptions=True)
    lease = leases.lease("rollouts")
    assert lease is not None
    assert lease.holder == A  # B gave up nothing it did not hold
    assert overlaps == []


async def test_a_holder_cancelled_just_as_it_loses_the_lease_stops(leases: LeaseStore) -> None:
    # The fleet shutting down (run's task cancelled) while run waits for the loop of a lease
    # it lost to stop: the cancel must end run, not be taken for the stopping loop's own.
    running = asyncio.Event()
    leader: asyncio.Task[None] | None = None

    async def work() -> None:
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            assert leader is not None
            leader.cancel()  # the shutdown, while run waits for this loop to end

    leadership = Leadership(leases, "rollouts", A, ttl_s=1.5)
    leader = asyncio.create_task(leadership.run(work))
    try:
        await wait_for(running.is_set, 10, "the holder's loop")
        leases.take("rollouts", B, time.time(), 60, replacing=A)
        done, _ = await asyncio.wait({leader}, timeout=10)
        assert done == {leader}, "run went on looking for the lease after it was cancelled"
        assert leader.cancelled()
        lease = leases.lease("rollouts")
        assert lease is not None
        assert lease.holder == B  # A gave up nothing it did not hold
    finally:
        leader.cancel()
        await asyncio.wait({leader}, timeout=10)


def test_work_commits_only_while_the_term_it_began_in_is_held(
    repository: SQLiteRepository | PostgresRepository,
) -> None:
    # A replica frozen longer than its lease in mid-round: another took the lease meanwhile.
    now = [T0]
    first = Leadership(repository.leases, "escalation", A, TTL, lambda: now[0])
    assert first.try_take()
    held = first.held_term()
    assert held is not None
    assert held.term == 1
    store = repository.escalation
    person = PersonIn(Tier.VILLAGE, "王建国", "群测群防员", email="wang@village.example.cn")
    with store.batch(held.check):
        store.replace_roster("creek-village", [person], T0)
    assert len(store.roster("creek-village")) == 1

    # Past the expiry it wrote, nobody else holding it: nobody else worked in that term (a
    # round longer than the lease, its renewal waiting on the round, still commits).
    now[0] = T0 + TTL + 1
    with store.batch(held.check):
        deputy = PersonIn(Tier.VILLAGE, "李敏", "群测群防员", email="li@village.example.cn")
        store.replace_roster("creek-village", [person, deputy], now[0])
    assert len(store.roster("creek-village")) == 2

    repository.leases.take("escalation", B, now[0], TTL)
    with pytest.raises(LeaseLostError, match="term 1"), store.batch(held.check):
        store.replace_roster("creek-village", [], now[0])
    assert len(store.roster("creek-village")) == 2  # rolled back whole
    with store.batch(held.check):  # wrote nothing: nothing to check, no lock taken
        store.roster("creek-village")


def test_a_holder_id_with_a_pid_no_process_could_have_is_not_judged_gone() -> None:
    # Read from the database: a damaged or foreign id must not raise on every look.
    host, namespace, _pid, _random = new_holder_id().split("/")
    for pid in ("\u00b2", str(2**70), str(2**40), "0"):
        assert not holder_is_gone(f"{host}/{namespace}/{pid}/aa"), pid
