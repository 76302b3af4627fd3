"""``GET /api/v1/stream``: the console's live feed as server-sent events (viewer).

Events: ``level`` (an alarm's level changed, or it was acknowledged or answered),
``health`` (a gateway's state or health report changed) and ``escalation`` (a 叫应 step:
a call, an answer, an escalation, an end). A comment line every 15 s keeps proxies from
closing the stream. Read only; carries no phone number (persons by name and tier).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from fleet.dependencies import TOKEN_REFUSALS, require
from fleet.live_feed import LiveFeed
from fleet.repository import Role

router = APIRouter(
    prefix="/api/v1/stream",
    tags=["live"],
    dependencies=[Depends(require(Role.VIEWER))],
    responses=TOKEN_REFUSALS,
)

KEEP_ALIVE_S = 15.0


@router.get(
    "",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def stream(request: Request) -> StreamingResponse:
    """Level changes, health and 叫应 steps as they are stored (server-sent events)."""
    feed: LiveFeed = request.app.state.live

    async def events() -> AsyncIterator[str]:
        async with feed.listen() as queue:
            yield "retry: 2000\n: connected\n\n"
            while not await request.is_disconnected():
                try:
                    change = await asyncio.wait_for(queue.get(), KEEP_ALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if change is None:  # fell behind: the browser reconnects and reloads
                    return
                data = json.dumps(change.data, ensure_ascii=False)
                yield f"event: {change.kind}\ndata: {data}\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
