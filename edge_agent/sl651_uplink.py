"""The gateway's optional SL 651-2014 uplink: it reports to a provincial centre as a station.

Besides MQTT to the county, a gateway with a ``[sl651_uplink]`` table reports its rain and
water level to a hydrology centre in SL 651: timed reports (32) on their grid, hourly
reports (34) on each full hour, and an add report (33) as soon as a rule's level rises.
Store and forward: each report is composed once, from the readings the store committed
(``LocalStore.history``), and written whole to ``edge_agent.sl651_outbox`` before its
first send; frames go out one at a time, oldest first (add reports before the backlog),
each sent again, the very same bytes, until the centre answers it. The uplink's own
watermark moves only on the centre's answer, so an outage of the centre loses nothing.
Between failed sends it waits ``protocol.reconnect``'s backoff, probing the centre's
port meanwhile.

This module must never block the event loop (the disk is the outbox's thread), never
raise into the alarm path (``observe`` and ``levels_changed`` only note and wake), never
log the station's password, and never move its watermark without the centre's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from alarm_engine import LevelChange
from drivers.clock import Clock
from drivers.model import Reading
from edge_agent.sl651_outbox import COMPOSED, OutboxFrame, OutboxState, Sl651Outbox
from edge_agent.sl651_reports import (
    MAX_AGE_S,
    Due,
    History,
    add_items,
    minute_floor,
    report_frame,
    report_items,
    scheduled,
)
from protocol.reconnect import Backoff, ReconnectWait, tcp_probe
from protocol.sl651 import Control, FunctionCode, Sl651Error
from protocol.sl651_link import NoAnswerError, Silence, StationLink
from site_schema.sl651_uplink_config import Sl651UplinkSpec

log = logging.getLogger(__name__)

#: A report is composed this long after its time, once the store has committed the
#: readings up to it (the store commits at least every second).
SETTLE_S = 10.0
#: Add reports held in memory while the outbox cannot store them (a full disk).
MAX_PENDING_ADDS = 100


class Sl651Uplink:
    """One gateway's SL 651 station: ``run`` until cancelled; ``status`` for ``edge status``.

    ``history`` reads a channel's committed readings (``LocalStore.history``); ``clock``
    gives the report times (simulated in tests); ``rng`` the backoff's jitter.
    """

    def __init__(
        self,
        spec: Sl651UplinkSpec,
        store_path: Path,
        history: History,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.history = history
        self.clock = clock
        self.outbox = Sl651Outbox(store_path)
        rng = rng or random.Random()
        self.backoff = Backoff(spec.reconnect_min_s, spec.reconnect_max_s, rng)
        self.reconnect = ReconnectWait(self.backoff, rng)
        self.link = StationLink(spec.host, spec.port, connect_timeout_s=spec.ack_timeout_s)
        self.state = "starting"
        self.last_error: str | None = None
        self.last_answer_at: float | None = None
        self.sends = 0
        self.resends = 0
        self.answered = 0
        self._progress: OutboxState | None = None
        self._latest: dict[str, tuple[float, float | None]] = {}
        self._adds: list[tuple[float, dict[str, float | None]]] = []
        self._add_waiting = asyncio.Event()
        self._frames_waiting = asyncio.Event()
        self._failing = False
        #: Set once the report times are known (after a restart: where they left off).
        self.scheduled = asyncio.Event()

    # --- the alarm path: note and wake, never raise -----------------------------------------

    def observe(self, readings: Iterable[Reading]) -> None:
        """Keep the newest value of each reported channel (an add report sends them)."""
        channels = self.spec.channels
        for reading in readings:
            if reading.channel_id in channels:
                value = reading.value if reading.good else None
                self._latest[reading.channel_id] = (reading.timestamp, value)

    def levels_changed(self, changes: Iterable[LevelChange]) -> None:
        """Queue an add report when a rule rose to ``add_from`` or above."""
        risen = [
            c
            for c in changes
            if c.kind == "rise" and c.new > c.old and c.new >= self.spec.add_from_level
        ]
        if not risen:
            return
        at = minute_floor(max(c.t for c in risen))
        values = {
            channel: value
            for channel, (t, value) in self._latest.items()
            if t > at - MAX_AGE_S  # a gauge silent for long has no value now
        }
        if len(self._adds) >= MAX_PENDING_ADDS:  # only while the disk refuses them all
            log.warning(
                "SL 651: %d add reports wait to be stored; the oldest left out", len(self._adds)
            )
            del self._adds[0]
        self._adds.append((at, values))
        self._add_waiting.set()

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``edge status`` shows: link, watermark and backlog (never the password)."""
        progress = self._progress
        return {
            "centre": f"{self.spec.host}:{self.spec.port}",
            "station": self.spec.station,
            "state": self.state,
            "connected": self.link.connected,
            "watermark": progress.watermark if progress else None,
            "last_frame": progress.last_id if progress else None,
            "backlog": progress.backlog if progress else None,
            "serial": progress.serial if progress else None,
            "sends": self.sends,
            "resends": self.resends,
            "answered": self.answered,
            "last_answer_at": self.last_answer_at,
            "last_error": self.last_error,
            "reconnect": {"probes": self.reconnect.probes, "returns": self.reconnect.returns},
        }

    # --- run ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Compose and send until cancelled; no failure of the centre or the disk ends it."""
        while True:
            try:
                await self._run_once()
            except Exception:
                log.exception("SL 651: the uplink failed; it starts again after a backoff")
                await asyncio.sleep(self.backoff.next())

    async def _run_once(self) -> None:
        self.outbox = Sl651Outbox(self.outbox.store_path)
        await self.outbox.open()
        try:
            await self._refresh()
            async with asyncio.TaskGroup() as group:
                group.create_task(self._compose_loop(), name="sl651-compose")
                group.create_task(self._send_loop(), name="sl651-send")
        finally:
            with contextlib.suppress(Exception):
                await self.link.hang_up()
            await asyncio.to_thread(self.outbox.close)

    # --- composing --------------------------------------------------------------------------

    async def _compose_loop(self) -> None:
        await self._start_schedule()
        self.scheduled.set()
        while True:
            covered: float | None = None
            try:
                await self._compose_adds()
                covered = await self._compose_due()
            except Exception:  # a disk fault: logged, tried again a minute later
                log.exception("SL 651: reports could not be composed; trying again")
            await self._until_next(covered)

    async def _start_schedule(self) -> None:
        """Where the report times start: the last composed, at most ``catch_up_s`` back.

        A gateway that never reported starts with the first report time after now.
        """
        now = self.clock.now()
        for function, key in COMPOSED.items():
            through = await self.outbox.progress(key)
            if through is None or through < now - self.spec.catch_up_s:
                start = now if through is None else now - self.spec.catch_up_s
                await self.outbox.set_progress(key, minute_floor(start))
                log.info(
                    "SL 651: %s reports start after %s (UTC)",
                    function.name.lower(),
                    time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)),
                )

    async def _compose_adds(self) -> None:
        while self._adds:
            at, values = self._adds[0]
            items = add_items(self.spec, values)
            now = self.clock.now()
            build = partial(self._build, FunctionCode.ADD, at, now, items)
            try:
                await self.outbox.compose(FunctionCode.ADD, at, now, build)
            except Sl651Error:  # cannot be encoded, now or ever: not a reason to stop
                log.exception("SL 651: the add report of %s cannot be encoded; left out", at)
            self._adds.pop(0)
            self._frames_waiting.set()
            await self._refresh()

    async def _compose_due(self) -> float:
        """Compose every report whose time has settled; return up to when that is."""
        until = self.clock.now() - SETTLE_S
        after = min(
            await self.outbox.progress(COMPOSED[FunctionCode.TIMED]) or until,
            await self.outbox.progress(COMPOSED[FunctionCode.HOURLY]) or until,
        )
        for due in scheduled(self.spec, after, until):
            through = await self.outbox.progress(COMPOSED[due.function])
            if through is not None and due.at <= through:
                continue  # the other kind's time was behind; this one is composed
            await self._compose(due)
            if self._adds:  # an add report never waits behind a backlog of slots
                await self._compose_adds()
        return until

    async def _compose(self, due: Due) -> None:
        items = await asyncio.to_thread(report_items, self.spec, due, self.history)
        now = self.clock.now()
        build = partial(self._build, due.function, due.at, now, items)
        try:
            await self.outbox.compose(due.function, due.at, now, build)
        except Sl651Error:  # cannot be encoded, now or ever: the next report times go on
            log.exception("SL 651: the report of %s cannot be encoded; left out", due)
            await self.outbox.set_progress(COMPOSED[due.function], due.at)
        self._frames_waiting.set()
        await self._refresh()

    def _build(
        self, function: FunctionCode, at: float, now: float, items: Any, serial: int
    ) -> bytes:
        return report_frame(self.spec, function, serial, at, now, items)

    async def _until_next(self, covered: float | None) -> None:
        """Sleep until the first report time after ``covered`` has settled, or an add report.

        ``covered`` is up to when reports were composed (None after a failure: a minute).
        """
        now = self.clock.now()
        start = now - SETTLE_S if covered is None else covered
        upcoming = next(scheduled(self.spec, start, start + 86400.0), None)
        wake_at = now + 60.0 if upcoming is None or covered is None else upcoming.at + SETTLE_S
        if self._adds:
            return
        self._add_waiting.clear()
        await self.clock.sleep_until(wake_at, self._add_waiting)

    # --- sending ----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        while True:
            self._frames_waiting.clear()
            try:
                await self._send_next()
            except Exception:  # a disk fault: the frame stays unacknowledged and goes again
                log.exception("SL 651: the outbox failed; its frames are sent again later")
                await self.link.hang_up()
                await self.reconnect.wait(self._probe)

    async def _send_next(self) -> None:
        """Send the next unacknowledged frame, or wait for one."""
        frame = await self.outbox.next_unacknowledged()
        if frame is None:
            if self.link.connected:
                await self.link.hang_up()
            if self.state == "connected":
                self.state = "idle"
            await self._frames_waiting.wait()
            return
        reused = self.link.connected
        try:
            answer_end = await self._deliver(frame)
        except NoAnswerError as exc:
            await self.link.hang_up()
            if reused and exc.silence is Silence.CLOSED:
                return  # a link the centre had closed meanwhile: sent again on a new one
            await self._no_answer(frame, exc)
            return
        except (OSError, TimeoutError) as exc:
            await self.link.hang_up()
            if reused and isinstance(exc, ConnectionError):
                return  # as above: the write found the old link closed
            await self._no_answer(frame, exc)
            return
        self._answered(frame)
        await self._refresh()
        if answer_end is Control.EOT and self._progress and not self._progress.backlog:
            await self.link.hang_up()  # the centre lets the station hang up

    async def _no_answer(self, frame: OutboxFrame, exc: BaseException) -> None:
        """Say why, then wait the backoff (probing the centre) before the frame goes again."""
        self._failed(frame, exc)
        await self._refresh()
        await self.reconnect.wait(self._probe)

    async def _refresh(self) -> None:
        """Read the outbox's watermark and backlog for ``status``."""
        self._progress = await self.outbox.state()

    async def _probe(self) -> bool:
        return await tcp_probe(
            self.spec.host, self.spec.port, self.reconnect.timing.probe_timeout_s
        )

    async def _deliver(self, frame: OutboxFrame) -> Control:
        """Send the stored bytes; mark the frame acknowledged on the centre's answer."""
        await self.outbox.sending(frame.id)
        self.sends += 1
        if frame.sends:
            self.resends += 1
        await self.link.send(frame.frame)
        answer = await self.link.answer(frame.function, frame.serial, self.spec.ack_timeout_s)
        await self.outbox.acknowledge(frame.id, self.clock.now())
        return answer.end

    def _answered(self, frame: OutboxFrame) -> None:
        if self._failing:
            log.warning("SL 651: the centre %s answers again", self._centre)
        self._failing = False
        self.state = "connected"
        self.last_error = None
        self.last_answer_at = self.clock.now()
        self.answered += 1
        self.backoff.reset()
        log.debug("SL 651: report %d (function %02X) answered", frame.serial, frame.function)

    def _failed(self, frame: OutboxFrame, exc: BaseException) -> None:
        """Say why a frame got no answer: at ERROR the first time, then at DEBUG."""
        what = f"report {frame.serial} (function {frame.function:02X})"
        if isinstance(exc, NoAnswerError) and exc.silence is Silence.CLOSED:
            self.state = "refused"
            self.last_error = (
                f"the centre {self._centre} closed the link without answering {what}: it "
                f"refuses station {self.spec.station} (check the station address, the "
                "password and the centre address it was given)"
            )
        elif isinstance(exc, NoAnswerError):
            self.state = "no_answer"
            self.last_error = f"the centre {self._centre} gave no answer to {what}: {exc}"
        else:
            self.state = "unreachable"
            self.last_error = f"cannot reach the centre {self._centre}: {exc or type(exc).__name__}"
        level = logging.DEBUG if self._failing else logging.ERROR
        log.log(level, "SL 651: %s; it is sent again after a backoff", self.last_error)
        self._failing = True

    @property
    def _centre(self) -> str:
        return f"{self.spec.host}:{self.spec.port}"
