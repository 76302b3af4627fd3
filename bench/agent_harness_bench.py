"""Shared set-up for agent benchmarks: a simulated station and a real ``edge run`` process.

Keeps the benchmarks' own scripts about what they measure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

LEVEL_SITE = """
[site]
id = "bench"

[agent]
reassert_s = 30

[[bus]]
name = "field"
{bus}

[[device]]
name = "creek"
bus = "field"
profile = "hlk_ld8001h"
unit_id = 1
poll_interval_s = {poll}
timeout_s = 0.2
retries = 0
channels = ["water_level"]

[[device]]
name = "relays"
bus = "field"
profile = "relay_module_8ch"
unit_id = 10
poll_interval_s = 30
timeout_s = 0.2
retries = 0
channels = ["relay1"]

[[rule]]
id = "creek"
kind = "water_level"
channel = "creek.water_level"
thresholds = {{ red = 2000 }}
hold_s = 0

[[actuator]]
id = "siren"
device = "relays"
patterns = {{ warble = ["relay1"] }}

[actions]
red = {{ siren = "warble" }}
"""


def site_file(folder: Path, bus: str, poll_s: float) -> Path:
    """Write the benchmark site (one level gauge, one relay module) and return its path."""
    path = folder / "site.toml"
    path.write_text(LEVEL_SITE.format(bus=bus, poll=poll_s))
    return path


@contextmanager
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    with tempfile.TemporaryDirectory(prefix="hw-notify-") as folder:
        path = str(Path(folder) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield sock, path
        finally:
            sock.close()


def start_agent(
    site: Path, data_dir: Path, notify: str | None = None, backend: str = "auto"
) -> subprocess.Popen[bytes]:
    """Start ``edge run`` with the benchmark's numba cache."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(REPO / ".cache" / "numba")}
    if notify:
        env["NOTIFY_SOCKET"] = notify
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(site),
         "--data-dir", str(data_dir), "--log-level", "WARNING", "--backend", backend],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def emit(result: dict[str, object]) -> None:
    """Print the benchmark record as the last line."""
    print(json.dumps(result))


@contextmanager
def fleet_process(
    data_dir: Path, port: int, *extra: str, start_s: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    """``fleet serve`` on ``port`` (embedded broker on a free port) until the block ends.

    ``extra`` goes on its command line; its log is ``fleet.log`` beside ``data_dir``. Ends
    with SIGTERM, then SIGKILL after 20 s.
    """
    from hardware_sim.harness.ports import free_port  # noqa: PLC0415 - after the benches' path set-up

    fleet = Path(sys.executable).with_name("fleet")
    argv = [str(fleet), "serve", "--data-dir", str(data_dir), "--port", str(port)]
    argv += ["--broker-port", str(free_port()), *extra]
    log_path = data_dir.parent / "fleet.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_s
        while not _port_open(port):
            if process.poll() is not None:
                msg = f"fleet serve exited with {process.returncode}; see {log_path}"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                msg = f"fleet serve did not listen within {start_s:g} s; see {log_path}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
