"""A rule's level change, as the alarm engine reports it: plain data, standard library only.

Code that only carries level changes (the fleet's SL 651 centre, which stores a station's
as ``alarm`` events) imports this module alone: importing it loads neither numpy nor the
engine (``alarm_engine/__init__.py`` loads the engine on first use). This module must
never import numpy, numba or another module of the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class LevelChange:
    """A rule's level changed (or its latch was acknowledged).

    ``t`` is the deciding sample's time; ``metric`` is the rule's headline value at that
    moment (the deciding window's sum, EAR, intensity, velocity, angle, lead time in hours
    ...); ``detail`` says it in words, e.g. ``"1h window 47.2 mm >= 45 (yellow)"``.
    """

    rule_id: str
    t: float
    old: int
    new: int
    kind: Literal["rise", "fall", "ack"]
    metric: float
    detail: str
    #: The rule's metric snapshot by name (``details.value_names``); empty for combinations.
    #: Not compared: it may hold NaN, and ``metric`` and ``detail`` already say what changed.
    values: Mapping[str, float] = field(default_factory=dict, compare=False)
