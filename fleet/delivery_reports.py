"""Kannel's delivery reports, written in groups: one transaction for all that came together.

A burst of 1,000 SMS brings back two reports each (accepted by the SMSC, delivered) while
the rest of the burst is still going out. A transaction each (a turn of the write lock,
an fsync and a worker thread per report) takes the CPU and the lock the calls need, so
the reports that arrive while one group is being written are written together next.

A report is answered only once its group is committed, as a report written alone was:
Kannel never hears "recorded" for a report a crash could still lose. This module only
records; it never decides about a call (the engine retries a failed one on its tick).
"""

from __future__ import annotations

import asyncio

from fleet.escalation_store import DeliveryReport, EscalationStore
from fleet.worker_threads import in_thread


class DeliveryRecorder:
    """Writes the reports handed to ``record``; at most one group is being written at once."""

    def __init__(self, store: EscalationStore) -> None:
        self._store = store
        self._waiting: list[tuple[DeliveryReport, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._in_group = 0

    @property
    def unanswered(self) -> int:
        """Reports handed in and not yet answered: waiting, or in the group being written."""
        return len(self._waiting) + self._in_group

    async def record(self, report: DeliveryReport) -> bool:
        """Record ``report`` with the others waiting; whether its call is known.

        Returns once the group is committed; a storage error is raised to every report
        of its group.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((report, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="fleet-delivery-reports")
        return await future

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            self._in_group = len(group)
            try:
                known = await in_thread(self._store.delivery_reports, [r for r, _f in group])
            except Exception as exc:  # each waiting request answers with the error
                outcomes: list[bool | Exception] = [exc] * len(group)
            else:
                outcomes = list(known)
            finally:
                self._in_group = 0
            for (_report, future), outcome in zip(group, outcomes, strict=True):
                if future.done():  # its request went away
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
