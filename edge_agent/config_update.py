"""Site configuration over the air: verify, validate, probe, switch, confirm or roll back.

A signed configuration arrives on the gateway's retained ``config`` topic. In order:

1. Verify it (signature, target, anti-rollback) against the trust anchor pinned at
   enrollment; a refusal is reported ``rejected`` with its reason.
2. Validate it with the same parser as a local site file, held to what a pushed file may
   name (shipped profiles, serial ports), and bind its player to the ones this gateway's
   agent.toml allows; ``rejected`` with the message. Nothing in it is ever run.
3. Write it atomically beside the site file as ``SITE.toml.candidate``.
4. Probe it while the current configuration keeps polling and alarming: every device
   answers and every actuator reads back (``config_probe``). A failure removes the
   candidate and reports ``rolled_back`` with the probe's reason: nothing changed.
5. Keep the current file as ``SITE.toml.prev``, rename the candidate over the site file
   and restart the agent in place. Alarm state comes back from the store exactly as after
   any restart (window sums replayed, latches restored), so unchanged rules keep theirs.
6. The restarted agent confirms within the deadline (every device answered since the
   start, the actuators read back) and reports ``applied``; otherwise it restores
   ``SITE.toml.prev``, reports ``rolled_back`` with the reason and restarts on it.

A configuration that crashes the agent at every start is caught before the site file is
loaded (``prepare_start``): after ``MAX_CONFIRM_STARTS`` the previous file is restored.

Steps 2-5 are one try. A try that raises (a full disk, a report the store could not take,
a probe that failed unexpectedly) is tried again after a backoff of up to 60 s doubling to an
hour, since the retained document comes again only after a reconnect; a try the agent died
in is tried again when the document comes back after the restart. After
``MAX_TAKE_TRIES`` tries the configuration is reported ``rejected`` with the last error, so
the duty officer is never left looking at ``delivered``. A document counts as dealt with
(``handled_version``) only once its outcome is stored. State lives in
``DATA_DIR/config_ota.json`` and ``DATA_DIR/config_taking.json``, written atomically. This
module never switches a file that did not pass its probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge_agent.atomic_file import replace_durably, write_atomic
from edge_agent.config_state import (
    MAX_TAKE_TRIES,
    ConfigOtaState,
    Taking,
    candidate_path,
    config_status,
    previous_path,
    restore_previous,
)
from edge_agent.document_inbox import DocumentInbox, retry_backoff, verify_offered
from edge_agent.local_settings import LocalSettings, bind_player
from ota.crash_points import armed, freeze
from ota.document import (
    DocumentKind,
    claimed_version,
    digest,
)
from ota.report import OTA_EVENT_KIND, OtaReport, OtaState, OtaSubject, parse_report
from protocol.reconnect import Backoff
from site_schema.site_config import SiteConfig, parse_site_text
from site_schema.site_errors import SiteConfigError

log = logging.getLogger(__name__)

#: Default time the restarted agent has to show the new configuration working.
CONFIRM_DEADLINE_S = 60.0
#: The longest error text carried in a ``rejected`` report.
FAILURE_CHARS = 200

Probe = Callable[[SiteConfig], Awaitable[str | None]]
Confirm = Callable[[float], Awaitable[str | None]]


class ConfigUpdater:
    """Receives signed configurations and takes each through the steps above."""

    def __init__(
        self,
        config_path: Path,
        data_dir: Path,
        emit: Callable[[OtaReport], Awaitable[None]],
        probe: Probe,
        confirm: Confirm,
        restart: Callable[[], None],
        confirm_deadline_s: float = CONFIRM_DEADLINE_S,
        settings: LocalSettings | None = None,
        retry: Backoff | None = None,
    ) -> None:
        self.config_path = config_path
        self.settings = settings or LocalSettings()
        self.data_dir = data_dir
        self.emit = emit
        self.probe = probe
        self.confirm = confirm
        self.restart = restart
        self.confirm_deadline_s = confirm_deadline_s
        self.state = ConfigOtaState.load(data_dir)
        self.inbox = DocumentInbox()
        self.retry = retry or retry_backoff()
        self._freeze_in_probe = armed("edge.config.probe")  # crash tests only

    def offer(self, data: bytes) -> None:
        """Hand over a document from the uplink; never blocks the receiver."""
        self.inbox.offer(data)

    def status(self) -> dict[str, Any]:
        """For ``edge status`` and health: versions, a pending confirmation, the last outcome.

        ``taking`` is the configuration on its way to an outcome, with its tries and the
        last one's error (None when there is none).
        """
        return config_status(self.state, Taking.load(self.data_dir))

    async def run(self) -> None:
        """Send left-over reports, confirm a fresh switch, then handle documents forever.

        ``emit`` stores a report durably; left-over reports are dropped from the state
        file only once every one of them is stored.
        """
        for pending in self.state.unreported:
            detail = {k: v for k, v in pending.items() if k != "subject"}
            report = parse_report(OTA_EVENT_KIND, pending.get("subject"), detail)
            if report is not None:
                await self.emit(report)
        if self.state.unreported:
            self.state.unreported = []
            self._save()
        if self.state.confirming is not None:
            await self._confirm()
        await self.inbox.take_each(
            self._handle, self.retry, "configuration update", failed=self._note_failure
        )

    # --- steps -------------------------------------------------------------------------------

    def _save(self) -> None:
        self.state.save(self.data_dir)

    async def _report(self, report: OtaReport) -> None:
        if report.state.final:
            self.state.last = {"at": time.time(), **report.detail()}
            self._save()
        level = (
            logging.WARNING
            if report.state in (OtaState.REJECTED, OtaState.ROLLED_BACK)
            else logging.INFO
        )
        log.log(
            level,
            "configuration v%d %s%s",
            report.version,
            report.state.value,
            f": {report.reason}" if report.reason else "",
        )
        await self.emit(report)

    async def _refuse(self, data: bytes, version: int, reason: str) -> None:
        refused = digest(data)
        if refused == self.state.refused_digest:
            return  # the same retained document again after a reconnect
        self.state.refused_digest = refused
        await self._report(OtaReport(OtaSubject.CONFIG, version, OtaState.REJECTED, reason))

    async def _handle(self, data: bytes) -> None:
        claimed = claimed_version(data)
        if claimed and claimed == self.state.handled_version:
            return  # the retained copy of what was already dealt with
        document = verify_offered(
            data, self.data_dir, DocumentKind.CONFIG, self.state.handled_version
        )
        if isinstance(document, str):
            await self._refuse(data, claimed, document)
            return
        version = document.version
        taking = Taking.load(self.data_dir)
        if taking is None or taking.version != version:
            taking = Taking(version)
        candidate = candidate_path(self.config_path)
        if taking.tries >= MAX_TAKE_TRIES:
            candidate.unlink(missing_ok=True)
            why = taking.failure or "the agent stopped while taking it"
            reason = f"gave up after {taking.tries} tries; the last: {why}"
            await self._report(OtaReport(OtaSubject.CONFIG, version, OtaState.REJECTED, reason))
            self._dealt_with(version)
            return
        taking.tries += 1
        taking.save(self.data_dir)
        if not taking.delivered:
            await self._report(OtaReport(OtaSubject.CONFIG, version, OtaState.DELIVERED))
            taking.delivered = True
            taking.save(self.data_dir)
        text = document.payload.get("site_toml")
        site = await self._validate(version, text)
        if site is None or not isinstance(text, str):
            self._dealt_with(version)
            return
        write_atomic(candidate, text.encode())
        if self._freeze_in_probe is not None:
            freeze(self._freeze_in_probe)
        problem = await self.probe(site)
        if problem is not None:
            candidate.unlink(missing_ok=True)
            await self._report(
                OtaReport(
                    OtaSubject.CONFIG,
                    version,
                    OtaState.ROLLED_BACK,
                    f"health probe failed, previous configuration kept: {problem}",
                )
            )
            self._dealt_with(version)
            return
        self._switch(version, candidate)

    def _dealt_with(self, version: int) -> None:
        """``version`` has its outcome stored: its retained copy is no news from now on."""
        self.state.handled_version = version
        self._save()
        Taking.clear(self.data_dir)

    def _note_failure(self, exc: Exception) -> None:
        """Keep the error of a try that raised, for the report if the tries run out."""
        try:
            taking = Taking.load(self.data_dir)
            if taking is not None:
                taking.failure = f"{type(exc).__name__}: {exc}"[:FAILURE_CHARS]
                taking.save(self.data_dir)
        except (OSError, ValueError, KeyError):
            log.warning("could not keep the error of the failed configuration try", exc_info=True)

    async def _validate(self, version: int, text: Any) -> SiteConfig | None:
        try:
            site = parse_site_text(text, f"configuration v{version}")
            bind_player(site, self.settings)
        except SiteConfigError as exc:
            await self._report(OtaReport(OtaSubject.CONFIG, version, OtaState.REJECTED, str(exc)))
            return None
        return site

    def _switch(self, version: int, candidate: Path) -> None:
        previous = previous_path(self.config_path)
        write_atomic(previous, self.config_path.read_bytes())
        self.state.previous_version = self.state.installed_version
        self.state.confirming = version
        self.state.confirm_starts = 0
        self.state.handled_version = version
        self._save()
        Taking.clear(self.data_dir)
        replace_durably(candidate, self.config_path)
        log.warning("configuration v%d passed its probe; restarting on it", version)
        self.restart()

    async def _confirm(self) -> None:
        version = self.state.confirming
        assert version is not None
        problem = await self.confirm(self.confirm_deadline_s)
        if problem is None:
            self.state.installed_version = version
            self.state.confirming = None
            self.state.confirm_starts = 0
            await self._report(OtaReport(OtaSubject.CONFIG, version, OtaState.APPLIED))
            return
        report = restore_previous(
            self.config_path, self.state, f"{problem}; previous configuration restored"
        )
        self._save()
        await self._report(report)
        self.restart()
