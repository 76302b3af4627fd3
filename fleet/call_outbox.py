"""Sends committed 叫应 calls while the engine goes on deciding: the engine's outbox.

Calls handed in (already committed as planned) go out a few at a time per channel,
breadth first (``fleet.call_order``): a call handed in later for a person nobody has
reached yet goes before the second channels of earlier persons, so a red alarm raised in
the middle of a burst is not held behind it. Outcomes are written in groups
(``fleet.group_writer``): every outcome that came in while the previous group was being
written, in one transaction; a group that cannot be written is tried again.

It sends and records; it never decides whether a call is due, never sends a call again
(the engine does, on its schedule), and never logs a contact.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fleet.call_order import FirstContactQueue, Outgoing
from fleet.channels import SendResult
from fleet.escalation_store import Call
from fleet.group_writer import GroupWriter

#: A call with the channel's answer: (call, sent, detail, at).
Outcome = tuple[Call, bool, str, float]
#: Outcomes that could not be written are tried again after this long.
RECORD_RETRY_S = 1.0


class CallOutbox:
    """Runs each channel's senders while it has calls; records their outcomes in batches.

    ``send`` makes one call, ``record`` writes outcomes (on a worker thread), ``senders``
    says how many calls a channel may have in flight, ``clock`` stamps the outcomes.
    """

    def __init__(
        self,
        send: Callable[[Outgoing], Awaitable[SendResult]],
        record: Callable[[Sequence[Outcome]], None],
        senders: Callable[[str], int],
        clock: Callable[[], float],
    ) -> None:
        self._send = send
        self._outcomes: GroupWriter[Outcome, None] = GroupWriter(
            _recording_all(record), what="call outcomes", retry_after_s=RECORD_RETRY_S
        )
        self._senders = senders
        self._clock = clock
        self._queue = FirstContactQueue([])
        self._running: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._recorded: dict[int, asyncio.Future[None]] = {}
        #: Calls a service had no room for yet (``SendResult.retry_after_s``), by call id.
        self._deferred: dict[int, asyncio.TimerHandle] = {}

    @property
    def busy(self) -> bool:
        """Whether calls are queued, in flight, waiting for room, or for their outcome written."""
        return bool(self._tasks or self._deferred or self._outcomes.unanswered or self._recorded)

    def holds(self, call_id: int) -> bool:
        """Whether the call is queued, in flight or waiting here (not yet recorded)."""
        return call_id in self._recorded or call_id in self._deferred

    def submit(self, outgoing: Sequence[Outgoing]) -> list[asyncio.Future[None]]:
        """Queue committed calls; per call, a future done once its outcome is written."""
        loop = asyncio.get_running_loop()
        if not self.busy:
            self._queue = FirstContactQueue([])  # what an idle queue remembers goes
        recorded = []
        for item in outgoing:
            future = self._recorded.setdefault(item.call.id, loop.create_future())
            recorded.append(future)
        self._queue.add(outgoing)
        self._start_senders()
        return recorded

    def _start_senders(self) -> None:
        for channel in self._queue.channels:
            while self._running[channel] < self._senders(channel):
                self._running[channel] += 1
                self._spawn(self._sender(channel))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sender(self, channel: str) -> None:
        try:
            while True:
                item = self._queue.take(channel)
                if item is None:
                    # No await between the empty queue and this: a submit that comes after
                    # sees this sender gone and starts another.
                    self._running[channel] -= 1
                    return
                result = await self._send(item)
                if result.retry_after_s is not None:
                    self._defer(item, result.retry_after_s)
                    continue
                outcome = (item.call, result.sent, result.detail, self._clock())
                self._outcomes.add(outcome).add_done_callback(
                    functools.partial(self._written, item.call.id)
                )
        except BaseException:
            self._running[channel] -= 1
            raise

    def _defer(self, item: Outgoing, delay_s: float) -> None:
        """Queue ``item`` again after ``delay_s``, holding no sender meanwhile (still planned)."""
        loop = asyncio.get_running_loop()
        self._deferred[item.call.id] = loop.call_later(delay_s, self._undefer, item)

    def _undefer(self, item: Outgoing) -> None:
        del self._deferred[item.call.id]
        self._queue.add([item])
        self._start_senders()

    def _written(self, call_id: int, written: asyncio.Future[None]) -> None:
        future = self._recorded.pop(call_id, None)
        if future is None or future.done():
            return
        if written.cancelled():  # closed before it could be written
            future.cancel()
        else:
            future.set_result(None)

    async def close(self) -> None:
        """Stop sending; write the outcomes of the calls that went out (no resend on restart)."""
        for handle in self._deferred.values():
            handle.cancel()  # still planned: a restart sends them
        self._deferred.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._running.clear()
        await self._outcomes.close()
        for future in self._recorded.values():
            future.cancel()
        self._recorded.clear()


def _recording_all(
    record: Callable[[Sequence[Outcome]], None],
) -> Callable[[list[Outcome]], list[None]]:
    """``record`` as a group write: one (empty) answer per outcome once all are written."""

    def write(outcomes: list[Outcome]) -> list[None]:
        record(outcomes)
        return [None] * len(outcomes)

    return write
