"""A Modbus exception answer says its code, meaning, request and a hint (issue 16).

Real simulated devices over Modbus TCP; the profile a technician got wrong is a local
profile file beside the site file.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from drivers.bus_config import TcpBusConfig
from drivers.clock import ManualClock, SystemClock
from drivers.device_config import DeviceConfig
from drivers.modbus_exceptions import ModbusRequest, describe_exception, exception_hint
from drivers.poller import DevicePoller, Poller
from drivers.profiles import Table, builtin_profiles, load_profile
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.agent import edge_cli
from tests.wire import served

PROFILES = builtin_profiles()

#: A gauge profile written from a manual that numbers registers PLC-style (40001) and
#: whose water level sits in the input table where the gauge keeps it in holding.
MISTAKEN_PROFILE = """
[device]
model = "Gauge, profile written from a PLC-style manual"
default_unit_id = 2
max_registers = 16

[[channel]]
name = "total"
quantity = "rain_total"
unit = "mm"
table = "holding"
address = 40001
type = "uint16"
scale = 0.1

[[channel]]
name = "level"
quantity = "water_level"
unit = "mm"
table = "input"
address = 0
type = "uint16"
"""

SITE = """
[site]
id = "mistaken"

[[bus]]
name = "field"
kind = "tcp"
host = "127.0.0.1"
port = {port}

[[device]]
name = "gauge"
bus = "field"
profile = "gauge.toml"
"""

FC03_40001 = (
    "exception 02 (illegal data address) to FC03 read holding registers 0x9c41 (40001), 1 register"
)
FC04_0 = "exception 02 (illegal data address) to FC04 read input registers 0x0000 (0), 1 register"
PLC_HINT = (
    "address 40001 looks like PLC numbering (4xxxx, counted from 1): the profile wants "
    'table = "holding" and address = 0 (0x0000)'
)


def gauge() -> SimulatedDevice:
    return SimulatedDevice(
        PROFILES["generic_rs485_rain"], 2, SystemClock(), values={"rain_total": 4.2}
    )


def site_files(tmp_path: Path, port: int) -> Path:
    (tmp_path / "gauge.toml").write_text(MISTAKEN_PROFILE)
    site = tmp_path / "site.toml"
    site.write_text(SITE.format(port=port))
    return site


def test_each_exception_code_is_named_with_the_request_that_drew_it():
    read = ModbusRequest.read(Table.HOLDING, 0x1000, 1)
    assert describe_exception(2, read) == (
        "exception 02 (illegal data address) to FC03 read holding registers 0x1000 (4096), "
        "1 register"
    )
    meanings = {code: describe_exception(code, None) for code in (1, 2, 3, 4, 6, 99)}
    assert meanings == {
        1: "exception 01 (illegal function)",
        2: "exception 02 (illegal data address)",
        3: "exception 03 (illegal data value)",
        4: "exception 04 (server device failure)",
        6: "exception 06 (server device busy)",
        99: "exception 99 (not a standard Modbus exception code)",
    }
    coils = ModbusRequest(15, 0, 3)
    assert coils.describe() == "FC15 write multiple coils 0x0000..0x0002 (0..2), 3 bits"


@pytest.mark.parametrize(
    ("code", "request_", "hint"),
    [
        (2, ModbusRequest.read(Table.HOLDING, 40001, 2), PLC_HINT),
        (
            2,
            ModbusRequest.read(Table.INPUT, 30010, 1),
            "address 30010 looks like PLC numbering (3xxxx, counted from 1): the profile "
            'wants table = "input" and address = 9 (0x0009)',
        ),
        (
            1,
            ModbusRequest.read(Table.INPUT, 0, 4),
            "if the manual lists these as holding registers (function 03), the profile's "
            'table is "holding"; if it counts registers from 1, the address is one too high',
        ),
        (
            2,
            ModbusRequest.read(Table.HOLDING, 7, 1),
            "if the manual lists these as input registers (function 04), the profile's "
            'table is "input"; if it counts registers from 1, the address is one too high',
        ),
        (
            3,
            ModbusRequest.read(Table.HOLDING, 0, 60),
            "the device refuses a read of 60 at once: lower the profile's max_registers "
            "(or max_bits) to what its manual allows per request",
        ),
        (4, ModbusRequest.read(Table.HOLDING, 0, 1), None),
        (2, None, None),
    ],
)
def test_a_hint_points_at_the_likely_profile_mistake(code, request_, hint):
    assert exception_hint(code, request_) == hint


async def test_poll_once_names_code_meaning_request_and_hint(tmp_path: Path):
    async with served("tcp", [gauge()]) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        site = site_files(tmp_path, bus.port)
        code, out, _ = await edge_cli("poll", "--config", str(site), "--once")
        json_code, json_out, json_err = await edge_cli(
            "poll", "--config", str(site), "--once", "--json"
        )
    assert code == 1
    text = " ".join(out.split())
    assert f"gauge: answered {FC03_40001} (total), once" in text
    assert f"hint: {PLC_HINT}" in text
    assert f"gauge: answered {FC04_0} (level), once" in text
    assert 'the profile\'s table is "holding"' in text
    # Beside JSON lines the problems go to stderr: stdout stays one reading per line.
    assert json_code == 1
    assert [json.loads(line)["quality"] for line in json_out.splitlines()] == [
        ["exception"],
        ["exception"],
    ]
    assert f"gauge: answered {FC03_40001} (total), once" in " ".join(json_err.split())


async def test_an_exception_is_logged_once_per_device_then_counted(tmp_path, caplog):
    (tmp_path / "gauge.toml").write_text(MISTAKEN_PROFILE)
    profile = load_profile(tmp_path / "gauge.toml")
    async with served("tcp", [gauge()]) as (bus, _):
        config = DeviceConfig("gauge", bus.name, profile, 2, 10.0, 0.5, channels=("total",))
        poller = Poller([bus], [config], ManualClock(1_000.0))
        device: DevicePoller = poller.devices[0]
        with caplog.at_level(logging.DEBUG, logger="drivers.poller"):
            for _ in range(3):
                readings = await poller.poll_all_once()
        await poller.close()
    assert [r.quality.names() for r in readings] == [["exception"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"device gauge (unit 2) answered {FC03_40001}, so total read(s) as exception; "
        f"counted from now on without a log line; hint: {PLC_HINT}"
    ]
    (answer,) = device.health.exceptions.values()
    assert (answer.detail, answer.count, answer.channels) == (FC03_40001, 3, ("total",))


async def test_edge_status_and_the_agent_log_name_the_exception(tmp_path: Path):
    from drivers.clock import ScaledClock  # noqa: PLC0415
    from edge_agent.control import SOCKET_NAME, ControlError, ask  # noqa: PLC0415
    from edge_agent.control_messages import StatusReply, StatusRequest  # noqa: PLC0415
    from hardware_sim.harness.agent import sim_site  # noqa: PLC0415
    from hardware_sim.harness.waiting import wait_for  # noqa: PLC0415

    (tmp_path / "gauge.toml").write_text(MISTAKEN_PROFILE)
    clock = ScaledClock(20.0, origin=1_780_000_000.0, anchor=round(time.time(), 3))
    site_text = SITE + "poll_interval_s = 10\n"
    async with sim_site(tmp_path, [gauge()], site_text, clock) as site:
        agent = await site.start_agent()

        async def counted() -> bool:
            try:
                status = await ask(agent.data_dir / SOCKET_NAME, StatusRequest(), StatusReply)
            except ControlError:  # not listening yet
                return False
            answers = status.devices["gauge"].exceptions
            return bool(answers) and min(a.count for a in answers) >= 3

        await wait_for(counted, 90, "three polls answered with exceptions")
        code, out, err = await edge_cli("status", "-d", str(agent.data_dir))
        await agent.stop()
    assert code == 0, err
    lines = out.splitlines()
    assert any(line.startswith(f"gauge: answered {FC03_40001} (total), ") for line in lines)
    assert f"  hint: {PLC_HINT}" in lines
    assert any(line.startswith(f"gauge: answered {FC04_0} (level), ") for line in lines)
    log = agent.log.read_text()
    assert log.count(f"answered {FC03_40001}") == 1, log
    assert log.count(f"answered {FC04_0}") == 1, log


async def test_scan_names_the_exception_a_device_answers():
    failing = gauge()
    failing.faults.exception_code = 4
    async with served("tcp", [failing]) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        code, out, err = await edge_cli(
            "scan", "--tcp", f"127.0.0.1:{bus.port}", "--ids", "1-3", "--json", "--timeout", "0.1"
        )
    assert code == 0, err
    assert [(h["unit_id"], h["answer"], h["matches"]) for h in json.loads(out)] == [
        (2, "exception 04 (server device failure)", [])
    ]


async def test_live_json_lines_keep_stdout_clean_and_log_the_exception_once(tmp_path: Path):
    async with served("tcp", [gauge()]) as (bus, _):
        assert isinstance(bus, TcpBusConfig)
        site = site_files(tmp_path, bus.port)
        site.write_text(site.read_text() + "poll_interval_s = 0.5\ntimeout_s = 0.2\n")
        code, out, err = await edge_cli("poll", "--config", str(site), "--json", "--duration", "2")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) >= 4  # two channels, at least two polls
    assert {r["channel"] for r in lines} == {"gauge.total", "gauge.level"}
    assert err.count(f"answered {FC03_40001}") == 1
    assert err.count(f"answered {FC04_0}") == 1
