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
from pathlib import Path
from urllib.parse import quote, unquote_to_bytes

from hardware_sim.harness.ports import free_port, port_open
from hardware_sim.harness.waiting import wait_until

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
SHORT_CODE = "10086"
#: Kannel's ``coding`` of a UCS-2 message (0 is 7-bit text, 1 8-bit data).
UCS2_CODING = 2
#: How many times ``Kannel.start`` tries, on fresh ports each time.
START_ATTEMPTS = 3
#: How long each box gets to listen on a port.
BOX_START_S = 20.0


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
        self._mo_url = mo_url
        self.conf = directory / "kannel.conf"
        self._choose_ports()
        self._processes: list[subprocess.Popen[bytes]] = []
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

    def _choose_ports(self) -> None:
        self.admin_port, self.box_port, self.smsc_port, self.sendsms_port = (
            free_port() for _ in range(4)
        )
        self.conf.write_text(self._config(self._mo_url))

    def start(self) -> None:
        """Start bearerbox, smsbox and the fake SMSC; wait until each listens.

        A port chosen free can be taken by another program before bearerbox or smsbox
        binds it; the box then exits at once. Each such start is retried on fresh ports,
        up to ``START_ATTEMPTS`` times, and the error names what each attempt printed.
        """
        failures: list[str] = []
        for _ in range(START_ATTEMPTS):
            try:
                self._start_boxes()
            except _BoxStartError as failure:
                failures.append(str(failure))
                self._stop_boxes()
                self._choose_ports()
                continue
            self._start_phone([])
            return
        raise AssertionError("Kannel did not start:\n" + "\n".join(failures))

    def _start_boxes(self) -> None:
        bearerbox = self._spawn([BEARERBOX, str(self.conf)], "bearerbox.out")
        self._await_port(bearerbox, self.box_port, "bearerbox's smsbox port")
        self._await_port(bearerbox, self.smsc_port, "bearerbox's fake SMSC port")
        smsbox = self._spawn([SMSBOX, str(self.conf)], "smsbox.out")
        self._await_port(smsbox, self.sendsms_port, "smsbox's sendsms port")
        for box in (bearerbox, smsbox):  # another program may hold a port it wanted
            if box.poll() is not None:
                raise _BoxStartError(self._exited(box))

    def _await_port(self, box: subprocess.Popen[bytes], port: int, what: str) -> None:
        def listening() -> bool:
            if box.poll() is not None:
                raise _BoxStartError(self._exited(box))
            return port_open(port)

        try:
            wait_until(listening, BOX_START_S, what)
        except AssertionError as timeout:
            raise _BoxStartError(f"{timeout}; it printed:\n{self._tail(box)}") from None

    def _exited(self, box: subprocess.Popen[bytes]) -> str:
        return f"{_program(box)} exited with {box.returncode}; it printed:\n{self._tail(box)}"

    def _tail(self, box: subprocess.Popen[bytes]) -> str:
        log = self.directory / f"{_program(box)}.out"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return "\n".join(lines[-15:])

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.directory / log_name).open("wb") as log:
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
        self._stop_boxes()

    def _stop_boxes(self) -> None:
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()


class _BoxStartError(Exception):
    """bearerbox or smsbox exited, or did not listen in time; the message says which."""


def _program(box: subprocess.Popen[bytes]) -> str:
    """The name of the program ``box`` runs (bearerbox, smsbox)."""
    argv = box.args
    first = argv[0] if isinstance(argv, list) else argv
    return Path(str(first)).name


def _data(field: str) -> bytes:
    """A fakesmsc data field: URL-encoded, ``+`` for a space."""
    return unquote_to_bytes(field.replace("+", " "))


def _decode(coding: int, raw: bytes) -> str:
    """A message's text by Kannel's coding: 2 is UCS-2; 0, 1 or unset (-1) text as Latin-1."""
    return raw.decode("utf-16-be" if coding == UCS2_CODING else "latin-1")
