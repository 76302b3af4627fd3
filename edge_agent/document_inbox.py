"""Signed documents on their way from the uplink to the updater that acts on them.

The uplink hands over each document from a retained topic (``config``, ``release``) and
must never wait; only the newest matters, so a full inbox drops its oldest. A retained
document arrives again only after a reconnect, which on a steady link may be months away,
so an update that failed for a passing reason (a full disk, a lost download) is put back
here after a backoff (``retry_later``); a newer document offered meanwhile wins. Verifying
an offered document against the trust anchor pinned at enrollment is the same for every
kind, so it lives here too. Nothing here ever acts on a document.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge_agent.enroll import load_enrollment
from ota.document import Document, DocumentKind, DocumentRefusedError, verify_document
from protocol.reconnect import Backoff

log = logging.getLogger(__name__)

#: First wait before an update that failed is tried again; it doubles up to the ceiling.
RETRY_FIRST_S = 60.0
#: Longest wait between tries of an update that keeps failing.
RETRY_CEILING_S = 3600.0


def retry_backoff(rng: random.Random | None = None) -> Backoff:
    """The waits between tries of a failed update: up to 60 s, doubling to an hour.

    Each wait is drawn from the upper half of its step, so gateways do not retry in step.
    """
    return Backoff(RETRY_FIRST_S, RETRY_CEILING_S, rng or random.Random())


class DocumentInbox:
    """A small queue of raw documents: ``offer`` never blocks, ``get`` waits."""

    def __init__(self, size: int = 4) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
        self._offered = 0  # documents offered from outside, to tell whether a retry is stale

    def offer(self, data: bytes) -> None:
        """Hand over a document from the uplink; never blocks the receiver."""
        self._offered += 1
        if self._queue.full():
            self._queue.get_nowait()  # only the newest retained document matters
        self._queue.put_nowait(data)

    def retry_later(self, data: bytes, delay_s: float) -> None:
        """Offer ``data`` again after ``delay_s``, unless a document is offered meanwhile.

        A document offered in between is newer (or the same one again after a reconnect),
        so the retry would only repeat or undo it.
        """
        offered = self._offered

        def again() -> None:
            if self._offered == offered and self._queue.empty():
                self._queue.put_nowait(data)

        asyncio.get_running_loop().call_later(delay_s, again)

    async def get(self) -> bytes:
        """The next document."""
        return await self._queue.get()

    async def take_each(
        self,
        handle: Callable[[bytes], Awaitable[None]],
        retry: Backoff,
        what: str,
        expected: tuple[type[Exception], ...] = (),
        failed: Callable[[Exception], None] | None = None,
    ) -> None:
        """Hand each document to ``handle``, for ever; one that raises is tried again later.

        The wait is ``retry``'s next (reset by a document handled); ``expected`` failures
        (a lost link) are logged without their traceback. ``failed`` is told each failure.
        """
        while True:
            data = await self.get()
            try:
                await handle(data)
            except Exception as exc:
                delay = retry.next()
                if isinstance(exc, expected):
                    log.warning("%s failed, trying again in %.0f s: %s", what, delay, exc)
                else:
                    log.exception(
                        "%s failed unexpectedly, nothing was switched; trying it again in %.0f s",
                        what,
                        delay,
                    )
                if failed is not None:
                    failed(exc)
                self.retry_later(data, delay)
            else:
                retry.reset()


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
