"""Agent start-up time and memory: process start to first complete poll, and peak RSS.

Starts ``edge run`` against a simulated station with systemd's notify protocol pointed
at this process; READY=1 arrives once every device has been polled and the alarm engine
has replayed its history. One cold start warms the numba cache, then the warm starts
are measured, without and with an enrollment (the uplink running against a broker it
cannot reach). Prints JSON on the last line; targets: <= 2 s and <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import threading
import time
from pathlib import Path

from agent_harness_bench import emit, notify_socket, peak_rss_mb, site_file, start_agent

from drivers.clock import SystemClock
from drivers.profiles import builtin_profiles
from edge_agent.enroll import ENROLLMENT_FILE, StoredEnrollment, write_private
from hardware_sim.device import SimulatedDevice
from hardware_sim.server import serve_tcp
from protocol import MqttCredentials


def enroll_offline(data_dir: Path) -> None:
    """Make ``data_dir`` an enrolled gateway whose broker is unreachable (network down).

    The agent then runs its uplink too (the MQTT client, the models, the reconnect
    loop), as every gateway in the field does.
    """
    gateway = "gw-footprint"
    enrollment = StoredEnrollment(
        gateway_id=gateway,
        site_id="bench",
        mqtt=MqttCredentials(username=gateway, password="x" * 24, client_id=gateway),
        broker_url="mqtt://127.0.0.1:9",
        fleet_signing_key=base64.b64encode(bytes(32)).decode(),
        topic_prefix=f"hw/v1/{gateway}",
        fleet_url="http://127.0.0.1:9",
        enrolled_at=1.0,
    )
    write_private(data_dir / ENROLLMENT_FILE, enrollment.model_dump_json().encode())


def one_start(
    port: int, tmp: Path, backend: str = "auto", data: str = "data"
) -> tuple[float, float]:
    """Return (seconds to READY=1, peak RSS MiB) of one agent start."""
    site = site_file(tmp, f'kind = "tcp"\nhost = "127.0.0.1"\nport = {port}', 1.0)
    with notify_socket() as (sock, path):
        sock.settimeout(60)
        started = time.perf_counter()
        agent = start_agent(site, tmp / data, notify=path, backend=backend)
        try:
            while sock.recv(4096) != b"READY=1":
                pass
            ready = time.perf_counter() - started
            rss = peak_rss_mb(agent.pid)
        finally:
            agent.terminate()
            agent.wait()
    return ready, rss


async def serve_forever(port_box: list[int], stop: threading.Event) -> None:
    """Serve the station until ``stop`` is set (in a background thread's loop)."""
    profiles = builtin_profiles()
    clock = SystemClock()
    devices = [
        SimulatedDevice(profiles["hlk_ld8001h"], 1, clock, values={"water_level": 500}),
        SimulatedDevice(profiles["relay_module_8ch"], 10, clock),
    ]
    async with serve_tcp(devices) as bus:
        assert bus.port is not None
        port_box.append(bus.port)
        await asyncio.to_thread(stop.wait)


def main() -> None:
    """Warm the cache with one start, measure warm starts, print the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    port_box: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(serve_forever(port_box, stop),))
    thread.start()
    try:
        while not port_box:
            time.sleep(0.01)
        with tempfile.TemporaryDirectory(prefix="hw-footprint-") as folder:
            cold, _ = one_start(port_box[0], Path(folder))
            warm = [one_start(port_box[0], Path(folder)) for _ in range(args.runs)]
            reference = one_start(port_box[0], Path(folder), backend="reference")
            enroll_offline(Path(folder) / "enrolled")
            enrolled = [one_start(port_box[0], Path(folder), data="enrolled") for _ in range(2)]
    finally:
        stop.set()
        thread.join()
    ready = statistics.median(r for r, _ in warm)
    rss = max(m for _, m in warm)
    enrolled_rss = max(m for _, m in enrolled)
    emit(
        {
            "first_start_s": round(cold, 3),
            "warm_start_to_ready_s": round(ready, 3),
            "peak_rss_mb": round(rss, 1),
            "reference_backend_start_s": round(reference[0], 3),
            "reference_backend_peak_rss_mb": round(reference[1], 1),
            "enrolled_offline_start_s": round(statistics.median(r for r, _ in enrolled), 3),
            "enrolled_offline_peak_rss_mb": round(enrolled_rss, 1),
            "target_start_s": 2.0,
            "target_rss_mb": 150,
            "meets_target": ready <= 2.0 and max(rss, enrolled_rss) <= 150,
        }
    )


if __name__ == "__main__":
    main()
