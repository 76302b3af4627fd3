"""Real parts for the 叫应 tests: an SMTP server, a work-chat webhook receiver, Kannel.

Kannel runs as Debian ships it: bearerbox and smsbox with a generated configuration on
free ports, and Kannel's own test SMSC (fakesmsc) standing in for the mobile network. It
prints every message it is sent, and a reply is sent by restarting it with that reply
(bearerbox's fake SMSC serves one connection at a time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.mosquitto import free_port, port_open
from tests.waiting import wait_until

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
SHORT_CODE = "10086"


def kannel_installed() -> bool:
    """Whether bearerbox, smsbox and fakesmsc are here (Debian: kannel, kannel-extras)."""
    return all(os.access(p, os.X_OK) for p in (BEARERBOX, SMSBOX, FAKESMSC))


class SmtpInbox:
    """A real SMTP server (aiosmtpd) that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(  # noqa: N802 - aiosmtpd's handler hook
        self, _server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append(message_from_bytes(content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        """Messages addressed to ``address``."""
        return [m for m in self.messages if m["To"] == address]

    def __enter__(self) -> SmtpInbox:
        self._controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._controller.stop()


#: A WeChat Work robot's text message holds at most this many UTF-8 bytes.
ROBOT_TEXT_BYTES = 2048


def robot_errcode(body: bytes) -> int:
    """0 for a text message a robot takes; its error code otherwise (as the robot answers)."""
    try:
        message = json.loads(body)
    except ValueError:
        return 40001  # not JSON
    if not isinstance(message, dict) or message.get("msgtype") != "text":
        return 40008  # invalid message type
    text = message.get("text")
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        return 44004  # empty content
    if len(content.encode()) > ROBOT_TEXT_BYTES:
        return 40058  # content too long
    return 0


@dataclass
class WebhookInbox:
    """A local HTTP server standing in for work-chat robots: keeps every message it takes.

    Like a WeChat Work robot it answers 200 with ``{"errcode": 0}`` only for a text message
    (``msgtype`` "text", ``text.content`` of 1 to 2,048 UTF-8 bytes); anything else gets
    200 with a non-zero ``errcode`` and is not kept. ``refuse``: robots answering 500;
    ``disabled``: robots answering 200 with errcode 93000 (a robot removed from its group).
    """

    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    received_at: list[tuple[str, float]] = field(default_factory=list)
    port: int = 0
    refuse: set[str] = field(default_factory=set)
    disabled: set[str] = field(default_factory=set)
    #: How long the robot takes over each post (a slow robot), and the most posts it was
    #: handling at one moment.
    answer_s: float = 0.0
    most_at_once: int = 0
    _at_once: int = 0
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, name: str) -> str:
        """The robot URL of ``name`` (the path is its 'key')."""
        return f"http://127.0.0.1:{self.port}/robot/{name}"

    def times(self, name: str) -> list[float]:
        """When each post to ``name``'s robot arrived (wall clock)."""
        return [at for path, at in self.received_at if path == f"/robot/{name}"]

    def to(self, name: str) -> list[dict[str, Any]]:
        """Bodies posted to ``name``'s robot."""
        return [body for path, body in self.posts if path == f"/robot/{name}"]

    @contextlib.contextmanager
    def running(self) -> Iterator[WebhookInbox]:
        """Serve on a free port until the block ends."""
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as the robots' real servers: a client sends many posts per connection.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with inbox._count_lock:
                    inbox._at_once += 1
                    inbox.most_at_once = max(inbox.most_at_once, inbox._at_once)
                robot = self.path.rsplit("/", 1)[-1]
                errcode = 0
                if robot in inbox.refuse:
                    self.send_response(500)
                else:
                    errcode = 93000 if robot in inbox.disabled else robot_errcode(body)
                    if errcode == 0:
                        inbox.posts.append((self.path, json.loads(body)))
                        inbox.received_at.append((self.path, time.time()))
                    self.send_response(200)
                if inbox.answer_s:
                    time.sleep(inbox.answer_s)  # the robot's own work, not a wait on anything
                with inbox._count_lock:
                    inbox._at_once -= 1
                reply = json.dumps(
                    {"errcode": errcode, "errmsg": "ok" if not errcode else "refused"}
                )
                reply = reply.encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            # socketserver's default backlog of 5 drops the SYNs of a burst of calls, which
            # then wait out TCP's 1 s retransmission: a robot's real server queues them.
            request_queue_size = 1024

        server = Server(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


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
        """Start bearerbox, smsbox and the fake SMSC; wait until each listens."""
        self._spawn([BEARERBOX, str(self.conf)], "bearerbox.out")
        wait_until(lambda: port_open(self.box_port), 20, "bearerbox's smsbox port")
        wait_until(lambda: port_open(self.smsc_port), 20, "bearerbox's fake SMSC port")
        self._spawn([SMSBOX, str(self.conf)], "smsbox.out")
        wait_until(lambda: port_open(self.sendsms_port), 20, "smsbox's sendsms port")
        self._start_phone([])

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.directory / log_name).open("wb")
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

        fakesmsc prints ``<from to coding data>``, or ``<from to udh UDH coding data>`` for
        one part of a concatenated message (UDH ``05 00 03 ref total seq``).
        """
        found: list[Sms] = []
        parts: dict[tuple[str, int], dict[int, bytes]] = {}
        pattern = re.compile(r"Got message \d+: <([^>]*)>")
        for path in self._phone_logs:
            for match in pattern.finditer(path.read_text(errors="replace")):
                fields = match.group(1).split(" ")
                sender, to = fields[0], fields[1]
                if fields[2] == "udh":
                    udh = unquote_to_bytes(fields[3])
                    raw = unquote_to_bytes(fields[5].replace("+", " "))
                    ref, total, seq = udh[3], udh[4], udh[5]
                    got = parts.setdefault((to, ref), {})
                    got[seq] = raw
                    if len(got) < total:
                        continue
                    raw = b"".join(got[i] for i in range(1, total + 1))
                    coding = "ucs-2"
                else:
                    coding, raw = fields[2], unquote_to_bytes(fields[3].replace("+", " "))
                text = raw.decode("utf-16-be" if coding == "ucs-2" else "latin-1")
                found.append(Sms(sender, to, text))
        return found

    def stop(self) -> None:
        """Stop everything this started (SIGTERM, then SIGKILL if it lingers)."""
        self._stop_phone()
        for process in reversed(self._processes):
            process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
