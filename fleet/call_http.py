"""The HTTP POSTs of the 叫应 channels (Kannel's sendsms, work-chat robots), made cheaply.

httpx spends about 0.7 ms of CPU on a request (its request and response models,
httpcore's pool bookkeeping, anyio); a thousand sites raising red at once make two
thousand of these on the event loop that also sends the e-mail and takes Kannel's
reports. ``LeanHttp`` keeps a few kept-alive connections per origin and writes each
request in one piece, for about 0.03 ms: HTTP/1.1 over TCP or TLS (verified as httpx
verifies, with SNI), answers with a length, chunked or read to the close.

It has no proxies, redirects, cookies, compression or HTTP/2: where the environment
names a proxy (``HTTP_PROXY`` and the like), ``poster`` gives the channels httpx, as
before. It never retries a request (a POST may have been taken), and never logs a URL (a
robot's key, a number in a query).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, SupportsIndex
from urllib.parse import unquote, urlsplit

import httpx

#: The largest answer taken: the channels need a status and a short body.
MAX_ANSWER_BYTES = 1 << 20
_USER_AGENT = "HazardWatch-fleet"


class HttpError(Exception):
    """A request that got no usable answer; ``kind`` names what went wrong, no URL."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A server's answer: its status and body."""

    status: int
    body: bytes

    @property
    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @property
    def is_success(self) -> bool:
        """A 2xx status."""
        return 200 <= self.status < 300


class Poster(Protocol):
    """Makes one POST; raises HttpError when it gets no answer in its time limit."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """POST ``body`` to ``url``."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class _AnswerReader(asyncio.StreamReader):
    """A StreamReader that knows whether it holds bytes nobody has read: fed minus read.

    ``StreamReader`` has no public peek; counting what comes in and what the answer parser
    takes out (``read``, ``readexactly``, ``readuntil``: all it uses) tells the same.
    """

    fed = 0
    taken = 0

    @property
    def unread(self) -> int:
        """Bytes received and not yet read."""
        return self.fed - self.taken

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        chunk = bytes(data)  # the same object when it is bytes, as the transport gives
        self.fed += len(chunk)
        super().feed_data(chunk)

    async def read(self, n: int = -1) -> bytes:
        data = await super().read(n)
        self.taken += len(data)
        return data

    async def readexactly(self, n: int) -> bytes:
        data = await super().readexactly(n)
        self.taken += len(data)
        return data

    # The stubs type the separator with a private alias of any buffer; bytes is all we pass.
    async def readuntil(self, separator: bytes = b"\n") -> bytes:  # type: ignore[override]
        data = await super().readuntil(separator)
        self.taken += len(data)
        return data


@dataclass(slots=True)
class _Connection:
    reader: _AnswerReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        """Whether a request may go on this idle connection.

        A server that closed a kept-alive connection has fed EOF, or sent something unasked
        (a 408 before closing): a request written there would be lost or misread.
        """
        return not (self.writer.is_closing() or self.reader.at_eof() or self.reader.unread)

    def close(self) -> None:
        self.writer.close()


_Origin = tuple[str, str, int]


class LeanHttp:
    """HTTP/1.1 POSTs with at most ``connections`` in use per origin, kept alive.

    A request has ``timeout_s`` from waiting for a connection to the answer's last byte.
    """

    def __init__(
        self, connections: int, timeout_s: float, tls: ssl.SSLContext | None = None
    ) -> None:
        self._connections = connections
        self._timeout_s = timeout_s
        self._tls = tls
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._gates: dict[_Origin, asyncio.Semaphore] = {}

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """POST ``body`` to ``url``; HttpError if there is no answer in time."""
        origin, request = _request(url, body, headers)
        gate = self._gates.setdefault(origin, asyncio.Semaphore(self._connections))
        connection = None
        try:
            async with asyncio.timeout(self._timeout_s), gate:
                connection = self._idle_connection(origin) or await self._connect(origin)
                connection.writer.write(request)
                answer, keep = await _read_answer(connection.reader)
        except TimeoutError:
            _close(connection)
            raise HttpError("Timeout") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            _close(connection)
            raise HttpError(_kind(exc)) from None
        except BaseException:  # HttpError (a broken answer), or cancelled mid-request
            _close(connection)
            raise
        if keep:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()
        return answer

    @property
    def kept(self) -> int:
        """Kept-alive connections still usable (a server may close one while it is idle)."""
        return sum(c.usable() for idle in self._idle.values() for c in idle)

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin, [])
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.create_ssl_context()  # httpx's CA bundle, as before
            tls = self._tls
        # asyncio.open_connection, with the reader that counts what it holds unread.
        loop = asyncio.get_running_loop()
        reader = _AnswerReader(limit=MAX_ANSWER_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(
            lambda: protocol, host, port, ssl=tls, server_hostname=host if tls else None
        )
        return _Connection(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _close(connection: _Connection | None) -> None:
    if connection is not None:
        connection.close()


def _kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "ConnectError"
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionResetError | BrokenPipeError):
        return "the server closed the connection"
    return type(exc).__name__


def _request(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[_Origin, bytes]:
    """The origin to connect to and the request's bytes.

    HttpError for a URL or header that cannot be sent, never echoing it (it may hold a key).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError("not an http or https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise HttpError("a bad port in the URL") from None
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        host_header += f":{parts.port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {_USER_AGENT}",
        f"Content-Length: {len(body)}",
    ]
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        lines.append(f"Authorization: Basic {base64.b64encode(secret).decode()}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if _breaks_a_line([target, host_header, *headers.keys(), *headers.values()]):
        raise HttpError("a line break in a header or the URL")
    try:
        encoded = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    except UnicodeEncodeError:
        raise HttpError("a non-ASCII header value") from None
    return (parts.scheme, host, port), encoded + body


def _breaks_a_line(values: list[str]) -> bool:
    return any("\r" in v or "\n" in v for v in values)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[HttpAnswer, bool]:
    """One answer and whether the connection may be used again."""
    while True:
        version, status = _status_line(await reader.readuntil(b"\r\n"))
        fields = await _fields(reader)
        if not 100 <= status < 200:  # a 1xx is followed by the real answer
            break
    connection = fields.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = await _chunked(reader)
    elif "content-length" in fields:
        text = fields["content-length"]
        if not (text.isascii() and text.isdigit()):  # int() would take "+5", "1_0", " 5"
            raise HttpError("a bad Content-Length in the answer")
        length = int(text)
        if length > MAX_ANSWER_BYTES:
            raise HttpError("an answer too long")
        body = await reader.readexactly(length)
    elif status in (204, 304):
        body = b""
    else:  # the answer ends with the connection
        body = await reader.read(MAX_ANSWER_BYTES + 1)
        while len(body) <= MAX_ANSWER_BYTES and (more := await reader.read(MAX_ANSWER_BYTES)):
            body += more
        if len(body) > MAX_ANSWER_BYTES:
            raise HttpError("an answer too long")
        keep = False
    return HttpAnswer(status, body), keep


#: An answer with more header lines than this is refused (a robot sends a handful).
MAX_HEADER_FIELDS = 100


def _status_line(line: bytes) -> tuple[str, int]:
    version, _, rest = line.decode("latin-1").strip().partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError("not an HTTP/1.x answer")
    return version, int(code)


async def _fields(reader: asyncio.StreamReader) -> dict[str, str]:
    fields: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        if len(fields) >= MAX_HEADER_FIELDS:
            raise HttpError("too many header fields in the answer")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise HttpError("a broken header in the answer")
        fields[name.strip().lower()] = value.strip()
    return fields


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError:
            raise HttpError("a broken chunk in the answer") from None
        if size == 0:
            await _fields(reader)  # trailers, if any, up to the empty line
            return body
        if len(body) + size > MAX_ANSWER_BYTES:
            raise HttpError("an answer too long")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError("a broken chunk in the answer")


class HttpxPoster:
    """The same POSTs through httpx (which honours the environment's proxy settings)."""

    def __init__(self, connections: int, timeout_s: float) -> None:
        # Sized to what the channel has in flight and all kept alive: with httpx's
        # defaults (20 kept of 100) a burst closes and reopens a connection per call.
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._client = httpx.AsyncClient(limits=limits, timeout=timeout_s)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        """POST through httpx; its errors become HttpError."""
        try:
            answer = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise HttpError(type(exc).__name__) from None
        return HttpAnswer(answer.status_code, answer.content)

    async def aclose(self) -> None:
        """Close httpx's pool."""
        with contextlib.suppress(Exception):
            await self._client.aclose()


def poster(connections: int, timeout_s: float) -> Poster:
    """``LeanHttp``, or httpx where the environment names a proxy (``urllib``'s reading)."""
    if any(scheme != "no" for scheme in urllib.request.getproxies_environment()):
        return HttpxPoster(connections, timeout_s)
    return LeanHttp(connections, timeout_s)
