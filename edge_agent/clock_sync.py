"""Whether the kernel's wall clock is synchronised (NTP, or GNSS through chrony/gpsd).

A gateway has no real-time clock: until the clock is synchronised its readings carry
suspect timestamps. This module only asks the kernel (``adjtimex``); it never sets the
clock and never fails: when it cannot tell, it says synchronised, so that a platform
without ``adjtimex`` does not mark every reading as suspect.
"""

from __future__ import annotations

#: ``adjtimex`` answers TIME_ERROR while the clock is not synchronised.
TIME_ERROR = 5


def system_clock_synced() -> bool:
    """Return True when the kernel says the wall clock is synchronised (adjtimex)."""
    import ctypes  # noqa: PLC0415 - only real gateways ask the kernel

    class Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("pad", ctypes.c_byte * 512)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        state = libc.adjtimex(ctypes.byref(Timex()))
    except (OSError, AttributeError):
        return True  # cannot tell: do not mark every reading as suspect
    return bool(state != TIME_ERROR)
