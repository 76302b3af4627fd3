"""Run the real agent (``edge run`` subprocess) against simulated devices on Modbus TCP.

Agent and simulator share a ScaledClock (same origin, anchor and speed), so a storm of
hours replays in seconds; everything else is real: sockets, the SQLite file, SIGKILL.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.clock import ScaledClock
from edge_agent import reading_stage
from hardware_sim.device import SimulatedDevice
from hardware_sim.server import SimulatedBus, serve_tcp

#: The checkout this harness runs from (it is hardware_sim/harness/agent.py in it).
REPO = Path(__file__).resolve().parents[2]
# One compile of the numba kernels serves every test run.
NUMBA_CACHE = REPO / ".cache" / "numba"
#: The technician's CLI, as a command line.
EDGE = [sys.executable, "-m", "edge_agent.cli"]


async def edge_cli(*args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """Run one ``edge`` command: (exit code, stdout, stderr).

    It runs beside the event loop, never blocking it: the simulated devices the agent
    polls are served from that loop.
    """
    process = await asyncio.create_subprocess_exec(
        *EDGE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@dataclass
class AgentProcess:
    """A running ``edge run`` and where its data lives."""

    process: asyncio.subprocess.Process
    data_dir: Path
    log: Path

    def kill(self) -> None:
        """SIGKILL: no clean-up, no flush, as in a power cut."""
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)


@dataclass
class SimSite:
    """Simulated devices on one TCP link plus a site file for the agent."""

    clock: ScaledClock
    bus: SimulatedBus | None
    tmp: Path
    site_text: str
    agents: list[AgentProcess] = field(default_factory=list)

    @property
    def site_path(self) -> Path:
        """The site file, written on first use with the bus's port filled in."""
        path = self.tmp / "site.toml"
        if not path.exists():
            port = "" if self.bus is None else str(self.bus.port)
            path.write_text(self.site_text.replace("{port}", port))
        return path

    async def kill_all(self) -> None:
        """SIGKILL every agent this site started that is still running."""
        for agent in self.agents:
            if agent.process.returncode is None:
                agent.kill()
                await agent.process.wait()

    async def start_agent(
        self,
        name: str = "gw",
        *extra: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> AgentProcess:
        """Start ``edge run``; its log is in its data directory unless that is given."""
        log = self.tmp / f"{name}.log" if data_dir else (self.tmp / name / "agent.log")
        data_dir = data_dir or self.tmp / name
        data_dir.mkdir(exist_ok=True)
        merged = {
            **os.environ,
            "NUMBA_CACHE_DIR": str(NUMBA_CACHE),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "run",
            "--config", str(self.site_path), "--data-dir", str(data_dir),
            "--speed", repr(self.clock.speed),
            "--origin", iso(self.clock.origin), "--anchor", repr(self.clock.anchor),
            *extra,
            stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT, env=merged,
        )  # fmt: skip
        agent = AgentProcess(process, data_dir, log)
        self.agents.append(agent)
        return agent


def iso(epoch: float) -> str:
    """An epoch as ISO 8601 UTC (what ``edge run --origin`` takes)."""
    from datetime import UTC, datetime  # noqa: PLC0415

    return datetime.fromtimestamp(epoch, UTC).isoformat()


@asynccontextmanager
async def sim_site(
    tmp: Path, devices: Sequence[SimulatedDevice], site_text: str, clock: ScaledClock
) -> AsyncIterator[SimSite]:
    """Serve ``devices`` on a free TCP port; kill every agent started from it on exit."""
    async with serve_tcp(devices) as bus:
        site = SimSite(clock, bus, tmp, site_text)
        try:
            yield site
        finally:
            await site.kill_all()


def events(data_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Read the agent's committed events straight from its SQLite file."""
    path = data_dir / "store.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        query = "SELECT seq, ts, kind, subject, level, detail FROM events"
        args: tuple[str, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        rows = conn.execute(query + " ORDER BY seq", args).fetchall()
    except sqlite3.OperationalError:
        return []  # the agent has not created its schema yet
    finally:
        conn.close()
    return [
        {"seq": s, "ts": t, "kind": k, "subject": sub, "level": lvl, **json.loads(d)}
        for s, t, k, sub, lvl, d in rows
    ]


def readings(data_dir: Path, channel: str) -> list[tuple[float, float | None, int]]:
    """(ts, value, quality) of one channel, oldest first."""
    conn = sqlite3.connect(f"file:{data_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        reading_stage.attach_recorded(conn)  # readings not yet moved out of RAM too
        return conn.execute(
            "SELECT r.ts, r.value, r.quality FROM readings r JOIN channels c ON c.id = r.channel "
            "WHERE c.name = ? ORDER BY r.ts, r.seq",
            (channel,),
        ).fetchall()
    finally:
        conn.close()
