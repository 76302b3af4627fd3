"""The 叫应 engine: calls the responsible persons of an alarm up the chain until one answers.

Driven by an injectable clock, one ``tick`` at a time: it opens an escalation when an
alarm reaches a level the policy covers, calls the current tier on every channel the
person has, repeats unanswered calls, moves to the next tier at each deadline, and ends
with a recorded reason (answered, level fell back, acknowledged with a note, cleared).
Every decision is committed before a message leaves, so a killed fleet resumes where it
stopped. It must never stop calling because a channel failed, and never log a contact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fleet.answer_link import AnswerLinks, LinkError
from fleet.call_http import poster
from fleet.call_order import Outgoing
from fleet.call_outbox import CallOutbox
from fleet.channels import (
    SEND_TIMEOUT_S,
    CallMessage,
    Channel,
    EmailChannel,
    KannelSmsChannel,
    SendResult,
    WebhookChannel,
)
from fleet.delivery_reports import DeliveryRecorder
from fleet.escalation_policy import EscalationPolicy, PolicyError, parse_policy
from fleet.escalation_store import (
    AlarmState,
    AlarmWatcher,
    Call,
    Escalation,
    EscalationStore,
    PlannedCall,
)
from fleet.leases import Leadership, LeaseLostError
from fleet.robot_pace import RobotPace
from fleet.roster import Person, Tier
from fleet.worker_threads import in_thread
from ota.crash_points import armed
from protocol.contacts import is_answer, sender_numbers
from protocol.levels import LEVEL_NAMES, AlarmLevel

if TYPE_CHECKING:
    from fleet.settings import EscalationSettings

log = logging.getLogger(__name__)

#: A failed send is tried again after this long (or the repeat interval, if shorter).
RETRY_S = 30.0
#: At most this many messages in flight on one HTTP channel (and connections to it). A
#: thousand sites raising red at once plan thousands of calls: unbounded, they would open
#: a connection each to Kannel or the robots' server (and with httpx, where a proxy makes
#: the channels use it, queue in a pool whose cost grows with the square of its queue). A
#: few keep a service busy.
CHANNEL_CONCURRENCY = 8
#: How often the engine looks whether an alarm was committed (by any process), so that a
#: new red alarm is decided within this, not a whole tick, after ingest commits it.
ALARM_WATCH_S = 0.1
#: While a burst is being sent, rounds nothing woke (no alarm, no answer) are this far apart.
BUSY_TICK_S = 5.0
#: A call reads its alarm's failure forecast afresh after this long (calls of one round share it).
FORECAST_READ_S = 60.0
#: Forecast words kept for this many escalations before the stale ones are dropped.
FORECASTS_KEPT = 4096
#: Forecasts read per trip to a worker thread (about 0.15 ms each on SQLite): the first
#: calls of a burst wait for one chunk, not for the round's every forecast.
FORECAST_CHUNK = 32
#: E-mail has no pool: each message is a session of six round trips, each waiting on a
#: loop that is busy in a burst, so more sessions at once keep the relay busy.
SMTP_CONCURRENCY = 32


def headline(escalation: Escalation) -> str:
    """The warning's first sentence: level, site and rule."""
    level = AlarmLevel(escalation.level).colour_zh
    # Chinese text uses full-width punctuation, as the people reading it expect.
    return f"【HazardWatch {level}预警】站点 {escalation.site_id}（{escalation.rule}）。"  # noqa: RUF001


def _senders(channel: str) -> int:
    """How many calls ``channel`` may have in flight."""
    return SMTP_CONCURRENCY if channel == EmailChannel.name else CHANNEL_CONCURRENCY


class RoundRosters:
    """The rosters one round of decisions reads: each site's once, however many alarms.

    Made afresh for each round (a roster changed between rounds is read anew) and handed
    along its decisions, so two rounds deciding at once (a test's tick beside the loop's
    round) never share one.
    """

    def __init__(self, read: Callable[[str], list[Person]]) -> None:
        self._read = read
        self._by_site: dict[str, list[Person]] = {}

    def persons(self, site_id: str, tier: Tier) -> list[Person]:
        """The site's persons of ``tier``, from the roster as this round first read it."""
        if site_id not in self._by_site:
            self._by_site[site_id] = self._read(site_id)
        return [p for p in self._by_site[site_id] if p.tier is tier]


class AnswerRefusedError(ValueError):
    """An answer that cannot be taken (unknown, expired or used link); ``gone`` for 410."""

    def __init__(self, reason: str, *, gone: bool) -> None:
        super().__init__(reason)
        self.gone = gone


@dataclass(frozen=True, slots=True)
class AnswerTaken:
    """An answer was recorded; ``ended`` says whether it stopped the escalation."""

    escalation_id: int
    person: str
    ended: bool


class EscalationEngine:
    """Decides and makes the calls; state lives in ``store`` (SQLite), none in memory.

    ``answer_url`` is the public base of answer links (``{answer_url}/a/{token}``).
    """

    def __init__(
        self,
        store: EscalationStore,
        channels: Sequence[Channel],
        links: AnswerLinks,
        default_policy: EscalationPolicy,
        answer_url: str,
        clock: Callable[[], float] = time.time,
        retry_s: float = RETRY_S,
        sms_callback_key: str | None = None,
        hold_before_send: Path | None = None,
        sms_country_code: str | None = None,
        forecast_words: Callable[[Escalation], str | None] | None = None,
    ) -> None:
        self.store = store
        self.channels = list(channels)
        self.links = links
        self.default_policy = default_policy
        self.answer_url = answer_url.rstrip("/")
        self.clock = clock
        self.retry_s = retry_s
        self.sms_callback_key = sms_callback_key
        #: How to read a reply's sender that the SMS centre reports in domestic form.
        self.sms_country_code = sms_country_code
        self._hold_before_send = hold_before_send
        #: Reads the failure forecast of an escalation's alarm in a call's words (blocking:
        #: run on a worker thread); None for an alarm without one.
        self.forecast_words = forecast_words
        self._words: dict[int, tuple[float, asyncio.Future[str | None]]] = {}
        self._reading: set[asyncio.Task[None]] = set()
        self.deliveries = DeliveryRecorder(store)
        #: Sends each channel a few at a time (8 per HTTP channel, 32 SMTP sessions),
        #: breadth first, outcomes written in batches.
        self.outbox = CallOutbox(self._send, store.calls_done, _senders, self.clock)
        self._recovered = False
        #: Of replicas, the 叫应 lease (None: this process always decides). Looked at before
        #: every round, and last in the round's transaction: a holder that lost the lease,
        #: even while frozen in mid-round, commits nothing and sends nothing.
        self.leadership: Leadership | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def policy_for(self, site_id: str) -> EscalationPolicy:
        """The site's own policy, else (or if it cannot be read) the fleet default."""
        document = self.store.site_policy(site_id)
        if document is None:
            return self.default_policy
        try:
            return parse_policy(document)
        except PolicyError as exc:  # stored policies are checked; this is a damaged row
            log.error(
                "site %s: its escalation policy is unusable (%s); using the default", site_id, exc
            )
            return self.default_policy

    # --- the loop -------------------------------------------------------------------------

    async def run(self, tick_s: float = 1.0, watch: AlarmWatcher | None = None) -> None:
        """Tick until cancelled; a failing tick is logged and the loop goes on.

        With ``watch``, a tick also starts as soon as the watch sees the active alarms
        change (every ``ALARM_WATCH_S``), rather than up to ``tick_s`` later.
        """
        self._loop = asyncio.get_running_loop()
        # Started again (this replica holds the 叫应 lease again): the calls another
        # replica planned and did not record as sent are this one's to send now.
        self._recovered = False
        watching = None
        if watch is not None:
            # Its first look learns the alarms as they are now, which the first tick decides.
            with contextlib.suppress(Exception):
                await in_thread(watch.changed)
            watching = asyncio.create_task(self._watch(watch), name="fleet-escalation-watch")
        try:
            woken, last_round = True, 0.0
            while True:
                # While a burst is being sent, a round nobody woke comes only every
                # BUSY_TICK_S: it decides nothing new (deadlines and repeats are minutes
                # apart) and costs the burst CPU. An alarm or an answer still wakes one.
                if woken or not self.outbox.busy or time.monotonic() - last_round >= BUSY_TICK_S:
                    last_round = time.monotonic()
                    try:
                        # Sending goes on in the outbox: the next round (an alarm raised in
                        # the middle of a burst) does not wait for this one's calls.
                        self.outbox.submit(await self._round())
                    except Exception:
                        log.exception("escalation tick failed; trying again")
                woken = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), tick_s)
                    woken = True
                self._wake.clear()
        finally:
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching

    async def _watch(self, watch: AlarmWatcher) -> None:
        """Wake the loop when an alarm changes; a failing look only costs the early tick."""
        failing = False
        while True:
            await asyncio.sleep(ALARM_WATCH_S)
            try:
                changed = await in_thread(watch.changed)
            except Exception:
                # The tick still comes every tick_s: say so once, not ten times a second.
                log.log(logging.DEBUG if failing else logging.WARNING,
                        "the alarm watch cannot read the store", exc_info=not failing)  # fmt: skip
                failing = True
                continue
            failing = False
            if changed:
                self._wake.set()

    def wake(self) -> None:
        """Tick soon (an answer was taken); safe to call from REST's worker threads."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def tick(self) -> list[Call]:
        """One round: decide (committed), then send; the calls, once sent and recorded."""
        outgoing = await self._round()
        await asyncio.gather(*self.outbox.submit(outgoing))
        return [o.call for o in outgoing]

    async def _round(self) -> list[Outgoing]:
        """Decide (committed before anything is sent); the calls to send."""
        outgoing = await in_thread(self._decide, self.clock())
        self._want_forecasts([o.escalation for o in outgoing])
        if outgoing and self._hold_before_send is not None:
            self._hold_before_send.touch()
            await asyncio.Event().wait()  # until killed
        return outgoing

    # --- deciding -------------------------------------------------------------------------

    def _decide(self, now: float) -> list[Outgoing]:
        # One transaction for the round: a thousand alarms at once are one commit, not
        # thousands, and it is still committed before anything is sent.
        held = None
        if self.leadership is not None:
            held = self.leadership.held_term()
            if held is None:
                return []
        try:
            with self.store.batch(held.check if held is not None else None):
                calls = self._decide_round(now, RoundRosters(self.store.roster))
        except LeaseLostError as exc:
            log.warning("%s: the round's decisions are rolled back", exc)
            self._recovered = False  # its notes were rolled back with it
            return []
        persons = self.store.persons_by_id(c.person_id for c in calls)
        escalations = self.store.escalations_by_id(c.escalation_id for c in calls)
        return [Outgoing(c, persons.get(c.person_id), escalations[c.escalation_id]) for c in calls]

    def _decide_round(self, now: float, rosters: RoundRosters) -> list[Call]:
        calls: list[Call] = []
        if not self._recovered:
            # Planned before a crash (or by a replica that lost the lease), not known to be
            # sent: send now rather than lose them; those still in this outbox are on their way.
            calls.extend(c for c in self.store.unsent_calls() if not self.outbox.holds(c.id))
            for call in calls:
                self.store.note(
                    call.escalation_id, now, "resumed", f"call {call.id} planned before a restart"
                )
            self._recovered = True
        planned: list[PlannedCall] = []
        for alarm in self.store.alarm_states():
            try:
                planned.extend(self._decide_alarm(alarm, now, rosters))
            except Exception:  # one alarm's fault must not silence the others
                log.exception("escalation of alarm %d failed this round", alarm.alarm_id)
        calls.extend(self.store.plan_calls(planned, now))
        return calls

    def _decide_alarm(
        self, alarm: AlarmState, now: float, rosters: RoundRosters
    ) -> list[PlannedCall]:
        escalation = None
        if alarm.open_escalation is not None:
            escalation = self.store.escalation(alarm.open_escalation)
            reason = self._end_reason(alarm, escalation)
            if reason is not None:
                self.store.end_escalation(escalation.id, reason, now)
                escalation = None
        if escalation is None:
            escalation = self._maybe_start(alarm, now)
        if escalation is None:
            return []
        # The village may have answered the gateway while the county was out of reach.
        if self.store.take_gateway_answers(escalation):
            reason = self._answered(escalation)
            if reason is not None:
                self.store.end_escalation(escalation.id, reason, now)
                return []
        return self._due_calls(escalation, now, rosters)

    def _end_reason(self, alarm: AlarmState, escalation: Escalation) -> str | None:
        if alarm.cleared:
            return "alarm back to normal"
        if alarm.level < escalation.level:
            return f"level fell back to {LEVEL_NAMES[alarm.level]}"
        if alarm.level > escalation.level and self.policy_for(alarm.site_id).for_level(alarm.level):
            return f"level rose to {LEVEL_NAMES[alarm.level]}: a new escalation calls again"
        if (
            alarm.ack_note
            and alarm.acknowledged_at is not None
            and alarm.acknowledged_at >= escalation.started_at
        ):
            return f"acknowledged by {alarm.acknowledged_by} with the note: {alarm.ack_note}"
        return self._answered(escalation)

    def _answered(self, escalation: Escalation) -> str | None:
        required = escalation.policy.required_tier
        for person, tier, via, _at in self.store.answers(escalation.id):
            if tier.rank >= required.rank:
                return f"answered by {person} via {via}"
        return None

    def _maybe_start(self, alarm: AlarmState, now: float) -> Escalation | None:
        if alarm.cleared or alarm.level <= alarm.highest_escalated:
            return None
        policy = self.policy_for(alarm.site_id).for_level(alarm.level)
        if policy is None:
            return None
        escalation = self.store.start_escalation(alarm, policy, now)
        log.info(
            "alarm %d at %s is %s: calling the %s tier",
            alarm.alarm_id,
            alarm.site_id,
            LEVEL_NAMES[alarm.level],
            policy.steps[0].tier.value,
        )
        return escalation

    def _due_calls(
        self, escalation: Escalation, now: float, rosters: RoundRosters
    ) -> list[PlannedCall]:
        steps = escalation.policy.steps
        step, since = escalation.step, escalation.step_since
        answered = {tier for _person, tier, _via, _at in self.store.answers(escalation.id)}
        while step < len(steps):
            tier = steps[step].tier
            if tier in answered and step + 1 < len(steps):
                # answered (at the gateway, say) but a higher tier is required: on to it
                self.store.advance(
                    escalation.id,
                    step + 1,
                    now,
                    steps[step + 1].tier,
                    f"the {tier.value} tier has answered",
                )
                step, since = step + 1, now
                continue
            on_roster = rosters.persons(escalation.site_id, tier)
            persons = [p for p in on_roster if any(c.reaches(p) for c in self.channels)]
            deadline = since + steps[step].deadline_s
            if persons and now < deadline:
                break
            if persons:
                why = f"nobody answered the {tier.value} tier by its deadline"
                since = deadline
            else:
                # a tier nobody can be called in is skipped at once, never waited on
                why = f"nobody on the roster for the {tier.value} tier"
                if on_roster:
                    why = f"no configured channel reaches anyone of the {tier.value} tier"
                log.error("site %s: %s", escalation.site_id, why)
                since = max(since, min(now, deadline))
            step += 1
            next_tier = steps[min(step, len(steps) - 1)].tier
            if step == len(steps):
                why += "; every tier has been called, the last keeps being called"
            self.store.advance(escalation.id, step, since, next_tier, why)
        current = steps[min(step, len(steps) - 1)].tier
        last = self.store.last_calls(escalation.id)
        due: list[PlannedCall] = []
        for person in rosters.persons(escalation.site_id, current):
            for channel in self.channels:
                if not channel.reaches(person):
                    continue
                previous = last.get((person.id, channel.name))
                if previous is None or self._again(previous, escalation, now):
                    due.append(PlannedCall(escalation.id, person, channel.name))
        return due

    def _again(self, previous: Call, escalation: Escalation, now: float) -> bool:
        if previous.status == "failed":
            return now >= previous.planned_at + min(self.retry_s, escalation.policy.repeat_s)
        if previous.status in ("sent", "delivered"):
            return now >= previous.planned_at + escalation.policy.repeat_s
        return False  # still planned: being sent right now

    # --- sending --------------------------------------------------------------------------

    async def _send(self, item: Outgoing) -> SendResult:
        call, person = item.call, item.person
        channel = next((c for c in self.channels if c.name == call.channel), None)
        if channel is None or person is None or not channel.reaches(person):
            return SendResult(False, "the person or the channel is no longer configured")
        forecast = await self._forecast(item.escalation)
        try:
            return await channel.send(person, self.message(item.escalation, call, forecast))
        except Exception as exc:  # a channel bug must not stop the other calls
            log.exception("channel %s failed on call %d", call.channel, call.id)
            return SendResult(False, f"{type(exc).__name__} in the {call.channel} channel")

    def message(
        self, escalation: Escalation, call: Call, forecast: str | None = None
    ) -> CallMessage:
        """The warning text of one call, with the alarm's failure forecast and the answer link."""
        link = f"{self.answer_url}/a/{self.links.token(call.id, self.clock())}"
        level = AlarmLevel(escalation.level).colour_zh
        name = LEVEL_NAMES[escalation.level].upper()
        subject = f"[HazardWatch] {name} {level}预警 {escalation.site_id}"
        text = (
            f"{headline(escalation)}{forecast or ''}"
            f"请回复 1 或 收到 确认，或打开 {link}"  # noqa: RUF001
        )
        return CallMessage(call.id, subject, text)

    def warning_of_call(self, call_id: int) -> str | None:
        """What call ``call_id`` warned of, with its alarm's forecast as now known (blocking).

        For the answer link's page: the person confirms a warning they can read there.
        None for a call the store does not hold.
        """
        found = self.store.calls_by_id([call_id])
        if not found:
            return None
        escalation = self.store.escalation(found[0].escalation_id)
        return f"{headline(escalation)}{self._read_words(escalation) or ''}"

    async def _forecast(self, escalation: Escalation) -> str | None:
        """The alarm's forecast in words (see ``_want_forecasts``); None if it has none."""
        if self.forecast_words is None:
            return None
        self._want_forecasts([escalation])
        return await asyncio.shield(self._words[escalation.id][1])

    def _want_forecasts(self, escalations: Sequence[Escalation]) -> None:
        """Start reading the forecasts of ``escalations`` not read in ``FORECAST_READ_S``.

        A round's are read together, a chunk per trip to a worker thread, while its calls
        start: the calls of one escalation, on every channel, share one read. A forecast
        that cannot be read costs the call its words, never the call.
        """
        if self.forecast_words is None:
            return
        now = self.clock()
        if len(self._words) >= FORECASTS_KEPT:
            self._words = {k: v for k, v in self._words.items() if now - v[0] < FORECAST_READ_S}
        wanted: dict[int, tuple[Escalation, asyncio.Future[str | None]]] = {}
        for escalation in escalations:
            kept = self._words.get(escalation.id)
            if escalation.id in wanted or (kept is not None and now - kept[0] < FORECAST_READ_S):
                continue
            future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._words[escalation.id] = (now, future)
            wanted[escalation.id] = (escalation, future)
        if wanted:
            reading = asyncio.create_task(self._read_forecasts(list(wanted.values())))
            self._reading.add(reading)
            reading.add_done_callback(self._reading.discard)

    async def _read_forecasts(
        self, wanted: list[tuple[Escalation, asyncio.Future[str | None]]]
    ) -> None:
        try:
            for start in range(0, len(wanted), FORECAST_CHUNK):
                chunk = wanted[start : start + FORECAST_CHUNK]
                words = await in_thread(self._read_chunk, [e for e, _ in chunk])
                for (_, future), said in zip(chunk, words, strict=True):
                    if not future.done():
                        future.set_result(said)
        finally:
            for _, future in wanted:  # cancelled (shutdown) or failed: no words, no wait
                if not future.done():
                    future.set_result(None)

    async def stop_reading(self) -> None:
        """Cancel the forecast reads under way (at shutdown); their calls go without words."""
        reading = list(self._reading)
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)

    def _read_chunk(self, escalations: Sequence[Escalation]) -> list[str | None]:
        return [self._read_words(escalation) for escalation in escalations]

    def _read_words(self, escalation: Escalation) -> str | None:
        """The escalation's forecast words, read now (blocking); None on any failure."""
        if self.forecast_words is None:
            return None
        try:
            return self.forecast_words(escalation)
        except Exception:
            log.exception("the forecast of escalation %d could not be read", escalation.id)
            return None

    # --- answers --------------------------------------------------------------------------

    def answer_link(self, token: str) -> AnswerTaken:
        """Record the answer a link stands for (once); raises AnswerRefusedError."""
        now = self.clock()
        try:
            call_id = self.links.call_id(token, now)
        except LinkError as exc:
            raise AnswerRefusedError(str(exc), gone="expired" in str(exc)) from None
        calls = self.store.calls_by_id([call_id])
        if not calls:
            raise AnswerRefusedError("this answer link names no call", gone=False)
        call = calls[0]
        if not self.store.record_answer(
            call.escalation_id, call.person, call.tier, "link", now, call_id=call.id
        ):
            raise AnswerRefusedError("this answer link was already used", gone=True)
        return self._settled(call.escalation_id, call.person, now)

    def answer_sms(self, sender: str, text: str) -> list[AnswerTaken]:
        """A reply SMS: "1" or "收到" from a roster number answers its open escalations."""
        now = self.clock()
        if not is_answer(text):
            return []
        persons = {
            p.id: p
            for number in sender_numbers(sender, self.sms_country_code)
            for p in self.store.persons_with_mobile(number)
        }
        taken: list[AnswerTaken] = []
        for person in persons.values():
            for escalation_id in self.store.recent_sms_escalations(person.id):
                self.store.record_answer(escalation_id, person.label, person.tier, "sms reply", now)
                taken.append(self._settled(escalation_id, person.label, now))
        return taken

    def answer_operator(self, alarm_id: int, person: str, operator: str) -> AnswerTaken | None:
        """An operator confirms at the console that ``person`` answered (county tier)."""
        now = self.clock()
        open_ids = [e.id for e in self.store.escalations_of(alarm_id) if e.ended_at is None]
        if not open_ids:
            return None
        label = f"{person} (recorded by {operator})"
        self.store.record_answer(open_ids[-1], label, Tier.COUNTY, "operator", now)
        return self._settled(open_ids[-1], label, now)

    def _settled(self, escalation_id: int, person: str, now: float) -> AnswerTaken:
        escalation = self.store.escalation(escalation_id)
        if escalation.ended_at is not None:
            return AnswerTaken(escalation_id, person, ended=False)
        reason = self._answered(escalation)
        if reason is not None:
            self.store.end_escalation(escalation_id, reason, now)
        else:
            # A tier below the required one answered: the next round calls on at once. An
            # answer that ended the calling leaves the round nothing to do (a thousand
            # answers would otherwise be a thousand rounds over every open escalation).
            self.wake()
        return AnswerTaken(escalation_id, person, ended=reason is not None)


@contextlib.asynccontextmanager
async def running_engine(
    store: EscalationStore,
    settings: EscalationSettings,
    data_dir: Path,
    fleet_url: str,
    clock: Callable[[], float] | None = None,
    open_watch: Callable[[], AlarmWatcher | None] | None = None,
    leadership: Leadership | None = None,
    forecast_words: Callable[[Escalation], str | None] | None = None,
) -> AsyncIterator[EscalationEngine]:
    """The engine with the channels ``settings`` turn on, ticking every ``settings.tick_s``.

    With ``open_watch`` (the store's ``AlarmWatcher``) it also ticks as soon as an alarm is
    committed, by any process. With ``leadership`` it ticks only while this process holds
    the 叫应 lease (``fleet.leases``): of several replicas, one decides and calls; the
    others take answers and delivery reports into the store, which that one reads. With
    ``forecast_words`` (``fleet.call_forecast.forecast_reader``), a call for an alarm with a
    failure forecast tells its times.
    """
    # Each HTTP channel has its own connections, so one that hangs cannot take the other's,
    # as many as it has calls in flight and all kept alive.
    async with contextlib.AsyncExitStack() as clients:
        channels: list[Channel] = []
        if settings.smtp is not None:
            channels.append(EmailChannel(settings.smtp))
        if settings.webhooks:
            http = poster(CHANNEL_CONCURRENCY, SEND_TIMEOUT_S)
            clients.push_async_callback(http.aclose)
            channels.append(WebhookChannel(http, RobotPace(settings.robot_limit)))
        if settings.kannel is not None:
            kannel = settings.kannel
            if kannel.dlr_url is None and settings.sms_callback_key:
                query = urlencode({"key": settings.sms_callback_key})
                kannel = replace(kannel, dlr_url=f"{fleet_url.rstrip('/')}/api/v1/sms/dlr?{query}")
            http = poster(CHANNEL_CONCURRENCY, SEND_TIMEOUT_S)
            clients.push_async_callback(http.aclose)
            channels.append(KannelSmsChannel(kannel, http))
        engine = EscalationEngine(
            store,
            channels,
            AnswerLinks.load_or_create(data_dir),
            settings.policy,
            fleet_url,
            clock=clock or time.time,
            sms_callback_key=settings.sms_callback_key,
            sms_country_code=settings.kannel.country_code if settings.kannel else None,
            hold_before_send=armed("fleet.escalation.send"),  # crash tests only
            forecast_words=forecast_words,
        )
        task = None
        if settings.tick_s is not None:
            engine.leadership = leadership  # (a caller that ticks the engine itself decides)
            watch = open_watch() if open_watch is not None else None
            if watch is not None:
                clients.callback(watch.close)  # after the task below has stopped
            tick_s = settings.tick_s

            def ticking() -> Coroutine[Any, Any, None]:
                return engine.run(tick_s, watch)

            looping = leadership.run(ticking) if leadership is not None else ticking()
            task = asyncio.create_task(looping, name="fleet-escalation")
        try:
            yield engine
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await engine.stop_reading()
            await engine.outbox.close()
