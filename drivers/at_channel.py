"""The AT command channel to a cellular modem on a serial port (ITU-T V.250 framing).

One command at a time: it writes the command line, skips echo and unsolicited result
codes (``+CMTI``, ``RING``, ...), and returns the information lines the command answered
before ``OK``. An error result, a closed port or silence past the deadline raises
``ModemError`` naming the command. It never blocks the event loop (the tty is
non-blocking and served by the loop's reader), and never puts a phone number in a log
or an error: a command that carries one is named by a masked label, and a skipped line
is logged by its command name only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import serial

log = logging.getLogger(__name__)
T = TypeVar("T")

CTRL_Z = b"\x1a"
ESC = b"\x1b"

#: Lines the modem may send on its own at any moment (27.005 §3.4.1, 27.007, V.250),
#: also between a message header and its body.
_URC = re.compile(
    r"^(?:RING|NO CARRIER|BUSY|NO ANSWER|RDY|SMS DONE|PB DONE|Call Ready|SMS Ready|"
    r"\+CMTI:|\+CDSI:|\+CMT:|\+CDS:|\+CBM:|\+CREG:|\+CGREG:|\+CEREG:|\+CLIP:|\+CRING:|"
    r"\+CUSD:|\+CPIN:|\+CFUN:|\+QIND:|\+QUSIM:|\^)"
)
_ERROR = re.compile(r"^(?:ERROR|COMMAND NOT SUPPORT|\+CMS ERROR:.*|\+CME ERROR:.*)$")
_FINAL_OK = "OK"
_LINE_END = re.compile(rb"[\r\n]")
#: A modem that sends this much without a line end is sending noise, not answers.
_MAX_PENDING = 64 * 1024

#: 3GPP TS 27.005 §3.2.5 message service failures, the ones a gateway will meet.
CMS_ERRORS = {
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    500: "unknown error",
}
#: 3GPP TS 27.007 §9.2 equipment errors, the ones a gateway will meet.
CME_ERRORS = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    30: "no network service",
    31: "network timeout",
    100: "unknown",
}


class ModemError(RuntimeError):
    """The modem refused, failed or did not answer a command; the message names it."""


@dataclass(frozen=True, slots=True)
class InfoLine:
    """An information line a command answered (``+CMGL: ...``) and, for messages, its body."""

    head: str
    body: str = ""


def _gist(line: str) -> str:
    """What a skipped line is, never what it says: ``AT+CMGS="..."`` -> ``AT+CMGS``.

    An echoed command or a message header carries a phone number (hex in UCS2 mode).
    """
    return re.split(r"[=:?\s]", line, maxsplit=1)[0][:16]


def explain_error(line: str) -> str:
    """``+CMS ERROR: 331`` -> ``+CMS ERROR: 331 (no network service)``."""
    for prefix, table in (("+CMS ERROR:", CMS_ERRORS), ("+CME ERROR:", CME_ERRORS)):
        if line.startswith(prefix):
            code = line[len(prefix) :].strip()
            if code.isdigit() and int(code) in table:
                return f"{line} ({table[int(code)]})"
    return line


class AtChannel:
    """The single owner of a modem's AT port: one command at a time, each with a deadline."""

    def __init__(self, port: str, baudrate: int, timeout_s: float) -> None:
        if not 0 < timeout_s < math.inf:  # NaN too: each command needs a real deadline
            msg = f"timeout_s must be a positive finite number of seconds, got {timeout_s}"
            raise ValueError(msg)
        self.port = port
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._serial: serial.Serial | None = None
        self._pending = bytearray()
        self._arrived = asyncio.Event()
        self._failure: str | None = None
        self._turn = asyncio.Lock()

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._serial is not None

    def open(self) -> None:
        """Open the port (exclusively) and start reading it; raises ModemError.

        A port that failed (a modem unplugged) is closed and opened afresh.
        """
        if self._serial is not None and self._failure is None:
            return
        self.close()
        try:
            # pyserial configures the tty (raw, speed) and opens it O_NONBLOCK.
            port = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)
        except (serial.SerialException, OSError) as exc:
            msg = f"cannot open modem port {self.port}: {exc}"
            raise ModemError(msg) from exc
        self._serial = port
        self._failure = None
        self._pending.clear()
        asyncio.get_running_loop().add_reader(port.fileno(), self._on_readable)

    def close(self) -> None:
        """Stop reading and close the port; safe to call twice."""
        port, self._serial = self._serial, None
        if port is None:
            return
        with contextlib.suppress(OSError, ValueError):
            asyncio.get_running_loop().remove_reader(port.fileno())
        port.close()
        self._arrived.set()

    def _on_readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data = port.read(4096)
        except (serial.SerialException, OSError) as exc:
            # A pty whose other end went away (or a USB modem unplugged) stays readable
            # and fails every read: stop watching it so the loop does not spin.
            self._failure = f"modem port {self.port} failed: {exc}"
            with contextlib.suppress(OSError, ValueError):
                asyncio.get_running_loop().remove_reader(port.fileno())
            self._arrived.set()
            return
        if not data:
            return
        self._pending += data
        if len(self._pending) > _MAX_PENDING:
            # Nobody is reading (no command under way) or the line is noise: keep only an
            # unfinished last line, so a week of idle URCs cannot fill the memory.
            last = max(self._pending.rfind(b"\r"), self._pending.rfind(b"\n"))
            del self._pending[: last + 1 if last >= 0 else len(self._pending)]
            log.debug("modem on %s: dropped unread input", self.port)
        self._arrived.set()

    def _next_line(self) -> str | None:
        """Take one complete non-empty line from what has arrived, or None."""
        while True:
            stripped = self._pending.lstrip(b"\r\n")
            found = _LINE_END.search(stripped)
            if found is None:
                self._pending[:] = stripped
                return None
            end = found.start()
            line = bytes(stripped[:end]).decode("utf-8", errors="replace").strip()
            self._pending[:] = stripped[end + 1 :]
            if line:
                return line

    def _at_prompt(self) -> bool:
        """True when what has arrived is the text prompt ``> `` (it has no line end)."""
        stripped = self._pending.lstrip(b"\r\n")
        if stripped.startswith(b">"):
            self._pending.clear()
            return True
        return False

    async def _wait_for_data(self) -> None:
        if self._serial is None:
            msg = f"modem port {self.port} is not open"
            raise ModemError(msg)
        if self._failure is not None:
            raise ModemError(self._failure)
        self._arrived.clear()
        await self._arrived.wait()

    def _discard_stale(self) -> None:
        """Drop lines left from before this command: URCs, or a late answer to a timed-out one."""
        while (line := self._next_line()) is not None:
            log.debug("modem on %s: skipped stale line %s", self.port, _gist(line))

    async def _write(self, data: bytes) -> None:
        port = self._serial
        if port is None:
            msg = f"modem port {self.port} is not open"
            raise ModemError(msg)
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                # pyserial opened the tty O_NONBLOCK: this takes what fits and never waits.
                written = os.write(port.fileno(), view)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                msg = f"cannot write to modem port {self.port}: {exc}"
                self._failure = msg
                raise ModemError(msg) from exc
            view = view[written:]
            if view:
                ready: asyncio.Future[None] = loop.create_future()

                def writable(ready: asyncio.Future[None] = ready) -> None:
                    # The loop may call this again before the writer is removed.
                    if not ready.done():
                        ready.set_result(None)

                loop.add_writer(port.fileno(), writable)
                try:
                    await ready
                finally:
                    loop.remove_writer(port.fileno())

    async def command(
        self,
        line: str,
        *,
        label: str | None = None,
        info: str | None = None,
        with_body: bool = False,
        info_before_ok: bool = False,
    ) -> list[InfoLine]:
        """Run one command and return its information lines.

        Args:
            line: the command line, without the final carriage return.
            label: how errors and logs name the command (defaults to ``line``; give a
                masked form when the line carries a phone number).
            info: the prefix of the answer's information lines (``"+CSQ:"``); other lines
                are echo or unsolicited and are skipped.
            with_body: each information line is followed by a body line (a message text).
            info_before_ok: an ``OK`` before the first information line is a late answer
                to something earlier, not this command's; used to resynchronise.

        Raises:
            ModemError: the modem answered an error, did not answer within the channel's
                timeout, or the port failed.
        """
        name = label or line
        async with self._turn:
            self._discard_stale()
            await self._within(self.timeout_s, name, self._write(line.encode("ascii") + b"\r"))
            return await self._within(
                self.timeout_s, name, self._answer(name, info, with_body, info_before_ok)
            )

    async def command_with_text(
        self, line: str, text: bytes, *, label: str, info: str, answer_timeout_s: float
    ) -> list[InfoLine]:
        """Run a command that prompts ``> `` for text (``AT+CMGS``), then send text and Ctrl-Z.

        The prompt must come within the channel's timeout; the final answer within
        ``answer_timeout_s`` (sending waits for the network). When this fails or is
        cancelled before the text is complete, the modem is sent ESC, which drops the
        message: otherwise it would take the next commands for message text.

        Raises:
            ModemError: as for ``command``.
        """
        async with self._turn:
            self._discard_stale()
            try:
                await self._within(self.timeout_s, label, self._write(line.encode("ascii") + b"\r"))
                await self._within(self.timeout_s, label, self._prompt(label))
                await self._within(self.timeout_s, label, self._write(text + CTRL_Z))
            except BaseException:
                self._cancel_text()
                raise
            # A late OK (to an earlier ESC) came before the prompt, where it was skipped.
            return await self._within(
                answer_timeout_s, label, self._answer(label, info, False, False)
            )

    async def cancel_text_entry(self) -> None:
        """Send ESC: a modem left waiting for message text (a crash mid-send) forgets it."""
        async with self._turn:
            self._cancel_text()

    def _cancel_text(self) -> None:
        # Synchronous, so that it also runs in a task being cancelled; one byte always fits.
        if self._serial is not None:
            with contextlib.suppress(OSError):
                os.write(self._serial.fileno(), ESC)

    @staticmethod
    async def _within(seconds: float, name: str, work: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(seconds):
                return await work
        except TimeoutError:
            msg = f"{name}: the modem did not answer within {seconds:g} s"
            raise ModemError(msg) from None

    async def _prompt(self, name: str) -> None:
        while True:
            if self._at_prompt():
                return
            line = self._next_line()
            if line is None:
                await self._wait_for_data()
            elif _ERROR.match(line):
                msg = f"{name}: the modem answered {explain_error(line)}"
                raise ModemError(msg)
            else:
                log.debug("modem on %s: skipped %s before the prompt", self.port, _gist(line))

    async def _answer(
        self, name: str, info: str | None, with_body: bool, info_before_ok: bool
    ) -> list[InfoLine]:
        lines: list[InfoLine] = []
        head: str | None = None
        while True:
            line = self._next_line()
            if line is None:
                await self._wait_for_data()
                continue
            if head is not None:
                if _URC.match(line):
                    log.debug("modem on %s: skipped %s inside an answer", self.port, _gist(line))
                    continue
                if line == _FINAL_OK or _ERROR.match(line) or (info and line.startswith(info)):
                    lines.append(InfoLine(head))  # an empty message has no body line
                    head = None
                else:
                    lines.append(InfoLine(head, line))
                    head = None
                    continue
            if line == _FINAL_OK:
                if info_before_ok and not lines:
                    log.debug("modem on %s: skipped a late OK", self.port)
                    continue
                return lines
            if _ERROR.match(line):
                msg = f"{name}: the modem answered {explain_error(line)}"
                raise ModemError(msg)
            if info is not None and line.startswith(info):
                if with_body:
                    head = line
                else:
                    lines.append(InfoLine(line))
                continue
            log.debug("modem on %s: skipped %s", self.port, _gist(line))
