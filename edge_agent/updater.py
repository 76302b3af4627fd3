"""Agent releases on the gateway: download, install, switch, confirm at start, report.

``ReleaseUpdater.apply`` takes a verified release document as far as the switch and then
answers that the process must exit, so systemd restarts it into the new slot;
``confirm_started`` runs at every agent start and commits a version on trial once it is
healthy, or rolls it back. Each step is reported through ``emit``; outcomes decided while
no agent ran (the supervisor's rollbacks) wait in the slot state until reported once.
Never imports ``fleet``.
"""

from __future__ import annotations

import asyncio
import enum
import importlib.metadata
import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ota.crash_points import POINTS, armed, freeze
from ota.document import Document, DocumentKind
from ota.download import Checkpoint, FileRejectedError, basic_auth, fetch_release, no_checkpoint
from ota.manifest import DIST_NAME, ReleaseManifest
from ota.report import OtaReport, OtaState, OtaSubject
from ota.slots import ReleaseRefusedError, SlotBusyError, SlotError, SlotTree
from ota.supervisor import Outcome, SlotState

if TYPE_CHECKING:
    from edge_agent.enroll import StoredEnrollment

log = logging.getLogger(__name__)


Emit = Callable[[OtaReport], Awaitable[None]]
HealthProbe = Callable[[], Awaitable[str | None]]


class AfterApply(enum.Enum):
    """What the agent does after ``apply``."""

    RESTART = "restart"  # switched: exit, systemd starts the new slot
    CARRY_ON = "carry_on"  # nothing changed: rejected, or the version already runs


class AfterStart(enum.Enum):
    """What ``confirm_started`` decided at this start."""

    COMMITTED = "committed"  # this version is confirmed; keep running
    ROLLED_BACK = "rolled_back"  # not healthy: exit, systemd starts the previous slot
    NOTHING_PENDING = "nothing_pending"  # this version was already committed

    @property
    def restart(self) -> bool:
        """Whether the process must exit so systemd starts another slot."""
        return self is AfterStart.ROLLED_BACK


#: The release steps a crash test can freeze at.
STEPS = tuple(p.removeprefix("ota.") for p in POINTS if p.startswith("ota."))


def pause_for_crash_tests() -> Checkpoint:
    """A checkpoint freezing the process at the release step a crash test arms, if any.

    ``HAZARDWATCH_CRASH_TEST=ota.<step>=<marker>`` (see ``ota.crash_points``): at that step
    it writes the marker and blocks forever, so a test can SIGKILL the process exactly
    there. Unarmed, it does nothing.
    """
    armed_at = {step: marker for step in STEPS if (marker := armed(f"ota.{step}")) is not None}
    if not armed_at:
        return no_checkpoint

    def checkpoint(name: str) -> None:
        if (marker := armed_at.get(name)) is not None:
            freeze(marker)

    return checkpoint


def warm_kernels(
    slot: Path, timeout_s: float = 900.0, site_config: Path | None = None
) -> float | None:
    """Compile the new slot's alarm kernels into the agent's numba cache before the switch.

    numba keys its cache by source path, so a new slot would otherwise compile every
    kernel at its first start, before it polls anything. Done here, while this version
    still runs the site, the new one starts as fast as after any restart. Only the kernels
    ``site_config``'s rules run on are compiled (all of them without it): on a solar
    gateway each one is seconds of a Pi's CPU. Without a cache directory (or numba in the
    slot) there is nothing to warm: returns None, as on failure (logged; the new version
    then compiles at its first start).
    """
    if not os.environ.get("NUMBA_CACHE_DIR"):
        return None
    started = time.monotonic()
    try:
        result = subprocess.run(
            [str(slot / "bin" / "python"), "-m", "edge_agent.alarm_preload"]
            + ([] if site_config is None else [str(site_config.absolute())]),
            cwd=slot,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not warm the new slot's kernels: %s", exc)
        return None
    if result.returncode != 0:
        log.warning("could not warm the new slot's kernels: %s", result.stderr.strip()[-500:])
        return None
    return round(time.monotonic() - started, 1)


async def wait_healthy(healthy: HealthProbe, deadline_s: float, interval_s: float) -> str | None:
    """Ask ``healthy`` every ``interval_s`` until it answers None (healthy) or time is up.

    Returns None, or the last reason it gave when ``deadline_s`` passed.
    """
    reason = "no health answer"
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                try:
                    answer = await healthy()
                except Exception as exc:  # a failing probe is an answer, not a crash
                    answer = f"the health probe failed: {exc!r}"
                if answer is None:
                    return None
                reason = answer
                await asyncio.sleep(interval_s)
    except TimeoutError:
        return reason


class ReleaseUpdater:
    """Brings verified release documents onto this gateway's slots and confirms them.

    ``emit`` is awaited for each report; an outcome is marked reported only after it
    returned, so pass a coroutine that stores the event durably.
    """

    def __init__(
        self,
        tree: SlotTree,
        fleet_url: str,
        emit: Emit,
        *,
        max_boots: int = 3,
        health_deadline_s: float = 120.0,
        probe_interval_s: float = 2.0,
        running_version: str | None = None,
        headers: Mapping[str, str] | None = None,
        site_config: Path | None = None,
    ) -> None:
        self.tree = tree
        self.fleet_url = fleet_url
        self.emit = emit
        self.max_boots = max_boots
        self.health_deadline_s = health_deadline_s
        self.probe_interval_s = probe_interval_s
        self.running_version = running_version or importlib.metadata.version(DIST_NAME)
        self._checkpoint = pause_for_crash_tests()
        self.headers = dict(headers or {})
        self.site_config = site_config  # whose rules' kernels a new slot gets compiled

    @classmethod
    def for_enrollment(
        cls, tree: SlotTree, enrollment: StoredEnrollment, emit: Emit, **options: Any
    ) -> ReleaseUpdater:
        """An updater downloading from the enrollment's fleet with its credentials."""
        headers = basic_auth(enrollment.mqtt.username, enrollment.mqtt.password)
        return cls(tree, enrollment.fleet_url, emit, headers=headers, **options)

    def installed_document_version(self, state: SlotState | None = None) -> int:
        """The newest release document acted on here; verify new ones against it."""
        state = state or self.tree.state()
        committed = state.committed.doc_version if state.committed else 0
        return max(committed, state.tried_doc_version)

    async def apply(self, document: Document) -> AfterApply:
        """Download, verify, install and switch to the release ``document`` carries.

        Returns ``RESTART`` once switched. Refusals are reported as REJECTED and return
        ``CARRY_ON``. A failing link raises ``ota.download.DownloadError`` (the partial
        files stay for the next try) and a busy slot tree ``SlotBusyError``.
        """
        if document.kind is not DocumentKind.RELEASE:
            msg = f"a {document.kind.value} document is not a release"
            raise ValueError(msg)
        try:
            manifest = ReleaseManifest.model_validate(document.payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return await self._reject(document, f"not a release manifest ({where}: {first['msg']})")
        state = self.tree.state()
        newest = self.installed_document_version(state)
        if document.version <= newest:
            reason = (
                f"release document {document.version} is not newer than "
                f"{newest}, the newest one tried here"
            )
            return await self._reject(document, reason)
        running = state.committed
        if state.pending is None and running is not None and running.version == manifest.version:
            reason = f"version {manifest.version} already runs"
            await self._report(document, OtaState.APPLIED, reason, release=manifest.version)
            return AfterApply.CARRY_ON
        try:
            self.tree.admit(manifest, document.revert)
        except ReleaseRefusedError as exc:
            return await self._reject(document, exc.reason, refusal=exc.code.value)
        extra: dict[str, Any] = {"release": manifest.version}
        if self.tree.is_installed(manifest.version):
            extra["already_installed"] = True
        else:
            missing = self.tree.cache.missing(manifest)
            await self._report(
                document,
                OtaState.DOWNLOADING,
                None,
                release=manifest.version,
                bytes_to_fetch=sum(f.size for f in missing),
                bytes_total=manifest.total_size,
            )
            try:
                fetched = await asyncio.to_thread(
                    fetch_release,
                    manifest,
                    self.fleet_url,
                    self.tree.cache,
                    checkpoint=self._checkpoint,
                    headers=self.headers,
                )
                installed = await asyncio.to_thread(
                    self.tree.install, manifest, self.tree.cache.directory, self._checkpoint
                )
            except SlotBusyError:
                raise
            except (FileRejectedError, SlotError) as exc:
                return await self._reject(document, str(exc))
            extra.update(download=fetched.as_dict(), install_s=round(installed.seconds, 1))
        warmed = await asyncio.to_thread(
            warm_kernels, self.tree.slot(manifest.version), site_config=self.site_config
        )
        if warmed is not None:
            extra["kernels_warmed_s"] = warmed
        await self._report(document, OtaState.INSTALLED, None, **extra)
        await asyncio.to_thread(
            self.tree.switch,
            manifest.version,
            document.version,
            self.max_boots,
            self.health_deadline_s,
            self._checkpoint,
        )
        return AfterApply.RESTART

    async def confirm_started(self, healthy: HealthProbe) -> AfterStart:
        """At agent start: commit this version if on trial and healthy, else roll back.

        ``healthy`` answers None when healthy or a reason why not; it is asked every
        ``probe_interval_s`` until healthy or the switch's health deadline has passed.
        Outcomes not yet reported (this one, or the supervisor's) are emitted at the end.
        """
        pending = self.tree.state().pending
        if pending is None or pending.release.version != self.running_version:
            await self.flush_reports()
            return AfterStart.NOTHING_PENDING
        self._checkpoint("start")
        reason = await wait_healthy(healthy, pending.health_deadline_s, self.probe_interval_s)
        if reason is None:
            await asyncio.to_thread(self.tree.commit, self._checkpoint)
            decided = AfterStart.COMMITTED
        else:
            why = (
                f"version {self.running_version} was not healthy within "
                f"{pending.health_deadline_s:g} s: {reason}"
            )
            await asyncio.to_thread(self.tree.rollback, why)
            decided = AfterStart.ROLLED_BACK
        await self.flush_reports()
        return decided

    async def flush_reports(self) -> int:
        """Emit each unreported outcome, then mark it reported; returns how many."""
        outcomes = self.tree.unreported()
        for outcome in outcomes:
            await self.emit(_outcome_report(outcome))
            await asyncio.to_thread(self.tree.mark_reported, [outcome])
        return len(outcomes)

    async def _reject(self, document: Document, reason: str, **extra: Any) -> AfterApply:
        await self._report(document, OtaState.REJECTED, reason, **extra)
        return AfterApply.CARRY_ON

    async def _report(
        self, document: Document, state: OtaState, reason: str | None, **extra: Any
    ) -> None:
        await self.emit(OtaReport(OtaSubject.RELEASE, document.version, state, reason, extra))


def _outcome_report(outcome: Outcome) -> OtaReport:
    return OtaReport(
        OtaSubject.RELEASE,
        outcome.release.doc_version,
        OtaState(outcome.state),
        outcome.reason,
        {"release": outcome.release.version, "starts": outcome.starts},
    )
