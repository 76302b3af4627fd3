"""Kannel's delivery reports, written in groups: one transaction for all that came together.

A burst of 1,000 SMS brings back two reports each (accepted by the SMSC, delivered) while
the rest of the burst is still going out; the reports that arrive while one group is
being written are written together next (``fleet.group_writer``).

A report is answered only once its group is committed, as a report written alone was:
Kannel never hears "recorded" for a report a crash could still lose. This module only
records; it never decides about a call (the engine retries a failed one on its tick).
"""

from __future__ import annotations

from fleet.escalation_store import DeliveryReport, EscalationStore
from fleet.group_writer import GroupWriter


class DeliveryRecorder:
    """Writes the reports handed to ``record``; at most one group is being written at once."""

    def __init__(self, store: EscalationStore) -> None:
        self._groups: GroupWriter[DeliveryReport, bool] = GroupWriter(
            store.delivery_reports, what="delivery reports"
        )

    @property
    def unanswered(self) -> int:
        """Reports handed in and not yet answered: waiting, or in the group being written."""
        return self._groups.unanswered

    async def record(self, report: DeliveryReport) -> bool:
        """Record ``report`` with the others waiting; whether its call is known.

        Returns once the group is committed; a storage error is raised to every report
        of its group.
        """
        return await self._groups.add(report)
