"""Work-chat robots for tests, benches and the demo: a local HTTP server keeping every post.

Answers as a WeChat Work robot does (200 with an ``errcode``), so the fleet's webhook
channel is tested against what a robot really says.

Never imported by the production packages; never imports ``tests`` or ``bench``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A WeChat Work robot's text message holds at most this many UTF-8 bytes.
ROBOT_TEXT_BYTES = 2048
#: A WeChat Work robot takes this many messages a minute; beyond, it answers 45009.
ROBOT_PER_MINUTE = 20


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
    Each robot takes ``per_minute`` messages in any ``minute_s`` (20 a minute, as a real
    one; None: no cap); beyond, it answers errcode 45009 and keeps nothing, counted in
    ``over_limit``. ``clock`` (monotonic seconds) times the cap.
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
    per_minute: int | None = ROBOT_PER_MINUTE
    minute_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    over_limit: int = 0
    _taken: dict[str, deque[float]] = field(default_factory=dict)
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

    def _room(self, robot: str) -> bool:
        """Whether ``robot`` takes one more message now; if so, it is counted."""
        if self.per_minute is None:
            return True
        with self._count_lock:
            now = self.clock()
            taken = self._taken.setdefault(robot, deque())
            while taken and taken[0] <= now - self.minute_s:
                taken.popleft()
            if len(taken) >= self.per_minute:
                self.over_limit += 1
                return False
            taken.append(now)
            return True

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
                    if errcode == 0 and not inbox._room(robot):
                        errcode = 45009  # over its messages a minute
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
                ).encode()
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
        # shutdown() waits for serve_forever to look at its flag: every 0.05 s, not the
        # default 0.5 s that every test using the robots paid at its end.
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
