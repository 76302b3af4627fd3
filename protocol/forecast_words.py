"""A slope's forecast failure time in the words a warning text gives it, on gateway and fleet.

The county's 叫应 calls and a gateway's own texts, when cut off, both tell the persons
called the earliest time of the forecast's 95 % interval (最早) and the most likely time
(最可能), in the county's clock, as one Chinese sentence with full-width punctuation.
Earliest first, because that is the time to plan for. This module only words times it is
given; it never makes or judges a forecast.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

#: The county's clock unless a site or the fleet says otherwise: China Standard Time.
CHINA_STANDARD_TIME_H = 8.0


def zone_name(utc_offset_h: float) -> str:
    """``北京时间`` for UTC+8, else ``UTC+5:45``, ``UTC-3:30``, ``UTC+0``."""
    if utc_offset_h == CHINA_STANDARD_TIME_H:
        return "北京时间"
    hours = int(utc_offset_h)
    minutes = round(abs(utc_offset_h - hours) * 60)
    sign = "-" if utc_offset_h < 0 else "+"
    return f"UTC{sign}{abs(hours):d}" + (f":{minutes:02d}" if minutes else "")


def clock_words(t: float, utc_offset_h: float) -> str:
    """``t`` as month, day and time of day in the zone, e.g. ``12月7日00:30``."""
    local = datetime.fromtimestamp(t, UTC) + timedelta(hours=utc_offset_h)
    return f"{local.month}月{local.day}日{local:%H:%M}"


def failure_words(likely_t: float, earliest_t: float | None, utc_offset_h: float) -> str:
    """The sentence for a failure likely at ``likely_t``, at the earliest at ``earliest_t``.

    Only the likely time (``约``) when there is no earlier bound before it.
    """
    zone = zone_name(utc_offset_h)
    if earliest_t is None or not math.isfinite(earliest_t) or earliest_t >= likely_t:
        return f"滑坡预测：约{clock_words(likely_t, utc_offset_h)}（{zone}）。"  # noqa: RUF001
    return (
        f"滑坡预测：最早{clock_words(earliest_t, utc_offset_h)}，"  # noqa: RUF001
        f"最可能{clock_words(likely_t, utc_offset_h)}（{zone}）。"  # noqa: RUF001
    )
