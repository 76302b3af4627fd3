"""Ingest counters: messages, rows stored and duplicate, and rejected messages by reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fleet.dependencies import TOKEN_REFUSALS, Ingest, require
from fleet.repository import Role
from fleet.schemas import IngestOut

router = APIRouter(
    prefix="/api/v1/ingest",
    tags=["ingest"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)


@router.get("")
def ingest_stats(ingest: Ingest) -> IngestOut:
    """Counters of the ingest worker in this process (``running`` false when it runs elsewhere)."""
    if ingest is None:
        return IngestOut(running=False, ready=False)
    s = ingest.stats
    return IngestOut(
        running=True,
        ready=ingest.ready.is_set(),
        messages=s.messages,
        batches=s.batches,
        rows_stored=s.rows_stored,
        rows_duplicate=s.rows_duplicate,
        commits=s.commits,
        acks_sent=s.acks_sent,
        commands_sent=ingest.outbox.commands_sent,
        rejected=dict(s.rejected),
    )
