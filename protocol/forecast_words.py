"""A slope's forecast failure time in the words a warning text gives it, on gateway and fleet.

The county's 叫应 calls and a gateway's own texts, when cut off, both tell the persons
called the earliest time of the forecast's 95 % interval (最早) and the most likely time
(最可能), in the county's clock, as one Chinese sentence with full-width punctuation.
Earliest first, because that is the time to plan for. This module only words times it is
given; it never makes or judges a forecast.
"""

from __future__ import annotations

import math

from protocol.county_clock import clock_words, zone_name


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
