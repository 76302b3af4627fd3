"""Release slots and the gateway's updater: what is taken, switched, confirmed, undone.

The state-machine and updater tests use plain directories as slots; the install test
builds a real release and installs it offline into a real venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.config_state import MAX_TAKE_TRIES, ConfigOtaState, Taking
from edge_agent.update_cli import update_app
from edge_agent.updater import AfterApply, AfterStart, ReleaseUpdater
from ota.bundle import WHEELS_DIR, build_release
from ota.document import Document, DocumentKind, Target
from ota.download import sha256_file
from ota.manifest import ReleaseFile, ReleaseManifest
from ota.report import OtaReport, OtaState
from ota.slots import (
    SLOT_RECORD,
    SUPERVISOR_FILE,
    Refusal,
    ReleaseRefusedError,
    SlotError,
    SlotTree,
)
from ota.supervisor import APPLIED, ROLLED_BACK, load_state

REPO = Path(__file__).resolve().parents[1]
WHEEL_CACHE = REPO / ".cache" / "ota-wheels"


def _manifest(
    version: str, min_upgrade_from: str = "0.0.1", python_requires: str = ">=3.11"
) -> ReleaseManifest:
    file = ReleaseFile(name=f"hazardwatch-{version}-py3-none-any.whl", sha256="a" * 64, size=1)
    return ReleaseManifest(
        version=version,
        min_upgrade_from=min_upgrade_from,
        python_requires=python_requires,
        created_at=0,
        files=(file,),
    )


def _fake_slot(tree: SlotTree, version: str) -> None:
    tree.slot(version).mkdir(parents=True)
    (tree.slot(version) / SLOT_RECORD).write_text(_manifest(version).model_dump_json())


def _commit(tree: SlotTree, version: str, doc_version: int) -> None:
    _fake_slot(tree, version)
    tree.switch(version, doc_version, max_boots=3, health_deadline_s=60)
    tree.commit()


def _links(tree: SlotTree) -> tuple[str | None, str | None]:
    status = tree.status()
    return status.current_link, status.previous_link


@pytest.fixture
def tree(tmp_path: Path) -> SlotTree:
    """0.1.0 then 0.1.1 committed."""
    tree = SlotTree(tmp_path / "opt-hazardwatch")
    _commit(tree, "0.1.0", 1)
    _commit(tree, "0.1.1", 2)
    return tree


def test_a_switch_records_the_trial_before_it_moves_the_link(tree: SlotTree) -> None:
    _fake_slot(tree, "0.1.2")
    seen: list[tuple[str | None, str | None, str | None]] = []

    def at(step: str) -> None:
        pending = load_state(tree.root).pending
        seen.append((step, pending.release.version if pending else None, _links(tree)[0]))

    tree.switch("0.1.2", 3, max_boots=2, health_deadline_s=30, checkpoint=at)
    assert seen == [("switch", "0.1.2", "slots/0.1.1")]
    pending = tree.state().pending
    assert pending is not None
    assert (pending.boots, pending.max_boots, pending.health_deadline_s) == (0, 2, 30)
    assert _links(tree) == ("slots/0.1.2", "slots/0.1.1")
    assert tree.state().tried_doc_version == 3


def test_a_commit_keeps_current_and_previous_and_prunes_the_rest(tree: SlotTree) -> None:
    _fake_slot(tree, "0.1.2")
    tree.cache.directory.mkdir(parents=True)
    used = tree.cache.path("a" * 64)
    stale = tree.cache.path("b" * 64)
    used.write_bytes(b"x")
    stale.write_bytes(b"y")
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    outcome = tree.commit()
    state = tree.state()
    assert state.committed is not None
    assert state.previous is not None
    assert (state.committed.version, state.previous.version) == ("0.1.2", "0.1.1")
    assert (outcome.state, outcome.release.doc_version, outcome.reported) == (APPLIED, 3, False)
    assert sorted(p.name for p in (tree.root / "slots").iterdir()) == ["0.1.1", "0.1.2"]
    assert _links(tree) == ("slots/0.1.2", "slots/0.1.1")
    assert used.exists()
    assert not stale.exists()
    supervisor = tree.root / SUPERVISOR_FILE
    assert supervisor.read_bytes() == (REPO / "ota" / "supervisor.py").read_bytes()
    assert os.access(supervisor, os.X_OK)


def test_a_rollback_returns_to_the_committed_version_and_says_why(tree: SlotTree) -> None:
    _fake_slot(tree, "0.1.2")
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    outcome = tree.rollback("buses did not answer")
    assert (outcome.state, outcome.reason, outcome.release.version) == (
        ROLLED_BACK,
        "buses did not answer",
        "0.1.2",
    )
    state = tree.state()
    assert state.pending is None
    assert state.committed is not None
    assert state.committed.version == "0.1.1"
    assert _links(tree) == ("slots/0.1.1", "slots/0.1.0")


def test_outcomes_are_handed_out_until_marked_reported(tree: SlotTree) -> None:
    first, second = tree.unreported()
    assert [o.release.version for o in (first, second)] == ["0.1.0", "0.1.1"]
    tree.mark_reported([first])
    assert tree.unreported() == (second,)
    tree.mark_reported([second])
    assert tree.unreported() == ()
    assert [o.reported for o in tree.state().outcomes] == [True, True]


def test_a_downgrade_is_refused_unless_the_document_is_an_explicit_revert(
    tree: SlotTree,
) -> None:
    with pytest.raises(ReleaseRefusedError) as refused:
        tree.admit(_manifest("0.1.0"), revert=False)
    assert refused.value.code is Refusal.DOWNGRADE
    assert refused.value.reason == (
        "0.1.0 is older than the installed 0.1.1; only a document marked as an explicit "
        "revert may go back"
    )
    tree.admit(_manifest("0.1.0"), revert=True)


def test_a_release_the_installed_version_is_too_old_for_is_refused(tree: SlotTree) -> None:
    with pytest.raises(ReleaseRefusedError) as refused:
        tree.admit(_manifest("0.3.0", min_upgrade_from="0.2.0"), revert=False)
    assert refused.value.code is Refusal.TOO_OLD
    assert refused.value.reason == (
        "the installed 0.1.1 is older than 0.2.0, the oldest version 0.3.0 upgrades from; "
        "install a release between them first"
    )
    tree.admit(_manifest("0.3.0", min_upgrade_from="0.1.1"), revert=False)


def test_a_release_for_another_python_is_refused(tree: SlotTree) -> None:
    with pytest.raises(ReleaseRefusedError) as refused:
        tree.admit(_manifest("0.1.2", python_requires=">=3.99"), revert=False)
    assert refused.value.code is Refusal.PYTHON
    assert "needs Python >=3.99" in refused.value.reason


def test_nothing_new_is_taken_while_a_version_is_on_trial(tree: SlotTree) -> None:
    _fake_slot(tree, "0.1.2")
    _fake_slot(tree, "0.1.3")
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    with pytest.raises(ReleaseRefusedError) as refused:
        tree.admit(_manifest("0.1.3"), revert=False)
    assert refused.value.code is Refusal.PENDING
    assert refused.value.reason == "version 0.1.2 is still waiting to be confirmed healthy"
    with pytest.raises(ReleaseRefusedError):
        tree.switch("0.1.3", 4, max_boots=3, health_deadline_s=60)


def test_only_installed_versions_can_be_switched_to_and_only_a_trial_committed(
    tree: SlotTree,
) -> None:
    with pytest.raises(SlotError, match=r"version 0\.1\.7 is not installed"):
        tree.switch("0.1.7", 3, max_boots=3, health_deadline_s=60)
    with pytest.raises(SlotError, match="no version is waiting to be confirmed"):
        tree.commit()
    with pytest.raises(SlotError, match="no pending version"):
        tree.rollback("why")


def test_status_shows_links_slots_and_unfinished_installs(tree: SlotTree) -> None:
    tree.slot("0.1.2").mkdir()
    tree.slot("0.1.2").with_name("0.1.2.partial").write_text("installing")
    status = tree.status()
    assert (status.current_link, status.previous_link) == ("slots/0.1.1", "slots/0.1.0")
    assert status.slots == ("0.1.0", "0.1.1")
    assert status.partial == ("0.1.2",)
    assert status.last_outcome is not None
    assert status.last_outcome.release.version == "0.1.1"
    assert not tree.is_installed("0.1.2")


def _updater(tree: SlotTree, running: str, reports: list[OtaReport]) -> ReleaseUpdater:
    async def emit(report: OtaReport) -> None:
        reports.append(report)

    return ReleaseUpdater(tree, "http://127.0.0.1:9", emit, running_version=running,
                          probe_interval_s=0.01)  # fmt: skip


def _probe(answers: list[str | None]) -> Callable[[], Awaitable[str | None]]:
    async def healthy() -> str | None:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return healthy


def _on_trial(tree: SlotTree, health_deadline_s: float) -> None:
    """0.1.2 switched to under release document 3, on trial; nothing left to report."""
    tree.mark_reported(tree.unreported())
    _fake_slot(tree, "0.1.2")
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=health_deadline_s)


async def test_a_version_on_trial_that_turns_healthy_is_committed_and_reported(
    tree: SlotTree,
) -> None:
    _on_trial(tree, health_deadline_s=30)
    reports: list[OtaReport] = []
    updater = _updater(tree, "0.1.2", reports)
    decided = await updater.confirm_started(_probe(["buses starting", "buses starting", None]))
    assert decided is AfterStart.COMMITTED
    assert not decided.restart
    assert [(r.version, r.state, r.extra) for r in reports] == [
        (3, OtaState.APPLIED, {"release": "0.1.2", "starts": 0})
    ]
    assert await updater.confirm_started(_probe([None])) is AfterStart.NOTHING_PENDING
    assert len(reports) == 1


async def test_a_version_on_trial_unhealthy_past_its_deadline_is_rolled_back(
    tree: SlotTree,
) -> None:
    _on_trial(tree, health_deadline_s=0.2)
    reports: list[OtaReport] = []
    decided = await _updater(tree, "0.1.2", reports).confirm_started(
        _probe(["bus 1 does not answer"])
    )
    assert decided is AfterStart.ROLLED_BACK
    assert decided.restart
    [report] = reports
    assert (report.version, report.state) == (3, OtaState.ROLLED_BACK)
    assert report.reason == "version 0.1.2 was not healthy within 0.2 s: bus 1 does not answer"
    assert _links(tree) == ("slots/0.1.1", "slots/0.1.0")


async def test_outcomes_decided_while_no_agent_ran_are_reported_once(tree: SlotTree) -> None:
    _on_trial(tree, health_deadline_s=30)
    tree.rollback("version 0.1.2 did not commit after 3 starts")  # as the supervisor does
    reports: list[OtaReport] = []
    updater = _updater(tree, "0.1.1", reports)
    assert len(tree.unreported()) == 1
    assert await updater.confirm_started(_probe([None])) is AfterStart.NOTHING_PENDING
    assert await updater.confirm_started(_probe([None])) is AfterStart.NOTHING_PENDING
    assert [(r.version, r.state) for r in reports] == [(3, OtaState.ROLLED_BACK)]
    assert not tree.unreported()


def _release_document(version: int, manifest: ReleaseManifest, revert: bool = False) -> Document:
    return Document(DocumentKind.RELEASE, version, Target(("gw-1",)), 0.0, manifest.payload(),
                    revert)  # fmt: skip


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (_manifest("0.1.0"), "0.1.0 is older than the installed 0.1.1"),
        (_manifest("0.2.0", min_upgrade_from="0.1.5"), "the installed 0.1.1 is older than 0.1.5"),
    ],
)
async def test_a_refused_release_is_reported_rejected_before_any_download(
    tree: SlotTree, manifest: ReleaseManifest, reason: str
) -> None:
    reports: list[OtaReport] = []
    after = await _updater(tree, "0.1.1", reports).apply(_release_document(3, manifest))
    assert after is AfterApply.CARRY_ON
    [report] = reports
    assert (report.version, report.state) == (3, OtaState.REJECTED)
    assert report.reason is not None
    assert report.reason.startswith(reason)
    assert not tree.cache.incoming.exists()
    assert tree.state().tried_doc_version == 2


async def test_an_explicit_revert_switches_back_to_the_installed_older_slot(
    tree: SlotTree,
) -> None:
    reports: list[OtaReport] = []
    after = await _updater(tree, "0.1.1", reports).apply(
        _release_document(3, _manifest("0.1.0"), revert=True)
    )
    assert after is AfterApply.RESTART
    assert [(r.state, r.extra) for r in reports] == [
        (OtaState.INSTALLED, {"release": "0.1.0", "already_installed": True})
    ]
    pending = tree.state().pending
    assert pending is not None
    assert (pending.release.version, pending.release.doc_version) == ("0.1.0", 3)
    assert _links(tree) == ("slots/0.1.0", "slots/0.1.1")


async def test_a_document_already_tried_is_rejected(tree: SlotTree) -> None:
    reports: list[OtaReport] = []
    await _updater(tree, "0.1.1", reports).apply(_release_document(2, _manifest("0.1.2")))
    assert [(r.state, r.reason) for r in reports] == [
        (
            OtaState.REJECTED,
            "release document 2 is not newer than 2, the newest one tried here",
        )
    ]


def test_update_status_shows_the_trial_and_the_last_outcome(tree: SlotTree) -> None:
    _fake_slot(tree, "0.1.2")
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    shown = CliRunner().invoke(update_app, ["status", "--root", str(tree.root)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith(
        "current   0.1.2 (release document 3) pending: start 0 of 3, must be healthy within 60 s"
    )
    assert lines[1] == "previous  0.1.1 (release document 2) (the rollback)"
    assert lines[2] == "links     current -> slots/0.1.2, previous -> slots/0.1.1"
    assert lines[3] == "slots     0.1.0, 0.1.1, 0.1.2"
    assert lines[4].startswith("last      applied 0.1.1 (release document 2) at ")
    assert lines[4].endswith(" UTC (not reported yet)")
    as_json = CliRunner().invoke(update_app, ["status", "--root", str(tree.root), "--json"])
    status = json.loads(as_json.output)
    assert status["pending"]["release"] == {"version": "0.1.2", "doc_version": 3}
    assert status["links"] == {"current": "slots/0.1.2", "previous": "slots/0.1.1"}


def test_update_status_shows_a_configuration_being_taken_with_its_tries(
    tree: SlotTree, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ConfigOtaState(installed_version=2, handled_version=2).save(data)
    Taking(3, 2, delivered=True, failure="OSError: database or disk is full").save(data)
    args = ["status", "--root", str(tree.root), "--data-dir", str(data)]
    shown = CliRunner().invoke(update_app, args)
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[-1] == (
        f"config    v2 installed; v3 being taken: try 2 of {MAX_TAKE_TRIES} "
        "(last error: OSError: database or disk is full)"
    )
    status = json.loads(CliRunner().invoke(update_app, [*args, "--json"]).output)
    assert status["config"]["taking"]["tries"] == 2
    missing = CliRunner().invoke(update_app, ["status", "--root", str(tree.root), "-d", "/nope"])
    assert (missing.exit_code, "no data directory /nope" in missing.output) == (2, True)


@dataclass(frozen=True)
class SourceSnapshot:
    pyproject: bytes
    top_level: list[str]


def _snapshot() -> SourceSnapshot:
    return SourceSnapshot((REPO / "pyproject.toml").read_bytes(), sorted(os.listdir(REPO)))


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, ReleaseManifest, SourceSnapshot, SourceSnapshot]]:
    out = tmp_path_factory.mktemp("bundle-0.1.1")
    before = _snapshot()
    manifest = build_release(REPO, out, "0.1.1", "0.1.0", WHEEL_CACHE)
    yield out, manifest, before, _snapshot()
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def bundle(
    built: tuple[Path, ReleaseManifest, SourceSnapshot, SourceSnapshot],
) -> tuple[Path, ReleaseManifest]:
    return built[0], built[1]


def test_a_bundle_holds_the_project_at_its_version_and_every_dependency(
    built: tuple[Path, ReleaseManifest, SourceSnapshot, SourceSnapshot],
) -> None:
    out, manifest, before, after = built
    assert after == before  # built from a copy: the source tree is untouched
    wheels = out / WHEELS_DIR
    assert sorted(p.name for p in wheels.iterdir()) == [f.name for f in manifest.files]
    for file in manifest.files:
        assert (file.size, sha256_file(wheels / file.name)) == (
            (wheels / file.name).stat().st_size,
            file.sha256,
        )
    names = {f.name.split("-")[0] for f in manifest.files}
    assert {"hazardwatch", "pip", "numpy", "pydantic", "pymodbus", "typer"} <= names
    with zipfile.ZipFile(wheels / "hazardwatch-0.1.1-py3-none-any.whl") as wheel:
        metadata = wheel.read("hazardwatch-0.1.1.dist-info/METADATA").decode()
    assert "\nVersion: 0.1.1\n" in metadata
    assert ReleaseManifest.model_validate_json((out / "manifest.json").read_bytes()) == manifest
    assert (manifest.version, manifest.min_upgrade_from) == ("0.1.1", "0.1.0")


@pytest.fixture
def empty_root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "opt-hazardwatch"
    shutil.rmtree(tmp_path / "opt-hazardwatch", ignore_errors=True)  # a venv is 370 MB


def test_a_bundle_installs_offline_into_a_slot_that_runs(
    bundle: tuple[Path, ReleaseManifest], empty_root: Path, tmp_path: Path
) -> None:
    out, manifest = bundle
    tree = SlotTree(empty_root)
    leftover = tree.slot("0.1.1")
    leftover.mkdir(parents=True)
    (leftover / "half-written").write_text("a crash left this")
    leftover.with_name("0.1.1.partial").write_text("installing")

    summary = tree.install(manifest, out / WHEELS_DIR)

    assert not summary.already_installed
    assert tree.is_installed("0.1.1")
    assert not (leftover / "half-written").exists()
    assert tree.status().partial == ()
    assert not (tree.root / "staging" / "0.1.1").exists()
    python = leftover / "bin" / "python"
    # Not from the repository: its hazardwatch.egg-info would answer instead of the slot.
    version = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('hazardwatch'))"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert version.stdout == "0.1.1\n"
    edge = leftover / "bin" / "edge"
    assert edge.read_text().splitlines()[0] == f"#!{python}"
    ran = subprocess.run([edge, "--help"], capture_output=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    assert (leftover / "bin" / "pip").exists()  # the installer of the next release
    assert list((leftover / "lib").glob("python3.*/site-packages/ota/__pycache__/slots.*.pyc"))
    assert tree.install(manifest, out / WHEELS_DIR).already_installed


def test_an_install_refuses_a_wheel_whose_hash_differs(
    bundle: tuple[Path, ReleaseManifest], tmp_path: Path
) -> None:
    out, manifest = bundle
    first, *rest = manifest.files
    altered = manifest.model_copy(
        update={"files": (first.model_copy(update={"sha256": "0" * 64}), *rest)}
    )
    tree = SlotTree(tmp_path / "opt-hazardwatch")
    with pytest.raises(SlotError, match=f"sha256 is {first.sha256}, the manifest says 0{{64}}"):
        tree.install(altered, out / WHEELS_DIR)
    assert not tree.slot("0.1.1").exists()
    assert tree.status().partial == ()
