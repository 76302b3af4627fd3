"""Bus turns: one holder at a time, urgent waiters first, FIFO within a class."""

import asyncio

from drivers.bus_turns import BusTurns


async def queued(turns: BusTurns, n: int) -> None:
    """Wait until ``n`` waiters sit in the queues (a condition, not a timed sleep)."""
    async with asyncio.timeout(2):
        while len(turns._urgent) + len(turns._normal) < n:  # noqa: ASYNC110 - polls a queue length
            await asyncio.sleep(0)


async def test_urgent_waiters_go_before_earlier_normal_waiters():
    turns = BusTurns()
    order: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder():
        async with turns.turn():
            holding.set()
            await release.wait()

    async def user(name: str, urgent: bool):
        async with turns.turn(urgent):
            order.append(name)

    first = asyncio.create_task(holder())
    await holding.wait()
    tasks = [
        asyncio.create_task(user(n, u))
        for n, u in [("poll1", False), ("poll2", False), ("siren", True)]
    ]
    await queued(turns, 3)
    release.set()
    await asyncio.gather(first, *tasks)
    assert order == ["siren", "poll1", "poll2"]


async def test_a_cancelled_waiter_does_not_block_the_bus():
    turns = BusTurns()
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder():
        async with turns.turn():
            holding.set()
            await release.wait()

    first = asyncio.create_task(holder())
    await holding.wait()
    waiter = asyncio.create_task(turns._acquire(False))
    await queued(turns, 1)
    waiter.cancel()
    release.set()
    await first
    async with asyncio.timeout(1):
        async with turns.turn():
            pass
