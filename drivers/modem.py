"""The gateway's SMS modem: texts people and reads their replies through a cellular modem.

A USB 4G modem (or HAT) on a serial port, driven with 3GPP TS 27.005 text-mode AT
commands in the UCS2 character set, so that Chinese travels both ways. It never runs or
forwards anything a message says (a reply is data for the caller), never logs a phone
number in clear (``mask_phone``), and never blocks the event loop or waits past its
timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from drivers.at_channel import AtChannel, InfoLine, ModemError
from drivers.sms_text import (
    Ucs2Error,
    from_ucs2_hex,
    looks_like_ucs2_hex,
    split_for_sms,
    to_ucs2_hex,
)
from protocol.contacts import mask_phone

__all__ = ["IncomingSms", "ModemError", "RingOutcome", "SmsModem"]

log = logging.getLogger(__name__)

#: A number the modem can dial: digits with an optional leading '+' (E.164 or national).
_DIALLABLE = re.compile(r"^\+?[0-9]{3,20}$")
#: One field of an information line: a quoted string (commas allowed) or a bare value.
_FIELD = re.compile(r'\s*(?:"([^"]*)"|([^,]*?))\s*(?:,|$)')
_RECEIVED = ("REC UNREAD", "REC READ")
_KNOWN_STATS = (*_RECEIVED, "STO UNSENT", "STO SENT")
#: Store every new message and announce it with +CMTI: one routed straight to the port
#: (+CMT, as another program may have set) is gone if nobody is reading just then.
_STORE_NEW_MESSAGES = "AT+CNMI=2,1,0,0,0"
#: ``AT+CLCC`` call state of a call the other side has picked up (3GPP TS 27.007 7.18).
_CALL_ACTIVE = "0"
#: What a ring came to: picked up, rung out unanswered, or ended by the network or the
#: other side (busy, refused, switched off) before either.
RingOutcome = Literal["picked up", "not picked up", "ended"]
#: SMS-SUBMIT, relative validity 24 h, no protocol id, data coding scheme 8: UCS2.
_SUBMIT_PARAMETERS = "AT+CSMP=17,167,0,8"


@dataclass(frozen=True, slots=True)
class IncomingSms:
    """A message stored in the modem, as the modem reports it.

    Attributes:
        index: where the modem stores it (for ``SmsModem.delete``).
        sender: the originating number as the modem reports it, e.g. ``+8613800000001``.
        received_at: the service centre time stamp as given (``26/12/03,14:05:00+32``).
        text: the decoded text.
    """

    index: int
    sender: str
    received_at: str
    text: str

    def __repr__(self) -> str:
        # A repr ends up in logs and tracebacks: the number stays masked there too.
        return (
            f"IncomingSms(index={self.index}, sender={mask_phone(self.sender)!r}, "
            f"received_at={self.received_at!r}, text={self.text!r})"
        )


def _fields(line: str, prefix: str) -> list[str]:
    rest = line[len(prefix) :].strip()
    fields: list[str] = []
    position = 0
    while position <= len(rest):
        match = _FIELD.match(rest, position)
        if match is None or match.end() == position:
            break
        fields.append(match.group(1) if match.group(1) is not None else match.group(2))
        position = match.end()
    return fields


def _address(value: str) -> str:
    """A number the modem wrote in UCS2 hex, or as it is when it did not encode it."""
    if looks_like_ucs2_hex(value):
        try:
            decoded = from_ucs2_hex(value)
        except Ucs2Error:
            return value
        # An unencoded '13800138' is valid hex too; hex with letters, or that decodes to
        # plain ASCII, is an encoded address (a name such as 中国移动 has letters).
        if decoded.isprintable() and (decoded.isascii() or not value.isdigit()):
            return decoded
    return value


def _body(value: str) -> str:
    try:
        return from_ucs2_hex(value)
    except Ucs2Error:
        return value  # a modem that left the text unencoded


def _status(value: str) -> str:
    if value not in _KNOWN_STATS and looks_like_ucs2_hex(value):
        return _address(value)
    return value


class SmsModem:
    """An SMS modem on a serial port: send texts, list and delete received ones, signal.

    Use ``async with SmsModem(port) as modem:`` (or ``open``/``close``). Calls are served
    one at a time. Every failure raises ``ModemError`` naming the command, with any
    number in it masked. After one, the next call may work (the modem refused) or fail
    again (the port is gone): ``open`` again reopens a failed port and sets the modem up.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        timeout_s: float = 10.0,
        send_timeout_s: float = 120.0,
    ) -> None:
        """Set up the modem on ``port``; nothing is opened until ``open``.

        Args:
            port: the modem's AT port, e.g. ``/dev/ttyUSB2``.
            baudrate: line speed (USB modems ignore it).
            timeout_s: how long any answer, and the ``> `` prompt, may take.
            send_timeout_s: how long ``+CMGS`` may take once the text is submitted (the
                network's answer; 27.005 modems document up to 120 s).
        """
        if send_timeout_s <= 0:
            msg = f"send_timeout_s must be positive, got {send_timeout_s}"
            raise ValueError(msg)
        self._channel = AtChannel(port, baudrate, timeout_s)
        self.send_timeout_s = send_timeout_s

    @property
    def port(self) -> str:
        """The serial port."""
        return self._channel.port

    async def open(self) -> None:
        """Open the port and put the modem in UCS2 text mode.

        Cancels any message text a previous run left the modem waiting for, checks that
        it answers, then sets: no echo, numeric errors, text mode, new messages stored,
        UCS2, UCS2 data coding.

        Raises:
            ModemError: the port cannot be opened or the modem refuses or does not answer.
        """
        self._channel.open()
        try:
            await self._channel.cancel_text_entry()
            # The OK to ESC (some modems send one) must not be taken for the next answer.
            await self._channel.command("AT+CSQ", info="+CSQ:", info_before_ok=True)
            await self._channel.command("ATE0")
            try:
                await self._channel.command("AT+CMEE=1")
            except ModemError as exc:
                log.info("modem on %s keeps plain ERROR results: %s", self.port, exc)
            await self._channel.command("AT+CMGF=1")
            try:
                await self._channel.command(_STORE_NEW_MESSAGES)
            except ModemError as exc:
                log.warning("modem on %s may not store replies (%s)", self.port, exc)
            await self._select_ucs2()
            await self._channel.command(_SUBMIT_PARAMETERS)
        except BaseException:
            self._channel.close()
            raise
        log.info("modem on %s ready (SMS text mode, UCS2)", self.port)

    async def _select_ucs2(self) -> None:
        try:
            await self._channel.command('AT+CSCS="UCS2"')
        except ModemError:
            # A modem still in UCS2 from an earlier run reads "UCS2" as hex, so it wants
            # the name itself in UCS2 (27.007 +CSCS: strings use the current set).
            await self._channel.command(f'AT+CSCS="{to_ucs2_hex("UCS2")}"')

    async def close(self) -> None:
        """Close the port; safe to call twice."""
        self._channel.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send_sms(self, number: str, text: str) -> int:
        """Text ``number``; return the message reference of the (first) SMS.

        A text longer than one UCS2 SMS (70 UTF-16 units) goes as several plain SMS of
        at most 70 units each, in order, without a concatenation header; the phone shows
        them as separate messages. If one fails, the ones before it have gone.

        Raises:
            ModemError: a number that is not diallable, an empty text, or a modem that
                refuses or does not answer (naming the part that failed).
        """
        number = number.strip().replace(" ", "")
        if not _DIALLABLE.match(number):
            # The number is not echoed: it is personal data and this text may be logged.
            msg = "AT+CMGS: not a phone number (3 to 20 digits, optionally after '+')"
            raise ModemError(msg)
        parts = split_for_sms(text)
        if not parts:
            msg = f'AT+CMGS="{mask_phone(number)}": the text is empty'
            raise ModemError(msg)
        refs: list[int] = []
        for position, part in enumerate(parts, start=1):
            label = f'AT+CMGS="{mask_phone(number)}"'
            if len(parts) > 1:
                label += f" (part {position} of {len(parts)})"
            answer = await self._channel.command_with_text(
                f'AT+CMGS="{to_ucs2_hex(number)}"',
                to_ucs2_hex(part).encode("ascii"),
                label=label,
                info="+CMGS:",
                answer_timeout_s=self.send_timeout_s,
            )
            refs.append(self._reference(label, answer))
        log.info(
            "sent SMS to %s in %d part(s), reference(s) %s",
            mask_phone(number),
            len(parts),
            ", ".join(map(str, refs)),
        )
        return refs[0]

    @staticmethod
    def _reference(label: str, answer: list[InfoLine]) -> int:
        for line in answer:
            fields = _fields(line.head, "+CMGS:")
            if fields and fields[0].isdigit():
                return int(fields[0])
        msg = f"{label}: the modem answered OK without a +CMGS message reference"
        raise ModemError(msg)

    async def unread(self) -> list[IncomingSms]:
        """Messages received and not yet read (``AT+CMGL="REC UNREAD"``); the modem marks them read.

        Delete each once it is handled: after a crash between this call and that, a
        message is still stored but read, and only ``received`` returns it.
        """
        return await self._list("REC UNREAD")

    async def received(self) -> list[IncomingSms]:
        """Every received message still stored, read or not (``AT+CMGL="ALL"``).

        For start-up: replies a previous run listed but did not delete come back here.
        """
        return await self._list("ALL")

    async def _list(self, status: str) -> list[IncomingSms]:
        answer = await self._channel.command(f'AT+CMGL="{status}"', info="+CMGL:", with_body=True)
        messages: list[IncomingSms] = []
        for line in answer:
            fields = _fields(line.head, "+CMGL:")
            if len(fields) < 5 or not fields[0].isdigit():
                # Not echoed: the line holds the sender's number.
                log.warning("modem on %s: skipped a +CMGL line of an unknown form", self.port)
                continue
            if _status(fields[1]) not in _RECEIVED:
                continue  # a message this modem sent or stored for sending
            messages.append(
                IncomingSms(int(fields[0]), _address(fields[2]), fields[4], _body(line.body))
            )
        return messages

    async def delete(self, index: int) -> None:
        """Delete the message stored at ``index`` (``AT+CMGD``).

        Raises:
            ModemError: an index that is not a non-negative integer, or the modem refused.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            msg = f"AT+CMGD: the index must be a non-negative integer, got {index!r}"
            raise ModemError(msg)
        await self._channel.command(f"AT+CMGD={index}")

    async def ring(
        self,
        number: str,
        ring_s: float,
        *,
        poll_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> RingOutcome:
        """Ring ``number`` as a voice call with no sound, then hang up.

        A phone that rings wakes a village monitor at night where a text may not. The
        call is held until it is picked up, the other side or the network ends it, or
        ``ring_s`` has passed (``sleep`` paces the checks, so a sped-up clock may drive
        it); it is hung up in every case, even when this is cancelled. Picking up is no
        answer to the warning: that is still a reply or the confirm button.

        Raises:
            ModemError: a number that cannot be dialled, or the modem refused the call.
        """
        if not _DIALLABLE.match(number):
            msg = f"ATD: {mask_phone(number)} is not a number the modem can dial"
            raise ModemError(msg)
        outcome: RingOutcome = "not picked up"
        try:
            # inside the try: a dial that timed out may still have dialled, and is hung up
            await self._channel.command(f"ATD{number};", label=f"ATD{mask_phone(number)};")
            waited = 0.0
            while waited < ring_s:
                await sleep(poll_s)
                waited += poll_s
                calls = await self._channel.command("AT+CLCC", info="+CLCC:")
                if not calls:
                    outcome = "ended"
                    break
                # +CLCC: <id>,<dir>,<stat>,...: the third field is the call's state
                if any(_fields(c.head, "+CLCC:")[2:3] == [_CALL_ACTIVE] for c in calls):
                    outcome = "picked up"
                    break
        finally:
            with contextlib.suppress(ModemError):
                await asyncio.shield(self._channel.command("ATH"))
        return outcome

    async def signal(self) -> int | None:
        """The received signal strength index 0 (-113 dBm or less) to 31 (-51 dBm or more).

        None when the modem does not know it (99) or reports something else.
        """
        answer = await self._channel.command("AT+CSQ", info="+CSQ:", info_before_ok=True)
        fields = _fields(answer[0].head, "+CSQ:") if answer else []
        if fields and fields[0].isdigit() and 0 <= int(fields[0]) <= 31:
            return int(fields[0])
        return None
