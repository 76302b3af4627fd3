"""叫应 at scale: N sites raise red at once; time to each site's first call, and to answers.

The real fleet runs as ``fleet serve`` (its own process: REST, the 叫应 engine ticking on
the real clock every ``tick_s``, its durable SQLite file) and calls each site's village
tier through real channels running in this process: a work-chat webhook server, aiosmtpd,
and Kannel (bearerbox, smsbox, its fake SMSC) when it is installed. Every site has one
gateway and a roster of a village, a township and a county person, each reachable by SMS,
e-mail and webhook; set up straight in the fleet's database, not timed.

t0 is when the gateways' red alarm batches are committed, all at once, through the ingest
commit path (``repository.commit``). A site's first call is the first of its village
calls to arrive at a receiver (receiving side; an SMS counts when the fake SMSC prints it,
seen by polling its log every 10 ms). Then every site answers, half by answer link
(``POST /a/{token}``, the token read from the webhook message) and half by reply SMS
(Kannel's MO callback ``/api/v1/sms/mo``), a few at a time: the REST round trip, and the
time until the escalation is recorded as ended.

Baselines in the same run, before the alarms, from this process with the same parallelism
the engine uses: N bare webhook POSTs, N bare SMTP sends, N bare Kannel ``sendsms``.
Prints a JSON object as its last line; target: p99 of alarm -> first call < 5 s at 1,000
sites.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import aiosmtplib  # noqa: E402
import httpx  # noqa: E402
from agent_harness_bench import emit, fleet_process, percentile  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402

from fleet.escalation import CHANNEL_CONCURRENCY  # noqa: E402
from fleet.repository import NewGateway, Received  # noqa: E402
from fleet.roster import PersonIn, Tier  # noqa: E402
from fleet.sqlite_repository import SQLiteRepository  # noqa: E402
from hardware_sim.harness.kannel import Kannel, kannel_installed  # noqa: E402
from hardware_sim.harness.ports import free_port  # noqa: E402
from hardware_sim.harness.webhook_inbox import WebhookInbox  # noqa: E402
from protocol import EventBatch, EventRow  # noqa: E402

_T = TypeVar("_T")
SEED = 20261203
TARGET_P99_S = 5.0
CALLBACK_KEY = "bench-kannel-callback-key"
FLEET_START_S = 60.0
CALLS_WITHIN_S = 300.0
TOKEN = re.compile(r"/a/([A-Za-z0-9_-]+)")
SMSC_LINE = re.compile(r"Got message \d+: <\S+ (\S+) ")


@dataclass(frozen=True, slots=True)
class Site:
    """One bench site: its gateway and how its village person is reached."""

    index: int
    site_id: str
    gateway_id: str
    mobile: str
    email: str
    robot: str

    @classmethod
    def numbered(cls, index: int) -> Site:
        """Site ``index``: ids and contacts derived from the number, all distinct."""
        return cls(
            index,
            f"bench-{index:04d}",
            f"gw-{index:010d}",
            f"+86138{index:08d}",
            f"village@bench-{index:04d}.example.cn",
            f"bench-{index:04d}-village",
        )


# --- receivers ------------------------------------------------------------------------------


class TimedSmtpInbox:
    """A real SMTP server (aiosmtpd) noting when each recipient was handed a message."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, float]] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's handler hook
        self, _server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        """Note the time for each recipient of the message."""
        now = time.time()
        self.arrivals.extend((rcpt, now) for rcpt in envelope.rcpt_tos)
        return "250 OK"

    @contextlib.contextmanager
    def running(self) -> Iterator[TimedSmtpInbox]:
        """Serve until the block ends."""
        self._controller.start()
        try:
            yield self
        finally:
            self._controller.stop()


@dataclass
class SmscWatch:
    """Tails the fake SMSC's logs: when each number was first sent a message (this clock).

    fakesmsc prints each message as it gets it; polling every 10 ms bounds the error.
    """

    kannel: Kannel
    first: dict[str, float] = field(default_factory=dict)
    count: int = 0
    _offsets: dict[Path, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _scan(self) -> None:
        now = time.time()
        for path in self.kannel.phone_logs:
            with contextlib.suppress(FileNotFoundError), path.open("rb") as log:
                log.seek(self._offsets.get(path, 0))
                data = log.read()
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next scan
            self._offsets[path] = self._offsets.get(path, 0) + end
            for match in SMSC_LINE.finditer(data[:end].decode(errors="replace")):
                self.count += 1
                self.first.setdefault(match.group(1), now)

    @contextlib.contextmanager
    def running(self) -> Iterator[SmscWatch]:
        """Watch on a thread until the block ends."""

        def loop() -> None:
            while not self._stop.wait(0.01):
                self._scan()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


# --- set-up (not timed) ---------------------------------------------------------------------


def set_up_sites(db_path: Path, sites: Sequence[Site], robots: WebhookInbox) -> None:
    """Enroll one gateway per site and give each site its roster of three tiers."""
    repository = SQLiteRepository(db_path, durable=False)
    now = time.time()
    for site in sites:
        _token, secret = repository.create_enrollment_token(
            site.site_id, now + 3600, None, None, now
        )
        repository.redeem_enrollment_token(
            secret, NewGateway(site.gateway_id, "k" * 44, "$7$x", None, None), now
        )
        n = site.index
        roster = [
            PersonIn(Tier.VILLAGE, f"村监测员{n}", "群测群防员", site.mobile, site.email,
                     robots.url(site.robot)),
            PersonIn(Tier.TOWNSHIP, f"乡镇值班{n}", "乡镇值班", f"+86139{n:08d}",
                     f"township@{site.site_id}.example.cn", robots.url(f"{site.site_id}-town")),
            PersonIn(Tier.COUNTY, f"县值班{n}", "县值班", f"+86137{n:08d}",
                     f"county@{site.site_id}.example.cn"),
        ]  # fmt: skip
        repository.escalation.replace_roster(site.site_id, roster, now)
    repository.close()


def escalation_toml(smtp_port: int, kannel: Kannel | None, tick_s: float) -> str:
    """The fleet's 叫应 settings: these channels, the default policy."""
    text = (
        f'sms_callback_key = "{CALLBACK_KEY}"\ntick_s = {tick_s}\nwebhooks = true\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsender = "alerts@county.example.cn"\n'
    )
    if kannel is not None:
        text += (
            f'\n[kannel]\nsendsms_url = "{kannel.sendsms_url}"\nusername = "fleet"\n'
            'password = "fleet-password"\nsender = "10086"\n'
        )
    return text


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine so far, all CPUs (Linux)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuMark:
    """CPU seconds used so far by the fleet, this process (the receivers), the machine."""

    fleet: float
    bench: float
    machine: float

    @classmethod
    def now(cls, fleet_pid: int) -> CpuMark:
        """The counters now."""
        return cls(cpu_seconds(fleet_pid), cpu_seconds(os.getpid()), machine_cpu())

    def since(self, start: CpuMark, wall_s: float) -> dict[str, Any]:
        """CPU seconds used from ``start`` to this mark by each, and by everything else."""
        fleet, bench = self.fleet - start.fleet, self.bench - start.bench
        machine = self.machine - start.machine
        return {
            "wall_s": round(wall_s, 2),
            "cores": os.cpu_count(),
            "fleet_s": round(fleet, 2),
            "receivers_s": round(bench, 2),
            "kannel_and_others_s": round(max(machine - fleet - bench, 0.0), 2),
        }


# --- baselines ------------------------------------------------------------------------------


async def at_most(limit: int, jobs: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Run ``jobs``, ``limit`` at a time (as the engine sends on one channel)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Coroutine[Any, Any, _T]) -> _T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs))


async def bare_webhook_posts(robots: WebhookInbox, count: int) -> float:
    """Seconds for ``count`` bare POSTs through one client, as many at once as the engine."""
    body = {"msgtype": "text", "text": {"content": "baseline"}}
    async with httpx.AsyncClient(timeout=60) as client:
        start = time.perf_counter()
        posts = [client.post(robots.url(f"baseline-{i}"), json=body) for i in range(count)]
        await at_most(CHANNEL_CONCURRENCY, posts)
        return time.perf_counter() - start


async def bare_smtp_sends(port: int, count: int) -> float:
    """Seconds for ``count`` bare e-mails, one connection each, as many at once as the engine."""

    async def one(i: int) -> None:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "a@b.cn", f"baseline{i}@b.cn", "baseline"
        mail.set_content("baseline")
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=port, timeout=60)

    start = time.perf_counter()
    await at_most(CHANNEL_CONCURRENCY, [one(i) for i in range(count)])
    return time.perf_counter() - start


async def bare_sendsms(kannel: Kannel, watch: SmscWatch, count: int) -> tuple[float, float]:
    """(accepted, at the fake SMSC): seconds for ``count`` bare sendsms POSTs, as the engine."""
    before = watch.count
    headers = {
        "X-Kannel-Username": "fleet",
        "X-Kannel-Password": "fleet-password",
        "X-Kannel-From": "10086",
        "X-Kannel-Coding": "2",
        "Content-Type": "text/plain; charset=UTF-8",
    }
    async with httpx.AsyncClient(timeout=60) as client:
        start = time.perf_counter()
        posts = [
            client.post(
                kannel.sendsms_url,
                content="【HazardWatch 红色预警】基线".encode(),
                headers={**headers, "X-Kannel-To": f"+86170{i:08d}"},
            )
            for i in range(count)
        ]
        answers = await at_most(CHANNEL_CONCURRENCY, posts)
        accepted = time.perf_counter() - start
    refused = [a.status_code for a in answers if a.status_code not in (200, 202)]
    if refused:
        msg = f"Kannel refused {len(refused)} bare sendsms: {refused[:5]}"
        raise RuntimeError(msg)
    await until(lambda: watch.count >= before + count, 300, "the bare SMS at the fake SMSC")
    return accepted, time.perf_counter() - start


# --- the measured run -----------------------------------------------------------------------


async def until(condition: Any, within_s: float, what: str, every_s: float = 0.01) -> None:
    """Wait for ``condition()``, checking every ``every_s``; TimeoutError naming ``what``."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            msg = f"timed out after {within_s} s waiting for {what}"
            raise TimeoutError(msg)
        await asyncio.sleep(every_s)


def raise_red(db_path: Path, sites: Sequence[Site]) -> tuple[float, float]:
    """Every site's gateway reports red, committed in one go; (t0, commit seconds)."""
    repository = SQLiteRepository(db_path)
    now = time.time()
    received = [
        Received(
            s.gateway_id,
            now,
            EventBatch(
                gateway_id=s.gateway_id,
                first_seq=1,
                last_seq=1,
                rows=[EventRow(seq=1, ts=now, kind="alarm", subject="slope", level=4, detail={})],
            ),
        )
        for s in sites
    ]
    start = time.perf_counter()
    repository.commit(received)
    t0 = time.time()
    repository.close()
    return t0, time.perf_counter() - start


def say(text: str) -> None:
    """Progress on stderr (the JSON record alone goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def stats(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """p50/p99/max (times ``scale``) and n of a list of durations."""
    if not values:
        return {"n": 0}
    listed = list(values)
    return {
        "p50": round(scale * percentile(listed, 50), digits),
        "p99": round(scale * percentile(listed, 99), digits),
        "max": round(scale * max(listed), digits),
        "n": len(listed),
    }


def fleet_view(db_path: Path) -> dict[str, dict[str, Any]]:
    """Per gateway id: escalation start, first ``sent_at``, end, from the fleet's file."""
    with contextlib.closing(sqlite3.connect(db_path, timeout=60)) as db:
        rows = db.execute(
            "SELECT g.id, e.started_at, e.ended_at, e.end_reason, "
            "(SELECT min(sent_at) FROM escalation_calls c WHERE c.escalation_id = e.id), "
            "(SELECT count(*) FROM escalation_calls c WHERE c.escalation_id = e.id "
            " AND c.status = 'failed') "
            "FROM escalations e JOIN alarms a ON a.id = e.alarm_id "
            "JOIN gateways g ON g.num = a.gw"
        ).fetchall()
    return {
        gw: {"started": s, "ended": e, "reason": r, "first_sent": f, "failed": x}
        for gw, s, e, r, f, x in rows
    }


@dataclass
class Rig:
    """The sites, the receivers and the fleet's address of one run."""

    sites: list[Site]
    db_path: Path
    url: str
    robots: WebhookInbox
    smtp: TimedSmtpInbox
    kannel: Kannel | None
    watch: SmscWatch | None
    fleet_pid: int

    @property
    def channels(self) -> list[str]:
        """The channels the fleet calls on."""
        return ["webhook", "email", *(["sms"] if self.kannel else [])]

    def arrivals(self) -> dict[str, dict[Site, float]]:
        """Per channel: when each site's first village message arrived (this clock)."""
        by_robot = {f"/robot/{s.robot}": s for s in self.sites}
        by_email = {s.email: s for s in self.sites}
        by_mobile = {s.mobile: s for s in self.sites}
        seen: dict[str, dict[Site, float]] = {c: {} for c in self.channels}
        for path, at in list(self.robots.received_at):
            if path in by_robot:
                seen["webhook"].setdefault(by_robot[path], at)
        for rcpt, at in list(self.smtp.arrivals):
            if rcpt in by_email:
                seen["email"].setdefault(by_email[rcpt], at)
        if self.watch is not None:
            for number, at in list(self.watch.first.items()):
                if number in by_mobile:
                    seen["sms"].setdefault(by_mobile[number], at)
        return seen

    def tokens(self) -> dict[Site, str]:
        """Each site's answer-link token, from the first webhook message it was sent."""
        by_robot = {f"/robot/{s.robot}": s for s in self.sites}
        found: dict[Site, str] = {}
        for path, body in list(self.robots.posts):
            match = TOKEN.search(body["text"]["content"])
            if match and path in by_robot:
                found.setdefault(by_robot[path], match.group(1))
        return found


async def baselines(rig: Rig) -> dict[str, Any]:
    """The channels' own speed at N messages, with the fleet idle."""
    count = len(rig.sites)
    baseline: dict[str, Any] = {
        "webhook_posts_s": round(await bare_webhook_posts(rig.robots, count), 3),
        "smtp_sends_s": round(await bare_smtp_sends(rig.smtp.port, count), 3),
    }
    if rig.kannel is not None and rig.watch is not None:
        accepted, at_smsc = await bare_sendsms(rig.kannel, rig.watch, count)
        baseline["kannel_accepted_s"] = round(accepted, 3)
        baseline["kannel_at_smsc_s"] = round(at_smsc, 3)
    baseline["n"] = count
    return baseline


async def first_calls(rig: Rig, rng: random.Random) -> dict[str, Any]:
    """Raise red at every site at once; when each site's calls arrived, relative to t0."""
    count = len(rig.sites)
    order = list(rig.sites)
    rng.shuffle(order)
    cpu_before = CpuMark.now(rig.fleet_pid)
    t0, commit_s = raise_red(rig.db_path, order)
    result: dict[str, Any] = {"alarm_commit_s": round(commit_s, 3)}

    def everyone_called() -> bool:
        return all(len(arrived) == count for arrived in rig.arrivals().values())

    # Looked at 4 times a second: this process's receivers need the CPU more.
    with contextlib.suppress(TimeoutError):
        await until(everyone_called, CALLS_WITHIN_S, "the calls", 0.25)
    # The machine may be shared: what each part, and everything else, used meanwhile.
    result["cpu_while_calling"] = CpuMark.now(rig.fleet_pid).since(cpu_before, time.time() - t0)
    seen = rig.arrivals()
    say(f"calls arrived: { {c: len(v) for c, v in seen.items()} }")
    if not everyone_called():
        got = {c: len(v) for c, v in seen.items()}
        result["error"] = f"not every village call arrived within {CALLS_WITHIN_S:g} s: {got}"
    first: dict[Site, float] = {}
    for arrived in seen.values():
        for site, at in arrived.items():
            first[site] = min(at, first.get(site, at))
    result["first_call_s"] = stats([at - t0 for at in first.values()])
    result["by_channel_s"] = {c: stats([at - t0 for at in v.values()]) for c, v in seen.items()}
    every = [at for arrived in seen.values() for at in arrived.values()]
    result["all_village_calls_s"] = round(max(every, default=t0) - t0, 3)
    view = fleet_view(rig.db_path)
    result["fleet_started_s"] = stats([v["started"] - t0 for v in view.values()])
    result["fleet_first_sent_s"] = stats(
        [v["first_sent"] - t0 for v in view.values() if v["first_sent"] is not None]
    )
    result["failed_calls"] = sum(v["failed"] for v in view.values())
    return result


async def answer_all(rig: Rig, concurrency: int, rng: random.Random) -> dict[str, Any]:
    """Every site answers, ``concurrency`` at a time; round trips, sent -> escalation ended.

    Odd sites answer by reply SMS (when Kannel runs), the others by answer link.
    """
    tokens = rig.tokens()
    done: dict[str, list[tuple[Site, float, float]]] = {"link": [], "sms_reply": []}
    gate = asyncio.Semaphore(concurrency)
    order = [s for s in rig.sites if s in tokens or rig.kannel]
    rng.shuffle(order)

    async def one(client: httpx.AsyncClient, site: Site) -> None:
        by_sms = rig.kannel is not None and (site.index % 2 or site not in tokens)
        way = "sms_reply" if by_sms else "link"
        async with gate:
            sent = time.time()
            start = time.perf_counter()
            if way == "link":
                answer = await client.post(f"/a/{tokens[site]}")
            else:
                answer = await client.get(
                    "/api/v1/sms/mo",
                    params={"key": CALLBACK_KEY, "from": site.mobile.lstrip("+"),
                            "to": "10086", "text": "1", "charset": "UTF-8"},
                )  # fmt: skip
            took = time.perf_counter() - start
        if answer.status_code != 200:
            msg = f"{way} answer of {site.site_id}: {answer.status_code} {answer.text[:200]}"
            raise RuntimeError(msg)
        done[way].append((site, sent, took))

    async with httpx.AsyncClient(base_url=rig.url, timeout=60) as client:
        await asyncio.gather(*(one(client, s) for s in order))
    view = fleet_view(rig.db_path)
    answers: dict[str, Any] = {"concurrency": concurrency}
    for way, taken in done.items():
        ended = [view[s.gateway_id]["ended"] - sent for s, sent, _took in taken]
        answers[way] = {
            "round_trip_ms": stats([took for _s, _sent, took in taken], 1000, 1),
            "until_ended_ms": stats([e for e in ended if e is not None], 1000, 1),
        }
    answers["escalations_ended_by_answer"] = sum(
        1 for v in view.values() if (v["reason"] or "").startswith("answered by")
    )
    return answers


@contextlib.contextmanager
def rig_running(count: int, with_sms: bool, tick_s: float, keep: Path | None) -> Iterator[Rig]:
    """Sites set up, receivers and (with SMS) Kannel running, ``fleet serve`` serving."""
    with contextlib.ExitStack() as stack:
        if keep is not None:
            keep.mkdir(parents=True)
            tmp = keep
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hw-escbench-")))
        robots = stack.enter_context(WebhookInbox().running())
        smtp = stack.enter_context(TimedSmtpInbox().running())
        port = free_port()
        kannel = watch = None
        if with_sms:
            (tmp / "kannel").mkdir()
            mo_url = f"http://127.0.0.1:{port}/api/v1/sms/mo?key={CALLBACK_KEY}"
            kannel = Kannel(tmp / "kannel", mo_url)
            kannel.start()
            stack.callback(kannel.stop)
            watch = stack.enter_context(SmscWatch(kannel).running())
        sites = [Site.numbered(i) for i in range(count)]
        data_dir = tmp / "fleet"
        set_up_sites(data_dir / "fleet.sqlite", sites, robots)
        settings = tmp / "escalation.toml"
        settings.write_text(escalation_toml(smtp.port, kannel, tick_s))
        fleet = stack.enter_context(
            fleet_process(data_dir, port, "--escalation", str(settings), start_s=FLEET_START_S)
        )
        url = f"http://127.0.0.1:{port}"
        yield Rig(sites, data_dir / "fleet.sqlite", url, robots, smtp, kannel, watch, fleet.pid)


async def run(
    count: int, with_sms: bool, tick_s: float, concurrency: int, keep: Path | None
) -> dict[str, Any]:
    """The whole benchmark; returns the JSON record."""
    rng = random.Random(SEED)
    result: dict[str, Any] = {"sites": count, "seed": SEED, "tick_s": tick_s}
    start = time.perf_counter()
    with rig_running(count, with_sms, tick_s, keep) as rig:
        result["channels"] = rig.channels
        result["setup_s"] = round(time.perf_counter() - start, 1)
        say(f"{count} sites set up, the fleet serves; baselines")
        result["baseline"] = baseline = await baselines(rig)
        say("raising red")
        result.update(await first_calls(rig, rng))
        result["answers"] = await answer_all(rig, concurrency, rng)
        say("answers done")
    p99 = result["first_call_s"].get("p99")
    slowest_bare = max(v for k, v in baseline.items() if k.endswith("_s"))
    result["p99_vs_slowest_bare_channel"] = round(p99 / slowest_bare, 2) if p99 else None
    result["target_p99_s"] = TARGET_P99_S
    result["met"] = bool("error" not in result and p99 is not None and p99 < TARGET_P99_S)
    return result


def main() -> None:
    """Parse the options, run, print the JSON record last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 sites (a quick look)")
    parser.add_argument("--no-sms", action="store_true", help="leave Kannel out")
    parser.add_argument("--tick", type=float, default=1.0, help="the engine's tick_s")
    parser.add_argument("--answer-concurrency", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it")
    args = parser.parse_args()
    count = 100 if args.quick else args.sites
    with_sms = kannel_installed() and not args.no_sms
    result = asyncio.run(run(count, with_sms, args.tick, args.answer_concurrency, args.keep))
    if not with_sms:
        result["sms"] = "left out (--no-sms)" if args.no_sms else "Kannel is not installed"
    emit(result)


if __name__ == "__main__":
    main()
