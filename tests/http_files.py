"""A real HTTP server for release files, with the faults a metered rural link has.

Serves ``/api/v1/releases/{version}/files/{name}`` from a wheels directory per version,
honours ``Range: bytes=N-`` with 206, answers 401 without the gateway's HTTP Basic
credentials when given them (as the fleet does), and can cut the next response for a file after N
body bytes (a dropped link), ignore ranges (answer 200 with the whole file) or serve other
bytes than the file holds (tampering). It logs every response it sent.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

_FILE_PATH = re.compile(r"^/api/v1/releases/([^/]+)/files/([^/]+)$")
_RANGE = re.compile(r"^bytes=(\d+)-$")
_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Served:
    """One response: which file, the Range asked for, the status, body bytes sent."""

    name: str
    range: str | None
    status: int
    bytes_sent: int


@dataclass
class ReleaseFileServer:
    """The fleet's release file endpoint, in a thread; use as a context manager."""

    releases: dict[str, Path] = field(default_factory=dict)
    #: File name -> the bytes served instead of the file's (a tampering mirror).
    replaced: dict[str, bytes] = field(default_factory=dict)
    #: File name -> cut the next response for it after this many body bytes (once).
    cut_after: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    #: (user, password) every request must send with HTTP Basic, as the fleet demands.
    credentials: tuple[str, str] | None = None
    log: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL (what ``enrollment.json`` calls ``fleet_url``)."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def sent(self, name: str) -> int:
        """Body bytes sent for ``name`` over all responses."""
        return sum(s.bytes_sent for s in self.responses(name))

    def responses(self, name: str | None = None) -> list[Served]:
        """The responses sent (for ``name`` only, when given), oldest first."""
        with self._lock:
            return [s for s in self.log if name is None or s.name == name]

    def __enter__(self) -> ReleaseFileServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="release-files", daemon=True
        ).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _record(self, served: Served) -> None:
        with self._lock:
            self.log.append(served)

    def _content(self, version: str, name: str) -> bytes | None:
        if name in self.replaced:
            return self.replaced[name]
        directory = self.releases.get(version)
        if directory is None or not (directory / name).is_file():
            return None
        return (directory / name).read_bytes()

    def _take_cut(self, name: str) -> int | None:
        with self._lock:
            return self.cut_after.pop(name, None)


def _basic(headers: Message) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic Authorization header, if there is one."""
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme != "Basic":
        return None
    try:
        user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _handler_for(server: ReleaseFileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            match = _FILE_PATH.match(self.path)
            content = server._content(*match.groups()) if match else None
            name = match.group(2) if match else self.path
            asked = self.headers.get("Range")
            if server.credentials is not None and _basic(self.headers) != server.credentials:
                self._answer(name, asked, 401, b"credentials required\n", {})
                return
            if content is None:
                self._answer(name, asked, 404, b"not found\n", {})
                return
            start = 0
            ranged = _RANGE.match(asked or "")
            if ranged and not server.ignore_range:
                start = int(ranged.group(1))
                if start >= len(content):
                    headers = {"Content-Range": f"bytes */{len(content)}"}
                    self._answer(name, asked, 416, b"", headers)
                    return
                end = len(content) - 1
                headers = {"Content-Range": f"bytes {start}-{end}/{len(content)}"}
                self._answer(name, asked, 206, content[start:], headers)
                return
            self._answer(name, asked, 200, content, {})

        def _answer(
            self, name: str, asked: str | None, status: int, body: bytes, headers: dict[str, str]
        ) -> None:
            cut = server._take_cut(name) if status in (200, 206) else None
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            limit = len(body) if cut is None else min(cut, len(body))
            sent = 0
            while sent < limit:
                chunk = body[sent : min(sent + _CHUNK, limit)]
                self.wfile.write(chunk)
                sent += len(chunk)
            self.wfile.flush()
            server._record(Served(name, asked, status, sent))
            if cut is not None:
                # The link drops: no more bytes, the connection is gone.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def log_message(self, format: str, *args: object) -> None:
            """Stay quiet: the log list is the record."""

    return Handler
