"""The console's live feed: one poller of the store, fanned out to every open console.

While at least one console listens, the store is looked at every ``interval_s`` for level
changes, health and 叫应 steps (``fleet.live_changes``); each listener gets them on its
own bounded queue. A listener that falls too far behind is dropped (its browser reconnects
and reloads), so a slow console can never hold up the others or grow memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fleet.live_changes import LiveChange, LiveCursor
from fleet.worker_threads import in_thread

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000


class ListenerDroppedError(Exception):
    """The listener fell more than QUEUE_LIMIT changes behind."""


class LiveFeed:
    """Polls while anyone listens; ``listen()`` gives a queue of changes."""

    def __init__(
        self,
        start: Callable[[], LiveCursor],
        changes: Callable[[LiveCursor], list[LiveChange]],
        interval_s: float = 0.5,
    ) -> None:
        self._start = start
        self._changes = changes
        self.interval_s = interval_s
        self._listeners: set[asyncio.Queue[LiveChange | None]] = set()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[LiveChange | None]]:
        """A queue of changes from now on; None on it means this listener was dropped."""
        queue: asyncio.Queue[LiveChange | None] = asyncio.Queue(QUEUE_LIMIT + 1)
        self._listeners.add(queue)
        if self._task is None or self._task.done():
            cursor = await in_thread(self._start)
            self._task = asyncio.create_task(self._poll(cursor), name="console-live-feed")
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    async def close(self) -> None:
        """Stop polling (on shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self, cursor: LiveCursor) -> None:
        while self._listeners:
            try:
                changes = await in_thread(self._changes, cursor)
            except Exception:
                log.exception("live feed: could not read the store; trying again")
                changes = []
            for queue in list(self._listeners):
                for change in changes:
                    if queue.qsize() >= QUEUE_LIMIT:
                        self._listeners.discard(queue)
                        queue.put_nowait(None)
                        break
                    queue.put_nowait(change)
            await asyncio.sleep(self.interval_s)
