"""The alarm engine: rules as data, levels 0 normal .. 4 red.

Rules are evaluated by numba kernels (or a plain-Python reference) on live samples and
over history. The gateway runs it on its sensors (``edge_agent``), the fleet on the
county's SL 651 stations' readings (``fleet.sl651_rules``). The rules themselves, as a
site file gives them, are ``site_schema.rules`` (parsing) and ``site_schema.rule_specs``
(the validated data). Nothing in this package performs I/O or actuates anything, and it
never imports ``edge_agent``, ``fleet``, ``drivers`` or ``hardware_sim``: it knows
neither side.
"""

from alarm_engine.engine import AlarmEngine, Series
from alarm_engine.model import LevelChange

__all__ = ["AlarmEngine", "LevelChange", "Series"]
