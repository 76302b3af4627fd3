"""``edge doctor``: the technician's on-site check of what the gateway needs to warn.

Each check gives a verdict and a line the technician can act on:

- **fail**: the gateway cannot warn as configured (a serial port it cannot open, a
  device or the siren relay not answering, a store it cannot write, a full disk);
- **warn**: it warns, but worse (the clock not synchronised, the county out of reach,
  the alarm kernels not compiled yet, a disk filling up, a slope forecast's sensor
  polled too seldom to warn a day ahead);
- **ok**.

It never writes to a device: the siren relay's coils are only read back, never switched.
With the agent running, device and siren results come from the agent's own polls, never
from a second opening of a line the agent owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import getpass
import importlib.util
import os
import shutil
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alarm_engine.kernel_cache import engine_cache_dir, version_dirs
from drivers.bus import ModbusBus, TransactionError
from drivers.bus_config import SerialBusConfig
from drivers.port_problem import fix_for
from edge_agent import reading_stage
from edge_agent.actuation import RelayActuator
from edge_agent.clock_sync import system_clock_synced
from edge_agent.config_probe import probe_device
from edge_agent.control_messages import StatusReply
from edge_agent.enroll import broker_endpoint, enrollment_state, load_enrollment
from edge_agent.mounts import mount_of
from site_schema.rule_sampling import poll_intervals
from site_schema.rule_specs import FailureForecastRule
from site_schema.site_config import SiteConfig

Verdict = Literal["ok", "warn", "fail"]

#: Free space below this stops the store from taking readings for long: a fail.
MIN_FREE_BYTES = 64 * 2**20
#: How long the doctor waits for the county's broker to accept a connection.
BROKER_TIMEOUT_S = 5.0
#: A failure forecast's displacement polled slower than this warns later (see
#: ``check_slope_polling``).
FORECAST_POLL_S = 600.0
#: Share of the check set's failures (in the targets' scope) the shipped forecast warns a
#: day ahead of with hourly readings: the README's lead-time table, whose hourly row a
#: test holds equal to this, so that the warning does not go stale when the method moves.
HOURLY_DAY_AHEAD_PCT = 93
#: A device the running agent has not heard from in this many poll intervals is down.
STALE_POLLS = 3.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict and what it found, in words a technician can act on."""

    check: str
    verdict: Verdict
    detail: str


@dataclass(frozen=True, slots=True)
class Surroundings:
    """What the doctor asks of the machine itself; tests give their own (see the test)."""

    clock_synced: Callable[[], bool] = system_clock_synced
    disk_usage: Callable[[Path], tuple[int, int, int]] = shutil.disk_usage
    numba_installed: Callable[[], bool] = lambda: importlib.util.find_spec("numba") is not None
    mounts: Callable[[], str] = lambda: Path("/proc/mounts").read_text()


def verdict_of(findings: list[Finding]) -> Verdict:
    """The worst verdict among ``findings``."""
    verdicts = {f.verdict for f in findings}
    return "fail" if "fail" in verdicts else "warn" if "warn" in verdicts else "ok"


# --- ports -------------------------------------------------------------------------------


def check_port(path: str, what: str) -> Finding:
    """Whether the serial port ``path`` is there and this user may open it (no opening)."""
    check = f"port {path}"
    if not os.path.exists(path):
        return Finding(check, "fail", f"{what}: no such device; {fix_for(errno.ENOENT, path)}")
    if not os.access(path, os.R_OK | os.W_OK):
        fix = fix_for(errno.EACCES, path)
        return Finding(check, "fail", f"{what}: permission denied; {fix}")
    return Finding(check, "ok", f"{what}: present, readable and writable")


def _ports(site: SiteConfig) -> Iterator[tuple[str, str]]:
    for bus in site.buses:
        if isinstance(bus, SerialBusConfig):
            yield bus.device, f"bus {bus.name}"
    if site.village_call is not None:
        yield site.village_call.modem, "village-call modem"


# --- devices and the siren ---------------------------------------------------------------


async def _probe_bus(site: SiteConfig, bus_name: str, port_missing: bool) -> list[Finding]:
    config = next(b for b in site.buses if b.name == bus_name)
    devices = [d for d in site.devices if d.bus == bus_name]
    actuators = [a for a in site.actuation.actuators if a.device.bus == bus_name]
    if port_missing:
        why = "not probed: its serial port cannot be opened (see above)"
        return [Finding(f"device {d.name}", "fail", why) for d in devices] + [
            Finding(f"siren {a.id}", "fail", why) for a in actuators
        ]
    findings = []
    bus = ModbusBus(config)
    try:
        for device in devices:
            problem = await probe_device(bus, device)
            if problem is None:
                what = f"answered (unit {device.unit_id}, profile {device.profile.name})"
                findings.append(Finding(f"device {device.name}", "ok", what))
            else:
                findings.append(Finding(f"device {device.name}", "fail", problem))
        for spec in actuators:
            try:
                coils = await RelayActuator(spec, bus, lambda *_: None).read_back()
            except TransactionError as exc:
                why = f"relay module (unit {spec.device.unit_id}) did not read back: {exc.detail}"
                findings.append(Finding(f"siren {spec.id}", "fail", why))
                continue
            on = ", ".join(sorted(c for c, v in coils.items() if v)) or "none"
            what = f"relay module read back {len(coils)} coils (on: {on}); not switched"
            findings.append(Finding(f"siren {spec.id}", "ok", what))
    finally:
        await bus.close()
    return findings


def _from_agent(site: SiteConfig, status: StatusReply) -> list[Finding]:
    findings = []
    for device in site.devices:
        check = f"device {device.name}"
        seen = status.devices.get(device.name)
        if seen is None or seen.last_poll is None:
            why = "has not answered since the agent started"
            if seen is not None and seen.last_error:
                why += f": {seen.last_error}"
            findings.append(Finding(check, "fail", why))
            continue
        ago = status.now - seen.last_poll
        if ago > STALE_POLLS * device.poll_interval_s + 30.0:
            why = f"last answered {ago:.0f} s ago" + (
                f": {seen.last_error}" if seen.last_error else ""
            )
            findings.append(Finding(check, "fail", why))
            continue
        what = f"answering the running agent, last {ago:.0f} s ago"
        if seen.exceptions:
            # it answers, but refuses some of its reads: those channels stay without values
            refused = "; ".join(
                e.detail + (f" ({e.hint})" if e.hint else "") for e in seen.exceptions
            )
            findings.append(Finding(check, "warn", f"{what}, but refuses: {refused}"))
            continue
        faults = ", ".join(f"{k} {v}" for k, v in sorted(seen.faults.items()))
        findings.append(
            Finding(check, "ok", what + (f"; faults so far: {faults}" if faults else ""))
        )
    for spec in site.actuation.actuators:
        state = status.actuators.get(spec.id) or {}
        if state.get("fault"):
            findings.append(
                Finding(f"siren {spec.id}", "fail", "the running agent reports a fault")
            )
        elif state.get("read_back") is None:
            what = "not read back by the running agent yet"
            findings.append(Finding(f"siren {spec.id}", "warn", what))
        else:
            findings.append(Finding(f"siren {spec.id}", "ok", "the running agent reads it back"))
    return findings


# --- the machine -------------------------------------------------------------------------


def check_clock(surroundings: Surroundings) -> Finding:
    """Whether the kernel says the clock is synchronised."""
    if surroundings.clock_synced():
        return Finding("clock", "ok", "synchronised")
    hint = "turn on NTP (timedatectl set-ntp true) or a GNSS time source; there is no RTC"
    return Finding("clock", "warn", f"not synchronised: readings get suspect timestamps; {hint}")


def check_disk(data_dir: Path, quota_bytes: int, surroundings: Surroundings) -> Finding:
    """Free space for the store, and the SD-card hints."""
    where = data_dir if data_dir.exists() else data_dir.parent
    _total, _used, free = surroundings.disk_usage(where)
    free_mb = free / 2**20
    if free < MIN_FREE_BYTES:
        return Finding("disk", "fail", f"{free_mb:.0f} MB free: the store cannot keep readings")
    notes = []
    verdict: Verdict = "ok"
    if free < quota_bytes:
        notes.append(f"less than the store quota ({quota_bytes / 2**20:.0f} MB)")
        verdict = "warn"
    try:
        mount = mount_of(where, surroundings.mounts())
    except OSError:
        mount = None
    if mount is not None and mount.device.startswith("/dev/mmcblk"):
        notes.append(f"on the SD card ({mount.device})")
        if "noatime" not in mount.options.split(","):
            notes.append(f"mount {mount.point} with noatime, or every read writes the card")
            verdict = "warn"
    detail = f"{free_mb:.0f} MB free" + ("; " + "; ".join(notes) if notes else "")
    return Finding("disk", verdict, detail)


def check_store(data_dir: Path) -> Finding:
    """Whether the agent can write its store in ``data_dir``."""
    if data_dir.exists():
        ok = os.access(data_dir, os.W_OK | os.X_OK)
    else:
        ok = os.access(data_dir.parent, os.W_OK | os.X_OK)
    if ok:
        return Finding("store", "ok", f"{data_dir} is writable")
    return Finding("store", "fail", f"{data_dir} is not writable by {getpass.getuser()}")


def check_stage(data_dir: Path, surroundings: Surroundings) -> Finding:
    """Whether the agent's last run staged its readings in RAM (``--stage-dir``)."""
    store = data_dir / "store.sqlite"
    stage = None
    try:
        mounts = surroundings.mounts()
        if store.exists():
            uri = f"file:{store}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
                stage = reading_stage.recorded(conn)
    except (OSError, sqlite3.Error) as exc:
        return Finding("stage", "warn", f"cannot tell: {exc}")
    if stage is not None:
        mount = mount_of(stage.parent, mounts)
        if mount is not None and mount.in_ram:
            why = f"readings staged in RAM ({stage.parent}), moved to the store every 5 minutes"
            return Finding("stage", "ok", why)
        why = f"readings are staged in {stage.parent}, which is not tmpfs: use /run/hazardwatch"
        return Finding("stage", "warn", why)
    card = mount_of(data_dir if data_dir.exists() else data_dir.parent, mounts)
    if card is None or not card.device.startswith("/dev/mmcblk"):
        return Finding("stage", "ok", "no stage: each round is committed in the store")
    if not store.exists():
        return Finding("stage", "ok", "the agent has not run here yet")
    why = (
        "each poll round is committed on the SD card: run `edge run` with --stage-dir "
        "/run/hazardwatch (the systemd units do), which writes about a fifth as much"
    )
    return Finding("stage", "warn", why)


def check_numba(data_dir: Path, surroundings: Surroundings) -> Finding:
    """Whether this version's alarm kernels are compiled and cached (a warm start).

    The cache keeps a directory per engine version (``alarm_engine.kernel_cache``); only
    this version's counts, since a previous version's kernels are never loaded.
    """
    if not surroundings.numba_installed():
        why = "numba is not installed (no wheel for this platform): the pure-Python engine runs"
        return Finding("numba", "warn", why)
    base = Path(os.environ.get("NUMBA_CACHE_DIR") or data_dir / "numba-cache")
    cache = Path(engine_cache_dir(str(base)))
    compiled = list(cache.rglob("*.nbi")) if cache.is_dir() else []
    if compiled:
        return Finding(
            "numba", "ok", f"alarm kernels compiled and cached ({len(compiled)} in {cache})"
        )
    others = sum(1 for d in version_dirs(base) if d != cache)
    kept = f"; {base} keeps {others} other version(s)' kernels, not this one's" if others else ""
    why = f"no compiled kernels in {cache}: the first start compiles them (seconds to a minute)"
    return Finding("numba", "warn", why + kept)


def check_slope_polling(site: SiteConfig) -> list[Finding]:
    """Whether each failure forecast's displacement is polled often enough to warn a day ahead.

    On the validation corpus (README, "Slope failure forecast") the forecast warned a day
    ahead of every failure with 10-minute readings and of ``HOURLY_DAY_AHEAD_PCT`` % with
    hourly ones: an hourly bin of one noisy reading hides the start of a short tertiary
    phase on slow creep.
    """
    polls = poll_intervals(site.devices)
    findings = []
    for rule in site.rules:
        if not isinstance(rule, FailureForecastRule) or rule.channel not in polls:
            continue
        poll_s = polls[rule.channel]
        check = f"forecast {rule.id}"
        if poll_s <= FORECAST_POLL_S:
            findings.append(Finding(check, "ok", f"{rule.channel} polled every {poll_s:g} s"))
            continue
        why = (
            f"{rule.channel} polled every {poll_s:g} s: the forecast warns later on slow creep"
            f" than with readings every {FORECAST_POLL_S:g} s (a day ahead of"
            f" {HOURLY_DAY_AHEAD_PCT} % of the corpus's failures hourly, of all at 10"
            f" minutes); set poll_interval_s ="
            f" {FORECAST_POLL_S:g} or less if the sensor allows"
        )
        findings.append(Finding(check, "warn", why))
    return findings


async def check_county(data_dir: Path, timeout_s: float = BROKER_TIMEOUT_S) -> Finding:
    """The enrollment, and whether the county's broker accepts a connection (TLS checked)."""
    state = enrollment_state(data_dir)
    local = "alarms sound here, and readings wait in the store"
    if state == "none":
        return Finding("county", "warn", f"not enrolled (edge enroll): {local}")
    if state in ("pending", "refused"):
        return Finding("county", "warn", f"enrollment {state}: {local}")
    enrollment = load_enrollment(data_dir)
    if enrollment is None:
        return Finding("county", "fail", "enrollment.json cannot be read: enroll again")
    try:
        host, port, tls = broker_endpoint(enrollment)
    except ValueError as exc:
        return Finding("county", "fail", f"enrollment.json: {exc}: enroll again")
    started = time.monotonic()
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls), timeout_s
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        why = str(exc) or type(exc).__name__
        return Finding("county", "warn", f"broker {host}:{port} out of reach ({why}): {local}")
    ms = (time.monotonic() - started) * 1000
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    how = "TLS verified" if tls is not None else "plain TCP"
    what = f"enrolled as {enrollment.gateway_id}; broker {host}:{port} answers ({how}, {ms:.0f} ms)"
    return Finding("county", "ok", what)


# --- all of it ---------------------------------------------------------------------------


async def examine(
    site: SiteConfig,
    data_dir: Path,
    running: StatusReply | str | None,
    surroundings: Surroundings | None = None,
) -> list[Finding]:
    """Every check, in the order a technician would go through them.

    ``running`` is the running agent's status, None when no agent runs (the doctor then
    probes the lines itself), or why a running agent's status could not be read (the
    devices are then not judged: the agent owns their lines).
    """
    surroundings = surroundings or Surroundings()
    findings = []
    missing = set()
    for path, what in _ports(site):
        finding = check_port(path, what)
        findings.append(finding)
        if finding.verdict == "fail":
            missing.add(path)
    if isinstance(running, str):
        why = f"not probed: an agent runs but its status could not be read ({running})"
        findings.extend(Finding(f"device {d.name}", "warn", why) for d in site.devices)
        findings.extend(Finding(f"siren {a.id}", "warn", why) for a in site.actuation.actuators)
    elif running is not None:
        findings.extend(_from_agent(site, running))
    else:
        for bus in site.buses:
            port_missing = isinstance(bus, SerialBusConfig) and bus.device in missing
            findings.extend(await _probe_bus(site, bus.name, port_missing))
    findings.extend(check_slope_polling(site))
    findings.append(check_clock(surroundings))
    findings.append(check_store(data_dir))
    findings.append(check_disk(data_dir, site.agent.quota_bytes, surroundings))
    findings.append(check_stage(data_dir, surroundings))
    findings.append(check_numba(data_dir, surroundings))
    findings.append(await check_county(data_dir))
    return findings
