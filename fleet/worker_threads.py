"""Run blocking storage calls on worker threads without leaving them behind on cancel.

Cancelling ``asyncio.to_thread`` does not stop its thread. A fleet shutting down would
then close the database under a query still running on it, which crashes SQLite. This
module never touches storage itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


async def in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """``asyncio.to_thread(fn, *args)``; if cancelled, let the call finish, then unwind."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
