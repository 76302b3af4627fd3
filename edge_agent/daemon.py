"""``edge run`` once the kernels are loaded: the agent until a signal, and restarts in place.

Imported by the CLI only after ``edge_agent.alarm_preload`` has run, so asyncio, Modbus,
the uplink and the models load after the alarm kernels (see that module for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.bus import quiet_pymodbus
from drivers.clock import Clock, ScaledClock, SystemClock
from edge_agent.agent import Agent
from edge_agent.local_settings import LocalSettings
from edge_agent.start_signals import STOP_SIGNALS, StartSignals
from site_schema.site_config import SiteConfig

#: Longest a clean stop may take before the process dumps its stacks and exits anyway.
STOP_GRACE_S = 25.0


def run_daemon(
    site: SiteConfig,
    config: Path,
    data_dir: Path,
    clock: Clock,
    backend: str,
    confirm_deadline: float,
    signals: StartSignals,
    slots_root: Path | None = None,
    settings: LocalSettings | None = None,
    stage_dir: Path | None = None,
) -> None:
    """Run the agent until SIGTERM/SIGINT; restart in place when it asks to.

    ``signals`` holds the stop signals until the event loop takes them; a stop that came
    before then ends the run before the agent opens its store. After switching release
    slots (or rolling one back) the process exits with status 0: the service manager
    starts it again from the slot ``current`` now points at.
    """
    quiet_pymodbus()
    synced = None if isinstance(clock, SystemClock) else (lambda: True)
    agent = Agent(
        site,
        data_dir,
        clock,
        backend,
        **({"clock_synced": synced} if synced else {}),
        config_path=config,
        confirm_deadline_s=confirm_deadline,
        slots_root=slots_root,
        settings=settings,
        stage_dir=stage_dir,
    )
    signals.hand_over()
    asyncio.run(_run_until_signal(agent.run(), signals))
    if agent.exit_for_update:
        logging.getLogger("edge_agent").warning("exiting so the service starts the other slot")
        return
    if agent.restart_requested.is_set():
        _restart_in_place(clock)


def _restart_in_place(clock: Clock) -> None:
    """Start again in this process (same pid for systemd) on the site file as it is now.

    Simulated time carries on: the restarted agent gets this clock's origin and anchor.
    """
    argv = [sys.executable, "-m", "edge_agent.cli", *sys.argv[1:]]
    if isinstance(clock, ScaledClock):
        argv = without_options(argv, ("--origin", "--anchor", "--speed"))
        argv += [
            "--speed",
            repr(clock.speed),
            "--origin",
            datetime.fromtimestamp(clock.origin, tz=UTC).isoformat(),
            "--anchor",
            repr(clock.anchor),
        ]
    logging.getLogger("edge_agent").warning("restarting in place: %s", " ".join(argv[3:]))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """Drop ``--name value`` and ``--name=value`` occurrences of the given options."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{n}=" for n in names)):
            out.append(arg)
    return out


def _stop_stuck(loop: asyncio.AbstractEventLoop) -> None:
    logging.getLogger("edge_agent").error(
        "stop did not finish within %s s; task and thread stacks follow, then exit", STOP_GRACE_S
    )
    # Best effort from another thread: the loop is stuck waiting, not running these.
    for task in list(asyncio.all_tasks(loop)):
        task.print_stack(file=sys.stderr)
    faulthandler.dump_traceback(all_threads=True)
    os._exit(1)


async def _run_until_signal(work: Coroutine[Any, Any, None], signals: StartSignals) -> None:
    task = asyncio.create_task(work)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        task.cancel()
        # A stop that hangs (a stuck thread, a wedged bus) must not keep a restart from
        # happening: a thread timer, independent of the event loop, ends the process.
        timer = threading.Timer(STOP_GRACE_S, _stop_stuck, args=(loop,))
        timer.daemon = True
        timer.start()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop)
    if signals.requested is not None:  # came after hand_over: the agent never starts
        logging.getLogger("edge_agent").warning(
            "stopped by %s while starting; the agent did not run",
            signal.Signals(signals.requested).name,
        )
        stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task
