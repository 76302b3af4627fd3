"""Alarm engine of the edge agent: rules as data, levels 0 normal .. 4 red.

Rules are evaluated by numba kernels (or a plain-Python reference) on live samples and
over history. The public surface is re-exported here. Nothing in this package performs
I/O or actuates anything.
"""

from edge_agent.alarms.engine import AlarmEngine, Series
from edge_agent.alarms.model import LevelChange
from edge_agent.alarms.rules import RuleError, parse_rules
from edge_agent.alarms.specs import (
    LEVEL_BY_NAME,
    AntecedentRainRule,
    ChannelInfo,
    ChannelRule,
    CombinationRule,
    DisplacementAccelerationRule,
    DisplacementVelocityRule,
    FailureForecastRule,
    IntensityDurationRule,
    InverseVelocityRule,
    PowerLaw,
    RainWindow,
    RainWindowRule,
    RateOfRiseRule,
    RuleSpec,
    SampleRule,
    SlopeRule,
    TangentAngleRule,
    WaterLevelRule,
    history_needed_s,
    level_name,
)
from protocol.levels import LEVEL_NAMES

__all__ = [
    "LEVEL_BY_NAME",
    "LEVEL_NAMES",
    "AlarmEngine",
    "AntecedentRainRule",
    "ChannelInfo",
    "ChannelRule",
    "CombinationRule",
    "DisplacementAccelerationRule",
    "DisplacementVelocityRule",
    "FailureForecastRule",
    "IntensityDurationRule",
    "InverseVelocityRule",
    "LevelChange",
    "PowerLaw",
    "RainWindow",
    "RainWindowRule",
    "RateOfRiseRule",
    "RuleError",
    "RuleSpec",
    "SampleRule",
    "Series",
    "SlopeRule",
    "TangentAngleRule",
    "WaterLevelRule",
    "history_needed_s",
    "level_name",
    "parse_rules",
]
