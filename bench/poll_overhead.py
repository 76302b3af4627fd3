"""Agent CPU time per Modbus transaction against the RTU wire time of that transaction.

A simulator in a separate process serves four devices over RTU through a socat pty pair;
this process polls them with the real poller (bus owner, decode, plausibility checks) and
measures its own CPU time. The wire time is what the same frames take on RS485 at
9600 baud: 11 bits per character plus a 3.5-character silence before each frame. A pty
does not enforce baud timing, so wire time is modelled, not measured.

Prints a JSON object as its last line; target: agent overhead at most 5 % of wire time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time

from drivers.bus import BITS_PER_CHAR, rtu_silence_s
from drivers.bus_config import SerialBusConfig
from drivers.clock import SystemClock
from drivers.device_config import DeviceConfig
from drivers.poller import DevicePoller, Poller
from drivers.profiles import builtin_profiles

BAUD = 9600
DEVICES = (
    ("rain", "dfrobot_sen0575", 192),
    ("level", "hlk_ld8001h", 1),
    ("tilt", "inclinometer_dual_axis", 3),
    ("relays", "relay_module_8ch", 10),
)
VALUES = {
    "dfrobot_sen0575": {"window_hours": 1, "rain_total": 12.5},
    "hlk_ld8001h": {"device_address": 1, "water_level": 1500, "air_gap": 500},
    "inclinometer_dual_axis": {"tilt_x": 1.25, "tilt_y": -0.5},
    "relay_module_8ch": {},
}


def frame_bytes(table_is_bits: bool, count: int) -> tuple[int, int]:
    """Return (request, response) RTU frame sizes of one read."""
    payload = math.ceil(count / 8) if table_is_bits else 2 * count
    return 8, 5 + payload


def wire_time_s(poller: DevicePoller) -> float:
    """RTU wire time of one poll of a device: both frames plus two silences each read."""
    total = 0.0
    for block in poller.blocks:
        request, response = frame_bytes(block.table.is_bits, block.count)
        total += (request + response) * BITS_PER_CHAR / BAUD + 2 * rtu_silence_s(BAUD)
    return total


async def serve(port_path: str) -> None:
    """Run the simulated devices on ``port_path`` until killed (the child process)."""
    from hardware_sim.device import SimulatedDevice  # noqa: PLC0415 - only the child needs it
    from hardware_sim.server import serve_rtu  # noqa: PLC0415

    clock = SystemClock()
    profiles = builtin_profiles()
    devices = [
        SimulatedDevice(profiles[p], unit, clock, values=VALUES[p]) for _, p, unit in DEVICES
    ]
    async with serve_rtu(devices, port_path, baudrate=BAUD):
        print("ready", flush=True)
        await asyncio.Event().wait()


async def measure(port_path: str, cycles: int) -> dict[str, float | int | bool]:
    """Poll every device ``cycles`` times and return CPU and modelled wire time."""
    profiles = builtin_profiles()
    configs = [
        DeviceConfig(name, "rs485", profiles[p], unit, poll_interval_s=1.0, timeout_s=1.0)
        for name, p, unit in DEVICES
    ]
    poller = Poller([SerialBusConfig("rs485", port_path, baudrate=BAUD)], configs, SystemClock())
    bus = poller.buses["rs485"]
    for device in poller.devices:  # warm-up: connect, first decode
        await device.poll_once()
    start_txn = bus.stats.transactions
    failures_before = sum(bus.stats.failures.values())
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(cycles):
        for device in poller.devices:
            await device.poll_once()
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    await poller.close()
    transactions = bus.stats.transactions - start_txn
    wire = cycles * sum(wire_time_s(d) for d in poller.devices)
    ratio = cpu / wire
    return {
        "baud": BAUD,
        "transactions": transactions,
        "failed_transactions": sum(bus.stats.failures.values()) - failures_before,
        "agent_cpu_ms_per_transaction": round(1000 * cpu / transactions, 4),
        "wire_ms_per_transaction": round(1000 * wire / transactions, 3),
        "pty_wall_ms_per_transaction": round(1000 * wall / transactions, 3),
        "overhead_ratio": round(ratio, 5),
        "target_ratio": 0.05,
        "meets_target": ratio <= 0.05,
    }


def main() -> None:
    """Start socat and the simulator process, measure, and print the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--serve", metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return
    from hardware_sim.pty_link import PtyPair  # noqa: PLC0415

    with PtyPair() as pty:
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(pty.device_end)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                sys.exit("simulator process did not start")
            result = asyncio.run(measure(str(pty.agent_end), args.cycles))
        finally:
            child.kill()
            child.wait()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
