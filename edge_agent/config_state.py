"""Configuration-update state that must be read before anything heavy is imported.

``prepare_start`` runs first thing in ``edge run``: before the alarm kernels are chosen
from the site file and loaded, it may give up an unconfirmed configuration that keeps the
agent from starting and put the previous file back. Only the standard library and small
project modules here (see ``edge_agent.config_update`` for the whole procedure).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_agent.atomic_file import replace_durably, write_atomic
from ota.report import OtaReport, OtaState, OtaSubject

log = logging.getLogger(__name__)

STATE_FILE = "config_ota.json"
#: The configuration being taken (delivered, no outcome yet) and its tries so far. A file of
#: its own, so that a version rolled back to, which knows nothing of it, still reads the state.
TAKING_FILE = "config_taking.json"
#: Starts allowed while a new configuration awaits confirmation before it is given up.
MAX_CONFIRM_STARTS = 3
#: Tries of one configuration (each that raised or that the agent died in) before giving up.
MAX_TAKE_TRIES = 5


@dataclass
class ConfigOtaState:
    """What the gateway remembers about configuration updates."""

    installed_version: int = 0  # signed version of the site file in use (0: installed locally)
    handled_version: int = 0  # newest verified version dealt with, whatever the outcome
    confirming: int | None = None  # version switched to and not yet confirmed
    confirm_starts: int = 0
    previous_version: int = 0
    refused_digest: str | None = None  # the last refused document, not reported twice
    unreported: list[dict[str, Any]] = field(default_factory=list)
    last: dict[str, Any] | None = None

    @classmethod
    def load(cls, data_dir: Path) -> ConfigOtaState:
        """Read the state; a missing file is the initial state.

        Keys this version does not know (a newer version wrote them before a roll-back)
        are left out, so they never stop the agent from starting.
        """
        path = data_dir / STATE_FILE
        if not path.exists():
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})

    def save(self, data_dir: Path) -> None:
        """Write the state atomically."""
        write_atomic(data_dir / STATE_FILE, json.dumps(asdict(self), indent=1).encode(), 0o600)


@dataclass
class Taking:
    """A verified configuration on its way to an outcome, and how often it was tried.

    ``tries`` counts starts of the procedure; one that never ended (the agent died in the
    probe) is counted by the next start. ``delivered`` is set once the ``delivered`` report
    is stored. ``failure`` is the last try's error, if it raised.
    """

    version: int
    tries: int = 0
    delivered: bool = False
    failure: str | None = None

    @classmethod
    def load(cls, data_dir: Path) -> Taking | None:
        """The configuration being taken, or None (also for a file that cannot be read)."""
        path = data_dir / TAKING_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            failure = data.get("failure")
            return cls(
                int(data["version"]),
                int(data.get("tries", 0)),
                bool(data.get("delivered", False)),
                None if failure is None else str(failure),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s cannot be read; the configuration's tries start again", path)
            return None

    def save(self, data_dir: Path) -> None:
        """Write it atomically."""
        write_atomic(data_dir / TAKING_FILE, json.dumps(asdict(self)).encode(), 0o600)

    @staticmethod
    def clear(data_dir: Path) -> None:
        """No configuration is being taken any more."""
        (data_dir / TAKING_FILE).unlink(missing_ok=True)


def config_status(state: ConfigOtaState, taking: Taking | None) -> dict[str, Any]:
    """The configuration update as status shows it: installed, confirming, taking, last."""
    return {
        "installed_version": state.installed_version,
        "confirming": state.confirming,
        "last": state.last,
        "taking": None if taking is None else asdict(taking),
    }


def candidate_path(config_path: Path) -> Path:
    """Where a new configuration waits for its probe."""
    return config_path.with_name(config_path.name + ".candidate")


def previous_path(config_path: Path) -> Path:
    """Where the configuration replaced by the last switch is kept."""
    return config_path.with_name(config_path.name + ".prev")


def restore_previous(config_path: Path, state: ConfigOtaState, reason: str) -> OtaReport:
    """Put the file kept by the last switch back in place; the ``rolled_back`` report."""
    version = state.confirming or 0
    previous = previous_path(config_path)
    if previous.exists():
        replace_durably(previous, config_path)
    report = OtaReport(OtaSubject.CONFIG, version, OtaState.ROLLED_BACK, reason)
    state.confirming = None
    state.confirm_starts = 0
    state.installed_version = state.previous_version
    state.last = {"at": time.time(), **report.detail()}
    return report


def prepare_start(config_path: Path, data_dir: Path) -> None:
    """Before the site file is loaded: count starts of an unconfirmed configuration.

    Past ``MAX_CONFIRM_STARTS`` (the agent keeps dying with it), restore the previous file
    and leave a ``rolled_back`` report for the agent to send once it runs.
    """
    state = ConfigOtaState.load(data_dir)
    if state.confirming is None:
        return
    state.confirm_starts += 1
    if state.confirm_starts > MAX_CONFIRM_STARTS:
        reason = (
            f"configuration version {state.confirming} did not confirm within "
            f"{MAX_CONFIRM_STARTS} starts; previous configuration restored"
        )
        log.error("%s", reason)
        state.unreported.append(asdict_report(restore_previous(config_path, state, reason)))
    state.save(data_dir)


def asdict_report(report: OtaReport) -> dict[str, Any]:
    """A report as JSON-able data (for the state file)."""
    return {"subject": report.subject.value, **report.detail()}
