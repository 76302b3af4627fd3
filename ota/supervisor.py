"""Boot guard for agent release slots: counts starts of an unconfirmed version, rolls back.

Runs before every agent start (systemd ``ExecStartPre``) with the system ``python3``, as
``python3 -m ota.supervisor --root R`` or as this file copied to ``R/bin/hw-supervisor``.
It is standard library only and imports nothing from any slot, so a broken release cannot
stop it. It owns the slot state file (``state.json``) that ``ota.slots`` imports from here.
Every change writes the state first and then points the ``current``/``previous`` links at
what the state says, so a crash between the two is completed by the next run. It never
installs anything and never fails the start: on an error it says why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

#: Where the slot tree lives on a gateway.
DEFAULT_ROOT = Path("/opt/hazardwatch")

STATE_FILE = "state.json"
SLOTS_DIR = "slots"
CURRENT_LINK = "current"
PREVIOUS_LINK = "previous"
PARTIAL_SUFFIX = ".partial"
STATE_FORMAT = 1
#: Outcome states; the same words as ``ota.report.OtaState`` (not imported: stdlib only).
APPLIED = "applied"
ROLLED_BACK = "rolled_back"
#: Outcomes kept in the state file; the oldest reported ones go first.
KEEP_OUTCOMES = 20


class StateFileError(Exception):
    """The state file exists but cannot be read as slot state."""


@dataclass(frozen=True)
class SlotRelease:
    """A release in a slot: its package version and the signed document that brought it."""

    version: str
    doc_version: int

    @classmethod
    def from_json(cls, data: Any) -> SlotRelease:
        """Read a stored release; raises ``StateFileError`` when malformed."""
        version = _field(data, "version", str)
        doc_version = _field(data, "doc_version", int)
        return cls(version, doc_version)


@dataclass(frozen=True)
class PendingSwitch:
    """A version switched to but not yet confirmed healthy by its own agent."""

    release: SlotRelease
    boots: int
    max_boots: int
    health_deadline_s: float
    switched_at: float

    @classmethod
    def from_json(cls, data: Any) -> PendingSwitch:
        """Read a stored pending switch; raises ``StateFileError`` when malformed."""
        return cls(
            SlotRelease.from_json(_field(data, "release", dict)),
            _field(data, "boots", int),
            _field(data, "max_boots", int),
            float(_field(data, "health_deadline_s", (int, float))),
            float(_field(data, "switched_at", (int, float))),
        )


@dataclass(frozen=True)
class Outcome:
    """How an update ended (applied or rolled back), kept until the agent has reported it."""

    release: SlotRelease
    state: str
    reason: str | None
    at: float
    starts: int = 0
    reported: bool = False

    @classmethod
    def from_json(cls, data: Any) -> Outcome:
        """Read a stored outcome; raises ``StateFileError`` when malformed."""
        reason = _field(data, "reason", (str, type(None)))
        return cls(
            SlotRelease.from_json(_field(data, "release", dict)),
            _field(data, "state", str),
            reason,
            float(_field(data, "at", (int, float))),
            _field(data, "starts", int),
            _field(data, "reported", bool),
        )


@dataclass(frozen=True)
class SlotState:
    """What runs, what ran before, what is on trial, and outcomes not yet reported.

    ``committed`` is the last version confirmed healthy, ``previous`` the one committed
    before it. While a switch is ``pending`` the ``current`` link points at the pending
    version and ``previous`` at ``committed`` (the rollback target); otherwise ``current``
    points at ``committed`` and ``previous`` at ``previous``. ``tried_doc_version`` is the
    newest release document ever switched to, so a rolled-back document is not retried.
    """

    committed: SlotRelease | None = None
    previous: SlotRelease | None = None
    pending: PendingSwitch | None = None
    tried_doc_version: int = 0
    outcomes: tuple[Outcome, ...] = ()

    def link_targets(self) -> tuple[str | None, str | None]:
        """The versions the ``current`` and ``previous`` links must point at."""
        if self.pending is not None:
            committed = self.committed.version if self.committed else None
            return self.pending.release.version, committed
        return (
            self.committed.version if self.committed else None,
            self.previous.version if self.previous else None,
        )

    def with_outcome(self, outcome: Outcome) -> SlotState:
        """The state with ``outcome`` recorded (old reported outcomes make room)."""
        outcomes = [*self.outcomes, outcome]
        while len(outcomes) > KEEP_OUTCOMES:
            reported = [i for i, o in enumerate(outcomes) if o.reported]
            outcomes.pop(reported[0] if reported else 0)
        return replace(self, outcomes=tuple(outcomes))

    def to_json(self) -> dict[str, Any]:
        """The state as stored (every field, nested records as objects)."""
        return {"format": STATE_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any) -> SlotState:
        """Read stored state; raises ``StateFileError`` when malformed."""
        if _field(data, "format", int) != STATE_FORMAT:
            msg = f"state format {data['format']} is not {STATE_FORMAT}"
            raise StateFileError(msg)
        committed = _field(data, "committed", (dict, type(None)))
        previous = _field(data, "previous", (dict, type(None)))
        pending = _field(data, "pending", (dict, type(None)))
        return cls(
            SlotRelease.from_json(committed) if committed is not None else None,
            SlotRelease.from_json(previous) if previous is not None else None,
            PendingSwitch.from_json(pending) if pending is not None else None,
            _field(data, "tried_doc_version", int),
            tuple(Outcome.from_json(o) for o in _field(data, "outcomes", list)),
        )


def _field(data: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict) or name not in data:
        msg = f"{name!r} is missing"
        raise StateFileError(msg)
    value = data[name]
    # bool is an int subclass: a stored true must not pass for a count.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        msg = f"{name!r} is {value!r}, not of the expected type"
        raise StateFileError(msg)
    return value


def slot_dir(root: Path, version: str) -> Path:
    """The directory of the slot holding ``version``."""
    return root / SLOTS_DIR / version


def slot_complete(root: Path, version: str) -> bool:
    """Whether the slot of ``version`` exists and its install finished."""
    slot = slot_dir(root, version)
    partial = slot.with_name(slot.name + PARTIAL_SUFFIX)
    return slot.is_dir() and not slot.is_symlink() and not partial.exists()


def fsync_dir(path: Path) -> None:
    """Make a rename or link change in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_state(root: Path) -> SlotState:
    """The slot state under ``root``; an empty state when there is none yet."""
    path = root / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return SlotState()
    try:
        return SlotState.from_json(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{path} is not JSON: {exc}"
        raise StateFileError(msg) from None
    except StateFileError as exc:
        msg = f"{path}: {exc}"
        raise StateFileError(msg) from None


def write_state(root: Path, state: SlotState) -> None:
    """Write the state file durably (see ``write_durably``)."""
    write_durably(root / STATE_FILE, json.dumps(state.to_json(), indent=2).encode())


def write_durably(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``, permission ``mode``: a power cut leaves old or new.

    A temporary file beside it is written and fsynced, renamed over ``path``, and the
    directory fsynced. The project's one way to do this (the supervisor must stay
    stdlib-only, so it lives here).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        # A temporary file left by an earlier crash keeps its old mode: set it explicitly.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def point_link(root: Path, name: str, version: str | None) -> bool:
    """Point link ``name`` at the slot of ``version`` (remove it for None) atomically.

    Returns True when the link changed. The new link is made under a temporary name and
    renamed over the old one, so the link always exists and names one slot or the other.
    """
    link = root / name
    target = f"{SLOTS_DIR}/{version}" if version is not None else None
    try:
        existing: str | None = os.readlink(link)
    except FileNotFoundError:
        existing = None
    if existing == target:
        return False
    if target is None:
        link.unlink()
    else:
        tmp = root / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    fsync_dir(root)
    return True


def follow_state(root: Path, state: SlotState) -> None:
    """Point ``previous`` and then ``current`` at what ``state`` says."""
    current, previous = state.link_targets()
    point_link(root, PREVIOUS_LINK, previous)
    point_link(root, CURRENT_LINK, current)


def rolled_back(state: SlotState, reason: str, now: float) -> SlotState:
    """``state`` after giving up its pending version and returning to the committed one."""
    pending = state.pending
    if pending is None:
        return state
    outcome = Outcome(pending.release, ROLLED_BACK, reason, now, pending.boots)
    return replace(state, pending=None).with_outcome(outcome)


def supervise(root: Path, now: float) -> str:
    """Count this start of a pending version, roll it back when out of starts; say what happened.

    A committed version never counts starts: restarts of a confirmed agent are normal.
    """
    state = load_state(root)
    pending = state.pending
    message: str
    if pending is None:
        running = state.committed.version if state.committed else "nothing"
        message = f"{running} committed"
    elif state.committed is None:
        # A first install has nothing to return to: let it keep trying.
        state = replace(state, pending=replace(pending, boots=pending.boots + 1))
        write_state(root, state)
        message = f"{pending.release.version} pending, start {pending.boots + 1}, no fallback"
    else:
        version = pending.release.version
        fallback = state.committed.version
        reason = None
        if not slot_complete(root, version):
            reason = f"the slot of version {version} is missing or incomplete"
        elif pending.boots >= pending.max_boots:
            reason = f"version {version} did not commit after {pending.boots} starts"
        if reason is not None:
            state = rolled_back(state, reason, now)
            message = f"rolled back to {fallback}: {reason}"
        else:
            boots = pending.boots + 1
            state = replace(state, pending=replace(pending, boots=boots))
            message = f"{version} pending, start {boots} of {pending.max_boots}"
        write_state(root, state)
    follow_state(root, state)
    return message


def main(argv: list[str] | None = None) -> int:
    """Run once before the agent starts; always exits 0 so the agent does start."""
    parser = argparse.ArgumentParser(
        prog="hw-supervisor", description="Count starts of a pending agent release."
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    try:
        message = supervise(args.root, time.time())
    except (OSError, StateFileError) as exc:
        print(f"hw-supervisor: error, slots left as they are: {exc}", file=sys.stderr)
        return 0
    print(f"hw-supervisor: {message}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
