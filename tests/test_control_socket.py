"""The control socket: requests are validated into their models; a bad one gets a clear error.

A real Unix socket served by ``serve_control``; the handlers are small stand-ins for the
agent's (the agent's own are exercised end to end in test_agent_e2e.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.control import MAX_REQUEST, SOCKET_NAME, request, serve_control
from edge_agent.control_messages import (
    AckReply,
    AckRequest,
    AlarmHistoryEntry,
    AlarmsReply,
    AlarmStatus,
    SirenTestRequest,
)


@pytest.fixture
async def agent_socket(tmp_path: Path) -> AsyncIterator[tuple[Path, list[object]]]:
    seen: list[object] = []

    async def ack(req: AckRequest) -> AckReply:
        seen.append(req)
        return AckReply(rule=req.rule, level="red")

    async def siren_test(req: SirenTestRequest) -> dict[str, Any]:
        seen.append(req)
        return {"ok": True, "results": {"siren": True}}

    async def alarms(_req: object) -> AlarmsReply:
        entry = AlarmHistoryEntry.model_validate(
            {"t": 1.5, "rule": "rain_1h", "from": "normal", "to": "red", "metric": float("nan")}
        )
        return AlarmsReply(
            active={"rain_1h": AlarmStatus(level="red", metrics={"sum_1h": 51.0})},
            history=[entry],
        )

    path = tmp_path / SOCKET_NAME
    server = await serve_control(path, {"ack": ack, "siren_test": siren_test, "alarms": alarms})
    try:
        yield path, seen
    finally:
        server.close()
        await server.wait_closed()


async def send_line(path: Path, line: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=4 * MAX_REQUEST)
    try:
        writer.write(line)
        await writer.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 10))
    finally:
        writer.close()
    return reply


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"status please\n", 'bad request: not one JSON object such as {"cmd": "status"}'),
        (b'["ack"]\n', 'bad request: no "cmd" naming a command; commands: ack, alarms'),
        (b'{"cmd": "reboot"}\n', "unknown command 'reboot'; commands: ack, alarms, siren_test"),
        (b'{"cmd": "ack"}\n', "bad 'ack' request: rule: Field required"),
        (b'{"cmd": "ack", "rule": ""}\n', "bad 'ack' request: rule: String should have at least"),
        (b'{"cmd": "ack", "rul": "x"}\n', "rule: Field required; rul: Extra inputs are not"),
        (b'{"cmd": "ack", "rule": 7}\n', "bad 'ack' request: rule: Input should be a valid string"),
        (b'{"cmd": "siren_test", "audible": "yes"}\n', "audible: Input should be a valid boolean"),
    ],
)
async def test_a_bad_request_gets_an_error_saying_what_is_wrong_and_reaches_no_handler(
    agent_socket: tuple[Path, list[object]], line: bytes, error: str
) -> None:
    path, seen = agent_socket
    reply = await send_line(path, line)
    assert reply["ok"] is False
    assert error in reply["error"]
    assert seen == []


async def test_an_over_long_request_is_refused_and_the_socket_keeps_serving(
    agent_socket: tuple[Path, list[object]],
) -> None:
    path, seen = agent_socket
    too_long = await send_line(path, b'{"cmd": "ack", "rule": "' + b"x" * MAX_REQUEST + b'"}\n')
    assert too_long == {"ok": False, "error": f"bad request: longer than {MAX_REQUEST} bytes"}
    assert await request(path, "ack", rule="rain_1h") == {
        "ok": True,
        "rule": "rain_1h",
        "level": "red",
    }
    assert seen == [AckRequest(rule="rain_1h", by="local")]


async def test_handlers_get_typed_requests_and_replies_keep_their_json_shape(
    agent_socket: tuple[Path, list[object]],
) -> None:
    path, seen = agent_socket
    acked = await request(path, "ack", rule="rain_1h", by="technician")
    tested = await request(path, "siren_test", audible=True)
    alarms = await request(path, "alarms")
    assert acked == {"ok": True, "rule": "rain_1h", "level": "red"}
    assert tested == {"ok": True, "results": {"siren": True}}
    assert seen == [AckRequest(rule="rain_1h", by="technician"), SirenTestRequest(audible=True)]
    [entry] = alarms["history"]
    assert alarms["active"] == {"rain_1h": {"level": "red", "metrics": {"sum_1h": 51.0}}}
    assert list(entry) == ["t", "rule", "from", "to", "metric"]
    assert entry["metric"] != entry["metric"]  # NaN stays NaN, as `edge alarms` shows it
