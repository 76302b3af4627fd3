"""Sends committed 叫应 calls while the engine goes on deciding: the engine's outbox.

Calls handed in (already committed as planned) go out a few at a time per channel,
breadth first (``fleet.call_order``): a call handed in later for a person nobody has
reached yet goes before the second channels of earlier persons, so a red alarm raised in
the middle of a burst is not held behind it. Outcomes are written in batches: every
outcome that came in while the previous batch was being written, in one transaction.

It sends and records; it never decides whether a call is due, never sends a call again
(the engine does, on its schedule), and never logs a contact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fleet.call_order import FirstContactQueue, Outgoing
from fleet.channels import SendResult
from fleet.escalation_store import Call
from fleet.worker_threads import in_thread

log = logging.getLogger(__name__)

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
        self._record = record
        self._senders = senders
        self._clock = clock
        self._queue = FirstContactQueue([])
        self._running: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished: list[Outcome] = []
        self._recorded: dict[int, asyncio.Future[None]] = {}
        self._news = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether calls are queued, in flight, or waiting for their outcome to be written."""
        return bool(self._tasks or self._finished or self._recorded)

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
        for channel in self._queue.channels:
            while self._running[channel] < self._senders(channel):
                self._running[channel] += 1
                self._spawn(self._sender(channel))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="escalation-outcomes")
        return recorded

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._sender_done)

    def _sender_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._news.set()  # the writer looks whether anything is still being sent

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
                self._finished.append((item.call, result.sent, result.detail, self._clock()))
                self._news.set()
        except BaseException:
            self._running[channel] -= 1
            raise

    async def _write(self) -> None:
        failing = False
        while self._tasks or self._finished:
            if not self._finished:
                await self._news.wait()
            self._news.clear()
            done, self._finished = self._finished, []
            if not done:
                continue
            try:
                await in_thread(self._record, done)
            except Exception:
                # Unwritten, these calls stay planned and are never repeated: keep trying.
                log.log(logging.DEBUG if failing else logging.ERROR,
                        "could not record %d call outcomes; trying again", len(done),
                        exc_info=not failing)  # fmt: skip
                failing = True
                self._finished[:0] = done
                await asyncio.sleep(RECORD_RETRY_S)
                continue
            failing = False
            for call, *_rest in done:
                future = self._recorded.pop(call.id, None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        """Stop sending; write the outcomes of the calls that went out (no resend on restart)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._running.clear()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        with contextlib.suppress(Exception):
            await in_thread(self._record, self._finished)
        self._finished = []
        for future in self._recorded.values():
            future.cancel()
        self._recorded.clear()
