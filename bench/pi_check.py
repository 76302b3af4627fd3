"""``./dev pi-check``: the agent on Raspberry Pi OS, arm64 and armhf, under qemu-user-static.

For each architecture, in a Debian bookworm root (``hardware_sim/harness/pi_root.py``,
built once with debootstrap and cached):

1. a release bundle for that machine is put on the root's "USB stick" (``/media/usb``):
   arm64's built on this host with ``ota.bundle`` for aarch64 (numba on its aarch64
   wheel); armhf's gathered with pip inside the root after the guide's 32-bit step has
   installed Debian's numpy and cffi (PyPI has no armv7l wheel of either): pip resolves
   against those, pinned to the system's versions, and builds nothing;
2. the install block of ``docs/install-pi.md`` runs there verbatim, as root (the guide's
   ``sudo`` is the identity);
3. the alarm kernels are loaded twice as the agent's user, cold (numba compiles them into
   the agent's cache) then warm, and the backend is recorded;
4. ``hwsim serve creek_village`` runs on this host (Modbus TCP on 127.0.0.1) with the
   design storm, and the unit file's ``ExecStartPre`` and ``ExecStart`` run in the root as
   the ``hazardwatch`` user (at the storm's speed) for ``--minutes``;
5. the check passes when an alarm is stored, the siren relay's coil reads back on from
   the simulator, ``edge status`` names the expected backend (numba on arm64, the
   pure-Python reference on armhf), and the technician's commands of the guide work in
   the root against the running agent.

Prints each step with its time, and as its last line a JSON object per architecture.
Needs root. Never touches the host's system outside the cached roots (binfmt_misc aside).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pymodbus.client import ModbusTcpClient

from drivers.profiles import builtin_profiles
from hardware_sim.harness.agent import events
from hardware_sim.harness.pi_root import (
    ARCHES,
    PiArch,
    PiRoot,
    PiRootError,
    chroot_command,
    ensure_root,
    entered,
    in_root,
    root_env,
)
from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_until
from ota.bundle import TARGETS, WHEELS_DIR, build_release, write_manifest
from ota.system_packages import DEBIAN_PACKAGES

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "install-pi.md"
#: The marker before the guide's block this check runs verbatim.
INSTALL_MARKER = "<!-- pi-check: install -->"
#: The marker before the guide's 32-bit step (Debian's numpy and cffi), run before it on armhf.
ARMHF_MARKER = "<!-- pi-check: armhf -->"
WHEEL_CACHE = REPO / ".cache" / "ota-wheels"
UNIT = "/etc/systemd/system/hazardwatch-edge-slots.service"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
DATA_DIR = "/var/lib/hazardwatch"
SITE = "/etc/hazardwatch/site.toml"
AGENT_USER = "hazardwatch"
#: The guide's ``sudo``: the check is root already; ``sudo -u USER`` becomes ``runuser``.
SUDO = (
    'sudo() { if [ "$1" = -u ]; then local u=$2; shift 2; runuser -u "$u" -- "$@"; '
    'else "$@"; fi; }\n'
)
EXPECTED_BACKEND = {"arm64": "numba", "armhf": "reference"}
#: The siren's strobe coil (relay2): blue and up switch it on in creek_village.toml.
SIREN_DEVICE_UNIT = 10
T = TypeVar("T")


def say(text: str) -> None:
    """One progress line (stderr, so the JSON line stays last on stdout)."""
    print(f"pi-check: {text}", file=sys.stderr, flush=True)


def timed(what: str, work: Callable[[], T]) -> tuple[T, float]:
    """Run ``work``; say how long it took."""
    started = time.monotonic()
    result = work()
    seconds = time.monotonic() - started
    say(f"{what}: {seconds:.1f} s")
    return result, seconds


def guide_block(marker: str = INSTALL_MARKER, guide: Path = GUIDE) -> str:
    """The fenced shell block right after ``marker`` in the guide."""
    text = guide.read_text()
    found = re.search(re.escape(marker) + r"\s*```sh\n(.*?)```", text, re.S)
    if found is None:
        msg = f"{guide}: no ```sh block after {marker}"
        raise PiRootError(msg)
    return found.group(1)


def project_version() -> str:
    """The version in this tree's pyproject.toml."""
    return str(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def fresh_gateway(root: PiRoot) -> None:
    """Take away what an earlier run installed, so the guide starts from a blank card."""
    in_root(root, f"! id {AGENT_USER} >/dev/null 2>&1 || userdel {AGENT_USER}", "removing the user")
    for inside in ("/opt/hazardwatch", DATA_DIR, "/etc/hazardwatch", "/media/usb", "/tmp/hw-own"):
        shutil.rmtree(root.host_path(inside), ignore_errors=True)
    for inside in (UNIT, "/etc/udev/rules.d/99-hazardwatch-rs485.rules", "/usr/local/bin/edge"):
        root.host_path(inside).unlink(missing_ok=True)


def put_bundle(root: PiRoot, version: str) -> Path:
    """The release bundle for the root's machine, in ``/media/usb/hazardwatch-VERSION``.

    armv7l: pip in the root resolves the agent's dependencies against Debian's numpy and
    cffi (``ota.system_packages``, installed by the guide's 32-bit step), pinned to the
    system's versions, so it never builds a wheel; the bundle holds the rest.
    """
    inside = f"/media/usb/hazardwatch-{version}"
    bundle = root.host_path(inside)
    if root.arch.machine in TARGETS:
        build_release(REPO, bundle, version, version, WHEEL_CACHE, TARGETS[root.arch.machine])
        return bundle
    # The project's own wheel (pure Python) and pip come from a host build.
    own = root.host_path("/tmp/hw-own")
    host = build_release(REPO, own, version, version, WHEEL_CACHE)
    project = f"/tmp/hw-own/wheels/hazardwatch-{version}-py3-none-any.whl"
    pip_wheel = next(f.name for f in host.files if f.name.startswith("pip-"))
    (bundle / WHEELS_DIR).mkdir(parents=True)
    # pip in the root trusts what this host's pip trusts (an intercepting proxy's CA, say).
    shutil.copyfile(HOST_CA, own / "host-ca.crt")
    system = " ".join(DEBIAN_PACKAGES)
    pins = (
        "import json; r = json.load(open('/tmp/hw-own/report.json'));"
        " print('\\n'.join(f\"{i['metadata']['name']}=={i['metadata']['version']}\""
        " for i in r['install']))"
    )
    script = (
        "rm -rf /tmp/hw-resolver\n"
        "python3 -m venv --without-pip --system-site-packages /tmp/hw-resolver\n"
        "export PIP_CERT=/tmp/hw-own/host-ca.crt\n"
        f"PIP='/tmp/hw-resolver/bin/python /tmp/hw-own/wheels/{pip_wheel}/pip'\n"
        "/tmp/hw-resolver/bin/python -c 'import importlib.metadata as m, sys; "
        'print(*(f"{n}=={m.version(n)}" for n in sys.argv[1:]), sep="\\n")\' '
        f"{system} > /tmp/hw-own/system.txt\n"
        "$PIP install --quiet --dry-run --only-binary=:all: -c /tmp/hw-own/system.txt "
        "--find-links /tmp/hw-own/wheels --report /tmp/hw-own/report.json "
        f"{project} /tmp/hw-own/wheels/{pip_wheel}\n"
        f"python3 -c {shlex.quote(pins)} > /tmp/hw-own/pins.txt\n"
        "$PIP download --quiet --no-deps --only-binary=:all: --find-links /tmp/hw-own/wheels "
        f"-d {inside}/wheels -r /tmp/hw-own/pins.txt\n"
        "rm -rf /tmp/hw-resolver\n"
    )
    in_root(root, script, "gathering the armv7l wheels in the root")
    shutil.rmtree(own)
    write_manifest(bundle, version, version, host.python_requires)
    return bundle


def kernel_times(root: PiRoot) -> dict[str, Any]:
    """Alarm kernels loaded as the agent's user: cold (numba compiles), then warm."""
    probe = (
        "import json, time\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        "    import numba\n"
        "    imported = round(time.perf_counter() - t0, 2)\n"
        "except ImportError:\n"
        "    imported = None\n"
        "from edge_agent.alarm_preload import preload_kernels\n"
        "t1 = time.perf_counter()\n"
        "backend = preload_kernels('auto')\n"
        "print(json.dumps({'backend': backend, 'numba_import_s': imported,\n"
        "                  'kernels_s': round(time.perf_counter() - t1, 2)}))\n"
    )
    script = (
        f"cd {DATA_DIR} && NUMBA_CACHE_DIR={DATA_DIR}/numba-cache "
        f"/opt/hazardwatch/current/bin/python -c {shlex.quote(probe)}"
    )
    cold = json.loads(in_root(root, script, "cold kernels", AGENT_USER).stdout.splitlines()[-1])
    warm = json.loads(in_root(root, script, "warm kernels", AGENT_USER).stdout.splitlines()[-1])
    return {
        "backend": cold["backend"],
        "numba_import_s": cold["numba_import_s"],
        "kernels_cold_s": cold["kernels_s"],
        "kernels_warm_s": warm["kernels_s"],
    }


@dataclass(frozen=True)
class UnitCommands:
    """What the installed unit runs, and with what: as systemd would start it."""

    pre: list[str]  # ExecStartPre (argv)
    start: list[str]  # ExecStart (argv)
    env: dict[str, str]  # Environment
    runtime_dirs: list[str]  # RuntimeDirectory: made under /run, owned by the unit's user
    runtime_mode: str  # RuntimeDirectoryMode


def unit_commands(root: PiRoot) -> UnitCommands:
    """The installed unit's ExecStartPre, ExecStart, Environment and RuntimeDirectory."""
    pre: list[str] = []
    start: list[str] = []
    env: dict[str, str] = {}
    runtime_dirs: list[str] = []
    runtime_mode = "0755"
    for line in root.host_path(UNIT).read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStartPre":
            pre = shlex.split(value.lstrip("-"))
        elif key == "ExecStart":
            start = shlex.split(value)
        elif key == "Environment":
            name, _, setting = value.partition("=")
            env[name] = setting
        elif key == "RuntimeDirectory":
            runtime_dirs += value.split()
        elif key == "RuntimeDirectoryMode":
            runtime_mode = value.strip()
    if not start:
        msg = f"{UNIT} in the root has no ExecStart"
        raise PiRootError(msg)
    return UnitCommands(pre, start, env, runtime_dirs, runtime_mode)


def siren_coil_on(port: int) -> bool:
    """Whether the simulated relay module's strobe coil (relay2) is on, read over Modbus."""
    relay2 = next(c for c in builtin_profiles()["relay_module_8ch"].channels if c.name == "relay2")
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=1)
    try:
        if not client.connect():  # type: ignore[no-untyped-call]
            return False
        answer = client.read_coils(relay2.address, count=1, device_id=SIREN_DEVICE_UNIT)
        return not answer.isError() and bool(answer.bits[0])
    finally:
        client.close()  # type: ignore[no-untyped-call]


def technician_commands(root: PiRoot, port: int) -> dict[str, float]:
    """The guide's checking commands, run in the root against the running agent; seconds each."""
    as_agent = f"sudo -u {AGENT_USER} "
    commands = {
        "edge profiles": "edge profiles",
        "edge scan": f"edge scan --tcp 127.0.0.1:{port} --ids 1,2,5,10,192",
        "edge poll --once": f"edge poll -c {SITE} --once",
        "edge status": as_agent + f"edge status -d {DATA_DIR} --json",
        "edge siren test": as_agent + f"edge siren test -d {DATA_DIR}",
        "edge alarms": as_agent + f"edge alarms -d {DATA_DIR}",
    }
    seconds: dict[str, float] = {}
    for name, command in commands.items():
        started = time.monotonic()
        in_root(root, SUDO + command, name, timeout=600)
        seconds[name] = round(time.monotonic() - started, 1)
        say(f"  {command}: {seconds[name]} s")
    # edge doctor exits 1 here: the clock of a root is the host's, enrollment is absent...
    # what matters is that it runs and judges the devices and the siren from the agent.
    started = time.monotonic()
    doctor = subprocess.run(
        chroot_command(root, SUDO + as_agent + f"edge doctor -c {SITE} -d {DATA_DIR} --json"),
        capture_output=True,
        text=True,
        env=root_env(),
        timeout=600,
        check=False,
    )
    verdicts = [json.loads(line) for line in doctor.stdout.splitlines() if line.startswith("{")]
    seconds["edge doctor"] = round(time.monotonic() - started, 1)
    say(
        f"  edge doctor: {seconds['edge doctor']} s: "
        + ", ".join(f"{v.get('check')} {v.get('verdict')}" for v in verdicts)
    )
    failed = [
        v
        for v in verdicts
        if v.get("verdict") == "fail" and v["check"].startswith(("device", "siren"))
    ]
    if not verdicts or failed:
        msg = f"edge doctor in the root: {failed or doctor.stderr.strip()[-2000:]}"
        raise PiRootError(msg)
    return seconds


def agent_status(root: PiRoot) -> dict[str, Any]:
    """``edge status --json`` of the running agent, asked in the root as its user."""
    done = in_root(root, SUDO + f"sudo -u {AGENT_USER} edge status -d {DATA_DIR} --json", "status")
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def install_site(root: PiRoot, port: int) -> None:
    """The shipped creek-village site, its bus pointed at hwsim, installed as the guide says."""
    site = (REPO / "edge_agent/examples/creek_village.toml").read_text()
    root.host_path("/root/site.toml").write_text(
        re.sub(r"(?m)^port = 5020$", f"port = {port}", site)
    )
    install = "cd /root && sudo install -m 644 site.toml /etc/hazardwatch/site.toml"
    in_root(root, SUDO + install, "installing the site file")


def start_agent(root: PiRoot, clock: list[str], log: Path) -> subprocess.Popen[bytes]:
    """The installed unit's ExecStartPre, then its ExecStart (on ``clock``), as its user."""
    unit = unit_commands(root)
    for name in unit.runtime_dirs:  # as systemd makes them (in the root's /run: no tmpfs)
        made = shlex.join(["/run/" + name])
        script = f"install -d -m {unit.runtime_mode} -o {AGENT_USER} {made}"
        in_root(root, script, f"the unit's runtime directory {name}")
    if unit.pre:
        in_root(root, shlex.join(unit.pre), "the boot supervisor", AGENT_USER)
    argv = chroot_command(
        root, "exec " + shlex.join([*unit.start, *clock]), f"{AGENT_USER}:dialout"
    )
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=root_env(**unit.env)
        )


def alive(agent: subprocess.Popen[bytes], log: Path) -> None:
    """Raise if the agent has exited: a gateway's agent never stops by itself."""
    if agent.poll() is not None:
        msg = f"the agent exited with {agent.returncode}; its log: {log}"
        raise PiRootError(msg)


def watch_storm(
    root: PiRoot, agent: subprocess.Popen[bytes], port: int, budget_s: float, clock: SimClock
) -> dict[str, Any]:
    """Ready, first alarm, siren coil, the technician's commands, then the storm to its end."""
    started = time.monotonic()
    data = root.host_path(DATA_DIR)
    log = clock.log

    def ready() -> bool:
        alive(agent, log)
        return (data / "control.sock").exists()

    def first_alarm() -> dict[str, Any] | None:
        alive(agent, log)
        return next(iter(events(data, "alarm")), None)

    wait_until(ready, budget_s, "the agent's control socket")
    ready_s = time.monotonic() - started
    say(f"agent ready (control socket) after {ready_s:.1f} s")
    alarm = wait_until(first_alarm, budget_s, "the first alarm in the root")
    seen = time.time()
    first_alarm_s = time.monotonic() - started
    # The alarm's time is the crossing sample's simulated time: how long ago that was, in
    # real seconds, is the poll -> evaluate -> commit delay under emulation.
    alarm_lag_s = seen - clock.real_time(float(alarm["ts"]))
    say(
        f"first alarm after {first_alarm_s:.1f} s: {alarm['subject']} level {alarm['level']}, "
        f"stored {alarm_lag_s:.2f} s after its sample"
    )
    wait_until(lambda: siren_coil_on(port), 120, "the siren coil to read on at hwsim")
    siren_s = time.monotonic() - started
    say(f"siren coil on at hwsim after {siren_s:.1f} s")
    commands = technician_commands(root, port)
    backend = agent_status(root)["alarm_backend"]
    # The rest of the storm: the agent must stay up (an exit ends the wait early).
    deadline = started + budget_s
    wait_until(
        lambda: agent.poll() is not None or time.monotonic() > deadline,
        max(0.0, deadline - time.monotonic()) + 5,
        "the storm's end",
    )
    alive(agent, log)
    final = agent_status(root)
    alarms = events(data, "alarm")
    return {
        "ready_s": round(ready_s, 1),
        "first_alarm_s": round(first_alarm_s, 1),
        "first_alarm_lag_s": round(alarm_lag_s, 2),
        "first_alarm": {"rule": alarm["subject"], "level": alarm["level"]},
        "siren_coil_on_s": round(siren_s, 1),
        "alarm_events": len(alarms),
        "highest_level": max(int(a["level"] or 0) for a in alarms),
        "agent_backend": backend,
        "site_level_at_end": final["level"],
        "ran_s": round(time.monotonic() - started, 1),
        "commands_s": commands,
    }


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, as systemd stops the unit; SIGKILL after 30 s."""
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class SimClock:
    """The storm's clock, shared by hwsim and the agent (``--speed --origin --anchor``)."""

    speed: float
    origin: datetime
    anchor: float
    log: Path

    def options(self) -> list[str]:
        """The command-line options both take."""
        return [
            *("--speed", repr(self.speed), "--origin", self.origin.isoformat()),
            *("--anchor", repr(self.anchor)),
        ]

    def real_time(self, simulated: float) -> float:
        """The wall-clock epoch at which simulated time is ``simulated``."""
        return self.anchor + (simulated - self.origin.timestamp()) / self.speed


@contextlib.contextmanager
def station(clock: SimClock, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``hwsim serve creek_village`` on this host, on ``port``, until the block ends."""
    hwsim = shutil.which("hwsim", path=str(Path(sys.executable).parent)) or "hwsim"
    simulator = subprocess.Popen(
        [hwsim, "serve", "creek_village", *clock.options(), "--tcp-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), 60, "hwsim to listen")
        yield simulator
    finally:
        stop(simulator)


def storm_clock(speed: float, log: Path) -> SimClock:
    """The station file's storm starts 1800 s after its origin: begin just before it."""
    return SimClock(speed, datetime(2026, 7, 1, tzinfo=UTC), time.time() - 1500 / speed, log)


def run_storm(root: PiRoot, minutes: float, speed: float, log: Path) -> dict[str, Any]:
    """The simulator on this host, the agent in the root as systemd would start it."""
    port = free_port()
    install_site(root, port)
    clock = storm_clock(speed, log)
    agent = None
    with station(clock, port):
        try:
            agent = start_agent(root, clock.options(), log)
            return watch_storm(root, agent, port, minutes * 60, clock)
        finally:
            stop(agent)


def poll_once(root: PiRoot, log: Path) -> dict[str, Any]:
    """The short check: one ``edge poll --once --json`` of every device, as the agent's user."""
    port = free_port()
    install_site(root, port)
    with station(storm_clock(1.0, log), port):
        started = time.monotonic()
        command = f"sudo -u {AGENT_USER} edge poll -c {SITE} --once --json"
        done = in_root(root, SUDO + command, "edge poll --once in the root", timeout=600)
        seconds = time.monotonic() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    say(f"edge poll --once: {len(lines)} readings in {seconds:.1f} s")
    return {"poll_once_s": round(seconds, 1), "readings": len(lines)}


def check(
    arch: PiArch,
    minutes: float,
    speed: float,
    work: Path,
    smoke: bool = False,
) -> dict[str, Any]:
    """The check on one architecture; its figures (``passed`` False with ``error``).

    ``smoke``: the bundle's install and one poll of every device only (CI's short check).
    """
    result: dict[str, Any] = {"arch": arch.debian, "passed": False}
    log = work / f"agent-{arch.debian}.log"
    try:
        root, _ = timed(f"{arch.debian} root", lambda: ensure_root(arch))
        result |= {"root_build_s": round(root.build_s, 1), "root_cached": root.cached}
        with entered(root):
            fresh_gateway(root)
            version = project_version()
            if arch.debian == "armhf":
                apt = SUDO + guide_block(ARMHF_MARKER)
                _, apt_s = timed("the guide's 32-bit step", lambda: in_root(root, apt, "apt-get"))
                result["system_packages_s"] = round(apt_s, 1)
            _, bundle_s = timed("bundle", lambda: put_bundle(root, version))
            result["bundle_s"] = round(bundle_s, 1)
            install = SUDO + guide_block()
            _, install_s = timed("the guide's install", lambda: in_root(root, install, "install"))
            result["install_s"] = round(install_s, 1)
            if smoke:
                result |= poll_once(root, log)
                result["passed"] = result["readings"] > 0
                return result
            kernels, _ = timed("alarm kernels, cold and warm", lambda: kernel_times(root))
            result |= kernels
            result |= run_storm(root, minutes, speed, log)
    except (PiRootError, AssertionError, OSError) as exc:
        result["error"] = str(exc)
        say(f"{arch.debian} FAILED: {exc}")
        return result
    expected = EXPECTED_BACKEND[arch.debian]
    result["passed"] = result["agent_backend"] == expected == result["backend"]
    if not result["passed"]:
        result["error"] = f"the agent runs {result['agent_backend']}, expected {expected}"
        say(f"{arch.debian} FAILED: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the check on the architectures asked for; exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", choices=[*ARCHES, "all"], default="all")
    parser.add_argument("--minutes", type=float, default=3.0, help="How long the agent runs.")
    parser.add_argument("--speed", type=float, default=120.0, help="Simulated s per real s.")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "pi-check")
    parser.add_argument(
        "--smoke", action="store_true", help="Install the bundle and poll once; no storm."
    )
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    names = list(ARCHES) if args.arch == "all" else [args.arch]
    results = {
        name: check(ARCHES[name], args.minutes, args.speed, args.work, args.smoke) for name in names
    }
    print(json.dumps(results))
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
