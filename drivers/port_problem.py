"""Why a serial port cannot be opened, in words a technician can act on.

pymodbus reports a port it cannot open as a plain "not connected"; this module opens the
device file once itself to learn the operating system's reason (no such file, permission
denied, busy) and words it with the fix. It is called only after a connection failed,
closes what it opened at once, and never changes a permission or a setting of the port.
"""

from __future__ import annotations

import errno
import os
import pwd


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def fix_for(code: int | None, device: str) -> str:
    """What to do about ``device`` failing with errno ``code`` (empty when nothing is known)."""
    if code == errno.ENOENT:
        return "is the USB-RS485 adapter plugged in? `ls /dev/serial/by-id` lists the adapters"
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"add the user to the dialout group (`sudo usermod -aG dialout {_user()}`, then "
            "log in again or restart the service)"
        )
    if code == errno.EBUSY:
        return f"another program holds the port (`fuser -v {device}` names it)"
    return ""


def serial_port_problem(device: str) -> str:
    """The reason ``device`` cannot be opened, with the fix when one is known.

    ``"/dev/ttyUSB0: No such file or directory (errno ENOENT): is the adapter ..."``; when
    the port opens after all (it appeared, or the failure was of the line settings), says
    that it opens but the Modbus client could not use it.
    """
    try:
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        text = f"{device}: {exc.strerror} (errno {name})"
        fix = fix_for(exc.errno, device)
        return f"{text}: {fix}" if fix else text
    os.close(fd)
    return f"{device} opens, but the Modbus client could not use it (check its line settings)"
