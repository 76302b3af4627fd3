"""The summary of a site file the gateway tells the fleet: where, what it measures, its rules.

Sent with the gateway's retained ``online`` state, so the county's map places the site and
its charts draw the thresholds the gateway really uses. A description only: the fleet
never configures anything from it, and it must never carry a secret or a phone number
(so no ``[village_call]`` persons, no players, no buses).
"""

from __future__ import annotations

from typing import Literal

from protocol import SiteChannel, SiteRule, SiteSummary
from protocol.levels import LEVEL_NAMES
from site_schema.rule_specs import (
    FailureForecastRule,
    InverseVelocityRule,
    LevelThresholds,
    RainWindowRule,
    RuleSpec,
    WaterLevelRule,
)
from site_schema.site_config import SiteConfig, channel_infos

LevelName = Literal["blue", "yellow", "orange", "red"]
_LEVELS: tuple[LevelName, ...] = ("blue", "yellow", "orange", "red")
assert tuple(LEVEL_NAMES[1:]) == _LEVELS  # the wire's names are the engine's


def _by_level(values: LevelThresholds) -> dict[LevelName, float]:
    return {name: float(v) for name, v in zip(_LEVELS, values, strict=True) if v is not None}


def rule_summary(rule: RuleSpec) -> SiteRule:
    """How the console draws one rule: its channel and the thresholds it can show."""
    channel = getattr(rule, "channel", None)
    summary = SiteRule(id=rule.id, kind=rule.kind, channel=channel)
    if isinstance(rule, WaterLevelRule):
        return summary.model_copy(update={"thresholds": _by_level(rule.thresholds)})
    if isinstance(rule, RainWindowRule):
        windows = {w.name: _by_level(w.thresholds) for w in rule.windows}
        return summary.model_copy(update={"windows": windows})
    if isinstance(rule, FailureForecastRule | InverseVelocityRule):
        return summary.model_copy(update={"horizons_h": _by_level(rule.horizons_h)})
    return summary


def site_summary(site: SiteConfig) -> SiteSummary:
    """The summary of ``site`` for the fleet."""
    infos = channel_infos(site.devices)
    return SiteSummary(
        site_id=site.site_id,
        name=site.name,
        lat=site.lat,
        lon=site.lon,
        channels=[
            SiteChannel(channel=name, quantity=info.quantity, unit=info.unit)
            for name, info in infos.items()
        ],
        rules=[rule_summary(rule) for rule in site.rules],
    )
