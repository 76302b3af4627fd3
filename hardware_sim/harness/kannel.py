"""Kannel as Debian ships it, for tests and benches: bearerbox, smsbox and a fake SMSC.

bearerbox and smsbox run with a generated configuration on free ports, and Kannel's own
test SMSC (fakesmsc) stands in for the mobile network. It prints every message it is
sent, and a reply is sent by restarting it with that reply (bearerbox's fake SMSC serves
one connection at a time).

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

import httpx

from hardware_sim.harness.ports import free_port, wait_listening
from hardware_sim.harness.waiting import wait_until

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
SHORT_CODE = "10086"
#: Kannel's ``coding`` of a UCS-2 message (0 is 7-bit text, 1 8-bit data).
UCS2_CODING = 2
#: How long each box gets to listen on a port.
BOX_START_S = 20.0
#: Lines of a box's output quoted when it did not start.
QUOTED_LINES = 15


def kannel_installed() -> bool:
    """Whether bearerbox, smsbox and fakesmsc are here (Debian: kannel, kannel-extras)."""
    return all(os.access(p, os.X_OK) for p in (BEARERBOX, SMSBOX, FAKESMSC))


@dataclass(frozen=True, slots=True)
class Sms:
    """A message the fake SMSC received from Kannel."""

    sender: str
    to: str
    text: str


class Kannel:
    """bearerbox + smsbox + fakesmsc on free ports, replies going to ``mo_url``."""

    def __init__(self, directory: Path, mo_url: str) -> None:
        self.directory = directory
        self.admin_port, self.box_port, self.smsc_port, self.sendsms_port = (
            free_port() for _ in range(4)
        )
        self.conf = directory / "kannel.conf"
        self.conf.write_text(self._config(mo_url))
        self._processes: list[subprocess.Popen[bytes]] = []
        self._box_logs: list[Path] = []
        self._phone: subprocess.Popen[bytes] | None = None
        self._phone_logs: list[Path] = []

    @property
    def sendsms_url(self) -> str:
        """The HTTP sendsms interface of smsbox."""
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def _config(self, mo_url: str) -> str:
        d = self.directory
        return f"""
group = core
admin-port = {self.admin_port}
admin-password = admin-{self.admin_port}
smsbox-port = {self.box_port}
log-file = "{d}/bearerbox.log"
log-level = 1
access-log = "{d}/access.log"
store-type = file
store-location = "{d}/store"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {self.smsc_port}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.box_port}
sendsms-port = {self.sendsms_port}
log-file = "{d}/smsbox.log"
log-level = 1

group = sendsms-user
username = fleet
password = fleet-password
max-messages = 5
concatenation = true

group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{mo_url}&from=%p&to=%P&text=%b&charset=%C"
"""

    def start(self) -> None:
        """Start bearerbox, smsbox and the fake SMSC; return once smsbox is bearerbox's.

        A port open is not proof enough: another program may hold it (bearerbox then
        panics, and smsbox may have connected to that program). Ready is bearerbox's own
        status page listing smsbox as connected. A box that exits fails the start at
        once, and the error quotes what the boxes said went wrong.
        """
        try:
            bearerbox = self._spawn([BEARERBOX, str(self.conf)], "bearerbox.out")
            wait_listening(bearerbox, self.admin_port, BOX_START_S, "bearerbox's admin port")
            wait_listening(bearerbox, self.smsc_port, BOX_START_S, "bearerbox's fake SMSC port")
            smsbox = self._spawn([SMSBOX, str(self.conf)], "smsbox.out")
            wait_listening(smsbox, self.sendsms_port, BOX_START_S, "smsbox's sendsms port")
            wait_until(
                lambda: self._smsbox_connected(bearerbox), BOX_START_S, "smsbox on bearerbox"
            )
        except AssertionError as failure:
            printed = "\n".join(
                f"{log.name}:\n{_complaints(log)}" for log in self._box_logs if log.exists()
            )
            self.stop()
            raise AssertionError(f"Kannel did not start: {failure}\n{printed}") from None
        self._start_phone([])

    def _smsbox_connected(self, bearerbox: subprocess.Popen[bytes]) -> bool:
        """Whether bearerbox's status page lists an smsbox; raises once bearerbox exited."""
        if bearerbox.poll() is not None:
            msg = f"bearerbox exited with {bearerbox.returncode}"
            raise AssertionError(msg)
        status = f"http://127.0.0.1:{self.admin_port}/status.txt"
        try:
            page = httpx.get(status, params={"password": f"admin-{self.admin_port}"}, timeout=2)
        except httpx.HTTPError:
            return False
        return page.status_code == HTTPStatus.OK and "smsbox:" in page.text

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        self._box_logs.append(self.directory / log_name)
        with self._box_logs[-1].open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self._processes.append(process)
        return process

    def _start_phone(self, messages: list[str]) -> None:
        log_path = self.directory / f"fakesmsc-{len(self._phone_logs)}.log"
        self._phone_logs.append(log_path)
        argv = [FAKESMSC, "-H", "127.0.0.1", "-r", str(self.smsc_port)]
        # -m 0 sends nothing and only listens; -m 1 sends the reply once, then listens
        argv += ["-i", "0.01", "-m", str(len(messages)), *(messages or ["0 0 text none"])]
        with log_path.open("wb") as log:
            self._phone = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _stop_phone(self) -> None:
        if self._phone is not None:
            self._phone.send_signal(signal.SIGTERM)
            try:
                self._phone.wait(5)
            except subprocess.TimeoutExpired:
                self._phone.kill()
                self._phone.wait()

    def reply(self, sender: str, text: str) -> None:
        """``sender`` (E.164 without '+', as SMSCs give it) texts ``text`` to the short code."""
        self._stop_phone()
        ucs2 = quote(text.encode("utf-16-be"), safe="")
        self._start_phone([f"{sender} {SHORT_CODE} ucs2 {ucs2}"])

    @property
    def phone_logs(self) -> list[Path]:
        """The fake SMSC's logs, oldest first (one per start; ``received`` reads them)."""
        return list(self._phone_logs)

    def received(self) -> list[Sms]:
        """Every message the fake SMSC was sent, in order, long ones reassembled.

        fakesmsc prints ``<from to coding data>``, or ``<from to udh UDH data DATA>`` for
        one part of a concatenated message (UDH ``05 00 03 ref total seq``), which does not
        say the coding. Each message is decoded by the coding Kannel sent it with, as its
        access log records it (``flags:mclass:coding:...``): UCS-2, else text (Latin-1).
        A message not yet in the access log is not yet counted.
        """
        codings = self._codings()
        found: list[Sms] = []
        parts: dict[tuple[str, int], dict[int, bytes]] = {}
        pattern = re.compile(r"Got message \d+: <([^>]*)>")
        for path in self._phone_logs:
            for match in pattern.finditer(path.read_text(errors="replace")):
                fields = match.group(1).split(" ", 3)
                sender, to = fields[0], fields[1]
                if fields[2] == "udh":
                    udh_field, _data_word, data = fields[3].split(" ", 2)
                    udh = unquote_to_bytes(udh_field)
                    ref, total, seq = udh[3], udh[4], udh[5]
                    got = parts.setdefault((to, ref), {})
                    got[seq] = _data(data)
                    if len(got) < total:
                        continue
                    raw = b"".join(got[i] for i in range(1, total + 1))
                else:
                    kind, data = fields[2], fields[3]
                    raw = data.encode("latin-1", "replace") if kind == "text" else _data(data)
                sent_as = codings.get(to, [])
                nth = sum(1 for sms in found if sms.to == to)
                if nth >= len(sent_as):
                    continue  # Kannel has not logged it yet
                found.append(Sms(sender, to, _decode(sent_as[nth], raw)))
        return found

    def _codings(self) -> dict[str, list[int]]:
        """Per receiver, the coding of each message Kannel sent, in order (access log)."""
        log_path = self.directory / "access.log"
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        codings: dict[str, list[int]] = {}
        for to, coding in re.findall(r"Sent SMS .*?\[to:([^\]]*)\] \[flags:-?\d+:(-?\d+):", text):
            codings.setdefault(to, []).append(int(coding))
        return codings

    def stop(self) -> None:
        """Stop everything this started (SIGTERM, then SIGKILL if it lingers)."""
        self._stop_phone()
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _complaints(log: Path) -> str:
    """What a box said went wrong: its first ERROR and PANIC lines, else its last lines."""
    lines = log.read_text(errors="replace").splitlines()
    wrong = [line for line in lines if "] ERROR: " in line or "] PANIC: " in line]
    return "\n".join(wrong[:QUOTED_LINES] if wrong else lines[-QUOTED_LINES:])


def _data(field: str) -> bytes:
    """A fakesmsc data field: URL-encoded, ``+`` for a space."""
    return unquote_to_bytes(field.replace("+", " "))


def _decode(coding: int, raw: bytes) -> str:
    """A message's text by Kannel's coding: 2 is UCS-2; 0, 1 or unset (-1) text as Latin-1."""
    return raw.decode("utf-16-be" if coding == UCS2_CODING else "latin-1")
