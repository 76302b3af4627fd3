"""The poller against simulated devices over real Modbus TCP and RTU over a socat pty."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import defaultdict
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from drivers.bus_config import TcpBusConfig
from drivers.clock import ManualClock, SystemClock
from drivers.device_config import DeviceConfig
from drivers.model import Quality, Reading
from drivers.poller import Poller
from drivers.profiles import builtin_profiles, load_profile
from hardware_sim.device import SimulatedDevice
from hardware_sim.harness.waiting import wait_for
from hardware_sim.server import serve_tcp
from tests.wire import TRANSPORTS, served

ALL_TYPES = load_profile(Path(__file__).parent / "data" / "all_types.toml")
PROFILES = builtin_profiles()

VALUES = {
    "int16_big": -12345,
    "int16_little": 321,
    "uint16_big": 65000,
    "uint16_little": 258,
    "int32_big_big": -123456789,
    "int32_big_little": 987654,
    "int32_little_big": -2,
    "int32_little_little": 2_000_000_000,
    "uint32_big_big": 4_000_000_000,
    "uint32_big_little": 0x12345678,
    "uint32_little_big": 65536,
    "uint32_little_little": 0x12345678,
    "float32_big_big": 1234.5625,
    "float32_big_little": -0.15625,
    "float32_little_big": 3.0e7,
    "float32_little_little": -273.25,
    "scaled": 21.5,
    "flag": 1.0,
    "input_flag": 1.0,
}


def device_config(name, profile, unit_id, **kw) -> DeviceConfig:
    kw.setdefault("poll_interval_s", 1.0)
    kw.setdefault("timeout_s", 0.3)
    return DeviceConfig(name=name, bus="field", profile=profile, unit_id=unit_id, **kw)


def by_channel(readings: list[Reading]) -> dict[str, Reading]:
    return {r.channel_id.split(".", 1)[1]: r for r in readings}


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_every_data_type_and_word_order_decodes_to_the_engineering_value(kind):
    clock = SystemClock()
    device = SimulatedDevice(ALL_TYPES, 5, clock, values=VALUES)
    async with served(kind, [device]) as (bus, _):
        poller = Poller([bus], [device_config("dev", ALL_TYPES, 5)], clock)
        readings = by_channel(await poller.poll_all_once())
        await poller.close()
    assert set(readings) == set(VALUES)
    for name, expected in VALUES.items():
        assert readings[name].quality == Quality.OK, name
        assert readings[name].value == pytest.approx(expected, rel=1e-7), name


async def test_wire_layout_is_what_the_profile_says():
    # Read the raw registers with a plain client: the sim must put CDAB/BADC on the wire.
    device = SimulatedDevice(ALL_TYPES, 5, SystemClock(), values=VALUES)
    async with served("tcp", [device]) as (bus, _):
        client = AsyncModbusTcpClient("127.0.0.1", port=bus.port, timeout=1, retries=0)
        await client.connect()
        little_little = ALL_TYPES.channel("uint32_little_little").address
        big_little = ALL_TYPES.channel("uint32_big_little").address
        a = await client.read_holding_registers(little_little, count=2, device_id=5)
        b = await client.read_holding_registers(big_little, count=2, device_id=5)
        client.close()
    assert a.registers == [0x7856, 0x3412]
    assert b.registers == [0x3412, 0x7856]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_reads_are_coalesced_into_the_fewest_requests(kind):
    clock = SystemClock()
    gauge = SimulatedDevice(PROFILES["dfrobot_sen0575"], 192, clock, values={"window_hours": 1})
    async with served(kind, [gauge]) as (bus, _):
        full = device_config("rain", PROFILES["dfrobot_sen0575"], 192)
        subset = device_config(
            "rain2", PROFILES["dfrobot_sen0575"], 192, channels=("rain_total", "tips")
        )
        for config in (full, subset):
            poller = Poller([bus], [config], clock)
            await poller.poll_all_once()
            await poller.close()
    # Seven adjacent input registers in one FC04 (the write-only holding registers are
    # never read); then the subset: registers 8..11 in one FC04.
    assert gauge.request_log == [(4, 6, 7), (4, 8, 4)]


async def test_a_dead_slave_does_not_hold_up_the_live_devices_on_its_bus():
    clock = SystemClock()
    interval, dead_timeout = 0.5, 0.3
    rain = SimulatedDevice(PROFILES["generic_rs485_rain"], 2, clock)
    radar = SimulatedDevice(PROFILES["hlk_ld8001h"], 1, clock)
    tilt = SimulatedDevice(PROFILES["inclinometer_dual_axis"], 3, clock)
    tilt.faults.dead = True
    polls: dict[str, list[float]] = defaultdict(list)

    def sink(readings: list[Reading]) -> None:
        device = readings[0].channel_id.split(".")[0]
        polls[device].append(readings[0].timestamp)

    async with served("rtu", [rain, radar, tilt]) as (bus, _):
        configs = [
            device_config("rain", rain.profile, 2, poll_interval_s=interval, timeout_s=0.2),
            device_config("radar", radar.profile, 1, poll_interval_s=interval, timeout_s=0.2),
            device_config(
                "tilt",
                tilt.profile,
                3,
                poll_interval_s=interval,
                timeout_s=dead_timeout,
                retries=0,
                backoff_max_s=interval,
            ),
        ]
        poller = Poller([bus], configs, clock, sink)
        task = asyncio.create_task(poller.run())
        await wait_for(lambda: min(len(polls["rain"]), len(polls["radar"])) >= 10, within_s=15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(polls["tilt"]) >= 3
    assert all(
        r.quality == Quality.TIMEOUT
        for r in poller.latest.values()
        if r.channel_id.startswith("tilt.")
    )
    for device in ("rain", "radar"):
        gaps = [b - a for a, b in zip(polls[device], polls[device][1:], strict=False)]
        # Each live device keeps its interval, late by at most the dead slave's timeout
        # (plus scheduling slack on a busy machine).
        assert max(gaps) <= interval + dead_timeout + 0.1, (device, gaps)


@pytest.mark.parametrize(
    ("kind", "fault", "flag"),
    [
        ("tcp", {"dead": True}, Quality.TIMEOUT),
        ("rtu", {"dead": True}, Quality.TIMEOUT),
        ("tcp", {"exception_code": 4}, Quality.EXCEPTION),
        ("rtu", {"exception_code": 2}, Quality.EXCEPTION),
        ("rtu", {"corrupt_crc": True}, Quality.CRC_ERROR),
    ],
)
async def test_communication_faults_become_quality_flags_and_polling_recovers(kind, fault, flag):
    clock = ManualClock(1_000_000.0)
    gauge = SimulatedDevice(PROFILES["generic_rs485_rain"], 2, clock, values={"rain_total": 12.3})
    async with served(kind, [gauge]) as (bus, _):
        poller = Poller([bus], [device_config("rain", gauge.profile, 2, timeout_s=0.2)], clock)
        first = by_channel(await poller.poll_all_once())
        for name, value in fault.items():
            setattr(gauge.faults, name, value)
        faulty = by_channel(await poller.poll_all_once())
        gauge.faults.dead = False
        gauge.faults.exception_code = None
        gauge.faults.corrupt_crc = False
        clock.advance(60)
        recovered = by_channel(await poller.poll_all_once())
        await poller.close()
    assert first["rain_total"].quality == Quality.OK
    assert {r.quality for r in faulty.values()} == {flag}
    assert all(math.isnan(r.value) for r in faulty.values())
    assert recovered["rain_total"].quality == Quality.OK
    assert recovered["rain_total"].value == pytest.approx(12.3)
    health = poller.devices[0].health
    assert health.faults[flag.names()[0]] == len(faulty)
    assert health.consecutive_failures == 0


async def test_stuck_spiking_and_out_of_range_values_are_flagged(tmp_path):
    clock = ManualClock(1_000_000.0)
    radar = SimulatedDevice(
        PROFILES["hlk_ld8001h"],
        1,
        clock,
        signals={"water_level": lambda t: 1500.0 + (t - 1_000_000.0) * 0.5},
    )
    async with served("tcp", [radar]) as (bus, _):
        poller = Poller(
            [bus], [device_config("radar", radar.profile, 1, channels=("water_level",))], clock
        )

        async def level(step: float = 5.0) -> Reading:
            clock.advance(step)
            return (await poller.poll_all_once())[0]

        assert (await level()).quality == Quality.OK
        radar.faults.spike_magnitude = 5000.0
        radar.faults.spike_probability = 1.0
        spiked = await level()
        radar.faults.spike_probability = 0.0
        after_spike = await level()
        radar.faults.stuck = True
        stuck_flags = [(await level(60)).quality for _ in range(35)]  # 35 min > stuck_after_s
        radar.faults.stuck = False
        moving = await level()
        await poller.close()
    assert spiked.quality & Quality.SPIKE
    assert after_spike.quality == Quality.OK
    assert stuck_flags[0] == Quality.OK
    assert stuck_flags[-1] == Quality.STUCK
    assert moving.quality & Quality.STUCK == Quality.OK


async def test_value_outside_the_valid_range_is_flagged():
    clock = ManualClock(1_000_000.0)
    tilt = SimulatedDevice(
        PROFILES["inclinometer_dual_axis"], 1, clock, values={"tilt_x": 95.0, "tilt_y": 1.5}
    )
    async with served("tcp", [tilt]) as (bus, _):
        poller = Poller([bus], [device_config("tilt", tilt.profile, 1)], clock)
        readings = by_channel(await poller.poll_all_once())
        await poller.close()
    assert readings["tilt_x"].quality == Quality.OUT_OF_RANGE
    assert readings["tilt_x"].value == pytest.approx(95.0)
    assert readings["tilt_y"].quality == Quality.OK


async def test_outage_window_is_silent_only_inside_the_window():
    clock = ManualClock(1_000_000.0)
    gauge = SimulatedDevice(PROFILES["generic_rs485_rain"], 2, clock, values={"rain_total": 5})
    gauge.faults.outages = [(1_000_100.0, 1_000_200.0)]
    async with served("tcp", [gauge]) as (bus, _):
        config = device_config("rain", gauge.profile, 2, timeout_s=0.2, channels=("rain_total",))
        poller = Poller([bus], [config], clock)
        qualities = []
        for _ in range(5):
            clock.advance(60)  # polls at +60, +120, +180, +240, +300
            qualities.append({r.quality for r in await poller.poll_all_once()})
        await poller.close()
    assert qualities == [
        {Quality.OK},
        {Quality.TIMEOUT},
        {Quality.TIMEOUT},
        {Quality.OK},
        {Quality.OK},
    ]


async def test_polling_survives_an_unreachable_gateway_and_recovers_when_it_returns():
    clock = SystemClock()
    gauge = SimulatedDevice(PROFILES["generic_rs485_rain"], 2, clock, values={"rain_total": 7})
    async with served("tcp", [gauge]) as (bus, _):
        port = bus.port
    assert port is not None
    got: list[Reading] = []
    config = device_config(
        "rain",
        gauge.profile,
        2,
        poll_interval_s=0.2,
        timeout_s=0.1,
        backoff_max_s=0.4,
        channels=("rain_total",),
    )
    poller = Poller([TcpBusConfig("field", "127.0.0.1", port)], [config], clock, got.extend)
    task = asyncio.create_task(poller.run())
    try:
        await wait_for(
            lambda: any(r.quality == Quality.NO_CONNECTION for r in got), 10, "no connection"
        )
        async with serve_tcp([gauge], port=port):
            await wait_for(lambda: got[-1].quality == Quality.OK, 10, "a good reading again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert got[-1].value == pytest.approx(7)


def test_importing_the_bus_owner_leaves_pymodbus_logging_as_it_was() -> None:
    # A fresh interpreter: importing drivers.bus must not change another library's logger.
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import logging; logging.getLogger('pymodbus').setLevel(logging.INFO); "
        "import drivers.bus; print(logging.getLogger('pymodbus').level)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(logging.INFO)
