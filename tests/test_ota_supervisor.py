"""The boot supervisor: counts the starts of a version on trial and rolls back a silent one.

It runs as the real copied file (``bin/hw-supervisor``) under the base interpreter with
``-I -S``: no site-packages, no project on the path, as under systemd. The slots here are
plain directories; ``test_ota_crash`` runs it against real venvs.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ota.manifest import ReleaseFile, ReleaseManifest
from ota.slots import SLOT_RECORD, SUPERVISOR_FILE, SlotTree
from ota.supervisor import ROLLED_BACK, write_state

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = getattr(sys, "_base_executable", sys.executable)


def _fake_slot(root: Path, version: str) -> None:
    slot = root / "slots" / version
    slot.mkdir(parents=True)
    file = ReleaseFile(name=f"hazardwatch-{version}-py3-none-any.whl", sha256="0" * 64, size=1)
    manifest = ReleaseManifest(
        version=version, min_upgrade_from="0.0.1", created_at=0, files=(file,)
    )
    (slot / SLOT_RECORD).write_text(manifest.model_dump_json())


def _commit(tree: SlotTree, version: str, doc_version: int) -> None:
    _fake_slot(tree.root, version)
    tree.switch(version, doc_version, max_boots=3, health_deadline_s=60)
    tree.commit()


@pytest.fixture
def tree(tmp_path: Path) -> SlotTree:
    """0.1.0 then 0.1.1 committed; 0.1.2 installed, not switched to."""
    tree = SlotTree(tmp_path / "opt-hazardwatch")
    _commit(tree, "0.1.0", 1)
    _commit(tree, "0.1.1", 2)
    _fake_slot(tree.root, "0.1.2")
    return tree


def _supervise(root: Path) -> subprocess.CompletedProcess[str]:
    command = [SYSTEM_PYTHON, "-I", "-S", str(root / SUPERVISOR_FILE), "--root", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done


def _links(root: Path) -> tuple[str, str | None]:
    previous = root / "previous"
    return os.readlink(root / "current"), os.readlink(previous) if previous.is_symlink() else None


def test_a_committed_version_never_counts_starts(tree: SlotTree) -> None:
    before = tree.state()
    for _ in range(5):
        assert _supervise(tree.root).stdout == "hw-supervisor: 0.1.1 committed\n"
    assert tree.state() == before
    assert _links(tree.root) == ("slots/0.1.1", "slots/0.1.0")


def test_each_start_of_a_version_on_trial_is_counted(tree: SlotTree) -> None:
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    assert _supervise(tree.root).stdout == "hw-supervisor: 0.1.2 pending, start 1 of 3\n"
    assert _supervise(tree.root).stdout == "hw-supervisor: 0.1.2 pending, start 2 of 3\n"
    pending = tree.state().pending
    assert pending is not None
    assert pending.boots == 2
    assert _links(tree.root) == ("slots/0.1.2", "slots/0.1.1")


def test_a_version_that_never_commits_is_rolled_back_after_its_starts(tree: SlotTree) -> None:
    tree.switch("0.1.2", 3, max_boots=2, health_deadline_s=60)
    _supervise(tree.root)
    _supervise(tree.root)
    reason = "version 0.1.2 did not commit after 2 starts"
    assert _supervise(tree.root).stdout == f"hw-supervisor: rolled back to 0.1.1: {reason}\n"
    state = tree.state()
    assert state.pending is None
    assert state.committed is not None
    assert state.previous is not None
    assert (state.committed.version, state.previous.version) == ("0.1.1", "0.1.0")
    outcome = state.outcomes[-1]
    assert (outcome.release.version, outcome.release.doc_version) == ("0.1.2", 3)
    assert (outcome.state, outcome.reason, outcome.starts, outcome.reported) == (
        ROLLED_BACK,
        reason,
        2,
        False,
    )
    assert _links(tree.root) == ("slots/0.1.1", "slots/0.1.0")
    assert _supervise(tree.root).stdout == "hw-supervisor: 0.1.1 committed\n"


def test_a_switch_cut_between_state_and_link_is_completed(tree: SlotTree) -> None:
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    (tree.root / "current").unlink()
    (tree.root / "current").symlink_to("slots/0.1.1")  # the link swap never happened
    _supervise(tree.root)
    assert _links(tree.root) == ("slots/0.1.2", "slots/0.1.1")
    pending = tree.state().pending
    assert pending is not None
    assert pending.boots == 1


def test_a_rollback_cut_between_state_and_link_is_completed(tree: SlotTree) -> None:
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    state = tree.state()
    assert state.pending is not None
    write_state(tree.root, replace(state, pending=None))  # links still on 0.1.2
    assert _supervise(tree.root).stdout == "hw-supervisor: 0.1.1 committed\n"
    assert _links(tree.root) == ("slots/0.1.1", "slots/0.1.0")


def test_a_version_on_trial_whose_slot_vanished_is_rolled_back_at_once(tree: SlotTree) -> None:
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    shutil.rmtree(tree.slot("0.1.2"))
    _supervise(tree.root)
    assert tree.state().outcomes[-1].reason == "the slot of version 0.1.2 is missing or incomplete"
    assert _links(tree.root) == ("slots/0.1.1", "slots/0.1.0")


def test_a_broken_state_file_never_stops_the_start(tree: SlotTree) -> None:
    (tree.root / "state.json").write_text("{not json")
    done = _supervise(tree.root)
    assert done.stdout == ""
    assert "error, slots left as they are" in done.stderr
    assert "state.json is not JSON" in done.stderr
    assert _links(tree.root) == ("slots/0.1.1", "slots/0.1.0")


def test_a_root_without_state_is_left_alone(tmp_path: Path) -> None:
    shutil.copy(REPO / "ota" / "supervisor.py", tmp_path / "hw-supervisor")
    command = [SYSTEM_PYTHON, "-I", "-S", str(tmp_path / "hw-supervisor"), "--root", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == "hw-supervisor: nothing committed\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hw-supervisor"]


def test_it_also_runs_as_a_module_without_site_packages(tree: SlotTree) -> None:
    tree.switch("0.1.2", 3, max_boots=3, health_deadline_s=60)
    command = [SYSTEM_PYTHON, "-S", "-m", "ota.supervisor", "--root", str(tree.root)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True, cwd=REPO)
    assert done.stdout == "hw-supervisor: 0.1.2 pending, start 1 of 3\n"


def test_the_slots_unit_runs_the_supervisor_first_and_the_agent_from_the_current_slot() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(Path(__file__).parent.parent / "edge_agent/systemd/hazardwatch-edge-slots.service")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["Type"] == "notify"
    assert "hw-supervisor --root /opt/hazardwatch" in service["ExecStartPre"]
    start = service["ExecStart"].split()
    assert start[0] == "/opt/hazardwatch/current/bin/edge"
    assert start[start.index("--slots") + 1] == "/opt/hazardwatch"  # takes releases
