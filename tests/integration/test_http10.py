"""HTTP/1.0 clients (``ab`` without ``-k``) against a real TorchServe 0.12: pins what the frontend does today.

TorchServe answers every successful inference with ``HTTP/1.1`` and ``connection: keep-alive`` and keeps the
connection open, whatever the request's HTTP version or Connection header (its ``RestJob`` passes
``keepAlive=true`` to ``NettyUtils.sendHttpResponse``, which closes only for 4xx/5xx answers; no configuration key
changes it). A client waiting for the server to close, as HTTP/1.0 allows, waits until its own timeout:
docs/serving.md, "Known limitations". When an upgrade changes this, these tests fail and that note should go.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.images import corrupt_jpeg, jpeg

pytestmark = pytest.mark.integration

WAIT_FOR_CLOSE_S = 3.0


def exchange(url: str, body: bytes, connection: str | None) -> tuple[bytes, bool]:
    """POST ``body`` as HTTP/1.0 on a raw socket; return the answer's head and whether the server closed the
    connection within ``WAIT_FOR_CLOSE_S`` seconds of answering."""
    parts = urlsplit(url)
    request = [f"POST {parts.path} HTTP/1.0", f"Host: {parts.hostname}", "Content-Type: image/jpeg"]
    request += [f"Content-Length: {len(body)}"] + ([f"Connection: {connection}"] if connection else [])
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode("ascii") + body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed before a full answer: {received!r}"
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if b"content-length" in line)
        while len(rest) < length:
            rest += sock.recv(65536)
        sock.settimeout(0.2)
        deadline = time.monotonic() + WAIT_FOR_CLOSE_S
        while time.monotonic() < deadline:
            try:
                if sock.recv(1) == b"":
                    return head, True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return head, True
        return head, False


@pytest.mark.parametrize("connection", [None, "close"])
def test_http10_success_is_kept_alive_not_closed(ts_server, connection):
    head, closed = exchange(ts_server.predict_url, jpeg(), connection)
    status, *headers = head.decode("latin-1").lower().split("\r\n")
    assert status.startswith("http/1.1 200"), f"expected TorchServe's HTTP/1.1 200 to an HTTP/1.0 request: {status}"
    assert "connection: keep-alive" in headers, f"TorchServe no longer answers keep-alive to HTTP/1.0: {headers}"
    assert not closed, (
        f"TorchServe now closes an HTTP/1.0 connection (Connection: {connection}) after a 200: the known limitation "
        "about `ab` without -k in docs/serving.md can go"
    )


def test_http10_error_answer_closes(ts_server):
    head, closed = exchange(ts_server.predict_url, corrupt_jpeg(), None)
    status, *headers = head.decode("latin-1").lower().split("\r\n")
    assert status.startswith("http/1.1 400"), f"a corrupt JPEG must get a 400: {status}"
    assert "connection: close" in headers and closed, f"TorchServe closes after a 4xx answer: {headers}, {closed}"
