"""Dirty pages of a file in the page cache, and the kernel's writeback played by hand.

For the SD-card wear benches: ``/proc/PID/io`` says how much a process dirtied, not in
which file; ``cachestat`` (Linux 6.5 and later) says how many of a file's pages are dirty,
so the pages a played writeback cleans are counted per file. On an older kernel
``counts_dirty_pages`` says so: a bench can still play the writeback (``fsync_file``) and
give its totals, without the split. It only reads page-cache state and fsyncs files the
bench names: it must never write to a file itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
from pathlib import Path

#: ``cachestat`` has the same number on every architecture (the unified syscall table).
SYS_CACHESTAT = 451
#: The page cache's page, the unit ``cachestat`` counts in: the kernel's page size, which
#: is 4 KiB on x86 and a Pi 4 but 16 KiB on a Pi 5's default kernel.
PAGE = os.sysconf("SC_PAGESIZE")


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")
    ]


_libc = ctypes.CDLL(None, use_errno=True)


def dirty_pages(path: Path) -> int:
    """How many of ``path``'s page-cache pages are dirty (0 when it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        whole, stat = _Range(0, 0), _Stat()
        if _libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(stat), 0) != 0:
            code = ctypes.get_errno()
            msg = f"cachestat({path}) failed: {os.strerror(code)} (needs Linux 6.5 or later)"
            raise OSError(code, msg)
        return int(stat.dirty)
    finally:
        os.close(fd)


def counts_dirty_pages() -> bool:
    """Whether this kernel counts a file's dirty pages (``cachestat``, Linux 6.5 or later).

    ENOSYS (an older kernel) or EPERM (a seccomp filter that does not know the call) says
    it does not; any other failure is raised.
    """
    try:
        dirty_pages(Path(sys.executable))
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM):
            return False
        raise
    return True


def fsync_file(path: Path) -> None:
    """Write ``path``'s dirty pages back as the flusher would (nothing if it is gone)."""
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_back(path: Path) -> int:
    """Write ``path``'s dirty pages back (fsync) as the flusher would; the bytes it wrote."""
    dirty = dirty_pages(path)
    fsync_file(path)
    return dirty * PAGE


def write_bytes(pid: int | str = "self") -> int:
    """What process ``pid`` has sent to the storage layer so far (``/proc/PID/io``)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    msg = f"no write_bytes in /proc/{pid}/io"
    raise RuntimeError(msg)
