"""A receiving centre process for the SL 651 benches: stations registered, listening, counted.

Runs ``fleet sl651 serve`` as its own process (as in production) on a data directory
with N stations registered. Never imported by the production packages; never imports
``tests`` or ``bench``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fleet.sl651_stations import StationRegistry
from hardware_sim.harness.ports import free_port, wait_listening

#: Every simulated station's password (5A7C on the command line).
PASSWORD = 0x5A7C
FLEET = (sys.executable, "-m", "fleet.cli")


def station_address(n: int) -> str:
    """The address of simulated station ``n``."""
    return f"{1_000_000_000 + n:010d}"


def register_stations(data_dir: Path, stations: int, site: str = "s") -> None:
    """Register stations 0..``stations``-1 at ``site`` (the CLI makes the schema first)."""
    add = [*FLEET, "sl651", "add-station", station_address(0), "--password", "5A7C"]
    subprocess.run([*add, "--site", site, "--data-dir", str(data_dir)], check=True)
    registry = StationRegistry(data_dir / "fleet.sqlite", durable=False)  # set-up only
    try:
        for n in range(1, stations):
            registry.add_station(station_address(n), PASSWORD, site, time.time())
    finally:
        registry.close()


@contextmanager
def serving_centre(data_dir: Path, options: Sequence[str] = ()) -> Iterator[tuple[int, int]]:
    """``fleet sl651 serve`` on a free port until the block ends: (port, process id)."""
    port = free_port()
    serve = [*FLEET, "sl651", "serve", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen([*serve, *options, "--data-dir", str(data_dir)])
    try:
        wait_listening(process, port, 60, "fleet sl651 serve listening")
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(60)


def count_readings(data_dir: Path) -> int:
    """Readings the fleet database in ``data_dir`` holds."""
    with sqlite3.connect(data_dir / "fleet.sqlite") as conn:
        return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
