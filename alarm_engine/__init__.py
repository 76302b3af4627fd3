"""The alarm engine: rules as data, levels 0 normal .. 4 red.

Rules are evaluated by numba kernels (or a plain-Python reference) on live samples and
over history. The gateway runs it on its sensors (``edge_agent``), the fleet on the
county's SL 651 stations' readings (``fleet.sl651_rules``). The rules themselves, as a
site file gives them, are ``site_schema.rules`` (parsing) and ``site_schema.rule_specs``
(the validated data). Nothing in this package performs I/O or actuates anything, and it
never imports ``edge_agent``, ``fleet``, ``drivers`` or ``hardware_sim``: it knows
neither side.

``AlarmEngine`` and ``Series`` load with numpy on first use, not with the package: the
fleet's SL 651 centre carries ``LevelChange`` (``alarm_engine.level_change``) in every
``fleet serve`` and runs the engine only for a station that has rules.
"""

from typing import TYPE_CHECKING, Any

from alarm_engine.level_change import LevelChange

if TYPE_CHECKING:
    from alarm_engine.engine import AlarmEngine, Series

__all__ = ["AlarmEngine", "LevelChange", "Series"]

_ENGINE_NAMES = frozenset({"AlarmEngine", "Series"})


def __getattr__(name: str) -> Any:
    """``AlarmEngine`` and ``Series``, importing the engine the first time one is asked for."""
    if name in _ENGINE_NAMES:
        from alarm_engine import engine  # noqa: PLC0415 - numpy loads here, on first use

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
