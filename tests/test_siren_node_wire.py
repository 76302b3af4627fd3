"""The siren node's firmware under CPython, driven by a real pymodbus client over a socat pty.

The node runs the same ``drivers.siren_node`` code as the board, behind the simulator's
HAL; the gateway side is pymodbus (or the agent's own poller), speaking real RTU frames.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import serial
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.bus_config import SerialBusConfig
from drivers.clock import ManualClock
from drivers.device_config import DeviceConfig
from drivers.model import Quality
from drivers.poller import Poller
from drivers.profiles import builtin_profiles
from drivers.siren_node.crc import with_crc
from drivers.siren_node.fallback import END_LOCAL_ACK, REASON_SILENT_GATEWAY_RAIN, SOUNDING
from drivers.siren_node.node import RAIN_SAMPLE_MS
from drivers.siren_node.registers import (
    COIL_FALLBACK_ACTIVE,
    COIL_SIREN,
    DEFAULT_UNIT_ID,
    REG_CRC_ERRORS,
    REG_FALLBACK_STATE,
    REG_HEARTBEAT,
    REG_HEARTBEAT_TIMEOUT_S,
    REG_RAIN_WINDOW,
)
from hardware_sim.harness.waiting import wait_for
from hardware_sim.pty_link import PtyPair
from hardware_sim.scenarios import DesignStorm
from hardware_sim.siren_node import PtyHal, SimulatedSirenNode, serve_siren_node

T0 = 1_700_000_000.0
UNIT = DEFAULT_UNIT_ID
PROFILE = builtin_profiles()["siren_node"]


@asynccontextmanager
async def gateway(bus: SerialBusConfig) -> AsyncIterator[AsyncModbusSerialClient]:
    """A pymodbus RTU client on the agent's end of the node's pty."""
    client = AsyncModbusSerialClient(
        bus.device, framer=FramerType.RTU, baudrate=bus.baudrate, timeout=1, retries=0
    )
    assert await client.connect()
    try:
        yield client
    finally:
        client.close()


def ok(response: ModbusPDU) -> ModbusPDU:
    assert not response.isError(), response
    return response


def refused_with(response: ModbusPDU) -> int:
    assert response.isError(), response
    return int(getattr(response, "exception_code", 0))


async def run_until(
    clock: ManualClock, node: SimulatedSirenNode, done: Callable[[], bool], limit_s: int
) -> None:
    """Advance simulated time a second at a time, letting the node step after each."""
    for _ in range(limit_s):
        if done():
            return
        clock.advance(1.0)
        await node.settle()
    assert done(), f"not done within {limit_s} simulated seconds"


async def test_every_supported_function_code_works_over_real_rtu() -> None:
    async with serve_siren_node(ManualClock(T0)) as (bus, node), gateway(bus) as client:
        coils = ok(await client.read_coils(0, count=6, device_id=UNIT))
        assert coils.bits[:6] == [False] * 6
        registers = ok(await client.read_holding_registers(0, count=30, device_id=UNIT))
        assert registers.registers[:5] == [0, 120, 300, 3600, 2000]
        ok(await client.write_coil(COIL_SIREN, True, device_id=UNIT))
        assert node.siren
        ok(await client.write_register(REG_HEARTBEAT_TIMEOUT_S, 60, device_id=UNIT))
        ok(await client.write_coils(0, [False, True], device_id=UNIT))
        assert not node.siren
        ok(await client.write_registers(1, [90, 50, 900], device_id=UNIT))
        settings = ok(await client.read_holding_registers(1, count=3, device_id=UNIT))
        assert settings.registers == [90, 50, 900]
    assert [(c.address, c.value) for c in node.siren_log] == [(0, True), (0, False)]


async def test_unsupported_and_bad_requests_get_the_right_exception_responses() -> None:
    async with serve_siren_node(ManualClock(T0)) as (bus, _), gateway(bus) as client:
        assert refused_with(await client.read_discrete_inputs(0, count=1, device_id=UNIT)) == 1
        assert refused_with(await client.read_input_registers(0, count=1, device_id=UNIT)) == 1
        assert refused_with(await client.read_holding_registers(29, count=2, device_id=UNIT)) == 2
        assert refused_with(await client.write_coil(2, True, device_id=UNIT)) == 2
        assert refused_with(await client.write_register(16, 1, device_id=UNIT)) == 2
        assert refused_with(await client.write_register(1, 5, device_id=UNIT)) == 3
        # The node keeps answering after every refusal.
        ok(await client.read_coils(0, count=1, device_id=UNIT))


async def test_the_agents_poller_reads_every_profile_channel_at_its_power_up_value() -> None:
    clock = ManualClock(T0)
    async with serve_siren_node(clock) as (bus, _):
        config = DeviceConfig("siren", bus.name, PROFILE, UNIT, 10.0, PROFILE.timeout_s)
        poller = Poller([bus], [config], clock)
        readings = {r.channel_id.split(".", 1)[1]: r for r in await poller.poll_all_once()}
        await poller.close()
    assert set(readings) == {c.name for c in PROFILE.channels}
    assert {r.quality for r in readings.values()} == {Quality.OK}
    values = {name: r.value for name, r in readings.items()}
    assert values["firmware_version"] == pytest.approx(1.0)
    assert values["heartbeat_timeout_s"] == 120
    assert values["fallback_rain"] == pytest.approx(30.0)
    assert values["fallback_window_s"] == 3600
    assert values["mm_per_tip"] == pytest.approx(0.2)
    assert values["siren"] == values["siren_output"] == values["fallback_active"] == 0
    assert values["fallback_state"] == values["fallback_activations"] == 0


async def test_in_a_design_storm_the_node_sounds_only_once_the_gateway_falls_silent() -> None:
    clock = ManualClock(T0)
    storm = DesignStorm(T0 + 600, 3600, 60.0, step_s=300, variability=0.25, seed=20240917)
    window_s, timeout_s = 900, 60
    async with (
        serve_siren_node(clock, storm.cumulative_mm) as (bus, node),
        gateway(bus) as client,
    ):
        ok(await client.write_registers(1, [timeout_s, 50, window_s], device_id=UNIT))
        beat = 0
        while clock.now() < storm.start + 1800:
            clock.advance(10.0)
            beat += 1
            ok(await client.write_register(REG_HEARTBEAT, beat, device_id=UNIT))
        last_beat = clock.now()
        window = ok(await client.read_holding_registers(REG_RAIN_WINDOW, count=1, device_id=UNIT))
        node_mm = window.registers[0] * 0.1
        exact_mm = storm.window_sum_mm(last_beat, window_s)
        slot_s = window_s / 60
        assert exact_mm - 0.3 <= node_mm <= storm.window_sum_mm(last_beat, window_s + 2 * slot_s)
        assert node_mm > 5.0, "the storm must be over the threshold while heartbeats arrive"
        assert node.siren_log == [], "the node sounded on its own while heartbeats arrived"

        await run_until(clock, node, lambda: node.siren, limit_s=2 * timeout_s)
        coils = ok(await client.read_coils(COIL_FALLBACK_ACTIVE, count=2, device_id=UNIT))
        status = ok(
            await client.read_holding_registers(REG_FALLBACK_STATE, count=4, device_id=UNIT)
        )
        # The gateway is back: a heartbeat alone leaves the siren sounding, and its own
        # command takes over without a silent gap.
        ok(await client.write_register(REG_HEARTBEAT, beat + 1, device_id=UNIT))
        assert node.siren
        ok(await client.write_coil(COIL_SIREN, True, device_id=UNIT))
        ok(await client.write_coil(COIL_SIREN, False, device_id=UNIT))
    sounded = node.siren_log[0]
    assert sounded.value
    assert timeout_s <= sounded.sim_time - last_beat <= timeout_s + RAIN_SAMPLE_MS / 1000
    assert coils.bits[:2] == [True, True]
    assert status.registers == [SOUNDING, REASON_SILENT_GATEWAY_RAIN, 0, 1]
    assert [c.value for c in node.siren_log] == [True, False]


async def test_the_button_silences_the_nodes_fallback_but_never_the_gateways_command() -> None:
    clock = ManualClock(T0)

    def downpour(t: float) -> float:
        return 0.0 if t < T0 + 30 else 40.0

    async with serve_siren_node(clock, downpour) as (bus, node), gateway(bus) as client:
        ok(await client.write_register(REG_HEARTBEAT_TIMEOUT_S, 60, device_id=UNIT))
        await run_until(clock, node, lambda: node.siren, limit_s=120)
        await node.press_ack()
        assert not node.siren
        status = ok(
            await client.read_holding_registers(REG_FALLBACK_STATE, count=3, device_id=UNIT)
        )
        ok(await client.write_coil(COIL_SIREN, True, device_id=UNIT))
        await node.press_ack()
        assert node.siren
        ok(await client.write_coil(COIL_SIREN, False, device_id=UNIT))
    assert status.registers[0] != SOUNDING
    assert status.registers[2] == END_LOCAL_ACK
    assert [c.value for c in node.siren_log] == [True, False, True, False]


def corruptions(frame: bytes) -> list[bytes]:
    """The frame with its CRC broken, a data bit flipped, and the address bit flipped."""
    out = []
    for index, mask in ((-1, 0xA5), (5, 0x01), (3, 0x01)):
        damaged = bytearray(frame)
        damaged[index] ^= mask
        out.append(bytes(damaged))
    return out


def crc_errors_reach(node: SimulatedSirenNode, count: int) -> Callable[[], bool]:
    return lambda: node.node.slave.crc_errors == count


async def put_corrupted(
    line: serial.Serial, clock: ManualClock, node: SimulatedSirenNode, frame: bytes
) -> None:
    """Put each corruption of ``frame`` on the line, as a separate frame the node drops."""
    for damaged in corruptions(frame):
        counted = crc_errors_reach(node, node.node.slave.crc_errors + 1)
        line.write(damaged)
        await wait_for(counted, 10, "the node to count the damaged frame")
        # The line falls silent: the node drops what is left of the frame.
        clock.advance(0.01)
        await node.settle()


async def test_frames_with_a_bad_crc_are_ignored_and_never_switch_the_siren() -> None:
    clock = ManualClock(T0)
    on = with_crc(bytes((UNIT, 5, 0, COIL_SIREN, 0xFF, 0)))
    off = with_crc(bytes((UNIT, 5, 0, COIL_SIREN, 0, 0)))
    async with serve_siren_node(clock) as (bus, node), gateway(bus) as client:
        with serial.Serial(bus.device, bus.baudrate, timeout=0) as line:
            await put_corrupted(line, clock, node, on)
            assert not node.siren
            ok(await client.write_coil(COIL_SIREN, True, device_id=UNIT))
            await put_corrupted(line, clock, node, off)
            assert node.siren
        errors = ok(await client.read_holding_registers(REG_CRC_ERRORS, count=1, device_id=UNIT))
    assert errors.registers == [6]
    assert [c.value for c in node.siren_log] == [True]


@pytest.mark.parametrize("mm_per_tip", [0.0, -0.2, float("nan"), float("inf")])
def test_a_simulated_node_refuses_a_bucket_that_counts_no_rain(mm_per_tip: float) -> None:
    refused = pytest.raises(ValueError, match="mm_per_tip must be a positive finite number")
    with PtyPair() as pty, serial.Serial(str(pty.device_end)) as port, refused:
        PtyHal(port, ManualClock(), None, mm_per_tip)
