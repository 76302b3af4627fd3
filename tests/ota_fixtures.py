"""Helpers shared by the OTA tests: an OTA report as ingest stores it; a full store.

The gateway's report store in unit tests may be full for its first writes. Light on
purpose (no broker, no app): unit tests of the rollout logic use it too. Release manifests
and registering a release are in ``hardware_sim.harness.release_rest``.
"""

from __future__ import annotations

import asyncio

from fleet.repository import Received, Repository
from ota.report import OTA_EVENT_KIND, OtaReport
from protocol import EventBatch, EventRow


def commit_ota_report(
    repository: Repository,
    seqs: dict[str, int],
    gateway_id: str,
    report: OtaReport,
    ts: float,
) -> None:
    """Store ``report`` as ingest does once it arrived from the gateway (next event seq)."""
    seqs[gateway_id] = seq = seqs.get(gateway_id, 0) + 1
    row = EventRow(
        seq=seq, ts=ts, kind=OTA_EVENT_KIND, subject=report.subject.value, detail=report.detail()
    )
    batch = EventBatch(gateway_id=gateway_id, first_seq=seq, last_seq=seq, rows=[row])
    repository.commit([Received(gateway_id, ts, batch)])


class ReportStore:
    """Where a gateway's updater stores its reports in a unit test.

    Reports are kept in order and ``changed`` is set at each; the first ``full`` fail as
    the gateway's store does on a full disk.
    """

    def __init__(self, changed: asyncio.Event, full: int = 0) -> None:
        self.reports: list[OtaReport] = []
        self.changed = changed
        self.full = full

    async def __call__(self, report: OtaReport) -> None:
        """Store ``report``, or fail as a full disk does."""
        if self.full > 0:
            self.full -= 1
            raise OSError("database or disk is full")
        self.reports.append(report)
        self.changed.set()
