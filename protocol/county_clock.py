"""The county's clock: the offset from UTC in which people and stations read times.

China Standard Time (北京时间) unless a site or the fleet says otherwise. SL 651 stations
keep it, and the warning texts tell a forecast's times in it. One definition, with the
offsets a setting may hold, for gateway, fleet and simulators. Nothing here reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: China Standard Time, in hours east of UTC.
CHINA_STANDARD_TIME_H = 8.0
#: The same as a ``timedelta``.
CHINA_STANDARD_TIME = timedelta(hours=CHINA_STANDARD_TIME_H)
#: The offsets a ``utc_offset_h`` setting may hold (the world's time zones), in hours.
MIN_UTC_OFFSET_H = -12.0
MAX_UTC_OFFSET_H = 14.0


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
