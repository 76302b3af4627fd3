"""Signed documents on their way from the uplink to the updater that acts on them.

The uplink hands over each document from a retained topic (``config``, ``release``) and
must never wait; only the newest matters, so a full inbox drops its oldest. Verifying an
offered document against the trust anchor pinned at enrollment is the same for every
kind, so it lives here too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.enroll import load_enrollment
from ota.document import Document, DocumentKind, DocumentRefusedError, verify_document


class DocumentInbox:
    """A small queue of raw documents: ``offer`` never blocks, ``get`` waits."""

    def __init__(self, size: int = 4) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)

    def offer(self, data: bytes) -> None:
        """Hand over a document from the uplink; never blocks the receiver."""
        if self._queue.full():
            self._queue.get_nowait()  # only the newest retained document matters
        self._queue.put_nowait(data)

    def offer_again(self, data: bytes) -> None:
        """Put ``data`` back for another try, unless something newer is already waiting."""
        if self._queue.empty():
            self._queue.put_nowait(data)

    async def get(self) -> bytes:
        """The next document."""
        return await self._queue.get()


def verify_offered(
    data: bytes, data_dir: Path, kind: DocumentKind, installed: int
) -> Document | str:
    """The verified document, or why it is refused (no enrollment, a failed check)."""
    enrollment = load_enrollment(data_dir)
    if enrollment is None:
        return "this gateway is not enrolled: no trust anchor"
    try:
        return verify_document(
            data, enrollment.fleet_signing_key, enrollment.gateway_id, kind, installed
        )
    except DocumentRefusedError as refusal:
        return str(refusal)
