"""Alarm engine of the edge agent: rules as data, levels 0 normal .. 4 red.

Rules are evaluated by numba kernels (or a plain-Python reference) on live samples and
over history. The rules themselves, as a site file gives them, are ``site_schema.rules``
(parsing) and ``site_schema.rule_specs`` (the validated data). Nothing in this package
performs I/O or actuates anything.
"""

from edge_agent.alarms.engine import AlarmEngine, Series
from edge_agent.alarms.model import LevelChange

__all__ = ["AlarmEngine", "LevelChange", "Series"]
