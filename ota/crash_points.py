"""Crash points: where a crash test freezes a process so it can be SIGKILLed exactly there.

The one fault-injection switch of HazardWatch, for the tests and ``bench/chaos.py kill``
only. It is armed by one environment variable naming one point and a marker file:

    HAZARDWATCH_CRASH_TEST="fleet.ingest.commit=/tmp/t/marker"

At that point the process writes its pid to the marker and blocks forever (the rows are
written, not committed; the message is planned, not sent; the release step has begun, not
ended). Nothing in a site file, a pushed config or the fleet can set it. A production
process without the variable never freezes; an armed one says so at CRITICAL on start,
and a malformed value is logged and ignored (it never stops a gateway from starting).
Standard library only: the release supervisor's side of ``ota`` may use it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

ENV = "HAZARDWATCH_CRASH_TEST"

#: Every point, and where it is.
POINTS = {
    "edge.store.commit": "the gateway's readings transaction, before COMMIT",
    "edge.config.probe": "a pushed configuration: delivered, its probe about to start",
    "fleet.ingest.commit": "the fleet's first ingest transaction, before COMMIT",
    "fleet.escalation.send": "the fleet's first 叫应 calls, planned and not yet sent",
    "ota.download": "a release: downloading",
    "ota.verify": "a release: verifying",
    "ota.install": "a release: installing the slot",
    "ota.switch": "a release: switching slots",
    "ota.start": "a release: the new version's first start",
    "ota.commit": "a release: confirming the new version",
}

log = logging.getLogger(__name__)


def crash_test_env(point: str, marker: Path) -> dict[str, str]:
    """The environment that arms ``point`` with ``marker`` (for tests and benches)."""
    if point not in POINTS:
        msg = f"no crash point {point!r} (points: {', '.join(POINTS)})"
        raise ValueError(msg)
    return {ENV: f"{point}={marker}"}


def armed(point: str) -> Path | None:
    """The marker file if this process is armed at ``point``; None otherwise."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    name, sep, marker = spec.partition("=")
    if not sep or name not in POINTS or not marker:
        log.error(
            "%s=%r is not <point>=<marker file> with a point among %s: ignored",
            ENV,
            spec,
            ", ".join(POINTS),
        )
        return None
    if name != point:
        return None
    log.critical("crash test: this process freezes at %s (%s)", point, POINTS[point])
    return Path(marker)


def freeze(marker: Path) -> None:
    """Write the pid to ``marker`` and block this thread until the process is killed."""
    marker.write_text(f"{os.getpid()}\n")
    threading.Event().wait()
