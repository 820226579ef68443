"""Against a real gunicorn: hostile requests that only a real HTTP server sees (a huge cookie,
a 10 MB body, a broken request line, NUL bytes on the wire) get a 4xx, never a 5xx, and no
worker dies.

Requests are written byte for byte on a socket: http.client and urllib refuse to send most of
these. Each test ends by checking that the same workers still serve.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # fixtures' types only: conftest is not imported by tests
    from conftest import LiveServer

pytestmark = pytest.mark.live

TEN_MB = 10 * 1024 * 1024


def address(server: LiveServer) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(server.base_url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def exchange(server: LiveServer, head: bytes, body_chunks: int = 0, chunk: bytes = b"") -> bytes:
    """Send `head` (request line and headers), then `body_chunks` times `chunk` from another
    thread (the server may answer, and close, before the body is all sent); the answer."""
    with socket.create_connection(address(server), timeout=10) as connection:
        connection.sendall(head)

        def send_body() -> None:
            try:
                for _ in range(body_chunks):
                    connection.sendall(chunk)
            except OSError:  # the server answered early and closed: expected for 413
                pass

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = connection.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        sender.join(timeout=10)
    assert answer, "the server closed the connection without an answer"
    return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def request_head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture
def same_workers(live_server: LiveServer):  # type: ignore[no-untyped-def]
    """The workers serving before the test still serve after it, and nothing crashed."""
    before = live_server.worker_pids()
    yield
    assert status(exchange(live_server, request_head("GET", "/healthz"))) == 200
    assert live_server.worker_pids() == before, live_server.output()
    log = live_server.output()
    assert "Traceback" not in log and "Error handling request" not in log, log
    assert "Worker exiting" not in log and "WORKER TIMEOUT" not in log, log


def test_a_64_kib_cookie_is_431(live_server: LiveServer, same_workers: None) -> None:
    answer = exchange(live_server, request_head("GET", "/", "Cookie: session=" + "x" * 65536))
    assert status(answer) == 431, answer[:300]


def test_many_cookies_within_the_header_limit_are_served(
    live_server: LiveServer, same_workers: None
) -> None:
    cookies = "; ".join(f"c{i}=" + "v" * 60 for i in range(100))  # about 7 KB
    answer = exchange(live_server, request_head("GET", "/session", "Cookie: " + cookies))
    assert status(answer) == 200, answer[:300]


def test_a_10_mb_body_is_413(live_server: LiveServer, same_workers: None) -> None:
    head = request_head(
        "POST",
        "/login",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {TEN_MB}",
    )
    answer = exchange(live_server, head, body_chunks=160, chunk=b"x" * 65536)
    assert status(answer) == 413, answer[:300]


def test_a_10_mb_chunked_body_is_413(live_server: LiveServer, same_workers: None) -> None:
    head = request_head(
        "POST",
        "/login",
        "Content-Type: application/x-www-form-urlencoded",
        "Transfer-Encoding: chunked",
    )
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"  # 64 KiB per chunk, 160 of them
    answer = exchange(live_server, head, body_chunks=160, chunk=chunk)
    assert status(answer) == 413, answer[:300]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET /login?next=%ff\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ],
    ids=[
        "request line garbage",
        "NUL in the path",
        "HTTP version",
        "request line over 4094",
        "NUL in a header",
        "101 header fields",
        "Content-Length garbage",
        "query string not UTF-8",
    ],
)
def test_what_gunicorn_refuses_is_a_4xx(
    live_server: LiveServer, same_workers: None, raw: bytes, expected: int
) -> None:
    answer = exchange(live_server, raw)
    assert status(answer) == expected, answer[:300]


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: " + b"a" * 64 + b"\r\nConnection: close\r\n\r\n",
            b"The Host header names a host this site does not serve.",
        ),
        (
            b"GET /account//sessions HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            b"The Host header names a host this site does not serve.",
        ),
        (
            request_head("GET", "/", "User-Agent: caf\xe9 \xff"),  # latin-1 bytes: served
            b"",
        ),
    ],
    ids=["Host werkzeug refuses", "untrusted Host on a merge-slashes path", "header bytes"],
)
def test_what_the_app_answers_itself(
    live_server: LiveServer, same_workers: None, head: bytes, message: bytes
) -> None:
    with socket.create_connection(address(live_server), timeout=10) as connection:
        connection.sendall(head)
        answer = b""
        while data := connection.recv(65536):
            answer += data
    assert status(answer) == (400 if message else 200), answer[:300]
    assert message in answer


def test_merge_slashes_redirects_to_a_path_on_this_site(
    live_server: LiveServer, same_workers: None
) -> None:
    """Werkzeug's redirect named the request's Host (any the client chose): a path now."""
    head = request_head("GET", "/account//sessions?next=%0A")  # Host: 127.0.0.1
    answer = exchange(live_server, head)
    assert status(answer) == 308, answer[:300]
    assert b"\r\nLocation: /account/sessions?next=%0A\r\n" in answer, answer[:300]
