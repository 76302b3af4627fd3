"""Refuse slope rules whose windows hold too few samples at their device's poll interval.

A least-squares slope from three samples is noise, not a velocity; a site file that asks
for one is refused at load with the rule, the window and the sample count. This module
reads parsed configuration only; it never evaluates a sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.device_config import DeviceConfig
from site_schema.rule_specs import (
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    FailureForecastRule,
    InverseVelocityRule,
    RateOfRiseRule,
    RuleSpec,
    TangentAngleRule,
)
from site_schema.site_errors import SiteConfigError

#: A velocity window (and the inverse-velocity fit) must hold at least this many samples.
MIN_WINDOW_SAMPLES = 6


def _windows(rule: RuleSpec, poll_s: float) -> list[tuple[str, float, float, int]]:
    """(name, seconds, samples it holds, samples it needs) of each window of ``rule``."""
    match rule:
        case (
            RateOfRiseRule()
            | DisplacementVelocityRule()
            | DisplacementAccelerationRule()
            | TangentAngleRule()
        ):
            return [("window_s", rule.window_s, rule.window_s / poll_s, MIN_WINDOW_SAMPLES)]
        case InverseVelocityRule():
            every = max(rule.eval_every_s, poll_s)
            return [
                ("window_s", rule.window_s, rule.window_s / poll_s, MIN_WINDOW_SAMPLES),
                ("fit_window_s", rule.fit_window_s, rule.fit_window_s / every, MIN_WINDOW_SAMPLES),
            ]
        case FailureForecastRule():
            # Bins hold the samples of bin_s; a poll slower than that leaves bins empty.
            held = rule.window_s / max(rule.bin_s, poll_s)
            return [("window_s", rule.window_s, held, rule.min_bins)]
        case _:
            return []


def poll_intervals(devices: Sequence[DeviceConfig]) -> dict[str, float]:
    """Each polled channel's site-wide id and its device's poll interval in seconds."""
    return {
        device.channel_id(name): device.poll_interval_s
        for device in devices
        for name in device.polled_channels()
    }


def check_sample_counts(
    source: str, rules: tuple[RuleSpec, ...], poll_by_channel: Mapping[str, float]
) -> None:
    """Raise ``SiteConfigError`` for the first slope rule whose window holds too few samples."""
    for rule in rules:
        channel = getattr(rule, "channel", None)
        if channel is None or channel not in poll_by_channel:
            continue
        poll_s = poll_by_channel[channel]
        for name, seconds, held, needed in _windows(rule, poll_s):
            if held < needed:
                unit = "hourly bins" if isinstance(rule, FailureForecastRule) else "samples"
                raise SiteConfigError(
                    source,
                    f"{name} = {seconds:g} s holds {int(held)} {unit} of '{channel}' "
                    f"(polled every {poll_s:g} s); it needs at least {needed}: lengthen "
                    f"{name} or poll faster",
                    f"rule '{rule.id}'",
                )
