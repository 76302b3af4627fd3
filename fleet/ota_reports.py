"""What a gateway's ``ota`` report does to a configuration's delivery and a rollout device.

``config_change`` and ``device_change`` decide; each storage backend applies them in the
transaction that stores the report's event, so each report counts exactly once.

This module must never know a database, and must never let a report replace a final
outcome: reports arriving out of order (or a duplicate document answered
``stale_version``) cannot undo an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.repository import ConfigState, DeviceState
from ota.document import DocumentKind
from ota.report import OtaReport, OtaState, parse_report
from protocol import EventRow

#: What a gateway's report makes of a configuration's state.
_CONFIG_STATE = {
    OtaState.DELIVERED: ConfigState.DELIVERED,
    OtaState.DOWNLOADING: ConfigState.DELIVERED,
    OtaState.INSTALLED: ConfigState.DELIVERED,
    OtaState.APPLIED: ConfigState.APPLIED,
    OtaState.REJECTED: ConfigState.REJECTED,
    OtaState.ROLLED_BACK: ConfigState.ROLLED_BACK,
}
_NOT_FINAL = tuple(s for s in ConfigState if not s.final)
_BEFORE_DELIVERED = (ConfigState.PENDING,)


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """Set the delivery of document ``version`` to ``state`` if it is in ``replaceable``."""

    version: int
    state: ConfigState
    reason: str | None
    replaceable: tuple[ConfigState, ...]


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """A rollout device's new state and the report to remember (``reason`` None: keep it)."""

    state: DeviceState
    reported: OtaState
    reason: str | None


def read_report(event: EventRow) -> tuple[DocumentKind, OtaReport] | None:
    """The report an event carries and the kind of document it is about, or None."""
    report = parse_report(event.kind, event.subject, event.detail)
    if report is None:
        return None
    return DocumentKind(report.subject.value), report


def config_change(kind: DocumentKind, report: OtaReport) -> ConfigChange | None:
    """What the report does to the configuration delivery it names (nothing for releases)."""
    if kind is not DocumentKind.CONFIG:
        return None
    state = _CONFIG_STATE[report.state]
    replaceable = _BEFORE_DELIVERED if state is ConfigState.DELIVERED else _NOT_FINAL
    return ConfigChange(report.version, state, report.reason, replaceable)


def device_change(
    state: DeviceState, reported: str | None, report: OtaReport
) -> DeviceChange | None:
    """What the report does to a device of a rollout of its document; None if settled.

    A device in progress ends on a final report: succeeded when applied, failed otherwise.
    """
    if reported is not None and OtaState(reported).final:
        return None
    reason: str | None = None
    if state is DeviceState.IN_PROGRESS and report.state.final:
        applied = report.state is OtaState.APPLIED
        state = DeviceState.SUCCEEDED if applied else DeviceState.FAILED
        reason = None if applied else f"{report.state.value}: {report.reason or 'no reason'}"
    return DeviceChange(state, report.state, reason)
