"""Chaos campaigns against the real parts; each subcommand prints a JSON object last.

``reconnect``: N gateway uplinks hold sessions on a real mosquitto; the broker is stopped
(SIGTERM, sessions persisted) for ``--outage-s`` and started again on the same ports.
Each gateway reconnects with the uplink's own schedule (``protocol.reconnect``: cheap
TCP probes, jittered backoff of full sessions; ``--policy backoff`` is the old plain
backoff, for comparison) and sets up its session as the uplink does: its own account,
persistent session, Last Will, four downlink subscriptions, the retained online state.
Reported: delay from the broker's return to each gateway's session (p50/p95/max), the
connection rate the broker saw (peak per second and per 100 ms), failed session attempts
after the return (an overloaded broker times them out) and the broker's CPU meanwhile.
Targets: p95 < 5 s and no failed session after the return.

Gateways are spread over ``--processes`` worker processes (a Raspberry Pi each, in the
field); the machine running this is shared, so the figures are a floor, not a ceiling.

``kill``: ``--trials`` random SIGKILLs of the agent, the fleet or the broker (or of the
agent or the fleet inside a commit, by their fault hooks) during a series of storms on a fast
clock; then the gateway's store and the fleet's database are compared row by row, and
the relay module's coil log with the alarm level (see ``chaos_kill``). Reported: lost,
duplicated and changed readings and events, and the longest siren outage. Target: all
zero. Progress goes to stderr; the seed is in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import aiomqtt

from fleet.broker_files import FleetAccount, Listener, mosquitto_conf, write_access_files
from fleet.credentials import mosquitto_hash, new_secret
from fleet.mqtt_connection import BrokerConnection
from protocol import GATEWAY_SUBSCRIBES, GatewayState, Topic, gateway_topic
from protocol.reconnect import Backoff, ReconnectTiming, ReconnectWait, tcp_probe

P95_TARGET_S = 5.0
#: The uplink's defaults (``[uplink] reconnect_min_s`` / ``reconnect_max_s``).
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 120.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on the loopback ``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds, or raise naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout} s waiting for {what}"
            raise RuntimeError(msg)
        time.sleep(0.01)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the broker ------------------------------------------------------------------------------


class Mosquitto:
    """mosquitto with the fleet's access files and persisted sessions, restartable in place."""

    def __init__(self, work: Path, accounts: list[tuple[str, str]]) -> None:
        self.work = work
        broker_dir = work / "broker"
        write_access_files(
            broker_dir,
            FleetAccount.load_or_create(work),
            [(gateway, mosquitto_hash(password)) for gateway, password in accounts],
        )
        self.port, fleet_port = free_port(), free_port()
        conf = mosquitto_conf(
            broker_dir, [Listener(self.port), Listener(fleet_port, fleet=True)], None
        )
        conf += f"persistence true\npersistence_location {work}/\nlog_dest none\n"
        if os.geteuid() == 0:
            conf += "user root\n"
        (work / "mosquitto.conf").write_text(conf)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The gateways' listener."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and return once the gateways' port accepts connections."""
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen(
            [mosquitto, "-c", str(self.work / "mosquitto.conf")], stderr=subprocess.DEVNULL
        )
        wait_for(lambda: port_open(self.port), 10, "mosquitto to listen")

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its sessions) and reap."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


# --- simulated gateways (worker processes) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """One worker process's gateways and how they reconnect."""

    accounts: list[tuple[str, str]]
    url: str
    port: int
    policy: str
    seed: int


async def gateway_session(
    gateway_id: str, password: str, url: str, on_connected: Callable[[], None]
) -> None:
    """One session set up as the uplink sets it up; returns when the broker drops it."""
    offline = GatewayState(state="offline", agent_version="bench").model_dump_json()
    will = aiomqtt.Will(gateway_topic(gateway_id, Topic.STATE), offline, qos=1, retain=True)
    connection = BrokerConnection(url, gateway_id, password)
    async with connection.client(gateway_id, clean_session=False, will=will) as client:
        for kind in GATEWAY_SUBSCRIBES:
            await client.subscribe(gateway_topic(gateway_id, kind), qos=1)
        online = GatewayState(state="online", ts=time.time(), agent_version="bench")
        await client.publish(
            gateway_topic(gateway_id, Topic.STATE), online.model_dump_json(), qos=1, retain=True
        )
        on_connected()
        async for _message in client.messages:
            pass


async def gateway_loop(
    gateway_id: str,
    password: str,
    plan: WorkerPlan,
    rng: random.Random,
    record: Callable[[str, str], None],
) -> None:
    """Hold a session for ever, reconnecting with the uplink's schedule (or the old one)."""
    backoff = Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S, rng)
    timing = ReconnectTiming()
    wait = ReconnectWait(backoff, rng, timing)

    def connected() -> None:
        backoff.reset()
        record(gateway_id, "connected")

    async def probe() -> bool:
        return await tcp_probe("127.0.0.1", plan.port, timing.probe_timeout_s)

    while True:
        try:
            await gateway_session(gateway_id, password, plan.url, connected)
        except aiomqtt.MqttError:
            record(gateway_id, "failed")
        if plan.policy == "probe":
            await wait.wait(probe)
        else:
            await asyncio.sleep(backoff.next())


def worker_main(plan: WorkerPlan, events: Any, connects: Synchronized[int], stop: Event) -> None:
    """Run this worker's gateways until ``stop``; put (gateway, what, monotonic) events."""
    log: list[tuple[str, str, float]] = []

    def record(gateway_id: str, what: str) -> None:
        log.append((gateway_id, what, time.monotonic()))
        if what == "connected":
            with connects.get_lock():
                connects.value += 1

    async def run() -> None:
        tasks = [
            asyncio.create_task(
                gateway_loop(gw, pw, plan, random.Random(plan.seed * 100_003 + i), record)
            )
            for i, (gw, pw) in enumerate(plan.accounts)
        ]
        await asyncio.to_thread(stop.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    events.put(log)


# --- the reconnect campaign -------------------------------------------------------------------


def connect_rates(times: list[float]) -> dict[str, float]:
    """Peak sessions per second (1 s and 100 ms bins) among connection ``times``."""
    per_s = Counter(int(t) for t in times)
    per_100ms = Counter(int(t * 10) for t in times)
    return {
        "peak_sessions_per_s": max(per_s.values(), default=0),
        "peak_sessions_per_100ms": max(per_100ms.values(), default=0),
    }


def reconnect(args: argparse.Namespace) -> dict[str, Any]:
    """Stop the broker under N connected gateways, start it again, time their return."""
    # Every session and probe is a socket; the workers inherit the raised limit.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    accounts = [(f"gw-{i:010d}", new_secret()) for i in range(args.gateways)]
    with tempfile.TemporaryDirectory(prefix="hw-chaos-") as tmp:
        broker = Mosquitto(Path(tmp), accounts)
        broker.start()
        context = mp.get_context("spawn")
        events = context.Queue()
        connects = context.Value("i", 0)
        stop = context.Event()
        workers = [
            context.Process(
                target=worker_main,
                args=(
                    WorkerPlan(
                        accounts[k :: args.processes],
                        broker.url,
                        broker.port,
                        args.policy,
                        args.seed + k,
                    ),
                    events,
                    connects,
                    stop,
                ),
            )
            for k in range(args.processes)
        ]
        try:
            for worker in workers:
                worker.start()
            wait_for(lambda: connects.value >= args.gateways, 120, "every gateway's first session")
            print(f"{args.gateways} gateways connected; stopping the broker for {args.outage_s} s")
            broker.stop()
            time.sleep(args.outage_s)  # the outage itself, not synchronisation
            broker.start()
            back_at = time.monotonic()
            assert broker.process is not None
            cpu_before = cpu_seconds(broker.process.pid)
            wait_for(
                lambda: connects.value >= 2 * args.gateways,
                args.outage_s + RECONNECT_MAX_S * 2 + 30,
                "every gateway's return",
            )
            returned_at = time.monotonic()
            broker_cpu = cpu_seconds(broker.process.pid) - cpu_before
        finally:
            stop.set()
            logs = [events.get(timeout=60) for _ in workers]
            for worker in workers:
                worker.join(timeout=30)
            broker.stop()
    after = [(gw, what, t - back_at) for log in logs for gw, what, t in log if t >= back_at]
    first_back: dict[str, float] = {}
    for gateway_id, what, t in sorted(after, key=lambda item: item[2]):
        if what == "connected":
            first_back.setdefault(gateway_id, t)
    delays = list(first_back.values())
    failed = sum(1 for _gw, what, _t in after if what == "failed")
    p95 = percentile(delays, 0.95)
    return {
        "benchmark": "chaos_reconnect",
        "policy": args.policy,
        "gateways": args.gateways,
        "processes": args.processes,
        "cpus": os.cpu_count(),
        "outage_s": args.outage_s,
        "reconnected": len(delays),
        "return_p50_s": round(percentile(delays, 0.5), 3),
        "return_p95_s": round(p95, 3),
        "return_max_s": round(max(delays), 3),
        **connect_rates(list(first_back.values())),
        "failed_sessions_after_return": failed,
        "broker_cpu_s_during_return": round(broker_cpu, 2),
        "return_window_s": round(returned_at - back_at, 2),
        "target_p95_s": P95_TARGET_S,
        "meets_target": p95 < P95_TARGET_S and failed == 0 and len(delays) == args.gateways,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    campaign = commands.add_parser("reconnect", help="gateways' return after a broker outage")
    campaign.add_argument("--gateways", type=int, default=1000)
    campaign.add_argument("--outage-s", type=float, default=60.0)
    campaign.add_argument("--processes", type=int, default=2, help="worker processes")
    campaign.add_argument(
        "--policy",
        choices=("probe", "backoff"),
        default="probe",
        help="'probe': the uplink's schedule; 'backoff': plain backoff, as before",
    )
    campaign.add_argument("--seed", type=int, default=1)
    kills = commands.add_parser("kill", help="random SIGKILLs of agent, fleet, broker in a storm")
    kills.add_argument("--trials", type=int, default=100, help="kills (at least 1)")
    kills.add_argument("--speed", type=float, default=120.0, help="simulated clock speed-up")
    kills.add_argument("--seed", type=int, default=None, help="default: a random seed")
    args = parser.parse_args()
    if args.command == "reconnect":
        result = reconnect(args)
    else:
        from chaos_kill import kill  # noqa: PLC0415 (it imports the test harnesses)

        if args.seed is None:
            args.seed = random.SystemRandom().randrange(2**31)
        result = kill(args)
    print(json.dumps(result))
    sys.exit(0 if result["meets_target"] else 1)


if __name__ == "__main__":
    main()
