"""叫应 at the gateway: texts the village tier itself when the county cannot be reached.

An alarm at or above ``from_level`` is the county's to call about as soon as the fleet has
acknowledged its event. Until then, and once ``grace_s`` has passed since it was raised,
the gateway texts each village person through its own cellular modem, again every
``repeat_s``, until one answers: a reply SMS ("1", "收到") from a listed number, or a press
of a confirm button at the village. Every call and answer is an event in the gateway's
store, written before the modem is touched (calls) or before the SMS is deleted (answers),
so they survive a crash and reach the fleet exactly once, with the other events, when the
link returns. The fleet then does not call the village tier again. For a slope rule whose
alarm carries a failure forecast, a second text follows the warning with the earliest and
the likely failure time in the county's clock (``protocol.forecast_words``): the newer of
the raising event's forecast and the rule's standing one.

It must never run anything a message says, never log or record a number in clear, never
hold up the alarm path (a dead modem is retried, logged, and changes no level), and never
take an answer from a number that is not on the list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.clock import Clock
from drivers.model import Reading
from edge_agent.store import LocalStore, StoredEvent
from protocol import Stream
from protocol.contacts import is_answer, mask_phone, sender_numbers
from protocol.events import (
    ALARM_EVENT_KIND,
    VILLAGE_ANSWER_EVENT_KIND,
    VILLAGE_CALL_EVENT_KIND,
    AlarmEvent,
    StandingForecast,
)
from protocol.forecast_words import failure_words
from protocol.levels import LEVEL_NAMES, AlarmLevel
from site_schema.village_call_config import VillageCallSpec, VillagePerson

log = logging.getLogger(__name__)

CALL = VILLAGE_CALL_EVENT_KIND
ANSWER = VILLAGE_ANSWER_EVENT_KIND


class Incoming(Protocol):
    """A received SMS as the modem lists it."""

    @property
    def index(self) -> int:
        """Where the modem keeps it (for deleting)."""
        ...

    @property
    def sender(self) -> str:
        """The number it came from, as the network gives it."""
        ...

    @property
    def text(self) -> str:
        """What it says."""
        ...


class SmsLine(Protocol):
    """What the caller needs of a modem (``drivers.modem.SmsModem``)."""

    async def send_sms(self, number: str, text: str) -> int:
        """Send ``text`` to ``number``; the message reference."""
        ...

    async def unread(self) -> Sequence[Incoming]:
        """Messages received and not yet read (listing marks them read)."""
        ...

    async def received(self) -> Sequence[Incoming]:
        """Every received message still in the modem, read or not."""
        ...

    async def delete(self, index: int) -> None:
        """Delete a message from the modem's storage."""
        ...

    async def ring(
        self, number: str, ring_s: float, *, sleep: Callable[[float], Awaitable[None]]
    ) -> str:
        """Ring ``number`` for at most ``ring_s`` (paced by ``sleep``); how it went."""
        ...


#: Records one event durably and returns its seq (``LocalStore.record_event``).
RecordEvent = Callable[[float, str, str, int, dict[str, Any]], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class OpenCall:
    """An alarm the gateway is (or may soon be) calling the village about."""

    rule: str
    level: int
    alarm_seq: int
    raised_at: float


def warning_text(site_id: str, rule: str, level: int) -> str:
    """The SMS: short enough for one UCS-2 message (70 characters) on a usual site name."""
    words = AlarmLevel(level).colour_zh
    # Chinese text uses full-width punctuation, as the people reading it expect.
    return f"【HazardWatch {words}预警】{site_id} {rule}。断网，本机发送。请回复1或收到确认。"  # noqa: RUF001


class VillageCaller:
    """Calls and takes answers for one site; all state it needs is in ``store``'s events."""

    def __init__(
        self,
        spec: VillageCallSpec,
        site_id: str,
        store: LocalStore,
        clock: Clock,
        levels: Callable[[], Mapping[str, int]],
        record: RecordEvent,
        modem: Callable[[], AbstractAsyncContextManager[SmsLine]],
        forecasts: Callable[[], Mapping[str, StandingForecast]] | None = None,
    ) -> None:
        self.spec = spec
        self.site_id = site_id
        self.store = store
        self.clock = clock
        self.levels = levels
        self.record = record
        self.modem = modem
        #: The raised rules' standing forecasts (``agent.wire_forecasts``; never raises).
        self.forecasts = forecasts
        self._buttons: dict[str, bool] = {}
        self._presses: list[str] = []
        self._wake = asyncio.Event()
        self.modem_error: str | None = None

    # --- what is open -------------------------------------------------------------------

    def open_calls(self) -> list[OpenCall]:
        """Alarms at a covered level now, with the event that raised them, not yet answered."""
        found: list[OpenCall] = []
        for rule, level in self.levels().items():
            if level < self.spec.from_level:
                continue
            raised = self.store.last_event(ALARM_EVENT_KIND, rule)
            if raised is None or raised.level != level:
                continue  # its event is still held in memory: next round
            if self._answered(rule, raised.seq):
                continue
            found.append(OpenCall(rule, level, raised.seq, raised.ts))
        return found

    def _answered(self, rule: str, alarm_seq: int) -> bool:
        answer = self.store.last_event(ANSWER, rule)
        return answer is not None and answer.detail.get("alarm_seq") == alarm_seq

    def _county_has_it(self, call: OpenCall) -> bool:
        return self.store.watermark(Stream.EVENTS.value) >= call.alarm_seq

    def _last_calls(self, call: OpenCall) -> dict[str, StoredEvent]:
        last: dict[str, StoredEvent] = {}
        for event in self.store.events([CALL], since_seq=call.alarm_seq):
            if event.subject == call.rule and event.detail.get("alarm_seq") == call.alarm_seq:
                last[str(event.detail.get("person"))] = event
        return last

    def forecast_text(self, call: OpenCall) -> str | None:
        """The failure forecast of ``call``'s alarm in words, or None if it carries none.

        The newer of the forecast its raising event carried and the rule's standing one.
        """
        newest: tuple[float, float, float | None] | None = None  # (made at, likely, earliest)
        raised = self.store.last_event(ALARM_EVENT_KIND, call.rule)
        if raised is not None and raised.seq == call.alarm_seq:
            event = AlarmEvent.tolerant(raised.detail)
            forecast = event.forecast
            if forecast is not None and forecast.failure_t is not None:
                newest = (event.at or raised.ts, forecast.failure_t, forecast.failure_t_low)
        standing = self.forecasts().get(call.rule) if self.forecasts is not None else None
        if (
            standing is not None
            and standing.failure_t is not None
            and standing.at is not None
            and (newest is None or standing.at > newest[0])
        ):
            newest = (standing.at, standing.failure_t, standing.failure_t_low)
        if newest is None:
            return None
        return failure_words(newest[1], newest[2], self.spec.utc_offset_h)

    def due(self, now: float) -> list[tuple[OpenCall, VillagePerson]]:
        """Texts to send now: past the grace, the county silent, not sent within repeat_s."""
        due: list[tuple[OpenCall, VillagePerson]] = []
        for call in self.open_calls():
            if now - call.raised_at < self.spec.grace_s or self._county_has_it(call):
                continue
            last = self._last_calls(call)
            for person in self.spec.persons:
                previous = last.get(person.label)
                if previous is None:
                    due.append((call, person))
                    continue
                again = self.spec.repeat_s
                if previous.detail.get("status") == "failed":
                    again = min(again, 60.0)
                # "sending" with nothing after it: the agent stopped mid-send; send again
                if previous.detail.get("status") == "sending" or now >= previous.ts + again:
                    due.append((call, person))
        return due

    def status(self) -> dict[str, Any]:
        """For ``edge status``: the modem, its last fault, and what is being called now."""
        now = self.clock.now()
        return {
            "modem": self.spec.modem,
            "modem_error": self.modem_error,
            "persons": len(self.spec.persons),
            "calling": [
                {"rule": c.rule, "level": LEVEL_NAMES[c.level], "raised_at": c.raised_at}
                for c in self.open_calls()
                if now - c.raised_at >= self.spec.grace_s and not self._county_has_it(c)
            ],
        }

    # --- the confirm button --------------------------------------------------------------

    def observe(self, readings: Sequence[Reading]) -> None:
        """Note presses of the confirm buttons (on the alarm path: never raises, never waits)."""
        for reading in readings:
            if reading.channel_id not in self.spec.confirm or not reading.good:
                continue
            pressed = bool(reading.value)
            # A press is a change to pressed: a button stuck down, or down at start, is not.
            if pressed and self._buttons.get(reading.channel_id) is False:
                self._presses.append(reading.channel_id)
                self._wake.set()
            self._buttons[reading.channel_id] = pressed

    async def _take_presses(self, now: float) -> None:
        presses, self._presses = self._presses, []
        for channel_id in presses:
            calls = self.open_calls()
            if not calls:
                log.info("confirm button %s pressed with no alarm to answer", channel_id)
            for call in calls:
                await self._answer(call, f"village monitor at {channel_id}", "confirm button", now)

    # --- the modem -----------------------------------------------------------------------

    async def _take_replies(self, modem: SmsLine, now: float, everything: bool) -> None:
        by_number = {p.mobile: p for p in self.spec.persons}
        # After (re)opening, every message: one listed (so marked read) by a run that died
        # before deleting it is still waiting. Then only the new ones.
        for sms in await (modem.received() if everything else modem.unread()):
            numbers = sender_numbers(sms.sender, self.spec.country_code)
            person = next((by_number[n] for n in numbers if n in by_number), None)
            if person is None:
                hint = ""
                if self.spec.country_code is None and not sms.sender.startswith("+"):
                    hint = " (a domestic number? set [village_call] country_code)"
                log.warning(
                    "SMS from %s, not on the village list: ignored%s", mask_phone(sms.sender), hint
                )
            elif not is_answer(sms.text):
                log.info('SMS from %s is not an answer ("1" or "收到")', person.label)
            else:
                for call in self.open_calls():
                    if person.label in self._last_calls(call):
                        await self._answer(call, person.label, "sms reply", now)
            # recorded before it is deleted: a crash in between reads it again, and an
            # answer already taken is not taken twice (open_calls leaves it out)
            await modem.delete(sms.index)

    async def _answer(self, call: OpenCall, person: str, via: str, now: float) -> None:
        if self._answered(call.rule, call.alarm_seq):
            return
        detail = {"alarm_seq": call.alarm_seq, "person": person, "via": via, "at": now}
        await self.record(now, ANSWER, call.rule, call.level, detail)
        log.warning("alarm %s: answered by %s (%s)", call.rule, person, via)

    @staticmethod
    def _detail(call: OpenCall, person: VillagePerson, via: str) -> dict[str, Any]:
        return {
            "alarm_seq": call.alarm_seq,
            "person": person.label,
            "to": mask_phone(person.mobile),
            "via": via,
        }

    async def _send(
        self, modem: SmsLine, call: OpenCall, person: VillagePerson, now: float
    ) -> bool:
        """Text ``person`` about ``call``; True when the modem took the message."""
        detail = self._detail(call, person, "gateway modem")
        await self.record(now, CALL, call.rule, call.level, {**detail, "status": "sending"})
        try:
            reference = await modem.send_sms(
                person.mobile, warning_text(self.site_id, call.rule, call.level)
            )
        except Exception as exc:
            log.warning("SMS to %s failed: %s", person.label, exc)
            failed = {**detail, "status": "failed", "detail": str(exc)[:200]}
            await self.record(self.clock.now(), CALL, call.rule, call.level, failed)
            return False
        sent = {**detail, "status": "sent", "detail": f"message reference {reference}"}
        await self.record(self.clock.now(), CALL, call.rule, call.level, sent)
        log.warning("alarm %s: the county is out of reach; texted %s", call.rule, person.label)
        try:
            words = self.forecast_text(call)
        except Exception:  # the warning went: a bad forecast record costs only its time
            log.exception("alarm %s: its forecast could not be worded", call.rule)
            words = None
        if words is not None:
            # A text of its own: the warning fits one SMS, and a split would cut a time.
            try:
                await modem.send_sms(person.mobile, words)
            except Exception as exc:  # the warning went: the call stands, without the time
                log.warning("forecast SMS to %s failed: %s", person.label, exc)
        return True

    async def _ring(self, modem: SmsLine, call: OpenCall, person: VillagePerson) -> None:
        # A ringing phone wakes someone a text may not; picking up is still no answer.
        detail = self._detail(call, person, "gateway modem, ringing")
        try:
            outcome = await modem.ring(person.mobile, self.spec.ring_s, sleep=self.clock.sleep)
        except Exception as exc:
            # not "failed": that status sends the text again; the text did go out
            why = {**detail, "status": "ring failed", "detail": str(exc)[:200]}
            await self.record(self.clock.now(), CALL, call.rule, call.level, why)
            log.warning("alarm %s: could not ring %s: %s", call.rule, person.label, exc)
            return
        rang = {**detail, "status": "rang", "detail": outcome}
        await self.record(self.clock.now(), CALL, call.rule, call.level, rang)
        log.warning("alarm %s: rang %s (%s)", call.rule, person.label, outcome)

    # --- the loop ------------------------------------------------------------------------

    async def round(self, modem: SmsLine | None, first: bool = False) -> None:
        """One round: presses, replies, then texts due; a modem fault propagates."""
        now = self.clock.now()
        await self._take_presses(now)
        if modem is None:
            return
        await self._take_replies(modem, now, everything=first)
        texted = [(c, p) for c, p in self.due(now) if await self._send(modem, c, p, now)]
        if self.spec.ring_s <= 0:
            return
        # Every text goes out before any phone rings (a ring holds the modem for up to
        # ring_s); before each ring, answers are taken, and whoever has answered, or an
        # alarm the county now has, is not rung.
        for call, person in texted:
            await self._take_presses(self.clock.now())
            await self._take_replies(modem, self.clock.now(), everything=False)
            if self._answered(call.rule, call.alarm_seq) or self._county_has_it(call):
                continue
            await self._ring(modem, call, person)

    async def run(self) -> None:
        """Rounds every ``poll_s`` until cancelled; the modem is reopened after a fault."""
        while True:
            try:
                async with self.modem() as modem:
                    self.modem_error = None
                    await self.round(modem, first=True)
                    while True:
                        await self._pause()
                        await self.round(modem)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.modem_error != str(exc):
                    log.error("village call modem %s: %s; trying again", self.spec.modem, exc)
                self.modem_error = str(exc)
                # the confirm buttons still answer without a modem
                with contextlib.suppress(Exception):
                    await self.round(None)
                await self._pause()

    async def _pause(self) -> None:
        """Until the next round is due on the site's clock, or something wakes the call."""
        await self.clock.sleep_until(self.clock.now() + self.spec.poll_s, self._wake)
        self._wake.clear()


def open_modem(spec: VillageCallSpec) -> AbstractAsyncContextManager[SmsLine]:
    """The site's modem, opened on entry (``drivers.modem``, loaded only by sites with one)."""
    from drivers.modem import SmsModem  # noqa: PLC0415

    return SmsModem(spec.modem, spec.baudrate)
