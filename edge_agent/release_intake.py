"""Agent releases over the air inside the running agent: confirm at start, take new ones.

At every start, a version on trial (switched to, not yet committed) must show itself
healthy within its deadline: every device answered, the alarm engine is ready, and the
uplink is connected or the reason it is not is known. Then the updater commits it, or
rolls back and the agent exits so the service manager starts the previous slot. Signed
release documents from the retained ``release`` topic are verified against the trust
anchor and handed to ``ReleaseUpdater`` one at a time; a switch ends with the agent
exiting so the new slot starts. Without a slot tree (``edge run`` without ``--slots``)
every release is refused with that reason.

A release that fails for any reason short of a refusal (a lost download, a busy slot
tree, a full disk, a report the store could not take) is tried again after a backoff of
up to 60 s doubling to an hour, for as long as it stays the newest document offered; the
partial files stay for the next try. This module never lets a failed update stop the
running version.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge_agent.document_inbox import DocumentInbox, retry_backoff, verify_offered
from edge_agent.updater import AfterApply, HealthProbe, ReleaseUpdater
from ota.document import (
    DocumentKind,
    claimed_version,
    digest,
)
from ota.download import DownloadError
from ota.report import OtaReport, OtaState, OtaSubject
from ota.slots import SlotBusyError
from protocol.reconnect import Backoff

log = logging.getLogger(__name__)


class ReleaseIntake:
    """Takes release documents from the uplink to the updater, one at a time."""

    def __init__(
        self,
        data_dir: Path,
        updater: ReleaseUpdater | None,
        emit: Callable[[OtaReport], Awaitable[None]],
        exit_for_update: Callable[[], None],
        retry: Backoff | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.updater = updater
        self.emit = emit
        self.exit_for_update = exit_for_update
        self.inbox = DocumentInbox()
        self.retry = retry or retry_backoff()
        self._refused: str | None = None

    def offer(self, data: bytes) -> None:
        """Hand over a document from the uplink; never blocks the receiver."""
        self.inbox.offer(data)

    async def run(self, healthy: HealthProbe) -> None:
        """Confirm a version on trial, then take release documents forever."""
        if self.updater is not None:
            decided = await self.updater.confirm_started(healthy)
            log.info("release check at start: %s", decided.value)
            if decided.restart:
                self.exit_for_update()
                return
        await self.inbox.take_each(
            self._handle, self.retry, "release update", (DownloadError, SlotBusyError)
        )

    async def _refuse(self, data: bytes, version: int, reason: str) -> None:
        refused = digest(data)
        if refused == self._refused:
            return  # the same retained document again after a reconnect
        log.warning("release document v%d refused: %s", version, reason)
        await self.emit(OtaReport(OtaSubject.RELEASE, version, OtaState.REJECTED, reason))
        self._refused = refused  # only once stored: a failed store is tried again

    async def _handle(self, data: bytes) -> None:
        claimed = claimed_version(data)
        if self.updater is None:
            reason = "this agent does not run from release slots (edge run --slots ROOT)"
            await self._refuse(data, claimed, reason)
            return
        installed = self.updater.installed_document_version()
        if claimed and claimed == installed:
            return  # the retained copy of the release already dealt with
        document = verify_offered(data, self.data_dir, DocumentKind.RELEASE, installed)
        if isinstance(document, str):
            await self._refuse(data, claimed, document)
            return
        after = await self.updater.apply(document)
        if after is AfterApply.RESTART:
            log.warning("release v%d installed and switched; exiting to start it", document.version)
            self.exit_for_update()
