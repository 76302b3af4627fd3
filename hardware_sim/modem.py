"""A simulated cellular modem that answers 3GPP TS 27.005 text-mode SMS commands on a pty.

It starts as real modems do (echo on, PDU mode, GSM character set), keeps what the
gateway sends in ``outbox`` and the replies a test delivers in its SIM storage, and can
be told to fail. It is as strict as a picky modem: in UCS2 mode numbers and texts must
be hex, and one SMS holds 70 UCS2 characters. It never touches a real serial port or a
real network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import serial

from drivers.sms_text import (
    UCS2_UNITS_PER_SMS,
    Ucs2Error,
    from_ucs2_hex,
    to_ucs2_hex,
    ucs2_units,
)
from protocol.contacts import mask_phone

log = logging.getLogger(__name__)

CTRL_Z = 0x1A
ESC = 0x1B
#: Messages the simulated SIM holds (a typical SIM has 20 to 50 slots).
SIM_SLOTS = 30
#: Characters of one SMS in the GSM 7-bit alphabet.
GSM_CHARS_PER_SMS = 160
#: The modem's time zone in quarter hours, as 27.005 time stamps carry it (+32 is UTC+8).
_ZONE_QUARTERS = 32
_STATS = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT", "ALL")
_CNMI = re.compile(r"^AT\+CNMI=([0-3])(?:,([0-3]))?(?:,[0-3]){0,3}$")
_CSMP = re.compile(r"^AT\+CSMP=(\d{1,3}),(\d{1,3}),(\d{1,3}),(\d{1,3})$")
#: A voice call: ATD, the number, and the ';' that makes it voice rather than data.
_ATD = re.compile(r"^ATD(\+?[0-9]{3,20});$")


@dataclass
class SentSms:
    """One SMS the gateway sent, its text decoded."""

    number: str
    text: str
    ref: int


@dataclass
class Ring:
    """One voice call the gateway made: to whom, and how it went (``AT+CLCC`` states)."""

    number: str
    #: 3 alerting (ringing), 0 active (picked up); ``ended`` once it was hung up
    state: int = 3
    ended: bool = False
    checks: int = 0
    #: when it started ringing, on the modem's clock
    started: float = 0.0


@dataclass
class StoredSms:
    """A message in the simulated SIM storage."""

    sender: str
    text: str
    received_at: str
    status: str = "REC UNREAD"


class SimulatedModem:
    """A modem on the device end of a ``PtyPair``; runs in a task on the caller's loop.

    Attributes:
        outbox: every SMS the gateway sent, in order, texts decoded.
        storage: received messages by storage index.
        commands: every command line received, in order (for tests).
        rssi: what ``AT+CSQ`` reports (0-31, 99 unknown).
        on_command: called with each command line, and with ``"<text>"`` when message
            text ends, before the modem answers (tests use it to interleave URCs).
        on_sent: called with each SMS the gateway sent, once it is in the outbox.
        rings: every voice call the gateway made, in order; numbers in ``picks_up`` are
            answered as soon as they ring, those in ``busy`` refused, and the network ends
            an unanswered call after ``no_answer_s`` (on ``clock``), as real networks do.
        prompt_delay_s: how long ``AT+CMGS`` takes to prompt for text (a slow modem); it
            takes text, and ESC, at once.
    """

    def __init__(
        self, port: str | Path, *, clock: Callable[[], float] = time.time, rssi: int = 21
    ) -> None:
        self.port_path = Path(port)
        self.clock = clock
        self.rssi = rssi
        self.outbox: list[SentSms] = []
        self.rings: list[Ring] = []
        #: numbers whose phone is picked up as soon as it rings, or refuses (busy)
        self.picks_up: set[str] = set()
        self.busy: set[str] = set()
        #: the network gives up on a call nobody picks up after this long (NO CARRIER)
        self.no_answer_s = 60.0
        self.storage: dict[int, StoredSms] = {}
        self.commands: list[str] = []
        self.on_command: Callable[[str], None] | None = None
        self.on_sent: Callable[[SentSms], None] | None = None
        self.prompt_delay_s = 0.0
        self._prompt_later: asyncio.TimerHandle | None = None
        self.echo = True
        self.text_mode = False
        self.charset = "GSM"
        self.data_coding = 0
        self.numeric_errors = False
        #: <mt> of AT+CNMI: 0/1 store new messages (1 also sends +CMTI), 2 routes them
        #: straight to the gateway as +CMT without storing them.
        self.new_message_routing = 1
        self._faults: list[str] = []
        self._next_ref = 1
        self._line = bytearray()
        self._recipient: str | None = None
        self._port: serial.Serial | None = None

    async def start(self) -> None:
        """Open the device end and answer from now on."""
        if self._port is not None:
            return
        self._port = serial.Serial(str(self.port_path), 115200, timeout=0)
        asyncio.get_running_loop().add_reader(self._port.fileno(), self._on_readable)

    async def stop(self) -> None:
        """Stop answering (the modem goes silent) and close the device end."""
        port, self._port = self._port, None
        if port is None:
            return
        self._drop_prompt()
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(port.fileno())
        port.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def deliver(self, sender: str, text: str) -> int:
        """Store an incoming SMS as unread, announce it with ``+CMTI``; return its index.

        A modem told to route new messages straight to the gateway (``AT+CNMI=2,2``)
        sends them as ``+CMT`` and stores nothing: then this returns 0.

        Raises:
            RuntimeError: the SIM storage is full (a real modem would leave it at the SMSC).
        """
        if self.new_message_routing == 2:
            head = f'+CMT: "{self._out(sender)}","","{self._timestamp()}"'
            self.emit_urc(f"{head}\r\n{self._out(text)}")
            return 0
        index = next((i for i in range(1, SIM_SLOTS + 1) if i not in self.storage), None)
        if index is None:
            msg = f"the simulated SIM holds {SIM_SLOTS} messages and is full"
            raise RuntimeError(msg)
        self.storage[index] = StoredSms(sender, text, self._timestamp())
        self.emit_urc(f'+CMTI: "SM",{index}')
        return index

    def fail_next(self, error: str = "+CMS ERROR: 500") -> None:
        """Answer the next command with ``error`` instead of its result.

        For ``AT+CMGS`` the prompt still comes and the text is taken; the error replaces
        ``+CMGS``, as when the network refuses the message.
        """
        self._faults.append(error)

    def emit_urc(self, line: str) -> None:
        """Send an unsolicited result code now, whatever the gateway is doing."""
        self._send(f"\r\n{line}\r\n")

    def _timestamp(self) -> str:
        zone = timedelta(minutes=15 * _ZONE_QUARTERS)
        moment = datetime.fromtimestamp(self.clock(), UTC) + zone
        return f"{moment:%y/%m/%d,%H:%M:%S}+{_ZONE_QUARTERS:02d}"

    def _send(self, text: str) -> None:
        if self._port is not None:
            self._port.write(text.encode("utf-8"))

    def _on_readable(self) -> None:
        port = self._port
        if port is None:
            return
        try:
            data = port.read(4096)
        except (serial.SerialException, OSError):
            log.warning("simulated modem: %s failed; going silent", self.port_path)
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(port.fileno())
            return
        for byte in data:
            self._take(byte)

    def _take(self, byte: int) -> None:
        if self._recipient is not None:
            self._take_text(byte)
            return
        if byte == ord("\r"):
            line = self._line.decode("utf-8", errors="replace")
            self._line.clear()
            self._command_line(line)
        elif byte != ord("\n"):
            self._line.append(byte)

    def _drop_prompt(self) -> None:
        if self._prompt_later is not None:
            self._prompt_later.cancel()
            self._prompt_later = None

    def _take_text(self, byte: int) -> None:
        if byte in (ESC, CTRL_Z):
            self._drop_prompt()
        if byte == ESC:
            self._recipient = None
            self._line.clear()
            self._send("\r\nOK\r\n")
        elif byte == CTRL_Z:
            recipient, self._recipient = self._recipient, None
            text = self._line.decode("utf-8", errors="replace")
            self._line.clear()
            if self.echo:
                self._send(text)
            if self.on_command is not None:
                self.on_command("<text>")
            self._submit(recipient or "", text)
        else:
            self._line.append(byte)

    def _command_line(self, raw: str) -> None:
        # V.250: what comes before "AT" (line noise, a stray ESC) is not a command.
        start = raw.upper().find("AT")
        if start < 0:
            return
        line = raw[start:].strip()
        self.commands.append(line)
        if self.echo:
            self._send(raw + "\r")
        if self.on_command is not None:
            self.on_command(line)
        if line.upper().startswith("AT+CMGS="):
            self._begin_text(line)
            return
        if self._faults:
            self._send(f"\r\n{self._faults.pop(0)}\r\n")
            return
        try:
            info = self._answer(line)
        except _CommandError as exc:
            self._send(f"\r\n{exc}\r\n")
            return
        self._send("".join(f"\r\n{part}\r\n" for part in info) + "\r\nOK\r\n")

    def _cms(self, code: int) -> _CommandError:
        return _CommandError(f"+CMS ERROR: {code}")

    def _cme(self, code: int) -> _CommandError:
        return _CommandError(f"+CME ERROR: {code}" if self.numeric_errors else "ERROR")

    def _string(self, value: str) -> str:
        """A string parameter in the current character set, decoded."""
        if self.charset != "UCS2":
            return value
        try:
            return from_ucs2_hex(value)
        except Ucs2Error:
            raise self._cms(305) from None

    def _out(self, value: str) -> str:
        return to_ucs2_hex(value) if self.charset == "UCS2" else value

    def _begin_text(self, line: str) -> None:
        match = re.fullmatch(r'AT\+CMGS="([^"]*)"(?:,\d+)?', line, flags=re.IGNORECASE)
        try:
            if not self.text_mode:
                raise self._cms(304)  # a PDU-mode modem wants a length here
            if match is None:
                raise self._cms(305)
            number = self._string(match.group(1))
            if not re.fullmatch(r"\+?[0-9]{3,20}", number):
                raise self._cms(305)
        except _CommandError as exc:
            self._send(f"\r\n{exc}\r\n")
            return
        self._recipient = number
        if self.prompt_delay_s > 0:
            loop = asyncio.get_running_loop()
            self._prompt_later = loop.call_later(self.prompt_delay_s, self._send, "\r\n> ")
        else:
            self._send("\r\n> ")

    def _submit(self, number: str, entered: str) -> None:
        if self._faults:
            self._send(f"\r\n{self._faults.pop(0)}\r\n")
            return
        if self.charset == "UCS2":
            try:
                text = from_ucs2_hex(entered)
            except Ucs2Error:
                self._send("\r\n+CMS ERROR: 305\r\n")
                return
            if self.data_coding != 8:
                # UCS2 input converted to the GSM alphabet: real modems garble what it lacks.
                text = "".join(c if c.isascii() else "?" for c in text)
        else:
            text = entered
        limit = UCS2_UNITS_PER_SMS if self.data_coding == 8 else GSM_CHARS_PER_SMS
        if ucs2_units(text) > limit:
            self._send("\r\n+CMS ERROR: 305\r\n")
            return
        ref = self._next_ref
        self._next_ref = self._next_ref % 255 + 1
        sent = SentSms(number, text, ref)
        self.outbox.append(sent)
        log.info("simulated modem: SMS %d to %s", ref, mask_phone(number))
        self._send(f"\r\n+CMGS: {ref}\r\n\r\nOK\r\n")
        if self.on_sent is not None:
            self.on_sent(sent)

    def _answer(self, line: str) -> list[str]:
        upper = line.upper()
        if upper == "AT":
            return []
        if upper in ("ATE0", "ATE1"):
            self.echo = upper == "ATE1"
            return []
        if upper in ("AT+CMEE=0", "AT+CMEE=1"):
            self.numeric_errors = upper == "AT+CMEE=1"
            return []
        if match := _CNMI.match(upper):
            self.new_message_routing = int(match.group(2) or 0)
            return []
        if upper in ("AT+CMGF=0", "AT+CMGF=1"):
            self.text_mode = upper == "AT+CMGF=1"
            return []
        if upper.startswith("AT+CSCS="):
            return self._select_charset(line[len("AT+CSCS=") :])
        if upper == "AT+CSCS?":
            return [f'+CSCS: "{self._out(self.charset)}"']
        if match := _CSMP.match(upper):
            self.data_coding = int(match.group(4))
            return []
        if upper == "AT+CSQ":
            return [f"+CSQ: {self.rssi},99"]
        if upper == "AT+CPMS?":
            memory = f'"SM",{len(self.storage)},{SIM_SLOTS}'
            return [f"+CPMS: {memory},{memory},{memory}"]
        if upper.startswith("AT+CMGL"):
            return self._list(line)
        if upper.startswith("AT+CMGR="):
            return self._read(line[len("AT+CMGR=") :])
        if upper.startswith("AT+CMGD="):
            return self._delete(line[len("AT+CMGD=") :])
        if match := _ATD.match(upper):
            return self._dial(match.group(1))
        if upper == "AT+CLCC":
            return self._calls()
        if upper in ("ATH", "AT+CHUP"):
            for ring in self.rings:
                ring.ended = True
            return []
        raise _CommandError("ERROR")

    def _dial(self, number: str) -> list[str]:
        if any(not r.ended for r in self.rings):
            raise _CommandError("ERROR")  # one call at a time
        ring = Ring(number, started=self.clock())
        self.rings.append(ring)
        if number in self.busy:
            # the network says busy: OK to the dial, then BUSY, and no call is listed
            ring.ended = True
            asyncio.get_running_loop().call_soon(self.emit_urc, "BUSY")
        return []

    def _calls(self) -> list[str]:
        lines = []
        for index, ring in enumerate(self.rings, start=1):
            if ring.ended:
                continue
            ring.checks += 1
            if ring.number in self.picks_up:
                ring.state = 0
            elif self.clock() - ring.started >= self.no_answer_s:
                ring.ended = True  # nobody picked up: the network ends the call
                asyncio.get_running_loop().call_soon(self.emit_urc, "NO CARRIER")
                continue
            kind = 145 if ring.number.startswith("+") else 129
            lines.append(f'+CLCC: {index},0,{ring.state},0,0,"{ring.number}",{kind}')
        return lines

    def _select_charset(self, argument: str) -> list[str]:
        name = self._string(argument.strip('"')) if argument.startswith('"') else ""
        if name not in ("GSM", "IRA", "UCS2"):
            raise self._cme(4)
        self.charset = name
        return []

    def _entry(self, message: StoredSms) -> tuple[str, str]:
        head = f'"{message.status}","{self._out(message.sender)}","","{message.received_at}"'
        return head, self._out(message.text)

    def _list(self, line: str) -> list[str]:
        if not self.text_mode:
            raise self._cms(302)
        match = re.fullmatch(r'AT\+CMGL(?:="([^"]*)")?', line, flags=re.IGNORECASE)
        if match is None:
            raise self._cms(305)
        wanted = match.group(1) or "REC UNREAD"
        if wanted not in _STATS:
            # Some modems take the status in the current character set too.
            wanted = self._string(wanted)
        if wanted not in _STATS:
            raise self._cms(305)
        info: list[str] = []
        for index in sorted(self.storage):
            message = self.storage[index]
            if wanted in ("ALL", message.status):
                head, body = self._entry(message)
                info.append(f"+CMGL: {index},{head}\r\n{body}")
                message.status = "REC READ"
        return info

    def _index(self, argument: str) -> int:
        if not argument.isdigit() or not 1 <= int(argument) <= SIM_SLOTS:
            raise self._cms(321)
        return int(argument)

    def _read(self, argument: str) -> list[str]:
        if not self.text_mode:
            raise self._cms(302)
        message = self.storage.get(self._index(argument))
        if message is None:
            raise self._cms(321)
        head, body = self._entry(message)
        message.status = "REC READ"
        return [f"+CMGR: {head}\r\n{body}"]

    def _delete(self, argument: str) -> list[str]:
        index_text, _, flag = argument.partition(",")
        if flag.strip() == "4":
            self.storage.clear()
            return []
        self.storage.pop(self._index(index_text.strip()), None)
        return []


class _CommandError(Exception):
    """The result code a command gets instead of OK."""
