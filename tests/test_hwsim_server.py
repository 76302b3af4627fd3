"""Simulated devices answer real pymodbus clients over TCP and over RTU on a socat pty pair."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Literal

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import ModbusPDU

from drivers.clock import ManualClock
from drivers.codec import decode
from drivers.profiles import DeviceProfile, Table, builtin_profiles
from hardware_sim import (
    DeviceFaults,
    PtyPair,
    SimulatedBus,
    SimulatedDevice,
    serve_rtu,
    serve_tcp,
)

TIMEOUT = 0.25
T0 = 1_726_552_800.0  # 2024-09-17T06:00:00Z

Client = AsyncModbusTcpClient | AsyncModbusSerialClient
Link = Callable[
    [Sequence[SimulatedDevice]], AbstractAsyncContextManager[tuple[SimulatedBus, Client]]
]


def profile(name: str) -> DeviceProfile:
    return builtin_profiles()[name]


@asynccontextmanager
async def modbus(
    kind: Literal["tcp", "rtu"],
    devices: Sequence[SimulatedDevice],
    pty: PtyPair | None = None,
    trace_packet: Callable[[bool, bytes], bytes] | None = None,
) -> AsyncIterator[tuple[SimulatedBus, Client]]:
    """Serve ``devices`` on one link and connect a real client to it."""
    client: Client
    if kind == "tcp":
        async with serve_tcp(devices) as bus:
            assert bus.port
            client = AsyncModbusTcpClient("127.0.0.1", port=bus.port, timeout=TIMEOUT, retries=0)
            assert await client.connect()
            try:
                yield bus, client
            finally:
                client.close()
    else:
        assert pty is not None
        async with serve_rtu(devices, str(pty.device_end)) as bus:
            client = AsyncModbusSerialClient(
                port=str(pty.agent_end),
                baudrate=9600,
                framer=FramerType.RTU,
                timeout=TIMEOUT,
                retries=0,
                trace_packet=trace_packet,
            )
            assert await client.connect()
            try:
                yield bus, client
            finally:
                client.close()


@pytest.fixture(params=["tcp", "rtu"])
def link(request: pytest.FixtureRequest) -> Link:
    kind: Literal["tcp", "rtu"] = request.param
    pty = request.getfixturevalue("pty_pair") if kind == "rtu" else None
    return lambda devices: modbus(kind, devices, pty)


async def read(client: Client, device: SimulatedDevice, channel_name: str) -> ModbusPDU:
    channel = device.profile.channel(channel_name)
    unit, address, width = device.unit_id, channel.address, channel.width
    match channel.table:
        case Table.HOLDING:
            return await client.read_holding_registers(address, count=width, device_id=unit)
        case Table.INPUT:
            return await client.read_input_registers(address, count=width, device_id=unit)
        case Table.COIL:
            return await client.read_coils(address, count=1, device_id=unit)
        case Table.DISCRETE:
            return await client.read_discrete_inputs(address, count=1, device_id=unit)


async def read_value(client: Client, device: SimulatedDevice, channel_name: str) -> float:
    channel = device.profile.channel(channel_name)
    response = await read(client, device, channel_name)
    assert not response.isError(), response
    if channel.table.is_bits:
        return float(response.bits[0])
    raw = decode(response.registers, channel.dtype, channel.word_order, channel.byte_order)
    return channel.to_engineering(raw)


async def test_bound_channels_decode_to_the_signal_at_the_simulated_time(link: Link) -> None:
    clock = ManualClock(T0)
    signals = {
        "rain": lambda t: 0.0123 * (t - T0),
        "crack": lambda t: -3.2 - 0.0007 * (t - T0),
        "level": lambda t: 1.25 + 1e-4 * (t - T0),
        "tilt": lambda t: -0.5 - 1e-5 * (t - T0),
    }
    rain = SimulatedDevice(profile("dfrobot_sen0575"), 192, clock, {"rain_total": signals["rain"]})
    crack = SimulatedDevice(
        profile("wire_extensometer"), 3, clock, {"crack_width": signals["crack"]}
    )
    level = SimulatedDevice(
        profile("pressure_level_transmitter"), 5, clock, {"water_level": signals["level"]}
    )
    tilt = SimulatedDevice(profile("inclinometer_dual_axis"), 1, clock, {"tilt_x": signals["tilt"]})
    cases = [
        (rain, "rain_total", signals["rain"]),
        (crack, "crack_width", signals["crack"]),
        (level, "water_level", signals["level"]),
        (tilt, "tilt_x", signals["tilt"]),
    ]
    async with link([rain, crack, level, tilt]) as (_, client):
        for step in (0.0, 3600.0, 7321.5):
            clock.advance(step)
            for device, name, signal in cases:
                channel = device.profile.channel(name)
                expected = signal(clock.now())
                got = await read_value(client, device, name)
                if channel.dtype == "float32":
                    assert got == pytest.approx(expected, rel=1e-6)
                else:
                    assert abs(got - expected) <= abs(channel.scale) / 2 + 1e-12


async def test_requests_are_counted_by_function_code(link: Link) -> None:
    clock = ManualClock(T0)
    radar = SimulatedDevice(profile("hlk_ld8001h"), 1, clock, {"water_level": lambda t: 800.0})
    relays = SimulatedDevice(profile("relay_module_8ch"), 10, clock)
    async with link([radar, relays]) as (_, client):
        for _ in range(3):
            await client.read_holding_registers(3, count=1, device_id=1)
        await client.read_holding_registers(0x07D4, count=1, device_id=1)
        await client.write_register(5, 350, device_id=1)
        await client.read_coils(0, count=8, device_id=10)
        await client.write_coil(0, True, device_id=10)
        await client.read_discrete_inputs(0, count=2, device_id=10)

    assert radar.requests == Counter({3: 4, 6: 1})
    assert radar.request_log == [(3, 3, 1)] * 3 + [(3, 0x07D4, 1), (6, 5, 1)]
    assert relays.requests == Counter({1: 1, 5: 1, 2: 1})
    assert relays.request_log == [(1, 0, 8), (5, 0, 1), (2, 0, 2)]


async def test_requests_to_unmapped_addresses_are_counted_and_refused(link: Link) -> None:
    radar = SimulatedDevice(profile("hlk_ld8001h"), 1, ManualClock(T0))
    async with link([radar]) as (_, client):
        gap = await client.read_holding_registers(1, count=3, device_id=1)
        read_only = await client.write_register(3, 1234, device_id=1)

    assert gap.isError()
    assert gap.exception_code == 2
    assert read_only.isError()
    assert read_only.exception_code == 2
    assert radar.request_log == [(3, 1, 3), (6, 3, 1)]


async def test_coil_changes_are_logged_in_order_and_power_cycle_drops_them(link: Link) -> None:
    clock = ManualClock(T0)
    relays = SimulatedDevice(profile("relay_module_8ch"), 10, clock)
    async with link([relays]) as (_, client):
        await client.write_coil(0, True, device_id=10)
        clock.advance(30.0)
        await client.write_coils(0, [False, True, True], device_id=10)
        await client.write_coils(0, [False, True, True], device_id=10)
        on = await client.read_coils(0, count=8, device_id=10)
        siren_on_before_cycle = relays.coil(1)
        relays.power_cycle()
        off = await client.read_coils(0, count=8, device_id=10)

    assert [(c.sim_time, c.address, c.value) for c in relays.coil_log] == [
        (T0, 0, True),
        (T0 + 30, 0, False),
        (T0 + 30, 1, True),
        (T0 + 30, 2, True),
        (T0 + 30, 1, False),
        (T0 + 30, 2, False),
    ]
    wall_times = [c.wall_time for c in relays.coil_log]
    assert wall_times == sorted(wall_times)
    assert list(on.bits) == [False, True, True, False, False, False, False, False]
    assert siren_on_before_cycle
    assert list(off.bits) == [False] * 8


async def test_written_registers_read_back_until_a_power_cycle(link: Link) -> None:
    radar = SimulatedDevice(
        profile("hlk_ld8001h"), 1, ManualClock(T0), values={"install_height": 400}
    )
    async with link([radar]) as (_, client):
        await client.write_register(5, 350, device_id=1)
        written = await read_value(client, radar, "install_height")
        radar.power_cycle()
        after_cycle = await read_value(client, radar, "install_height")

    assert written == 350
    assert after_cycle == 400


async def test_clearing_a_bound_rain_counter_restarts_it_from_zero(link: Link) -> None:
    clock = ManualClock(T0)
    gauge = SimulatedDevice(
        profile("generic_rs485_rain"),
        2,
        clock,
        {"rain_total": lambda t: 50.0 + (t - T0) / 360.0},
    )
    async with link([gauge]) as (_, client):
        before = await read_value(client, gauge, "rain_total")
        await client.write_register(0, 0, device_id=2)
        cleared = await read_value(client, gauge, "rain_total")
        clock.advance(3600.0)
        an_hour_later = await read_value(client, gauge, "rain_total")

    assert before == pytest.approx(50.0)
    assert cleared == 0.0
    assert an_hour_later == pytest.approx(10.0)


async def test_dead_device_stays_silent_and_ignores_writes(link: Link) -> None:
    relays = SimulatedDevice(profile("relay_module_8ch"), 10, ManualClock(T0))
    relays.faults.dead = True
    async with link([relays]) as (_, client):
        with pytest.raises(ModbusIOException):
            await client.write_coil(0, True, device_id=10)
        relays.faults.dead = False
        alive = await client.read_coils(0, count=1, device_id=10)

    assert relays.coil_log == []
    assert list(alive.bits)[:1] == [False]
    assert relays.request_log == [(1, 0, 1)]


async def test_unknown_unit_id_stays_silent_while_known_units_answer(link: Link) -> None:
    radar = SimulatedDevice(profile("hlk_ld8001h"), 1, ManualClock(T0))
    async with link([radar]) as (_, client):
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(3, count=1, device_id=7)
        known = await client.read_holding_registers(3, count=1, device_id=1)

    assert not known.isError()
    assert radar.request_log == [(3, 3, 1)]


@pytest.mark.parametrize("code", [4, 6])
async def test_exception_fault_answers_every_request_with_that_code(code: int) -> None:
    relays = SimulatedDevice(profile("relay_module_8ch"), 10, ManualClock(T0))
    relays.faults.exception_code = code
    async with modbus("tcp", [relays]) as (_, client):
        read_reply = await client.read_coils(0, count=8, device_id=10)
        write_reply = await client.write_coil(0, True, device_id=10)

    assert read_reply.isError()
    assert read_reply.exception_code == code
    assert write_reply.isError()
    assert write_reply.exception_code == code
    assert relays.coil_log == []
    assert relays.request_log == [(1, 0, 8), (5, 0, 1)]


async def test_corrupt_crc_reaches_the_client_but_is_not_a_valid_response(
    pty_pair: PtyPair,
) -> None:
    received: list[bytes] = []

    def capture(sending: bool, data: bytes) -> bytes:
        if not sending:
            received.append(bytes(data))
        return data

    gauge = SimulatedDevice(profile("generic_rs485_rain"), 2, ManualClock(T0))
    gauge.faults.corrupt_crc = True
    async with modbus("rtu", [gauge], pty_pair, trace_packet=capture) as (_, client):
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(0, count=1, device_id=2)
        garbled = received[-1]
        gauge.faults.corrupt_crc = False
        healthy = await client.read_holding_registers(0, count=1, device_id=2)

    assert garbled[0] == 2
    assert not FramerRTU.check_CRC(garbled[:-2], int.from_bytes(garbled[-2:], "big"))
    assert not healthy.isError()
    assert gauge.request_log == [(3, 0, 1), (3, 0, 1)]


async def test_corrupt_crc_changes_nothing_on_modbus_tcp() -> None:
    gauge = SimulatedDevice(profile("generic_rs485_rain"), 2, ManualClock(T0))
    gauge.faults.corrupt_crc = True
    async with modbus("tcp", [gauge]) as (_, client):
        reply = await client.read_holding_registers(0, count=1, device_id=2)

    assert not reply.isError()


async def test_stuck_device_repeats_the_value_from_when_the_fault_began(link: Link) -> None:
    clock = ManualClock(T0)
    gauge = SimulatedDevice(
        profile("generic_rs485_rain"), 2, clock, {"rain_total": lambda t: (t - T0) / 100.0}
    )
    async with link([gauge]) as (_, client):
        first = await read_value(client, gauge, "rain_total")
        clock.advance(1000.0)
        gauge.faults.stuck = True
        clock.advance(1000.0)
        frozen = [await read_value(client, gauge, "rain_total")]
        clock.advance(500.0)
        frozen.append(await read_value(client, gauge, "rain_total"))
        gauge.faults.stuck = False
        released = await read_value(client, gauge, "rain_total")

    assert first == 0.0
    assert frozen == [pytest.approx(10.0), pytest.approx(10.0)]
    assert gauge.value("rain_total") == pytest.approx(25.0)
    assert released == pytest.approx(25.0)


async def test_spikes_follow_the_seed() -> None:
    clock = ManualClock(T0)
    gauges = [
        SimulatedDevice(
            profile("generic_rs485_rain"),
            unit,
            clock,
            {"rain_total": lambda t: 10.0},
            faults=DeviceFaults(spike_probability=0.5, spike_magnitude=100.0, seed=seed),
        )
        for unit, seed in ((2, 1234), (3, 1234), (4, 99))
    ]

    async def pattern(gauge: SimulatedDevice) -> list[float]:
        return [round(await read_value(client, gauge, "rain_total"), 1) for _ in range(16)]

    async with modbus("tcp", gauges) as (_, client):
        first, twin, other = [await pattern(g) for g in gauges]
        gauges[0].faults.seed = 1234
        replay = await pattern(gauges[0])

    assert set(first) == {10.0, 110.0}
    assert twin == first
    assert replay == first
    assert other != first


async def test_outage_window_silences_the_device_only_inside_it(link: Link) -> None:
    clock = ManualClock(T0)
    radar = SimulatedDevice(
        profile("hlk_ld8001h"),
        1,
        clock,
        faults=DeviceFaults(outages=[(T0 + 100.0, T0 + 200.0)]),
    )
    async with link([radar]) as (_, client):
        before = await client.read_holding_registers(3, count=1, device_id=1)
        clock.advance(150.0)
        with pytest.raises(ModbusIOException):
            await client.read_holding_registers(3, count=1, device_id=1)
        clock.advance(100.0)
        after = await client.read_holding_registers(3, count=1, device_id=1)

    assert not before.isError()
    assert not after.isError()
    assert radar.request_log == [(3, 3, 1), (3, 3, 1)]


async def test_bus_refuses_two_devices_with_one_unit_id() -> None:
    clock = ManualClock(T0)
    with pytest.raises(ValueError, match="unit id 1"):
        SimulatedBus(
            [
                SimulatedDevice(profile("hlk_ld8001h"), 1, clock),
                SimulatedDevice(profile("inclinometer_dual_axis"), 1, clock),
            ]
        )


async def test_tcp_bus_releases_its_port_on_exit() -> None:
    radar = SimulatedDevice(profile("hlk_ld8001h"), 1, ManualClock(T0))
    async with serve_tcp([radar]) as bus:
        port = bus.port
    assert port
    async with serve_tcp([radar], port=port) as again:
        assert again.port == port


async def test_a_busy_port_or_missing_serial_port_is_a_clear_error(tmp_path: Path) -> None:
    radar = SimulatedDevice(profile("hlk_ld8001h"), 1, ManualClock(T0))
    async with serve_tcp([radar]) as bus:
        with pytest.raises(OSError, match=f"cannot listen for Modbus TCP on 127.0.0.1:{bus.port}"):
            async with serve_tcp([radar], port=bus.port):
                pass
    with pytest.raises(OSError, match="cannot open serial port"):
        async with serve_rtu([radar], tmp_path / "no-such-tty"):
            pass
