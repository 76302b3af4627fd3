"""Release documents from the uplink to the updater: a try that fails is tried again.

A retained release document comes again only after a reconnect, which on a steady link may
be months away, so the intake itself tries a failed release again after a backoff for as
long as it stays the newest document. Real slot trees, signatures and downloads (from a
port nothing listens on); the waits are milliseconds here, a minute to an hour in service.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.document_inbox import DocumentInbox
from edge_agent.release_intake import ReleaseIntake
from edge_agent.updater import ReleaseUpdater
from fleet.signing import SigningKey
from hardware_sim.harness.enrolled import write_enrollment
from ota.document import Document, DocumentKind, Target, sign_document
from ota.manifest import ReleaseFile, ReleaseManifest
from ota.report import OtaState
from ota.slots import SLOT_RECORD, SlotTree
from protocol.reconnect import Backoff
from tests.ota_fixtures import ReportStore

GATEWAY = "gw-intake-1"


class Intake:
    """A ``ReleaseIntake`` whose reports are kept in a list; the first ``full_store`` fail."""

    def __init__(self, data: Path, updater_tree: SlotTree | None, full_store: int = 0) -> None:
        self.changed = asyncio.Event()
        self.store = ReportStore(self.changed, full_store)
        self.reports = self.store.reports
        self.exits = 0
        updater = (
            None
            if updater_tree is None
            else ReleaseUpdater(
                updater_tree, "http://127.0.0.1:9", self.store, running_version="0.1.1"
            )
        )
        self.intake = ReleaseIntake(
            data, updater, self.store, self._exit, retry=Backoff(0.01, 0.04, random.Random(3))
        )

    def _exit(self) -> None:
        self.exits += 1

    async def run_until(self, done: Callable[[], object]) -> None:
        """Run the intake until ``done()`` is true (10 s at most)."""

        async def healthy() -> str | None:
            return None

        task = asyncio.create_task(self.intake.run(healthy))
        try:
            async with asyncio.timeout(10):
                while not done():
                    await self.changed.wait()
                    self.changed.clear()
        finally:
            task.cancel()


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return SigningKey.load_or_create(tmp_path / "fleet")


@pytest.fixture
def data(tmp_path: Path, key: SigningKey) -> Path:
    folder = tmp_path / "data"
    write_enrollment(folder, GATEWAY, key.public_key_b64)
    return folder


@pytest.fixture
def tree(tmp_path: Path) -> SlotTree:
    """0.1.1 installed and committed under release document 2."""
    tree = SlotTree(tmp_path / "opt-hazardwatch")
    tree.slot("0.1.1").mkdir(parents=True)
    (tree.slot("0.1.1") / SLOT_RECORD).write_text(_manifest("0.1.1").model_dump_json())
    tree.switch("0.1.1", 2, max_boots=3, health_deadline_s=60)
    tree.commit()
    tree.mark_reported(tree.unreported())
    return tree


def _manifest(version: str) -> ReleaseManifest:
    wheel = ReleaseFile(name=f"hazardwatch-{version}-py3-none-any.whl", sha256="a" * 64, size=10)
    return ReleaseManifest(
        version=version, min_upgrade_from="0.0.1", python_requires=">=3.11", created_at=0,
        files=(wheel,),
    )  # fmt: skip


def _release(key: SigningKey, version: int, release: str) -> bytes:
    payload = _manifest(release).payload()
    return sign_document(
        Document(DocumentKind.RELEASE, version, Target((GATEWAY,)), 0.0, payload), key
    )


async def test_a_release_whose_download_fails_is_tried_again_while_it_is_the_newest(
    data: Path, tree: SlotTree, key: SigningKey
) -> None:
    # Nothing listens at the fleet's address: every download fails. The intake goes on
    # trying by itself; before, it waited for the document to come again at a reconnect.
    rig = Intake(data, tree)
    rig.intake.offer(_release(key, 3, "0.1.2"))

    def downloads() -> int:
        return sum(r.state is OtaState.DOWNLOADING for r in rig.reports)

    await rig.run_until(lambda: downloads() >= 3)
    assert {(r.version, r.state) for r in rig.reports} == {(3, OtaState.DOWNLOADING)}
    assert rig.intake.retry.attempt >= 2  # each failure waited longer than the one before
    assert rig.exits == 0
    committed = tree.state().committed
    assert committed is not None
    assert committed.version == "0.1.1"


async def test_a_refusal_the_store_could_not_take_is_reported_once_on_the_next_try(
    data: Path, key: SigningKey
) -> None:
    # Without a slot tree every release is refused; the first report fails to be stored.
    rig = Intake(data, None, full_store=1)
    document = _release(key, 3, "0.1.2")
    rig.intake.offer(document)
    await rig.run_until(lambda: rig.reports)
    [report] = rig.reports
    assert (report.version, report.state) == (3, OtaState.REJECTED)
    assert "does not run from release slots" in str(report.reason)
    # The same retained document after a reconnect is not reported again; a later one is.
    rig.intake.offer(document)
    rig.intake.offer(_release(key, 4, "0.1.3"))
    await rig.run_until(lambda: len(rig.reports) == 2)
    assert [(r.version, r.state) for r in rig.reports] == [
        (3, OtaState.REJECTED),
        (4, OtaState.REJECTED),
    ]


async def test_a_document_offered_while_a_retry_waits_wins_over_the_retry() -> None:
    inbox = DocumentInbox()
    inbox.retry_later(b"release 3", 0.01)
    inbox.offer(b"release 4")
    assert await inbox.get() == b"release 4"
    with pytest.raises(TimeoutError):  # the retry of 3 was dropped, not queued behind 4
        await asyncio.wait_for(inbox.get(), 0.2)
    inbox.retry_later(b"release 4", 0.01)
    async with asyncio.timeout(5):
        assert await inbox.get() == b"release 4"
