"""The gateway daemon: poll -> store -> detect -> actuate, with no network needed.

On start it replays the stored history the rules need, so window sums, latched alarms
and levels survive a restart, then asserts the outputs at once. The alarm path is
synchronous from a reading to ``Actuation.set_level``; storage and events are handed
to background tasks so a slow or full disk never delays a siren.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alarm_engine import AlarmEngine, LevelChange
from alarm_engine.details import FORECAST_VALUES
from alarm_engine.engine import RuleCatchingUpError
from drivers.clock import Clock
from drivers.model import Quality, Reading
from drivers.poller import Poller
from edge_agent.actuation import Actuation
from edge_agent.clock_sync import system_clock_synced
from edge_agent.config_probe import probe_site
from edge_agent.config_update import CONFIRM_DEADLINE_S, ConfigUpdater
from edge_agent.control import SOCKET_NAME, serve_control
from edge_agent.control_messages import (
    AckReply,
    AckRequest,
    AlarmHistoryEntry,
    AlarmsReply,
    AlarmsRequest,
    AlarmStatus,
    BusStatus,
    ChannelStatus,
    DeviceStatus,
    ErrorReply,
    SirenTestReply,
    SirenTestRequest,
    StatusReply,
    StatusRequest,
    UpdateRequest,
)
from edge_agent.enroll import enrollment_state, load_enrollment
from edge_agent.faults import FaultTracker
from edge_agent.local_settings import LocalSettings, bind_player
from edge_agent.release_intake import ReleaseIntake
from edge_agent.sdnotify import (
    STARTING_EXTENSION_US,
    notify,
    starting_note_interval_s,
    watchdog_interval_s,
)
from edge_agent.siren_node_link import SirenNodeLink
from edge_agent.site_summary import site_summary
from edge_agent.sl651_uplink import Sl651Uplink
from edge_agent.store import GROUP_COMMIT_S, RETRY_S, LocalStore
from edge_agent.thread_future import in_daemon_thread
from edge_agent.updater import ReleaseUpdater, wait_healthy
from edge_agent.uplink import Uplink
from edge_agent.village_call import VillageCaller, open_modem
from ota.own_version import own_version
from ota.report import OTA_EVENT_KIND, OtaReport
from ota.slots import SlotTree
from protocol import ACK_ALARM_COMMAND, Topic
from protocol.events import (
    ACK_EVENT_KIND,
    ALARM_EVENT_KIND,
    AckAlarmArgs,
    AckEvent,
    AlarmEvent,
    FailureForecast,
    StandingForecast,
)
from protocol.levels import LEVEL_NAMES
from protocol.limits import MAX_STANDING_FORECASTS
from site_schema.rule_specs import ChannelRule
from site_schema.site_config import SiteConfig

log = logging.getLogger(__name__)

AGENT_VERSION = own_version()  # the installed release, not a constant


#: How long a stopping agent waits for the uplink to say goodbye to the broker.
UPLINK_STOP_S = 5.0


def _forecast(change: LevelChange) -> FailureForecast | None:
    """A failure forecast's numbers, when ``change`` is a failure-forecast rule's."""
    if set(FORECAST_VALUES) - set(change.values):
        return None
    return FailureForecast.model_validate({name: change.values[name] for name in FORECAST_VALUES})


def wire_forecasts(engine: AlarmEngine) -> dict[str, StandingForecast]:
    """``engine.standing_forecasts()`` as the health report sends them (never raises).

    At most ``MAX_STANDING_FORECASTS`` of them, in rule id order: a health report with
    more would be refused whole.
    """
    standing = list(engine.standing_forecasts().items())[:MAX_STANDING_FORECASTS]
    return {
        rule_id: StandingForecast.model_validate(
            {**dict(zip(FORECAST_VALUES, forecast.values, strict=True)), "at": forecast.at}
        )
        for rule_id, forecast in standing
    }


def _alarm_event(change: LevelChange) -> dict[str, Any]:
    """The stored detail of ``change``; on the alarm path, so it never raises."""
    try:
        event = AlarmEvent(
            from_level=LEVEL_NAMES[change.old],
            to_level=LEVEL_NAMES[change.new],
            kind=change.kind,
            metric=change.metric,
            detail=change.detail,
            at=change.t,
            forecast=_forecast(change),
        )
    except ValueError:  # not expected: the model takes what LevelChange holds
        log.exception("alarm event of %s kept as text only", change.rule_id)
        return {"detail": change.detail}
    return event.wire()


async def _bounded_stop(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work``; when cancelled, give it UPLINK_STOP_S to finish, then leave it.

    A broker that stops answering mid-disconnect must not hold up the agent's stop (and
    so a restart under systemd); the Last Will tells the fleet the gateway went offline.
    """
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
            await asyncio.wait_for(asyncio.shield(task), UPLINK_STOP_S)
        raise


class RestartRequestedError(Exception):
    """The agent stops so that it can start again in place (a new configuration)."""


class Agent:
    """One gateway: its site, its store, its alarm engine and its outputs.

    With ``config_path`` (the site file it was started from) it also takes signed
    configurations over the air; ``restart_requested`` is set when it stopped to start
    again on a new (or restored) site file. ``settings`` (the gateway's agent.toml) says
    which players the site may name; a site asking for another is refused. ``stage_dir``
    (tmpfs) holds readings between the store's moves (``edge_agent.reading_stage``).
    """

    def __init__(
        self,
        site: SiteConfig,
        data_dir: Path,
        clock: Clock,
        backend: str = "auto",
        clock_synced: Callable[[], bool] = system_clock_synced,
        config_path: Path | None = None,
        confirm_deadline_s: float = CONFIRM_DEADLINE_S,
        slots_root: Path | None = None,
        settings: LocalSettings | None = None,
        stage_dir: Path | None = None,
    ) -> None:
        settings = settings or LocalSettings()
        self.site = site
        self.config_path = config_path
        self.data_dir = data_dir
        self.clock = clock
        self.clock_synced = clock_synced
        speed = clock.speed
        self.store = LocalStore(
            data_dir,
            site.agent.quota_bytes,
            stage_dir=stage_dir,
            monotonic=lambda: time.monotonic() * speed,  # the agent's seconds
        )
        self.engine = AlarmEngine(site.rules, backend)
        self.poller = Poller(site.buses, site.devices, clock, self._on_readings)
        self.actuation = Actuation(
            site.actuation, self.poller.buses, self._emit, bind_player(site, settings)
        )
        self.nodes = [
            SirenNodeLink(spec, self.poller.buses[spec.device.bus], clock, self._emit)
            for spec in site.siren_nodes
        ]
        village_call = site.village_call
        self.village_call = (
            VillageCaller(
                village_call,
                site.site_id,
                self.store,
                clock,
                self.engine.levels,
                self.store.record_event,
                lambda: open_modem(village_call),
                lambda: wire_forecasts(self.engine),
            )
            if village_call is not None
            else None
        )
        # The SL 651 uplink to a provincial centre, besides MQTT, where the site asks for it.
        self.sl651_uplink = (
            Sl651Uplink(site.sl651_uplink, self.store.path, self.store.history, clock)
            if site.sl651_uplink is not None
            else None
        )
        self.faults = FaultTracker(
            lambda kind, subject, detail: self._emit(kind, subject, None, detail)
        )
        self.ready = asyncio.Event()
        self.started = time.monotonic()
        self._events_waiting = asyncio.Event()
        self._readings_waiting = asyncio.Event()
        self._watched = {r.channel for r in site.rules if isinstance(r, ChannelRule)}
        self._synced = True
        self.restart_requested = asyncio.Event()
        self.exit_for_update = False
        self.config_updater = (
            ConfigUpdater(
                config_path,
                data_dir,
                self._store_report,
                lambda candidate: probe_site(candidate, self.poller.buses),
                self._confirm_config,
                self.restart_requested.set,
                confirm_deadline_s,
                settings,
            )
            if config_path is not None
            else None
        )
        documents: dict[Topic, Callable[[bytes], None]] = {}
        if self.config_updater is not None:
            documents[Topic.CONFIG] = self.config_updater.offer
        self.release_intake = self._release_intake(slots_root)
        if self.release_intake is not None:
            documents[Topic.RELEASE] = self.release_intake.offer
        # The uplink runs only on an enrolled gateway (or one holding an offline bundle).
        self.uplink = (
            Uplink(
                data_dir,
                self.store,
                site.uplink,
                AGENT_VERSION,
                self,
                {ACK_ALARM_COMMAND: self._fleet_ack},
                documents=documents,
                site=site_summary(site),
            )
            if enrollment_state(data_dir) in ("enrolled", "pending")
            else None
        )

    # --- the alarm path ----------------------------------------------------------------

    def _on_readings(self, readings: list[Reading]) -> None:
        if not self._synced:
            mono = time.monotonic()
            readings = [
                dataclasses.replace(r, quality=r.quality | Quality.CLOCK_UNSYNCED, mono=mono)
                for r in readings
            ]
        self.store.add_readings(readings)
        self._readings_waiting.set()
        node_level = self._node_level()
        for node in self.nodes:
            node.observe(
                [r for r in readings if r.channel_id.startswith(f"{node.spec.device.name}.")]
            )
        changes: list[LevelChange] = []
        if self.village_call is not None:
            self.village_call.observe(readings)
        if self.sl651_uplink is not None:
            self.sl651_uplink.observe(readings)
        for reading in readings:
            self.faults.update(reading)
            if reading.channel_id in self._watched:
                changes += self.engine.push(
                    reading.channel_id, reading.timestamp, reading.value, reading.good
                )
        if changes:
            self._apply(changes, record=True)
        elif self._node_level() != node_level:
            self.actuation.set_level(self.site_level(), "siren node fallback")
        if not self.ready.is_set() and all(d.health.polls for d in self.poller.devices):
            self.ready.set()

    def _apply(self, changes: list[LevelChange], record: bool) -> None:
        for change in changes:
            log.warning(
                "alarm %s: %s -> %s (%s)",
                change.rule_id,
                LEVEL_NAMES[change.old],
                LEVEL_NAMES[change.new],
                change.detail,
            )
            if record:
                self._emit(ALARM_EVENT_KIND, change.rule_id, change.new, _alarm_event(change))
        cause = "; ".join(f"{c.rule_id}: {c.detail}" for c in changes[-3:])
        self.actuation.set_level(self.site_level(), cause)
        if self.sl651_uplink is not None:
            # after the sirens: it only notes the rise and wakes the uplink's own task
            try:
                self.sl651_uplink.levels_changed(changes)
            except Exception:
                log.exception("SL 651: the add report of %s could not be queued", cause)

    def site_level(self) -> int:
        """The highest level of any rule or siren-node fallback: what the sirens show."""
        return max(*self.engine.levels().values(), self._node_level(), 0)

    def standing_forecasts(self) -> dict[str, StandingForecast]:
        """Each raised forecast rule's newest accepted forecast, for the health report."""
        return wire_forecasts(self.engine)

    def _node_level(self) -> int:
        return max((n.level for n in self.nodes), default=0)

    def _emit(
        self, kind: str, subject: str | None, level: int | None, detail: dict[str, Any]
    ) -> None:
        # Called on the alarm path before the sirens switch: it must never raise.
        try:
            self.store.add_event(self.clock.now(), kind, subject, level, detail)
        except Exception:
            log.exception("could not hold %s event; it is logged here instead: %s", kind, detail)
            return
        self._events_waiting.set()

    # --- updates over the air ----------------------------------------------------------------

    def _release_intake(self, slots_root: Path | None) -> ReleaseIntake | None:
        """Releases need an enrollment (trust anchor, download credentials)."""
        enrollment = load_enrollment(self.data_dir)
        if enrollment is None:
            return None
        updater = None
        if slots_root is not None:
            updater = ReleaseUpdater.for_enrollment(
                SlotTree(slots_root), enrollment, self._store_report, site_config=self.config_path
            )
        return ReleaseIntake(self.data_dir, updater, self._store_report, self._exit_for_update)

    async def _store_report(self, report: OtaReport) -> None:
        """Record an update report durably before the updater moves on."""
        await self.store.record_event(
            self.clock.now(), OTA_EVENT_KIND, report.subject.value, None, report.detail()
        )

    def _exit_for_update(self) -> None:
        self.exit_for_update = True
        self.restart_requested.set()

    async def _devices_answered(self) -> str | None:
        """None once every device has answered since the start, else which have not."""
        silent = [d.config.name for d in self.poller.devices if d.health.last_success is None]
        return f"no answer yet from {', '.join(silent)}" if silent else None

    async def _release_healthy(self) -> str | None:
        """A version on trial is healthy once everything it runs is known to work."""
        silent = await self._devices_answered()
        if silent is not None:
            return silent
        if not self.ready.is_set():
            return "the alarm engine is not ready"
        if self.engine.catching_up():
            return "the failure forecasts are still rebuilding their state"
        uplink = self.uplink
        if uplink is not None and uplink.state != "connected" and uplink.last_error is None:
            return "the uplink has not connected yet and reports no reason"
        return None

    async def _confirm_config(self, deadline_s: float) -> str | None:
        """After a switch: every device answered and the actuators read back, in time."""
        silent = await wait_healthy(self._devices_answered, deadline_s, 0.1)
        if silent is not None:
            return f"{silent} after {deadline_s:g} s"
        result = await self.actuation.self_test(audible=False)
        if not result["ok"]:
            return f"actuators did not read back: {result['results']}"
        return None

    async def _update_status(self, _request: UpdateRequest) -> dict[str, Any]:
        config = self.config_updater.status() if self.config_updater else None
        return {"ok": True, "version": AGENT_VERSION, "config": config}

    async def _catch_up_forecasts(self) -> None:
        """Rebuild the deferred forecast rules' state on a thread while the agent polls.

        Their live readings wait in the engine meanwhile and are evaluated, in order, once
        the replay is done; their levels stay those the stored alarm events set.
        """
        if not self.engine.catching_up():
            return
        started = time.monotonic()
        log.info(
            "failure forecasts: rebuilding their state from stored readings while polling "
            "(no numba here); until then they show the level stored before the restart"
        )
        replayed = await in_daemon_thread(self.engine.catch_up)
        changes = self.engine.finish_catch_up()
        if changes:
            self._apply(changes, record=True)
        self.actuation.set_level(self.site_level(), "failure forecasts rebuilt")
        log.info(
            "failure forecasts rebuilt in %.1f s (%d level changes replayed, %d from readings "
            "taken meanwhile); levels now %s",
            time.monotonic() - started,
            replayed,
            len(changes),
            self.engine.levels(),
        )

    async def _restart_on_request(self) -> None:
        await self.restart_requested.wait()
        raise RestartRequestedError

    # --- start-up ------------------------------------------------------------------------

    async def _replay_history(self) -> None:
        """Rebuild the rules' state from the stored readings, telling systemd it takes time.

        The replay runs in a daemon thread (nothing else uses the engine before the tasks
        start), so the event loop goes on asking systemd for more start-up time, and a
        stop is not kept waiting for it (the thread ends with the process). A start killed
        at the unit's ``TimeoutStartSec`` would be killed again at every restart, leaving
        the village without a siren for good. Without numba (Pi OS 32-bit) the forecast
        rules, whose replay takes minutes there, are left for ``_catch_up_forecasts``.
        """
        since = self.clock.now() - self.engine.history_needed_s
        series = {}
        for channel in sorted(self._watched):
            history = self.store.history(channel, since)
            series[channel] = (history.t, history.value, history.good)
        started = time.monotonic()
        # Without numba a forecast's replay takes minutes: it is left for the background
        # (``_catch_up_forecasts``), and the other rules go live at once.
        defer = self.engine.backend == "reference"
        replay = in_daemon_thread(lambda: self.engine.replay(series, defer_forecasts=defer))
        interval = starting_note_interval_s()
        while not (await asyncio.wait({replay}, timeout=interval))[0]:
            notify(
                f"EXTEND_TIMEOUT_USEC={STARTING_EXTENSION_US}\nSTATUS=rebuilding alarm state "
                f"from stored readings ({time.monotonic() - started:.0f} s)"
            )
        replayed = replay.result()
        # Per rule, its newest events only (not the whole event log): the last rise, the
        # last acknowledgement, and the level its last alarm event set.
        for rule_id in list(self.engine.levels()):
            rise = self.store.last_event(ALARM_EVENT_KIND, rule_id, change="rise")
            ack = self.store.last_event(ACK_EVENT_KIND, rule_id)
            if rise is not None and rise.level and (ack is None or ack.ts < rise.ts):
                self.engine.restore_latch(rule_id, rise.level)
            # A crash can lose the last readings but not the alarm event they raised: a
            # level the siren sounded at is never dropped by a restart, only by the rule.
            recorded = self.store.last_event(ALARM_EVENT_KIND, rule_id)
            if recorded is not None:
                self.engine.restore_level(rule_id, recorded.level or 0)
        log.info(
            "alarm kernels %s; replayed %d level changes from %d channels in %.1f s; levels now %s",
            self.engine.backend,
            len(replayed),
            len(series),
            time.monotonic() - started,
            self.engine.levels(),
        )

    # --- background tasks ----------------------------------------------------------------

    async def _write_events(self) -> None:
        # Events are written as soon as they happen; while the disk refuses them they stay
        # held in the store, in order, and every flush below tries again.
        while True:
            await self._events_waiting.wait()
            self._events_waiting.clear()
            try:
                await self.store.write_events()
            except Exception:
                log.exception("could not write events; they stay held")

    async def _commit_readings(self) -> None:
        """Commit each poll round as it comes: ``GROUP_COMMIT_S`` after its first reading.

        The window is real time (the bus's transactions are): it gathers the round's
        devices into one commit. While the disk refuses writes, held rows are tried again
        every ``RETRY_S`` even with no new reading.
        """
        while True:
            if self.store.condition().unwritable is None:
                await self._readings_waiting.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._readings_waiting.wait(), RETRY_S)
            await asyncio.sleep(GROUP_COMMIT_S)
            self._readings_waiting.clear()
            try:
                await self.store.flush()
            except Exception:
                log.exception("could not commit readings")

    async def _watch_clock(self) -> None:
        while True:
            synced = self.clock_synced()
            if synced and not self._synced:
                fixed = await self.store.correct_unsynced(self.clock.now(), time.monotonic())
                self._emit("clock_synced", None, None, {"corrected_readings": fixed})
            self._synced = synced
            await asyncio.sleep(30)

    async def _feed_watchdog(self) -> None:
        await self.ready.wait()
        notify("READY=1")
        interval = watchdog_interval_s()
        while interval:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _self_test_daily(self) -> None:
        while True:
            await self.clock.sleep(self.site.agent.self_test_every_s)
            await self.actuation.self_test(audible=False)

    # --- control channel -----------------------------------------------------------------

    async def _status(self, _request: StatusRequest) -> StatusReply:
        latest = self.poller.latest
        return StatusReply(
            site=self.site.site_id,
            version=AGENT_VERSION,
            uptime_s=round(time.monotonic() - self.started, 1),
            now=self.clock.now(),
            level=LEVEL_NAMES[self.site_level()],
            alarm_backend=self.engine.backend,
            buses={
                name: BusStatus(
                    transactions=bus.stats.transactions,
                    failures=dict(bus.stats.failures),
                    last_success=bus.stats.last_success,
                )
                for name, bus in self.poller.buses.items()
            },
            devices={d.config.name: DeviceStatus.of(d.health) for d in self.poller.devices},
            channels={
                ch: ChannelStatus(
                    value=r.value, unit=r.unit, quality=r.quality.names(), t=r.timestamp
                )
                for ch, r in sorted(latest.items())
            },
            alarms=self._alarm_table(),
            actuators=self.actuation.status(),
            store={
                "readings": self.store.last_reading_seq(),
                "buffered": self.store.pending,
                "backlog": self.store.last_reading_seq() - self.store.watermark("readings"),
                **dataclasses.asdict(self.store.condition()),
            },
            village_call=self.village_call.status() if self.village_call else None,
            sl651_uplink=self.sl651_uplink.status() if self.sl651_uplink else None,
        )

    def _alarm_table(self) -> dict[str, AlarmStatus]:
        metrics = self.engine.metrics()
        forecasts = wire_forecasts(self.engine)
        table = {
            rule: AlarmStatus(
                level=LEVEL_NAMES[level],
                metrics=metrics.get(rule, {}),
                forecast=forecasts.get(rule),
            )
            for rule, level in self.engine.levels().items()
        }
        for node in self.nodes:
            table[node.spec.alarm_id] = AlarmStatus(level=LEVEL_NAMES[node.level], metrics={})
        return table

    async def _alarms(self, _request: AlarmsRequest) -> AlarmsReply:
        history = [
            AlarmHistoryEntry.model_validate(
                {"t": e.ts, "rule": e.subject}
                | {k: v for k, v in e.detail.items() if k not in ("t", "rule")}
            )
            for e in self.store.events([ALARM_EVENT_KIND, ACK_EVENT_KIND], last=50)
        ]
        return AlarmsReply(active=self._alarm_table(), history=history)

    async def _ack(self, request: AckRequest) -> AckReply | ErrorReply:
        rule = request.rule
        for node in self.nodes:
            if rule == node.spec.alarm_id:
                node.acknowledge()
                await self._record_ack(rule, request.by)
                self.actuation.set_level(self.site_level(), f"{rule} acknowledged")
                return AckReply(rule=rule, level=LEVEL_NAMES[node.level])
        if rule not in self.engine.levels():
            return ErrorReply(error=f"no rule '{rule}' (rules: {', '.join(self.engine.levels())})")
        try:
            changes = self.engine.acknowledge(rule, self.clock.now())
        except RuleCatchingUpError as exc:
            return ErrorReply(error=f"{exc}; acknowledge it again in a few minutes")
        await self._record_ack(rule, request.by)
        if changes:
            self._apply(changes, record=True)
        return AckReply(rule=rule, level=LEVEL_NAMES[self.engine.levels()[rule]])

    async def _fleet_ack(self, args: dict[str, Any]) -> dict[str, Any]:
        """The fleet's ``ack_alarm`` command: the same acknowledgement as ``edge ack``."""
        try:
            ack = AckAlarmArgs.model_validate(args)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "args"
            return {"ok": False, "error": f"bad ack_alarm arguments: {where}: {error['msg']}"}
        reply = await self._ack(AckRequest(rule=ack.rule, by=ack.by))
        return reply.wire()

    async def _record_ack(self, rule: str, by: str) -> None:
        """Store the acknowledgement before answering; on a full disk it waits in memory."""
        self._emit(ACK_EVENT_KIND, rule, None, AckEvent(by=by).wire())
        await self.store.write_events()

    async def _siren_test(self, request: SirenTestRequest) -> SirenTestReply:
        return SirenTestReply.model_validate(await self.actuation.self_test(request.audible))

    # --- run -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled (SIGTERM in the CLI); commits what is buffered on the way out."""
        self.store.open()
        server: asyncio.Server | None = None
        try:
            self._synced = self.clock_synced()
            await self._replay_history()
            self._emit(
                "agent_start", None, None, {"version": AGENT_VERSION, "site": self.site.site_id}
            )
            for node in self.nodes:
                await node.prepare()
            self.actuation.set_level(self.site_level(), "state after restart")
            server = await serve_control(
                self.data_dir / SOCKET_NAME,
                {
                    "status": self._status,
                    "alarms": self._alarms,
                    "ack": self._ack,
                    "siren_test": self._siren_test,
                    **({"uplink": self.uplink.control} if self.uplink else {}),
                    "update": self._update_status,
                },
            )
            try:
                await self._run_tasks()
            except* RestartRequestedError:
                log.warning(
                    "stopping to start %s",
                    "another release slot" if self.exit_for_update else "on the new site file",
                )
        finally:
            if server is not None:
                server.close()
            await asyncio.to_thread(self.store.close)

    async def _run_tasks(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.actuation.run(), name="actuation")
            group.create_task(self.poller.run(), name="poller")
            group.create_task(self._write_events(), name="events")
            group.create_task(self._commit_readings(), name="commit")
            group.create_task(self._watch_clock(), name="clock")
            group.create_task(self._feed_watchdog(), name="watchdog")
            group.create_task(self._self_test_daily(), name="self-test")
            for node in self.nodes:
                group.create_task(node.run(), name=f"heartbeat {node.spec.device.name}")
            if self.village_call is not None:
                group.create_task(self.village_call.run(), name="village-call")
            if self.uplink is not None:
                group.create_task(_bounded_stop(self.uplink.run()), name="uplink")
            if self.sl651_uplink is not None:
                group.create_task(self.sl651_uplink.run(), name="sl651-uplink")
            if self.config_updater is not None:
                group.create_task(self.config_updater.run(), name="config-update")
            if self.release_intake is not None:
                group.create_task(
                    self.release_intake.run(self._release_healthy), name="release-update"
                )
            group.create_task(self._restart_on_request(), name="restart")
            group.create_task(self._catch_up_forecasts(), name="forecast-catch-up")
