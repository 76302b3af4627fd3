"""The local control channel: a Unix socket, owner-only, speaking one JSON line each way.

The technician's ``edge status``, ``edge alarms``, ``edge ack`` and ``edge siren test``
talk to the running agent through it with ``ask``: a typed request out, its typed reply
back (``edge_agent.control_messages``); the agent validates each request into its model
before a handler sees it. It never needs the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from edge_agent.control_messages import (
    BadReplyError,
    BadRequestError,
    ControlReply,
    ControlRequest,
    ErrorReply,
    ReplyT,
    parse_reply,
    parse_request,
)

#: Takes the request model of its command (``AckRequest`` for ``ack`` ...) and returns a
#: reply model, or a plain JSON object for the replies without a model of their own.
Handler = Callable[[Any], Awaitable[ControlReply | dict[str, Any]]]
SOCKET_NAME = "control.sock"
#: Longest request line; ``edge`` never sends more than a few hundred bytes.
MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """The agent could not be reached, refused the request or answered nonsense."""


class NoAgentError(ControlError):
    """Nothing listens on the control socket: no agent is running with that data directory."""


class ControlRefusedError(ControlError):
    """The agent refused the request; the text is its ``error``."""


async def serve_control(path: Path, handlers: Mapping[str, Handler]) -> asyncio.Server:
    """Listen on ``path`` (mode 0600) and dispatch ``{"cmd": NAME, ...}`` to ``handlers``."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                line = await reader.readline()
            except ValueError:  # no newline within the stream's limit
                reply: ControlReply | dict[str, Any] = ErrorReply(
                    error=f"bad request: longer than {MAX_REQUEST} bytes"
                )
            else:
                try:
                    request = parse_request(line, handlers)
                except BadRequestError as exc:
                    reply = ErrorReply(error=str(exc))
                else:
                    reply = await handlers[request.cmd](request)
            data = reply.wire() if isinstance(reply, ControlReply) else reply
            writer.write(json.dumps(data, default=str).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket left by a killed agent
    old_umask = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(client, path=str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return server


async def exchange(path: Path, message: ControlRequest) -> bytes:
    """Send ``message`` to the agent listening on ``path``; its reply line, unparsed.

    Raises:
        ControlError: when no agent listens there or it closes without answering.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        msg = f"no agent is running with its control socket at {path} ({exc.strerror})"
        raise NoAgentError(msg) from None
    try:
        writer.write(message.model_dump_json().encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    if not line:
        msg = f"the agent at {path} closed the connection without answering"
        raise ControlError(msg)
    return line


async def ask(path: Path, message: ControlRequest, reply: type[ReplyT]) -> ReplyT:
    """Send ``message`` to the agent at ``path`` and return its reply as ``reply``.

    Raises:
        ControlRefusedError: with the agent's own error text when it refused.
        ControlError: when no agent listens there or its answer is not a ``reply``.
    """
    line = await exchange(path, message)
    try:
        answer = parse_reply(line, reply)
    except BadReplyError as exc:
        raise ControlError(str(exc)) from None
    if isinstance(answer, ErrorReply):
        raise ControlRefusedError(answer.error)
    return answer
