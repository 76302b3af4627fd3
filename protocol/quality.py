"""Reading quality: the bits every reading carries on the wire and in SQLite files.

The one definition of these bits; ``drivers`` sets them, the gateway's store and the
fleet filter on them. The values are stored in files and sent in batches, so a bit must
never change its value. Pure data: nothing here may import anything of the project.
"""

from __future__ import annotations

import enum


class Quality(enum.IntFlag):
    """Quality bits carried by every reading; ``OK`` (no bit set) means a good sample."""

    OK = 0
    TIMEOUT = 1 << 0
    CRC_ERROR = 1 << 1
    EXCEPTION = 1 << 2
    OUT_OF_RANGE = 1 << 3
    STUCK = 1 << 4
    SPIKE = 1 << 5
    CLOCK_UNSYNCED = 1 << 6
    SIMULATED = 1 << 7
    NO_CONNECTION = 1 << 8

    def names(self) -> list[str]:
        """Return the names of the set bits in lower case, ``["ok"]`` for a good sample."""
        if self == Quality.OK:
            return ["ok"]
        return [str(flag.name).lower() for flag in Quality if flag.value and self & flag]


#: Quality bits that mean the value is not a trustworthy measurement of the process:
#: such readings never enter min/avg/max nor an alarm rule's window.
BAD_QUALITY = (
    Quality.TIMEOUT
    | Quality.CRC_ERROR
    | Quality.EXCEPTION
    | Quality.OUT_OF_RANGE
    | Quality.STUCK
    | Quality.SPIKE
    | Quality.NO_CONNECTION
)
