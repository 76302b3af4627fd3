"""Alarm levels: the one vocabulary of the gateway, the fleet and the console.

Internally (and on the wire) a level is 0..4, normal to red, rising with danger. County
staff read warnings the other way round: 红色预警 (Ⅰ级) is the highest and 蓝色预警 (Ⅳ级)
the lowest, so a display never shows the bare number. Pure data: nothing here may import
anything of the project.
"""

from __future__ import annotations

import enum


class AlarmLevel(enum.IntEnum):
    """0 normal, 1 blue, 2 yellow, 3 orange, 4 red."""

    NORMAL = 0
    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @property
    def colour(self) -> str:
        """``normal``, ``blue`` ... ``red``: the name in site files, the REST API and logs."""
        return self.name.lower()

    @property
    def colour_zh(self) -> str:
        """``红色`` ... ``蓝色`` (``正常`` for normal): the word a warning text starts with."""
        return _COLOUR_ZH[self]

    @property
    def display_zh(self) -> str:
        """How county staff read it, from ``红色预警 (Ⅰ级)`` to ``蓝色预警 (Ⅳ级)``, or ``正常``."""
        return _ZH[self]

    @property
    def display_en(self) -> str:
        """``Red warning (level I)`` ... ``Blue warning (level IV)``, or ``Normal``."""
        return _EN[self]


#: Level names by number, as site files, the REST API and logs spell them.
LEVEL_NAMES: tuple[str, ...] = tuple(level.colour for level in AlarmLevel)

_COLOUR_ZH = {
    AlarmLevel.NORMAL: "正常",
    AlarmLevel.BLUE: "蓝色",
    AlarmLevel.YELLOW: "黄色",
    AlarmLevel.ORANGE: "橙色",
    AlarmLevel.RED: "红色",
}
_ZH = {
    AlarmLevel.NORMAL: "正常",
    AlarmLevel.BLUE: "蓝色预警（Ⅳ级）",  # noqa: RUF001 - full-width brackets, as printed
    AlarmLevel.YELLOW: "黄色预警（Ⅲ级）",  # noqa: RUF001
    AlarmLevel.ORANGE: "橙色预警（Ⅱ级）",  # noqa: RUF001
    AlarmLevel.RED: "红色预警（Ⅰ级）",  # noqa: RUF001
}
_EN = {
    AlarmLevel.NORMAL: "Normal",
    AlarmLevel.BLUE: "Blue warning (level IV)",
    AlarmLevel.YELLOW: "Yellow warning (level III)",
    AlarmLevel.ORANGE: "Orange warning (level II)",
    AlarmLevel.RED: "Red warning (level I)",
}
