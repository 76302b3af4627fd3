"""A gateway installed in release slots, run the way systemd runs it, for end-to-end tests.

``SlotService`` plays the service manager of ``hazardwatch-edge-slots.service``: before
every start it runs the supervisor from ``bin/hw-supervisor`` with the system Python,
then starts ``edge run --slots`` from whatever slot ``current`` points at, and starts it
again whenever it exits (``Restart=always``). Releases are built from this source tree
with ``ota.bundle.build_release`` and published with the ``fleet`` CLI, as an operator
would.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.clock import ScaledClock
from fleet.repository import Role
from fleet.sqlite_repository import SQLiteRepository
from hardware_sim.harness.agent import events, iso, sim_site
from hardware_sim.harness.uplink import SITE, FleetProcess, enroll, storm_station
from hardware_sim.harness.waiting import wait_for
from ota.bundle import WHEELS_DIR, build_release
from ota.crash_points import ENV as CRASH_ENV
from ota.manifest import ReleaseManifest
from ota.slots import SUPERVISOR_FILE, SlotTree

#: The checkout releases are built from (this is hardware_sim/harness/release.py in it).
REPO = Path(__file__).resolve().parents[2]
WHEEL_CACHE = REPO / ".cache" / "ota-wheels"
SYSTEM_PYTHON = getattr(sys, "_base_executable", sys.executable)
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
#: systemd's RestartSec in the slots unit is 2 s; the tests keep it short.
RESTART_S = 0.3


@dataclass(frozen=True)
class Release:
    """A built bundle: ``manifest.json`` and ``wheels/``."""

    version: str
    bundle: Path
    manifest: ReleaseManifest

    @property
    def own_wheel_size(self) -> int:
        """Bytes of the project's own wheel (the file a new version really changes)."""
        return next(f.size for f in self.manifest.files if f.name.startswith("hazardwatch-"))


def supervisor_command(root: Path) -> list[str]:
    """The slots unit's ExecStartPre: the stdlib-only supervisor, by the system Python."""
    return [SYSTEM_PYTHON, "-I", "-S", str(root / SUPERVISOR_FILE), "--root", str(root)]


def agent_env(**extra: str) -> dict[str, str]:
    """The environment without the test run's crash points and import path, plus ``extra``."""
    inherited = os.environ.items()
    base = {k: v for k, v in inherited if k not in (CRASH_ENV, "PYTHONPATH")}
    return {**base, **extra}


def build(base: Path, version: str, source: Path = REPO) -> Release:
    """Build ``version`` of ``source`` (this tree by default) into ``base``."""
    bundle = base / f"bundle-{version}"
    return Release(version, bundle, build_release(source, bundle, version, "0.1.0", WHEEL_CACHE))


def build_broken(base: Path, version: str) -> Release:
    """A release whose agent raises as soon as it is imported."""
    source = base / f"source-{version}"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    init = source / "edge_agent" / "__init__.py"
    init.write_text(init.read_text() + f'\nraise RuntimeError("{version} crashes at import")\n')
    return build(base, version, source)


def install_first(root: Path, release: Release) -> SlotTree:
    """The first slot, as a technician installs it from a USB stick: committed, quiet."""
    tree = SlotTree(root, compile_bytecode=False)
    tree.install(release.manifest, release.bundle / WHEELS_DIR)
    # Document version 0: no signed release document was involved.
    tree.switch(release.version, 0, max_boots=3, health_deadline_s=60)
    tree.commit()
    tree.mark_reported(tree.unreported())
    return tree


#: Lines of the agent's log a failing test shows.
LOG_TAIL_LINES = 60


@dataclass
class SlotService:
    """``edge run --slots`` under a restart-always supervisor loop, like systemd."""

    root: Path
    args: list[str]
    cwd: Path
    log: Path
    starts: list[str] = field(default_factory=list)  # the slot each start ran from
    exits: list[int] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the next starts
    _process: asyncio.subprocess.Process | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    def _supervise(self) -> None:
        subprocess.run(
            supervisor_command(self.root), capture_output=True, text=True, timeout=30, check=False
        )

    async def _loop(self) -> None:
        base = agent_env(PYTHONUNBUFFERED="1")
        while not self._stopping:
            env = {**base, **self.env}
            await asyncio.to_thread(self._supervise)
            slot = (self.root / "current").resolve()
            self.starts.append(slot.name)
            with self.log.open("ab") as out:
                self._process = await asyncio.create_subprocess_exec(
                    str(slot / "bin" / "python"), "-m", "edge_agent.cli", "run",
                    "--slots", str(self.root), *self.args,
                    cwd=self.cwd, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
            self.exits.append(await self._process.wait())
            if not self._stopping:
                await asyncio.sleep(RESTART_S)  # RestartSec: a modelled delay, not a wait

    def start(self) -> None:
        """Start the loop (the first start runs at once)."""
        self._task = asyncio.create_task(self._loop())

    def kill(self) -> None:
        """SIGKILL the running agent, as a power cut would; the loop starts it again."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    async def stop(self) -> None:
        """Stop like ``systemctl stop``: SIGTERM the agent, no more restarts."""
        self._stopping = True
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 40)


def run_fleet_cli(*args: str, timeout: float = 300) -> str:
    """One ``fleet`` CLI command from this repository's environment; its output."""
    result = subprocess.run(
        [sys.executable, "-m", "fleet.cli", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"fleet {' '.join(args[:2])}: {result.stdout}{result.stderr}"
    return result.stdout


def elapsed(since: float) -> float:
    """Seconds since ``since`` (a ``time.monotonic`` reading), for reports."""
    return round(time.monotonic() - since, 2)


def admin_token(fleet_dir: Path) -> str:
    """A fresh admin API token, written straight into the fleet's database."""
    repository = SQLiteRepository(fleet_dir / "fleet.sqlite")
    try:
        _token, secret = repository.create_api_token("release-admin", Role.ADMIN, time.time())
    finally:
        repository.close()
    return secret


@contextlib.asynccontextmanager
async def slot_gateway(
    tmp: Path,
    fleet: FleetProcess,
    first: Release,
    clock: ScaledClock,
    env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[str, SlotService]]:
    """An enrolled gateway installed in slots with ``first``, running under ``SlotService``.

    Yields its gateway id and the service, once the agent has started and polls a
    simulated creek station (rain gauge, creek radar, siren relays).
    """
    root = tmp / "opt-hazardwatch"
    install_first(root, first)
    gateway_id = enroll(tmp / "gw", fleet)
    async with sim_site(tmp, storm_station(clock, None), SITE, clock) as site:
        data = tmp / "gw"
        service = SlotService(
            root,
            [
                "--config", str(site.site_path), "--data-dir", str(data),
                "--backend", "reference", "--speed", repr(clock.speed),
                "--origin", iso(clock.origin), "--anchor", repr(clock.anchor),
            ],
            cwd=data,
            log=data / "service.log",
            env=dict(env or {}),
        )  # fmt: skip
        service.start()
        try:
            await wait_for(lambda: len(events(data, "agent_start")) == 1, 60, "the first start")
            yield gateway_id, service
        except Exception:
            # pytest shows this with the failure: what the agent said, not only what timed out.
            print(f"--- the agent's log, last {LOG_TAIL_LINES} lines ({service.log}) ---")
            print(*service.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:], sep="\n")
            raise
        finally:
            await service.stop()


async def create_rollout(
    cli: tuple[str, ...],
    release: str,
    gateways: list[str],
    waves: str = "1",
    *options: str,
) -> dict[str, Any]:
    """``fleet rollout create`` (in a thread: simulated devices share the event loop)."""
    targets = [arg for gateway in gateways for arg in ("--gateway", gateway)]
    out = await asyncio.to_thread(
        run_fleet_cli,
        "rollout",
        "create",
        "--release",
        release,
        *targets,
        "--waves",
        waves,
        "--device-timeout",
        "10m",
        *options,
        *cli,
        "--json",
    )
    created: dict[str, Any] = json.loads(out)
    return created
