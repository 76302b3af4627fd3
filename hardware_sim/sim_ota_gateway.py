"""A simulated gateway's over-the-air side, for rollout tests: verify documents, report steps.

It connects with an enrolled gateway's credentials (through ``SimulatedGateway``), receives
the retained signed ``config`` and ``release`` documents, verifies each with
``ota.document.verify_document`` against the fleet key, and reports each step as an
``ota`` event through the events stream, as the edge agent does. Its ``OtaPlan`` decides
the outcome: applied, rolled back, delivered and then nothing, or nothing at all.

A download that fails (the fleet refuses, the link drops) is what the edge agent makes of
it (``edge_agent.release_intake``): logged, the update stays ``downloading``, and the
download is tried again after ``retry_after_s``; it never stops the gateway's worker.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

from edge_agent.document_inbox import RETRY_FIRST_S
from fleet.mqtt_connection import BrokerConnection
from hardware_sim.simgateway import EncodedBatch, SimulatedGateway, cancel_and_wait
from ota.document import (
    Document,
    DocumentKind,
    DocumentRefusedError,
    Refusal,
    claimed_version,
    verify_document,
)
from ota.manifest import ReleaseFile, ReleaseManifest
from ota.report import OTA_EVENT_KIND, OtaReport, OtaState, OtaSubject
from protocol import EventBatch, EventRow, Stream, Topic, gateway_topic

log = logging.getLogger(__name__)

#: Downloads one file of a release: ``fetch(version, file)`` returns its bytes.
Fetch = Callable[[str, ReleaseFile], Awaitable[bytes]]


class OtaPlan(enum.StrEnum):
    """What the simulated gateway does with a valid document."""

    APPLY = "apply"  # delivered, then applied
    ROLL_BACK = "roll_back"  # delivered, then rolled back (failed health check)
    STALL = "stall"  # delivered, then never a final word
    SILENT = "silent"  # never reports anything


class SimulatedOtaGateway:
    """One gateway's update handling; use as an async context manager.

    ``received`` lists the documents that verified, ``refused`` the refusals and
    ``reports`` what was reported, in order; ``timeline`` has ``(monotonic time, step,
    version)`` for each receipt (step ``received``) and report. With ``fetch``, a release's
    files are downloaded and their sha256 checked before it counts as applied; each failed
    download is in ``download_failures`` and is tried again after ``retry_after_s``.
    """

    def __init__(
        self,
        gateway_id: str,
        broker: BrokerConnection,
        trust_anchor: str,
        plan: OtaPlan | Mapping[DocumentKind, OtaPlan] = OtaPlan.APPLY,
        fetch: Fetch | None = None,
        retry_after_s: float = RETRY_FIRST_S,
    ) -> None:
        self.gateway_id = gateway_id
        self.trust_anchor = trust_anchor
        self.plans = dict.fromkeys(DocumentKind, plan) if isinstance(plan, OtaPlan) else dict(plan)
        self.fetch = fetch
        self.retry_after_s = retry_after_s
        self.download_failures: list[str] = []
        self.uplink = SimulatedGateway(gateway_id, broker)
        self.seen: dict[DocumentKind, int] = dict.fromkeys(DocumentKind, 0)
        self.received: list[Document] = []
        self.refused: list[DocumentRefusedError] = []
        self.reports: list[OtaReport] = []
        self.timeline: list[tuple[float, str, int]] = []
        self._seq = 0
        self._worker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimulatedOtaGateway:
        await self.uplink.__aenter__()
        try:
            for kind in (Topic.CONFIG, Topic.RELEASE):
                await self.uplink.client.subscribe(gateway_topic(self.gateway_id, kind), qos=1)
        except BaseException:
            await self.uplink.__aexit__(None, None, None)
            raise
        self._worker = asyncio.create_task(self._work(), name=f"sim-ota-{self.gateway_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._worker is not None:
            await cancel_and_wait(self._worker)
        await self.uplink.__aexit__(exc_type, exc, tb)

    def versions(self, kind: DocumentKind) -> list[int]:
        """Versions of the ``kind`` documents received, in order."""
        return [d.version for d in self.received if d.kind is kind]

    async def _work(self) -> None:
        while True:
            message = await self.uplink.commands.get()
            topic = str(message.topic)
            raw = message.payload
            if not topic.endswith(("/config", "/release")) or not isinstance(raw, bytes) or not raw:
                continue
            await self._handle(DocumentKind(topic.rsplit("/", 1)[1]), raw)

    async def _handle(self, kind: DocumentKind, data: bytes) -> None:
        try:
            document = verify_document(
                data, self.trust_anchor, self.gateway_id, kind, self.seen[kind]
            )
        except DocumentRefusedError as exc:
            self.refused.append(exc)
            if exc.code is not Refusal.STALE_VERSION:  # a stale copy of what it has: no news
                await self._report(kind, claimed_version(data), OtaState.REJECTED, exc.reason)
            return
        self.seen[kind] = document.version
        self.received.append(document)
        self.timeline.append((time.monotonic(), "received", document.version))
        plan = self.plans[kind]
        if plan is OtaPlan.SILENT:
            return
        await self._report(kind, document.version, OtaState.DELIVERED)
        if plan is OtaPlan.STALL:
            return
        if kind is DocumentKind.RELEASE and self.fetch is not None:
            manifest = ReleaseManifest.model_validate(document.payload)
            await self._report(kind, document.version, OtaState.DOWNLOADING)
            mismatch = await self._download(manifest)
            if mismatch is not None:
                await self._report(kind, document.version, OtaState.ROLLED_BACK, mismatch)
                return
        if plan is OtaPlan.APPLY:
            await self._report(kind, document.version, OtaState.APPLIED)
        else:
            reason = "health check failed after the switch (simulated)"
            await self._report(kind, document.version, OtaState.ROLLED_BACK, reason)

    async def _download(self, manifest: ReleaseManifest) -> str | None:
        """Fetch every file until all came; the first sha256 that does not match, if any."""
        assert self.fetch is not None
        while True:
            try:
                contents = [await self.fetch(manifest.version, file) for file in manifest.files]
            except Exception as exc:  # as the agent: logged, still downloading, tried again
                self.download_failures.append(f"{type(exc).__name__}: {exc}")
                log.warning("release %s: download failed, trying again in %g s: %s",
                            manifest.version, self.retry_after_s, exc)  # fmt: skip
                await asyncio.sleep(self.retry_after_s)
                continue
            for file, content in zip(manifest.files, contents, strict=True):
                if hashlib.sha256(content).hexdigest() != file.sha256:
                    return f"{file.name}: sha256 does not match the manifest"
            return None

    async def _report(
        self, kind: DocumentKind, version: int, state: OtaState, reason: str | None = None
    ) -> None:
        report = OtaReport(OtaSubject(kind.value), version, state, reason)
        self.reports.append(report)
        self._seq += 1
        row = EventRow(
            seq=self._seq,
            ts=time.time(),
            kind=OTA_EVENT_KIND,
            subject=kind.value,
            detail=report.detail(),
        )
        batch = EventBatch(
            gateway_id=self.gateway_id, first_seq=self._seq, last_seq=self._seq, rows=[row]
        )
        self.timeline.append((time.monotonic(), state.value, version))
        await self.uplink.upload([EncodedBatch.of(batch)], Stream.EVENTS)
