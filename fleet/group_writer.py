"""Group writes: everything handed in while one group is written goes in the next, together.

A transaction each (a turn of the write lock, an fsync and a worker thread per row) takes
the CPU and the lock the rest of the fleet needs in a burst, so rows that arrive while a
group is being written are written together next, on a worker thread, one group at a time.

An item is answered only once its group is committed: nobody hears "recorded" for a row a
crash could still lose. What happens when a group cannot be written is the owner's choice:
every item of the group gets the error, or (``retry_after_s``) the group is kept and tried
again, first in line. This module never decides what is written, never drops an item while
it runs, and never logs an item (a row may carry a contact).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from fleet.worker_threads import in_thread

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
AnswerT = TypeVar("AnswerT")


class GroupWriter(Generic[ItemT, AnswerT]):
    """Writes the items handed to ``add`` in groups with ``write``; one group at a time.

    ``write`` runs on a worker thread, gets every item waiting and returns one answer per
    item, in order. ``what`` names the items in the log ("call outcomes"). Without
    ``retry_after_s`` a failed group's items answer with the error; with it the group is
    tried again after that many seconds and nobody gets an error.
    """

    def __init__(
        self,
        write: Callable[[list[ItemT]], Sequence[AnswerT]],
        *,
        what: str,
        retry_after_s: float | None = None,
    ) -> None:
        self._write_group = write
        self._what = what
        self._retry_after_s = retry_after_s
        self._waiting: list[tuple[ItemT, asyncio.Future[AnswerT]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._group: list[tuple[ItemT, asyncio.Future[AnswerT]]] = []

    @property
    def unanswered(self) -> int:
        """Items handed in and not yet answered: waiting, or in the group being written."""
        return len(self._waiting) + len(self._group)

    def add(self, item: ItemT) -> asyncio.Future[AnswerT]:
        """Hand ``item`` in; a future with its answer, done once its group is committed."""
        future: asyncio.Future[AnswerT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name=f"write {self._what}")
        return future

    async def _write(self) -> None:
        failing = False
        while self._waiting:
            self._group, self._waiting = self._waiting, []
            group = self._group
            try:
                answers = await in_thread(self._write_group, [item for item, _f in group])
            except Exception as exc:
                self._group = []
                if self._retry_after_s is None:  # each waiting item answers with the error
                    _answer(group, [exc] * len(group))
                    continue
                log.log(logging.DEBUG if failing else logging.ERROR,
                        "could not record %d %s; trying again", len(group), self._what,
                        exc_info=not failing)  # fmt: skip
                failing = True
                self._waiting[:0] = group  # first in line, after the pause
                await asyncio.sleep(self._retry_after_s)
                continue
            self._group = []
            failing = False
            _answer(group, answers)

    async def close(self) -> None:
        """Stop the writer; write what is still waiting once. Unanswered items are cancelled.

        A group being written when ``close`` comes is written to the end (``in_thread``).
        """
        in_flight = self._group
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        group, self._waiting = self._waiting, []
        if group:
            with contextlib.suppress(Exception):
                _answer(group, await in_thread(self._write_group, [i for i, _f in group]))
        for _item, future in in_flight + group:
            future.cancel()  # no-op for the answered


def _answer(
    group: list[tuple[ItemT, asyncio.Future[AnswerT]]], answers: Sequence[AnswerT | Exception]
) -> None:
    for (_item, future), answer in zip(group, answers, strict=True):
        if future.done():  # whoever waited went away
            continue
        if isinstance(answer, Exception):
            future.set_exception(answer)
        else:
            future.set_result(answer)
