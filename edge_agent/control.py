"""The local control channel: a Unix socket, owner-only, speaking one JSON line each way.

The technician's ``edge status``, ``edge alarms``, ``edge ack`` and ``edge siren test``
talk to the running agent through it. It never needs the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
SOCKET_NAME = "control.sock"
MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The agent could not be reached or refused the request."""


async def serve_control(path: Path, handlers: Mapping[str, Handler]) -> asyncio.Server:
    """Listen on ``path`` (mode 0600) and dispatch ``{"cmd": NAME, ...}`` to ``handlers``."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line[:MAX_REQUEST])
                handler = handlers[request["cmd"]]
            except (ValueError, KeyError, TypeError):
                reply: dict[str, Any] = {
                    "ok": False,
                    "error": f"bad request; commands: {', '.join(sorted(handlers))}",
                }
            else:
                reply = await handler(request)
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left by a killed agent
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(client, path=str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


async def request(path: Path, command: str, **args: Any) -> dict[str, Any]:
    """Send one command to the agent listening on ``path`` and return its reply.

    Raises:
        ControlError: when no agent listens there.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        msg = f"no agent is running with its control socket at {path} ({exc.strerror})"
        raise ControlError(msg) from None
    try:
        writer.write(json.dumps({"cmd": command, **args}).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        msg = f"the agent at {path} closed the connection without answering"
        raise ControlError(msg)
    reply: dict[str, Any] = json.loads(line)
    return reply
