"""What a gateway tells the fleet about an update: one ``ota`` event per step.

Reports travel as ordinary gateway events (kind ``ota``, subject ``config`` or
``release``), so they are stored durably on the gateway the moment they happen and reach
the fleet exactly once through the store-and-forward uplink, even across crashes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

OTA_EVENT_KIND = "ota"


class OtaState(enum.StrEnum):
    """Steps and outcomes of an update as the gateway reports them."""

    DELIVERED = "delivered"  # the signed document arrived and verified
    REJECTED = "rejected"  # refused: bad signature, wrong target, stale, invalid config ...
    DOWNLOADING = "downloading"  # release files are being fetched
    INSTALLED = "installed"  # new slot installed, about to switch
    APPLIED = "applied"  # config applied and health probe passed; release committed
    ROLLED_BACK = "rolled_back"  # tried, failed its health check, previous one restored

    @property
    def final(self) -> bool:
        """Whether the update ends here (the fleet stops waiting for this gateway)."""
        return self in (OtaState.REJECTED, OtaState.APPLIED, OtaState.ROLLED_BACK)


class OtaSubject(enum.StrEnum):
    """What is being updated."""

    CONFIG = "config"
    RELEASE = "release"


@dataclass(frozen=True)
class OtaReport:
    """One report: which document (by its signed version), what state, why."""

    subject: OtaSubject
    version: int
    state: OtaState
    reason: str | None = None
    extra: dict[str, Any] | None = None

    def detail(self) -> dict[str, Any]:
        """The event ``detail`` this report is stored and sent as."""
        return {
            "version": self.version,
            "state": self.state.value,
            "reason": self.reason,
            **(self.extra or {}),
        }


def parse_report(kind: str, subject: str | None, detail: dict[str, Any]) -> OtaReport | None:
    """Read a report back from an event; None when the event is not a well-formed report."""
    if kind != OTA_EVENT_KIND or subject is None:
        return None
    try:
        version = detail["version"]
        if not isinstance(version, int):
            return None
        reason = detail.get("reason")
        extra = {k: v for k, v in detail.items() if k not in ("version", "state", "reason")}
        return OtaReport(
            OtaSubject(subject),
            version,
            OtaState(detail["state"]),
            None if reason is None else str(reason),
            extra or None,
        )
    except (KeyError, ValueError):
        return None
