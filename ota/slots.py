"""Agent release slots on a gateway: install offline into a venv, switch, commit, roll back.

Under the root (``/opt/hazardwatch`` on a gateway): ``slots/<version>/`` venvs, the
``current`` and ``previous`` links, ``state.json`` (its format lives in ``ota.supervisor``,
which must read it without any slot), ``cache/`` (``ota.download``'s wheel cache) and
``bin/hw-supervisor``. Installs never reach an index: only the release's verified wheels.
Every change writes the state first and then moves the links, so a crash anywhere leaves
a state the supervisor completes at the next start.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from ota import supervisor, system_packages
from ota.download import Checkpoint, WheelCache, no_checkpoint, sha256_file
from ota.manifest import ReleaseManifest
from ota.supervisor import (
    APPLIED,
    PARTIAL_SUFFIX,
    Outcome,
    PendingSwitch,
    SlotRelease,
    SlotState,
    follow_state,
    load_state,
    slot_complete,
    slot_dir,
    write_state,
)

DEFAULT_ROOT = supervisor.DEFAULT_ROOT
#: The release manifest each slot keeps: what it was installed from.
SLOT_RECORD = "release.json"
SUPERVISOR_FILE = "bin/hw-supervisor"


class Refusal(enum.StrEnum):
    """Why a release is not installed here; stable codes the fleet shows."""

    DOWNGRADE = "downgrade"
    TOO_OLD = "too_old"
    PENDING = "pending"
    PYTHON = "python"


class ReleaseRefusedError(Exception):
    """The gateway will not take the release; ``code`` says which rule, the message why."""

    def __init__(self, code: Refusal, reason: str) -> None:
        super().__init__(f"{code.value}: {reason}")
        self.code = code
        self.reason = reason


class SlotError(Exception):
    """A slot operation failed: the install broke, nothing is pending, a slot is missing."""


class SlotBusyError(SlotError):
    """Another process is changing the slots; trying again later will work."""


@dataclass(frozen=True)
class InstallSummary:
    """How an install went: the version, seconds taken, whether the slot was already there."""

    version: str
    seconds: float
    already_installed: bool


@dataclass(frozen=True)
class SlotStatus:
    """The slot tree as a technician sees it."""

    root: Path
    state: SlotState
    current_link: str | None
    previous_link: str | None
    slots: tuple[str, ...]
    partial: tuple[str, ...]

    @property
    def last_outcome(self) -> Outcome | None:
        """The most recent outcome (reported or not)."""
        return self.state.outcomes[-1] if self.state.outcomes else None


def _clean_pip_env() -> dict[str, str]:
    # Neither the user's pip configuration nor an index may decide what a slot contains.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


class SlotTree:
    """The release slots under ``root``.

    ``python`` creates the venvs (its base interpreter becomes theirs) and runs pip with
    ``--python`` into them, so it needs pip; every slot gets pip, so the agent running in
    one can install the next. ``compile_bytecode`` precompiles each slot, because the
    agent's user cannot write ``__pycache__`` into ``/opt`` and would recompile each start.
    On Raspberry Pi OS 32-bit (``machine`` armv7l or armv6l) a slot's venv sees the
    system's site-packages, where Debian's numpy and cffi are (``ota.system_packages``).
    """

    def __init__(
        self,
        root: Path = DEFAULT_ROOT,
        python: str | None = None,
        compile_bytecode: bool = True,
        machine: str | None = None,
    ) -> None:
        self.root = root
        self.python = python or sys.executable
        self.compile_bytecode = compile_bytecode
        self.machine = machine or platform.machine()
        self.cache = WheelCache(root / "cache")

    # --- reading -----------------------------------------------------------------------

    def state(self) -> SlotState:
        """The slot state (empty before the first install)."""
        return load_state(self.root)

    def slot(self, version: str) -> Path:
        """The directory of ``version``'s slot."""
        return slot_dir(self.root, version)

    def is_installed(self, version: str) -> bool:
        """Whether a finished slot for ``version`` exists."""
        return slot_complete(self.root, version) and (self.slot(version) / SLOT_RECORD).exists()

    def status(self) -> SlotStatus:
        """Links, state and slots on disk, for display."""
        slots_dir = self.root / supervisor.SLOTS_DIR
        names = sorted(p.name for p in slots_dir.iterdir()) if slots_dir.is_dir() else []
        partial = tuple(n.removesuffix(PARTIAL_SUFFIX) for n in names if n.endswith(PARTIAL_SUFFIX))
        return SlotStatus(
            root=self.root,
            state=self.state(),
            current_link=_readlink(self.root / supervisor.CURRENT_LINK),
            previous_link=_readlink(self.root / supervisor.PREVIOUS_LINK),
            slots=tuple(n for n in names if not n.endswith(PARTIAL_SUFFIX) and n not in partial),
            partial=partial,
        )

    # --- policy ------------------------------------------------------------------------

    def admit(self, manifest: ReleaseManifest, revert: bool) -> None:
        """Refuse ``manifest`` when this gateway must not take it; return when it may.

        Raises:
            ReleaseRefusedError: another version is still on trial, the release is older
                than the installed one without an explicit revert, the installed version
                is older than the release's ``min_upgrade_from``, or the Python differs.
        """
        state = self.state()
        if state.pending is not None:
            pending = state.pending.release.version
            msg = f"version {pending} is still waiting to be confirmed healthy"
            raise ReleaseRefusedError(Refusal.PENDING, msg)
        python = platform.python_version()
        try:
            supported = SpecifierSet(manifest.python_requires).contains(python)
        except InvalidSpecifier:
            supported = False
        if not supported:
            msg = f"the release needs Python {manifest.python_requires}; this gateway has {python}"
            raise ReleaseRefusedError(Refusal.PYTHON, msg)
        if state.committed is None:
            return
        installed = state.committed.version
        if Version(manifest.version) < Version(installed) and not revert:
            msg = (
                f"{manifest.version} is older than the installed {installed}; only a "
                f"document marked as an explicit revert may go back"
            )
            raise ReleaseRefusedError(Refusal.DOWNGRADE, msg)
        if Version(installed) < Version(manifest.min_upgrade_from):
            msg = (
                f"the installed {installed} is older than {manifest.min_upgrade_from}, the "
                f"oldest version {manifest.version} upgrades from; install a release "
                f"between them first"
            )
            raise ReleaseRefusedError(Refusal.TOO_OLD, msg)

    # --- changing ----------------------------------------------------------------------

    def install(
        self, manifest: ReleaseManifest, wheels: Path, checkpoint: Checkpoint = no_checkpoint
    ) -> InstallSummary:
        """Install ``manifest`` offline into ``slots/<version>`` from the wheels in ``wheels``.

        ``wheels`` is a wheel cache (``<sha256>.whl``) or a bundle's ``wheels/`` directory
        (``<name>``). Every file's hash is checked first; the wheels then stay in the
        cache, so a slot installed from a bundle (a USB stick) makes the next release a
        delta. The venv is built at its final path, because pip writes that path into
        each console script (``bin/edge``) and a renamed venv would not run; instead
        ``slots/<version>.partial`` marks it unfinished until the end, and a leftover one
        from a crash is removed and the install redone.
        """
        started = time.monotonic()
        with self._locked():
            slot = self.slot(manifest.version)
            if self.is_installed(manifest.version):
                kept = ReleaseManifest.model_validate_json((slot / SLOT_RECORD).read_bytes())
                if kept.files != manifest.files:
                    msg = f"slot {manifest.version} exists with other files; not replacing it"
                    raise SlotError(msg)
                return InstallSummary(manifest.version, time.monotonic() - started, True)
            if manifest.version in _versions(self.state()):
                msg = f"slot {manifest.version} is in use but unfinished; not touching it"
                raise SlotError(msg)
            marker = slot.with_name(slot.name + PARTIAL_SUFFIX)
            self._discard(manifest.version)
            staging = self._stage(manifest, wheels)
            try:
                slot.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"installing since {time.time():.0f} by pid {os.getpid()}\n")
                supervisor.fsync_dir(slot.parent)
                self._build(slot, staging, manifest)
                checkpoint("install")
                supervisor.write_durably(
                    slot / SLOT_RECORD, manifest.model_dump_json(indent=2).encode()
                )
                self._keep_in_cache(manifest, staging)
            except BaseException:
                self._discard(manifest.version)
                raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            marker.unlink()
            supervisor.fsync_dir(slot.parent)
        return InstallSummary(manifest.version, time.monotonic() - started, False)

    def switch(
        self,
        version: str,
        doc_version: int,
        max_boots: int,
        health_deadline_s: float,
        checkpoint: Checkpoint = no_checkpoint,
    ) -> None:
        """Make ``version`` current, on trial: recorded as pending first, then the link swap.

        The next starts count against ``max_boots`` (``ota.supervisor``) until the new
        agent commits within ``health_deadline_s`` of its start.
        """
        with self._locked():
            if not self.is_installed(version):
                msg = f"version {version} is not installed"
                raise SlotError(msg)
            state = self.state()
            if state.pending is not None:
                pending = state.pending.release.version
                msg = f"version {pending} is still waiting to be confirmed healthy"
                raise ReleaseRefusedError(Refusal.PENDING, msg)
            trial = PendingSwitch(
                SlotRelease(version, doc_version), 0, max_boots, health_deadline_s, time.time()
            )
            state = replace(
                state, pending=trial, tried_doc_version=max(state.tried_doc_version, doc_version)
            )
            write_state(self.root, state)
            checkpoint("switch")
            follow_state(self.root, state)

    def commit(self, checkpoint: Checkpoint = no_checkpoint) -> Outcome:
        """Confirm the pending version: it becomes committed, the old one previous.

        Slots other than current and previous are then removed, cache entries no kept
        slot uses too, and the committed release's supervisor is installed.
        """
        with self._locked():
            state = self.state()
            trial = state.pending
            if trial is None:
                msg = "no version is waiting to be confirmed"
                raise SlotError(msg)
            outcome = Outcome(trial.release, APPLIED, None, time.time(), trial.boots)
            previous = state.committed if state.committed is not None else state.previous
            state = replace(
                state, committed=trial.release, previous=previous, pending=None
            ).with_outcome(outcome)
            write_state(self.root, state)
            checkpoint("commit")
            follow_state(self.root, state)
            self._prune(state)
            self.install_supervisor()
            return outcome

    def rollback(self, reason: str) -> Outcome:
        """Give up the pending version and return to the committed one, recording ``reason``."""
        with self._locked():
            state = self.state()
            if state.pending is None or state.committed is None:
                msg = "no pending version with a committed one to return to"
                raise SlotError(msg)
            state = supervisor.rolled_back(state, reason, time.time())
            write_state(self.root, state)
            follow_state(self.root, state)
            return state.outcomes[-1]

    def unreported(self) -> tuple[Outcome, ...]:
        """Outcomes the agent has not reported yet, oldest first."""
        return tuple(o for o in self.state().outcomes if not o.reported)

    def mark_reported(self, outcomes: Sequence[Outcome]) -> None:
        """Remember that ``outcomes`` have been reported, so they are reported once."""
        done = {(o.release, o.state, o.at) for o in outcomes}
        with self._locked():
            state = self.state()
            marked = tuple(
                replace(o, reported=True) if (o.release, o.state, o.at) in done else o
                for o in state.outcomes
            )
            write_state(self.root, replace(state, outcomes=marked))

    def install_supervisor(self) -> Path:
        """Copy the supervisor (this release's) to ``bin/hw-supervisor``, atomically."""
        target = self.root / SUPERVISOR_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        supervisor.write_durably(target, Path(supervisor.__file__).read_bytes(), mode=0o755)
        return target

    # --- internals ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = f"another update is working on {self.root}"
                raise SlotBusyError(msg) from None
            yield

    def _discard(self, version: str) -> None:
        slot = self.slot(version)
        shutil.rmtree(slot, ignore_errors=True)
        slot.with_name(slot.name + PARTIAL_SUFFIX).unlink(missing_ok=True)

    def _stage(self, manifest: ReleaseManifest, wheels: Path) -> Path:
        """Hard-link (or copy) each verified wheel under its own name for pip."""
        staging = self.root / "staging" / manifest.version
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self._stage_files(manifest, wheels, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def _stage_files(self, manifest: ReleaseManifest, wheels: Path, staging: Path) -> None:
        for file in manifest.files:
            source = wheels / f"{file.sha256}.whl"
            if not source.exists():
                source = wheels / file.name
            if not source.exists():
                msg = f"{file.name} (sha256 {file.sha256}) is not in {wheels}"
                raise SlotError(msg)
            actual = sha256_file(source)
            if actual != file.sha256:
                msg = f"{source}: sha256 is {actual}, the manifest says {file.sha256}"
                raise SlotError(msg)
            try:
                os.link(source, staging / file.name)
            except OSError:
                shutil.copyfile(source, staging / file.name)

    def _keep_in_cache(self, manifest: ReleaseManifest, staging: Path) -> None:
        """Keep the verified wheels in the cache: the next release then fetches only changes."""
        self.cache.directory.mkdir(parents=True, exist_ok=True)
        for file in manifest.files:
            if not self.cache.has(file):
                os.replace(staging / file.name, self.cache.path(file.sha256))
        supervisor.fsync_dir(self.cache.directory)

    def _build(self, slot: Path, staging: Path, manifest: ReleaseManifest) -> None:
        wanted = [f"{manifest.dist}=={manifest.version}"]
        if any(f.name.startswith("pip-") for f in manifest.files):
            wanted.append("pip")
        python = str(slot / "bin" / "python")
        system = system_packages.uses_system_packages(self.machine)
        venv = [self.python, "-m", "venv", "--without-pip", str(slot)]
        if system:
            venv.insert(-1, "--system-site-packages")
        self._run(venv, manifest)
        if system and (advice := system_packages.missing_advice(python)) is not None:
            msg = f"installing {manifest.version} needs what the system lacks: {advice}"
            raise SlotError(msg)
        steps = [
            [
                self.python, "-m", "pip", "--python", python, "install", "--no-index",
                "--no-cache-dir", "--only-binary=:all:", "--no-compile",
                "--find-links", str(staging), *wanted,
            ],
        ]  # fmt: skip
        if self.compile_bytecode:
            steps.append([python, "-m", "compileall", "-q", "-j", "0", str(slot / "lib")])
        for command in steps:
            self._run(command, manifest)

    @staticmethod
    def _run(command: list[str], manifest: ReleaseManifest) -> None:
        done = subprocess.run(
            command, capture_output=True, text=True, env=_clean_pip_env(), check=False
        )
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip())[-2000:]
            msg = f"installing {manifest.version} failed at {command[2]}: {detail}"
            raise SlotError(msg)

    def _prune(self, state: SlotState) -> None:
        keep = _versions(state)
        slots_dir = self.root / supervisor.SLOTS_DIR
        for entry in slots_dir.iterdir():
            version = entry.name.removesuffix(PARTIAL_SUFFIX)
            if version not in keep:
                self._discard(version)
        shutil.rmtree(self.root / "staging", ignore_errors=True)
        used: set[str] = set()
        for version in keep:
            record = self.slot(version) / SLOT_RECORD
            if record.exists():
                kept = ReleaseManifest.model_validate_json(record.read_bytes())
                used.update(f.sha256 for f in kept.files)
        for cached in self.cache.directory.glob("*.whl"):
            if cached.stem not in used:
                cached.unlink()


def _versions(state: SlotState) -> set[str]:
    """The versions ``state`` refers to (committed, previous, pending)."""
    releases = [state.committed, state.previous, state.pending.release if state.pending else None]
    return {r.version for r in releases if r is not None}


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None
