"""Helpers shared by the fleet's OTA tests: an OTA report stored as ingest stores it.

Light on purpose (no broker, no app): unit tests of the rollout logic use it too. Release
manifests and registering a release are in ``hardware_sim.harness.release_rest``.
"""

from __future__ import annotations

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
