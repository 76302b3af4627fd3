"""The control socket: requests are validated into their models; a bad one gets a clear error.

A real Unix socket served by ``serve_control``; the handlers are small stand-ins for the
agent's (the agent's own are exercised end to end in test_agent_e2e.py). The ``edge``
side sends typed requests and reads typed replies (``ask``), also through the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.control import (
    MAX_REQUEST,
    SOCKET_NAME,
    ControlError,
    ControlRefusedError,
    ask,
    exchange,
    serve_control,
)
from edge_agent.control_messages import (
    AckReply,
    AckRequest,
    AlarmHistoryEntry,
    AlarmsReply,
    AlarmsRequest,
    AlarmStatus,
    ErrorReply,
    SirenTestReply,
    SirenTestRequest,
    StatusReply,
)
from hardware_sim.harness.agent import edge_cli
from protocol.events import StandingForecast


@pytest.fixture
async def agent_socket(tmp_path: Path) -> AsyncIterator[tuple[Path, list[object]]]:
    seen: list[object] = []

    async def ack(req: AckRequest) -> AckReply | ErrorReply:
        seen.append(req)
        if req.rule == "nope":
            return ErrorReply(error="no rule 'nope' (rules: rain_1h)")
        return AckReply(rule=req.rule, level="red")

    async def siren_test(req: SirenTestRequest) -> dict[str, Any]:
        seen.append(req)
        if req.audible:
            return {"ok": False, "detail": "alarm level red is active"}
        return {"ok": True, "results": {"siren": True, "strobe": "no answer: timeout"}}

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
    assert await ask(path, AckRequest(rule="rain_1h"), AckReply) == AckReply(
        rule="rain_1h", level="red"
    )
    assert seen == [AckRequest(rule="rain_1h", by="local")]


async def test_handlers_get_typed_requests_and_replies_keep_their_json_shape(
    agent_socket: tuple[Path, list[object]],
) -> None:
    path, seen = agent_socket
    acked = json.loads(await exchange(path, AckRequest(rule="rain_1h", by="technician")))
    tested = json.loads(await exchange(path, SirenTestRequest(audible=False)))
    alarms = json.loads(await exchange(path, AlarmsRequest()))
    assert acked == {"ok": True, "rule": "rain_1h", "level": "red"}
    assert tested == {"ok": True, "results": {"siren": True, "strobe": "no answer: timeout"}}
    assert seen == [AckRequest(rule="rain_1h", by="technician"), SirenTestRequest(audible=False)]
    [entry] = alarms["history"]
    assert alarms["active"] == {"rain_1h": {"level": "red", "metrics": {"sum_1h": 51.0}}}
    assert list(entry) == ["t", "rule", "from", "to", "metric"]
    assert entry["metric"] != entry["metric"]  # NaN stays NaN, as `edge alarms` shows it


async def test_edge_reads_each_reply_into_its_model_and_a_refusal_carries_the_agents_words(
    agent_socket: tuple[Path, list[object]],
) -> None:
    path, seen = agent_socket
    alarms = await ask(path, AlarmsRequest(), AlarmsReply)
    tested = await ask(path, SirenTestRequest(), SirenTestReply)
    refused_test = await ask(path, SirenTestRequest(audible=True), SirenTestReply)
    with pytest.raises(ControlRefusedError, match=r"^no rule 'nope' \(rules: rain_1h\)$"):
        await ask(path, AckRequest(rule="nope"), AckReply)
    assert alarms.active == {"rain_1h": AlarmStatus(level="red", metrics={"sum_1h": 51.0})}
    [entry] = alarms.history
    assert (entry.t, entry.rule, entry.model_extra) == (
        1.5,
        "rain_1h",
        {"from": "normal", "to": "red", "metric": entry.model_extra["metric"]},
    )
    assert tested == SirenTestReply(
        ok=True, results={"siren": True, "strobe": "no answer: timeout"}
    )
    assert refused_test.wire() == {"ok": False, "detail": "alarm level red is active"}
    assert seen[-1] == AckRequest(rule="nope")


async def test_a_reply_of_the_wrong_shape_or_no_agent_is_a_clear_control_error(
    agent_socket: tuple[Path, list[object]], tmp_path: Path
) -> None:
    path, _seen = agent_socket
    with pytest.raises(ControlError, match=r"reply is not a AckReply: rule: Field required"):
        await ask(path, SirenTestRequest(), AckReply)
    with pytest.raises(ControlError, match="no agent is running with its control socket at"):
        await ask(tmp_path / "elsewhere.sock", AlarmsRequest(), AlarmsReply)


async def test_the_edge_cli_sends_typed_requests_and_prints_the_typed_replies(
    agent_socket: tuple[Path, list[object]],
) -> None:
    path, seen = agent_socket
    data_dir = str(path.parent)
    acked = await edge_cli("ack", "rain_1h", "-d", data_dir, "--by", "technician")
    refused = await edge_cli("ack", "nope", "-d", data_dir)
    empty = await edge_cli("ack", "", "-d", data_dir)
    tested = await edge_cli("siren", "test", "-d", data_dir)
    audible = await edge_cli("siren", "test", "--audible", "-d", data_dir)
    alarms = await edge_cli("alarms", "-d", data_dir, "--json")
    assert acked[:2] == (0, "acknowledged rain_1h; its level is now red\n")
    assert refused[0] == 2
    assert "no rule 'nope' (rules: rain_1h)" in refused[2]
    assert empty[0] == 2
    assert "edge ack: rule: String should have at least 1 character" in empty[2]
    assert tested[0] == 0
    assert strict_json(tested[1]) == {
        "ok": True,
        "results": {"siren": True, "strobe": "no answer: timeout"},
    }
    assert audible[0] == 2
    assert "alarm level red is active" in audible[2]
    assert alarms[0] == 0
    assert strict_json(alarms[1])["active"] == {
        "rain_1h": {"level": "red", "metrics": {"sum_1h": 51.0}}
    }
    assert seen == [  # the empty rule never left the CLI
        AckRequest(rule="rain_1h", by="technician"),
        AckRequest(rule="nope", by="local"),
        SirenTestRequest(audible=False),
        SirenTestRequest(audible=True),
    ]


NOW = 1_796_428_800.0  # 2026-12-05 00:00 UTC
SLOPE_FORECAST = StandingForecast(
    lead_h=30.0,
    failure_t=NOW + 30 * 3600,
    failure_t_low=NOW + 27 * 3600,
    failure_t_high=NOW + 34 * 3600,
    alpha=2.0,
    velocity_mm_day=12.0,
    evidence=410.0,
    at=NOW,
)


def status_reply(now: float) -> StatusReply:
    return StatusReply(
        site="slope-village", version="test", uptime_s=60.0, now=now, level="red",
        alarm_backend="numba", buses={}, devices={}, channels={}, actuators={},
        store={"backlog": 0},
        alarms={
            "rain_1h": AlarmStatus(level="red", metrics={"sum_1h": 51.0}),
            # the latest evaluation failed its evidence test; the standing forecast is older
            "slope_forecast": AlarmStatus(
                level="red",
                metrics={"lead_h": float("inf"), "confirmed_h": float("nan")},
                forecast=SLOPE_FORECAST,
            ),
        },
    )  # fmt: skip


async def status_as_edge_shows(
    data_dir: Path, reply: StatusReply, *more: str
) -> tuple[int, str, str]:
    """`edge status` against a control socket that answers ``reply``."""

    async def status(_req: object) -> StatusReply:
        return reply

    server = await serve_control(data_dir / SOCKET_NAME, {"status": status})
    try:
        return await edge_cli("status", "-d", str(data_dir), *more)
    finally:
        server.close()
        await server.wait_closed()


async def test_edge_status_shows_a_raised_slope_rules_standing_forecast_and_json_carries_it(
    tmp_path: Path,
) -> None:
    """The table names the failure time, its interval, the time left and when it was made."""
    reply = status_reply(NOW + 6 * 3600)  # six hours after the forecast was made
    code, shown, err = await status_as_edge_shows(tmp_path, reply)
    json_code, as_json, _ = await status_as_edge_shows(tmp_path, reply, "--json")
    assert (code, json_code) == (0, 0), err
    assert "failure forecasts standing" in shown
    row = next(line for line in shown.splitlines() if "slope_forecast" in line and "12-06" in line)
    assert "12-06 06:00" in row  # the failure, 30 h after it was made
    assert "12-06 03:00 to 10:00" in row  # its 95 % interval
    assert "24.0 h" in row  # left now, six hours on
    assert "12-05 00:00" in row  # when it was made
    alarms = strict_json(as_json)["alarms"]
    assert "forecast" not in alarms["rain_1h"]
    assert alarms["slope_forecast"]["forecast"]["failure_t"] == NOW + 30 * 3600
    assert alarms["slope_forecast"]["forecast"]["at"] == NOW
    # no failure in sight and too little data: strings, as on the fleet's wire
    assert alarms["slope_forecast"]["metrics"] == {"lead_h": "inf", "confirmed_h": "nan"}
    shown_back = StatusReply.model_validate(strict_json(as_json))
    assert shown_back.alarms["slope_forecast"].metrics["lead_h"] == float("inf")
    assert math.isnan(shown_back.alarms["slope_forecast"].metrics["confirmed_h"])
    assert shown_back.alarms["rain_1h"] == status_reply(NOW).alarms["rain_1h"]
    assert shown_back.alarms["slope_forecast"].forecast == SLOPE_FORECAST


def strict_json(text: str) -> Any:
    """``text`` parsed as a strict parser (jq, JavaScript) would: no NaN or Infinity."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def test_edge_status_shows_no_forecast_table_while_no_forecast_stands(tmp_path: Path) -> None:
    quiet = {"rain_1h": AlarmStatus(level="normal", metrics={"sum_1h": 0.0})}
    reply = status_reply(NOW).model_copy(update={"alarms": quiet})
    code, shown, err = await status_as_edge_shows(tmp_path, reply)
    assert code == 0, err
    assert "rain_1h" in shown
    assert "failure forecasts" not in shown


async def test_edge_status_shows_a_forecast_time_no_wire_carries_as_unknown(
    tmp_path: Path,
) -> None:
    """A reply from a faulty agent (a failure 10**15 s on) is shown as unknown, not a crash."""
    far = SLOPE_FORECAST.model_copy(update={"failure_t": 1e15, "failure_t_high": 1e15})
    alarms = {"slope_forecast": AlarmStatus(level="red", metrics={}, forecast=far)}
    reply = status_reply(NOW).model_copy(update={"alarms": alarms})
    code, shown, err = await status_as_edge_shows(tmp_path, reply)
    assert code == 0, err
    row = next(
        line for line in shown.splitlines() if line.startswith("│ slope_forecast") and "—" in line
    )
    assert row.count("—") == 3  # the failure, its interval and the time left: unknown
    assert "12-05 00:00" in row  # when it was made, a real time
