"""Real time from a register change on the simulator to the siren coil being written.

A real ``edge run`` process polls a simulated level gauge once a second (real clock) over
Modbus TCP and over RTU through a socat pty; the benchmark raises the level past the red
threshold, waits for the siren coil, lowers it, and repeats. Both timestamps come from
this process's monotonic clock (the simulator runs here). Prints p50/p99 as JSON on the
last line; target: p99 <= one poll interval + 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from agent_harness_bench import emit, percentile, site_file, start_agent

from drivers.clock import SystemClock
from drivers.profiles import builtin_profiles
from hardware_sim.device import SimulatedDevice
from hardware_sim.pty_link import PtyPair
from hardware_sim.server import serve_rtu, serve_tcp

# A small step across the threshold: a jump of metres in one poll would (rightly) be
# flagged as a spike and held back until confirmed.
HIGH, LOW = 2010.0, 1990.0


async def crossings(transport: str, poll_s: float, count: int) -> list[float]:
    """Run ``count`` threshold crossings and return each latency in seconds."""
    clock = SystemClock()
    profiles = builtin_profiles()
    gauge = SimulatedDevice(profiles["hlk_ld8001h"], 1, clock, values={"water_level": LOW})
    relays = SimulatedDevice(profiles["relay_module_8ch"], 10, clock)
    latencies: list[float] = []
    phase = random.Random(20261125)
    with tempfile.TemporaryDirectory(prefix="hw-latency-") as folder:
        tmp = Path(folder)
        with PtyPair() as pty:
            if transport == "tcp":
                server = serve_tcp([gauge, relays])
            else:
                server = serve_rtu([gauge, relays], str(pty.device_end))
            async with server as bus:
                spec = (
                    f'kind = "tcp"\nhost = "127.0.0.1"\nport = {bus.port}'
                    if transport == "tcp"
                    else f'kind = "serial"\ndevice = "{pty.agent_end}"\nbaudrate = 9600'
                )
                agent = start_agent(site_file(tmp, spec, poll_s), tmp / "data")
                try:
                    await until(lambda: gauge.requests[3] > 2, 120)
                    for _ in range(count):
                        # A random phase against the agent's poll schedule, seeded: the
                        # latency is then spread over one poll interval as in the field.
                        await asyncio.sleep(phase.uniform(0, poll_s))
                        changes = len(relays.coil_log)
                        gauge.set_value("water_level", HIGH)
                        raised = time.monotonic()
                        await until(lambda n=changes: len(relays.coil_log) > n, 10 * poll_s)
                        latencies.append(relays.coil_log[changes].wall_time - raised)
                        changes = len(relays.coil_log)
                        gauge.set_value("water_level", LOW)
                        await until(lambda n=changes: len(relays.coil_log) > n, 10 * poll_s)
                finally:
                    agent.terminate()
                    agent.wait()
    return latencies


async def until(condition: object, within_s: float) -> None:
    """Wait for a condition, checking every millisecond."""
    deadline = time.monotonic() + within_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            msg = "timed out"
            raise TimeoutError(msg)
        await asyncio.sleep(0.001)


def main() -> None:
    """Measure over TCP and over the pty; print the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, seconds")
    parser.add_argument("--crossings", type=int, default=50)
    args = parser.parse_args()
    result: dict[str, object] = {"poll_interval_s": args.poll, "crossings": args.crossings}
    target = args.poll + 0.05
    for transport in ("tcp", "rtu"):
        values = asyncio.run(crossings(transport, args.poll, args.crossings))
        result[transport] = {
            "p50_ms": round(1000 * percentile(values, 50), 1),
            "p99_ms": round(1000 * percentile(values, 99), 1),
            "max_ms": round(1000 * max(values), 1),
            "meets_target": percentile(values, 99) <= target,
        }
    result["target_p99_ms"] = round(1000 * target, 1)
    emit(result)


if __name__ == "__main__":
    main()
