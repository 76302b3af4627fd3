"""The 叫应 channels' HTTP client (``fleet/call_http.py``) against real local HTTP servers.

Keep-alive reuse, answers with a length, chunked or ending with the connection, a
server that closes an idle connection, TLS verified against a throwaway CA (and refused
against an unknown one), a server that never answers, a refused port, and a header
that would inject a line. Also: a proxy in the environment gives the channels httpx.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fleet.call_http import HttpError, HttpxPoster, LeanHttp, poster
from hardware_sim.harness.mosquitto import make_tls_files
from hardware_sim.harness.ports import free_port
from hardware_sim.harness.waiting import wait_for

#: What a server may send unasked on an idle kept-alive connection before it closes it.
UNASKED_408 = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Server(ThreadingHTTPServer):
    """Counts the connections it accepted and the bodies it was posted."""

    daemon_threads = True
    connections = 0
    bodies: list[bytes]
    release: threading.Event

    def get_request(self) -> tuple[object, object]:
        self.connections += 1
        return super().get_request()  # type: ignore[return-value]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_POST(self) -> None:
        self.server.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/hang":
            self.server.release.wait(10)
            return
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n")
            return
        if self.path in ("/plus-length", "/many-headers"):
            # what a broken or hostile server might send: "+2" int() would take; 500 fields
            self.send_response(200)
            if self.path == "/plus-length":
                self.send_header("Content-Length", "+2")
            else:
                for n in range(500):
                    self.send_header(f"X-Field-{n}", "x")
                self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.write(b"ok")
            self.close_connection = True
            return
        if self.path == "/until-close":
            self.send_response(202)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write("已接收".encode())
            self.close_connection = True
            return
        body = b'{"errcode": 0}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/quiet-close":
            self.close_connection = True
        if self.path == "/then-408":  # a server that gives up on the idle connection early
            self.wfile.write(UNASKED_408)
            self.wfile.flush()

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def serving(tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    server = Server(("127.0.0.1", 0), Handler)
    server.bodies, server.release = [], threading.Event()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


def url(server: Server, path: str, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}{path}"


async def test_posts_reuse_kept_alive_connections_and_read_every_kind_of_answer() -> None:
    http = LeanHttp(connections=2, timeout_s=5)
    with serving() as server:
        for i in range(20):
            answer = await http.post(url(server, "/robot/x?key=k"), f"{i}".encode(), {})
            assert (answer.status, answer.body, answer.is_success) == (200, b'{"errcode": 0}', True)
        assert server.connections == 1  # one after the other: one connection, kept
        assert server.bodies == [f"{i}".encode() for i in range(20)]
        chunked = await http.post(url(server, "/chunked"), b"x", {"X-Kannel-To": "+86"})
        assert chunked.body == b"hello, world"
        until_close = await http.post(url(server, "/until-close"), b"x", {})
        assert (until_close.status, until_close.text) == (202, "已接收")
        closed = await http.post(url(server, "/close"), b"x", {})
        assert closed.status == 200
        before = server.connections
        await http.post(url(server, "/robot/x"), b"x", {})
        assert server.connections == before + 1  # "Connection: close" was honoured
    await http.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    # A server's keep-alive timeout: it answers, then closes without saying so.
    http = LeanHttp(connections=1, timeout_s=5)
    with serving() as server:
        await http.post(url(server, "/robot/x"), b"1", {})
        assert http.kept == 1
        await http.post(url(server, "/quiet-close"), b"2", {})
        await wait_for(lambda: http.kept == 0, 5, "the client to see the close")
        answer = await http.post(url(server, "/robot/x"), b"3", {})
        assert answer.status == 200
        assert server.bodies == [b"1", b"2", b"3"]
        assert server.connections == 2
    await http.aclose()


async def test_a_connection_with_an_unasked_answer_waiting_is_not_used_again() -> None:
    # The 408 must never be taken for the next request's answer.
    http = LeanHttp(connections=1, timeout_s=5)
    with serving() as server:
        await http.post(url(server, "/then-408"), b"1", {})
        await wait_for(lambda: http.kept == 0, 5, "the client to see the unasked answer")
        answer = await http.post(url(server, "/robot/x"), b"2", {})
        assert answer.status == 200
        assert server.bodies == [b"1", b"2"]
        assert server.connections == 2
    await http.aclose()


async def test_tls_is_verified_against_the_trusted_ca_only(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, "HazardWatch test CA")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(files.cert_file, files.key_file)
    trusting = ssl.create_default_context(cafile=files.ca_file)
    with serving(server_side) as server:
        answer = await LeanHttp(1, 5, tls=trusting).post(url(server, "/robot/x", "https"), b"", {})
        assert answer.status == 200
        with pytest.raises(HttpError, match="SSLCertVerificationError"):
            await LeanHttp(1, 5).post(url(server, "/robot/x", "https"), b"", {})


async def test_no_answer_a_refused_port_or_a_bad_header_is_an_http_error() -> None:
    with serving() as server:
        started = time.monotonic()
        with pytest.raises(HttpError, match="Timeout"):
            await LeanHttp(1, 0.5).post(url(server, "/hang"), b"", {})
        assert time.monotonic() - started < 5
        with pytest.raises(HttpError, match="a bad Content-Length"):
            await LeanHttp(1, 5).post(url(server, "/plus-length"), b"", {})
        with pytest.raises(HttpError, match="too many header fields"):
            await LeanHttp(1, 5).post(url(server, "/many-headers"), b"", {})
    with pytest.raises(HttpError, match="ConnectError"):
        await LeanHttp(1, 5).post(f"http://127.0.0.1:{free_port()}/robot", b"", {})
    with pytest.raises(HttpError, match="line break") as refused:
        await LeanHttp(1, 5).post("http://127.0.0.1:9/x", b"", {"X-Kannel-To": "1\r\nX: y"})
    assert "X: y" not in str(refused.value)  # nothing of the request is echoed
    with pytest.raises(HttpError, match="not an http"):
        await LeanHttp(1, 5).post("ftp://127.0.0.1/x", b"", {})


def test_a_proxy_in_the_environment_gives_the_channels_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert isinstance(poster(8, 10), LeanHttp)
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert isinstance(poster(8, 10), LeanHttp)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.county.example.cn:3128")
    assert isinstance(poster(8, 10), HttpxPoster)
