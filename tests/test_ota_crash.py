"""Agent releases survive SIGKILL at every step, and a release that cannot start is undone.

Real parts throughout: releases built from this source tree, a real HTTP release server,
real venvs installed offline by pip, the updater running inside the installed slot and
killed with SIGKILL exactly at a step (``ota.crash_points``), then a start as systemd does
it: the supervisor from ``bin/hw-supervisor`` and the current slot's agent confirming
itself. Venvs record their own path, so every test's gateway lives at the same path and
is laid anew from hard-linked templates (0.1.1 committed; plus 0.1.2 installed). Slots
are not precompiled here (``test_ota_slots`` covers that): it would double the time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.store import LocalStore
from fleet.signing import SigningKey
from hardware_sim.harness.enrolled import write_enrollment
from hardware_sim.harness.release import Release, agent_env, build, build_broken, supervisor_command
from ota.bundle import WHEELS_DIR
from ota.crash_points import crash_test_env
from ota.document import Document, DocumentKind, Target, sign_document
from ota.download import fetch_release
from ota.report import OTA_EVENT_KIND, OtaReport, OtaState, parse_report
from ota.slots import SlotTree
from ota.supervisor import APPLIED, ROLLED_BACK, SlotState
from tests.http_files import ReleaseFileServer

GATEWAY = "gw-creek-1"
MAX_BOOTS = 2


Releases = dict[str, Release]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Releases]:
    """0.1.1 and 0.1.2 of this very code."""
    base = tmp_path_factory.mktemp("releases")
    yield {v: build(base, v) for v in ("0.1.1", "0.1.2")}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """0.1.3, whose agent raises as soon as it is imported."""
    base = tmp_path_factory.mktemp("broken")
    yield build_broken(base, "0.1.3")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(releases: dict[str, Release]) -> Iterator[ReleaseFileServer]:
    wheels = {v: r.bundle / WHEELS_DIR for v, r in releases.items()}
    with ReleaseFileServer(wheels, credentials=(GATEWAY, "secret")) as running:
        yield running


@pytest.fixture(scope="module")
def fleet_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return SigningKey.load_or_create(tmp_path_factory.mktemp("fleet"))


@dataclass(frozen=True)
class Site:
    """Where the gateway's slot tree lives, and the templates it is laid from."""

    root: Path
    templates: Path


def _lay(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, symlinks=True, copy_function=os.link)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, releases: dict[str, Release]) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("site")
    site = Site(base / "opt-hazardwatch", base / "templates")
    tree = SlotTree(site.root, compile_bytecode=False)
    first = releases["0.1.1"]
    tree.install(first.manifest, first.bundle / WHEELS_DIR)  # as from a USB stick
    tree.switch("0.1.1", 1, max_boots=MAX_BOOTS, health_deadline_s=30)
    tree.commit()
    tree.mark_reported(tree.unreported())  # installed by hand: nothing for the fleet
    _lay(site.root, site.templates / "0.1.1")
    tree.install(releases["0.1.2"].manifest, releases["0.1.2"].bundle / WHEELS_DIR)
    _lay(site.root, site.templates / "0.1.2-installed")
    yield site
    shutil.rmtree(base, ignore_errors=True)  # about a gigabyte of venvs


@dataclass(frozen=True)
class Gateway:
    root: Path
    data: Path
    tree: SlotTree

    def state(self) -> SlotState:
        return self.tree.state()


def _gateway(
    site: Site, template: str, tmp_path: Path, server: ReleaseFileServer, key: SigningKey
) -> Gateway:
    _lay(site.templates / template, site.root)
    data = tmp_path / "data"
    write_enrollment(
        data,
        GATEWAY,
        key.public_key_b64,
        fleet_url=server.url,
        broker_url="mqtt://127.0.0.1:1883",
        site_id="creek",
        password="secret",
    )
    server.log.clear()
    server.replaced.clear()
    server.cut_after.clear()
    return Gateway(site.root, data, SlotTree(site.root))


@pytest.fixture
def on_0_1_1(
    site: Site, tmp_path: Path, server: ReleaseFileServer, fleet_key: SigningKey
) -> Gateway:
    """A gateway running 0.1.1 (committed), its cache holding 0.1.1's wheels."""
    return _gateway(site, "0.1.1", tmp_path, server, fleet_key)


@pytest.fixture
def with_0_1_2_installed(
    site: Site, tmp_path: Path, server: ReleaseFileServer, fleet_key: SigningKey
) -> Gateway:
    """A gateway running 0.1.1, with 0.1.2 already installed beside it."""
    return _gateway(site, "0.1.2-installed", tmp_path, server, fleet_key)


def _document(gw: Gateway, key: SigningKey, release: Release, doc_version: int) -> Path:
    document = Document(
        DocumentKind.RELEASE,
        doc_version,
        Target((GATEWAY,)),
        time.time(),
        release.manifest.payload(),
    )
    path = gw.data / f"release-{doc_version}.json"
    path.write_bytes(sign_document(document, key))
    return path


def _slot_python(gw: Gateway) -> str:
    # What systemd runs: the console script's interpreter is the slot's real path.
    return str((gw.root / "current").resolve() / "bin" / "python")


def _env(gw: Gateway, pause: str | None) -> dict[str, str]:
    if pause is None:
        return agent_env()
    return agent_env(**crash_test_env(f"ota.{pause}", gw.root / f"paused-at-{pause}"))


def _updater(gw: Gateway, document: Path, pause: str | None = None) -> subprocess.Popen[str]:
    """The running agent applying ``document`` (from its own slot, as in the field)."""
    command = [
        _slot_python(gw), "-m", "edge_agent.update_cli", "apply", str(document),
        "--data-dir", str(gw.data), "--root", str(gw.root),
        "--max-boots", str(MAX_BOOTS), "--health-deadline", "60",
        "--no-compile",  # test_ota_slots installs a precompiled slot; here it costs 10 s each
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        cwd=gw.data,  # not the repository: its sources must not shadow the slot's
        env=_env(gw, pause),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout_s: float = 120) -> str:
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
    return out


def _kill_at(gw: Gateway, process: subprocess.Popen[str], step: str) -> None:
    """Wait until ``process`` is frozen at ``step``, then SIGKILL it."""
    marker = gw.root / f"paused-at-{step}"
    deadline = time.monotonic() + 120
    while not marker.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"exited {process.returncode} before reaching {step}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"never reached {step}")
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    marker.unlink()


@dataclass(frozen=True)
class Start:
    supervisor: str
    returncode: int
    output: str

    @property
    def running(self) -> str:
        """What the agent said it runs: ``running 0.1.2: committed``."""
        return self.output.strip().splitlines()[-1]


def _start(gw: Gateway, pause: str | None = None) -> Start:
    """One start as systemd does it: the supervisor, then the current slot's agent."""
    supervisor = subprocess.run(
        supervisor_command(gw.root), capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    command = [
        _slot_python(gw), "-m", "edge_agent.update_cli", "confirm",
        "--data-dir", str(gw.data), "--root", str(gw.root), "--probe-interval", "0.05",
    ]  # fmt: skip
    agent = subprocess.Popen(
        command, cwd=gw.data, env=_env(gw, pause), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    if pause is not None:
        _kill_at(gw, agent, pause)
        return Start(supervisor.stdout, -signal.SIGKILL, "")
    out, _ = agent.communicate(timeout=120)
    return Start(supervisor.stdout, agent.returncode, out)


def _reports(gw: Gateway) -> list[OtaReport]:
    store = LocalStore(gw.data).open()
    try:
        events = store.events([OTA_EVENT_KIND])
    finally:
        store.close()
    return [r for e in events if (r := parse_report(e.kind, e.subject, e.detail)) is not None]


def _states(gw: Gateway) -> list[tuple[int, OtaState]]:
    return [(r.version, r.state) for r in _reports(gw)]


def _on(gw: Gateway, version: str) -> None:
    """The gateway runs ``version``, committed, nothing on trial."""
    state = gw.state()
    assert state.pending is None
    assert state.committed is not None
    assert state.committed.version == version
    assert os.readlink(gw.root / "current") == f"slots/{version}"
    started = _start(gw)
    assert started.returncode == 0, started.output
    assert started.running == f"running {version}: nothing_pending"


def test_killed_while_downloading_the_old_version_runs_and_the_download_resumes(
    on_0_1_1: Gateway,
    fleet_key: SigningKey,
    server: ReleaseFileServer,
    releases: dict[str, Release],
) -> None:
    gw = on_0_1_1
    new = releases["0.1.2"]
    document = _document(gw, fleet_key, new, 2)
    _kill_at(gw, _updater(gw, document, pause="download"), "download")
    _on(gw, "0.1.1")
    assert _states(gw) == [(2, OtaState.DOWNLOADING)]  # no outcome: it neither took nor failed
    [part] = gw.tree.cache.incoming.iterdir()
    kept = part.stat().st_size
    assert 0 < kept < new.own_wheel_size

    _kill_at(gw, _updater(gw, document, pause="verify"), "verify")
    resumed = server.responses()[-1]
    assert (resumed.range, resumed.status) == (f"bytes={kept}-", 206)
    assert resumed.bytes_sent == new.own_wheel_size - kept < new.own_wheel_size
    _on(gw, "0.1.1")


def test_killed_while_verifying_the_complete_file_is_not_fetched_again(
    on_0_1_1: Gateway,
    fleet_key: SigningKey,
    server: ReleaseFileServer,
    releases: dict[str, Release],
) -> None:
    gw = on_0_1_1
    new = releases["0.1.2"]
    _kill_at(gw, _updater(gw, _document(gw, fleet_key, new, 2), pause="verify"), "verify")
    _on(gw, "0.1.1")
    sent = server.sent(f"hazardwatch-{new.version}-py3-none-any.whl")
    assert sent == new.own_wheel_size
    assert gw.tree.cache.missing(new.manifest) != []
    summary = fetch_release(new.manifest, server.url, gw.tree.cache)
    assert summary.bytes_downloaded == 0
    assert summary.bytes_resumed == new.own_wheel_size
    assert gw.tree.cache.missing(new.manifest) == []


def test_killed_while_installing_the_half_slot_is_redone_and_the_update_completes(
    on_0_1_1: Gateway,
    fleet_key: SigningKey,
    server: ReleaseFileServer,
    releases: dict[str, Release],
) -> None:
    gw = on_0_1_1
    new = releases["0.1.2"]
    document = _document(gw, fleet_key, new, 2)
    _kill_at(gw, _updater(gw, document, pause="install"), "install")
    assert gw.tree.status().partial == ("0.1.2",)
    _on(gw, "0.1.1")

    assert _finish(_updater(gw, document)).endswith("result restart\n")
    assert gw.tree.status().partial == ()
    first = _start(gw)
    assert first.supervisor == f"hw-supervisor: 0.1.2 pending, start 1 of {MAX_BOOTS}\n"
    assert first.running == "running 0.1.2: committed"
    _on(gw, "0.1.2")
    assert _states(gw) == [
        (2, OtaState.DOWNLOADING),
        (2, OtaState.DOWNLOADING),
        (2, OtaState.INSTALLED),
        (2, OtaState.APPLIED),
    ]
    # A delta: of the whole release only the project's own wheel crossed the link, once.
    own = f"hazardwatch-{new.version}-py3-none-any.whl"
    assert [s.name for s in server.responses()] == [own]
    assert server.sent(own) == new.own_wheel_size
    assert sorted(p.name for p in (gw.root / "slots").iterdir()) == ["0.1.1", "0.1.2"]


def test_killed_at_the_switch_the_recorded_switch_is_completed_at_the_next_start(
    with_0_1_2_installed: Gateway, fleet_key: SigningKey, releases: dict[str, Release]
) -> None:
    gw = with_0_1_2_installed
    document = _document(gw, fleet_key, releases["0.1.2"], 2)
    _kill_at(gw, _updater(gw, document, pause="switch"), "switch")
    pending = gw.state().pending
    assert pending is not None
    assert pending.release.version == "0.1.2"
    assert os.readlink(gw.root / "current") == "slots/0.1.1"  # killed before the swap
    assert _start(gw).running == "running 0.1.2: committed"
    _on(gw, "0.1.2")
    assert _states(gw)[-1] == (2, OtaState.APPLIED)


def test_killed_at_its_first_start_the_new_version_is_confirmed_at_the_next(
    with_0_1_2_installed: Gateway, fleet_key: SigningKey, releases: dict[str, Release]
) -> None:
    gw = with_0_1_2_installed
    _finish(_updater(gw, _document(gw, fleet_key, releases["0.1.2"], 2)))
    _start(gw, pause="start")
    pending = gw.state().pending
    assert pending is not None
    assert pending.boots == 1
    second = _start(gw)
    assert second.supervisor == f"hw-supervisor: 0.1.2 pending, start 2 of {MAX_BOOTS}\n"
    assert second.running == "running 0.1.2: committed"
    _on(gw, "0.1.2")
    [applied] = [r for r in _reports(gw) if r.state is OtaState.APPLIED]
    assert applied.extra == {"release": "0.1.2", "starts": 2}


def test_killed_while_committing_the_commit_stands_and_is_reported_once(
    with_0_1_2_installed: Gateway, fleet_key: SigningKey, releases: dict[str, Release]
) -> None:
    gw = with_0_1_2_installed
    _finish(_updater(gw, _document(gw, fleet_key, releases["0.1.2"], 2)))
    _start(gw, pause="commit")
    state = gw.state()
    assert state.committed is not None
    assert (state.committed.version, state.pending) == ("0.1.2", None)
    assert state.outcomes[-1].state == APPLIED
    assert not state.outcomes[-1].reported
    assert (2, OtaState.APPLIED) not in _states(gw)
    _on(gw, "0.1.2")
    _on(gw, "0.1.2")
    assert _states(gw).count((2, OtaState.APPLIED)) == 1


def test_a_tampered_release_file_is_rejected_and_nothing_is_installed(
    on_0_1_1: Gateway,
    fleet_key: SigningKey,
    server: ReleaseFileServer,
    releases: dict[str, Release],
) -> None:
    gw = on_0_1_1
    new = releases["0.1.2"]
    own = f"hazardwatch-{new.version}-py3-none-any.whl"
    server.replaced[own] = (new.bundle / WHEELS_DIR / own).read_bytes()[::-1]
    assert _finish(_updater(gw, _document(gw, fleet_key, new, 2))).endswith("result carry_on\n")
    rejected = _reports(gw)[-1]
    assert rejected.state is OtaState.REJECTED
    assert rejected.reason is not None
    assert rejected.reason.startswith(f"{own}: sha256 is ")
    assert gw.tree.status().slots == ("0.1.1",)
    assert list(gw.tree.cache.incoming.iterdir()) == []
    _on(gw, "0.1.1")


def test_a_release_that_crashes_at_start_is_rolled_back_within_its_starts(
    on_0_1_1: Gateway, fleet_key: SigningKey, server: ReleaseFileServer, broken: Release
) -> None:
    gw = on_0_1_1
    server.releases["0.1.3"] = broken.bundle / WHEELS_DIR
    _finish(_updater(gw, _document(gw, fleet_key, broken, 2)))
    crashes = [_start(gw) for _ in range(MAX_BOOTS)]
    for boot, crash in enumerate(crashes, start=1):
        assert crash.supervisor == f"hw-supervisor: 0.1.3 pending, start {boot} of {MAX_BOOTS}\n"
        assert crash.returncode != 0
        assert "0.1.3 crashes at import" in crash.output
    reason = f"version 0.1.3 did not commit after {MAX_BOOTS} starts"
    back = _start(gw)
    assert back.supervisor == f"hw-supervisor: rolled back to 0.1.1: {reason}\n"
    assert back.running == "running 0.1.1: nothing_pending"
    _on(gw, "0.1.1")
    rolled_back = [r for r in _reports(gw) if r.state is OtaState.ROLLED_BACK]
    assert [(r.version, r.reason, r.extra) for r in rolled_back] == [
        (2, reason, {"release": "0.1.3", "starts": MAX_BOOTS})
    ]
    state = gw.state()
    assert state.outcomes[-1].state == ROLLED_BACK
    assert state.tried_doc_version == 2
    again = _updater(gw, _document(gw, fleet_key, broken, 2))
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2
    assert "stale_version: version 2 is not newer than the installed version 2" in err
