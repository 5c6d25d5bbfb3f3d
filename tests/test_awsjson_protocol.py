"""The endpoint's HTTP/1.1 connection (frontends/awsjson/protocol.py).

First over a stand-in transport, where every byte written can be read back and
a handler can be made slow on purpose; then over real sockets of a running
endpoint, for what only a socket shows (pipelining, 100-continue, HTTP/1.0,
chunked bodies, a request the parser refuses).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_awsjson_support import Endpoint, running_endpoint, signed_request

from kmscore.frontends.awsjson.protocol import (
    MAX_BODY_BYTES,
    Answer,
    Connections,
    HttpConnection,
    HttpRequest,
)

CONTENT_TYPE = "application/x-amz-json-1.1"


class Transport(asyncio.Transport):
    """Collects what the connection writes; notes closes and pauses."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("192.0.2.7", 40000) if name == "peername" else default


def answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split what was written into (status, headers, body) answers."""
    out = []
    rest = bytes(data)
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        if status == 100:
            out.append((status, headers, b""))
            continue
        length = int(headers["content-length"])
        out.append((status, headers, rest[:length]))
        rest = rest[length:]
    return out


def request(body: bytes = b"{}", *, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST / HTTP/{version}\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Echo:
    """A handler that answers with what it was asked; slow answers on request."""

    def __init__(self) -> None:
        self.seen: list[HttpRequest] = []
        self.slow: asyncio.Future[None] | None = None

    def __call__(self, req: HttpRequest) -> Answer | Awaitable[Answer]:
        self.seen.append(req)
        body = json.dumps({"n": len(self.seen), "size": len(req.body)}).encode()
        if req.too_large:
            return Answer(413, body, f"id-{len(self.seen)}", close=True)
        if req.headers.get("X-Slow") and self.slow is not None:
            slow = self.slow

            async def later() -> Answer:
                await slow
                return Answer(200, body, f"id-{len(self.seen)}")

            return later()
        return Answer(200, body, f"id-{len(self.seen)}")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


def connect(
    loop: asyncio.AbstractEventLoop, handler: Echo, idle: float = 0.0
) -> tuple[HttpConnection, Transport, Connections]:
    async def make() -> tuple[HttpConnection, Transport, Connections]:
        connections = Connections(handler, CONTENT_TYPE, 10, idle, lambda: asyncio.Protocol())
        conn = connections()
        assert isinstance(conn, HttpConnection)
        transport = Transport()
        conn.connection_made(transport)
        return conn, transport, connections

    return loop.run_until_complete(make())


def test_pipelined_requests_are_answered_in_order(loop: asyncio.AbstractEventLoop) -> None:
    handler = Echo()
    conn, transport, _ = connect(loop, handler)
    conn.data_received(request(b"{}") + request(b'{"a":1}') + request(b'{"bb":22}'))
    got = answers(transport.written)
    assert [json.loads(b)["n"] for _, _, b in got] == [1, 2, 3]
    assert [json.loads(b)["size"] for _, _, b in got] == [2, 7, 9]
    assert [h["x-amzn-requestid"] for _, h, _ in got] == ["id-1", "id-2", "id-3"]
    assert all(h["content-type"] == CONTENT_TYPE and "date" in h for _, h, _ in got)
    assert handler.seen[0].remote == "192.0.2.7" and handler.seen[0].method == "POST"
    assert not transport.closed


def test_a_request_split_anywhere_is_the_same_request(loop: asyncio.AbstractEventLoop) -> None:
    handler = Echo()
    conn, transport, _ = connect(loop, handler)
    raw = request(b'{"KeyId":"k"}', extra="X-Amz-Target: TrentService.Encrypt\r\n")
    for i in range(len(raw)):
        conn.data_received(raw[i : i + 1])
    ((status, _, body),) = answers(transport.written)
    assert status == 200 and json.loads(body)["size"] == len(b'{"KeyId":"k"}')
    assert handler.seen[0].headers["x-amz-target"] == "TrentService.Encrypt"
    assert handler.seen[0].body == b'{"KeyId":"k"}'


def test_a_slow_answer_holds_the_requests_behind_it(loop: asyncio.AbstractEventLoop) -> None:
    handler = Echo()
    handler.slow = loop.create_future()
    conn, transport, _ = connect(loop, handler)
    conn.data_received(request(extra="X-Slow: 1\r\n") + request())
    assert transport.written == b"" and transport.paused
    assert len(handler.seen) == 1  # the second waits for the first's answer
    handler.slow.set_result(None)
    loop.run_until_complete(asyncio.sleep(0))
    loop.run_until_complete(asyncio.sleep(0))
    got = answers(transport.written)
    assert [json.loads(b)["n"] for _, _, b in got] == [1, 2]
    assert not transport.paused


def test_a_body_past_the_limit_is_dropped_and_answered_413(
    loop: asyncio.AbstractEventLoop,
) -> None:
    handler = Echo()
    conn, transport, _ = connect(loop, handler)
    big = b"x" * (MAX_BODY_BYTES + 1)
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\n\r\n"
    ).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
    conn.data_received(head + chunked)
    ((status, headers, _),) = answers(transport.written)
    assert status == 413 and headers["connection"] == "close" and transport.closed
    assert handler.seen[0].too_large and handler.seen[0].body == b""


def test_a_declared_length_past_the_limit_is_too_large_at_once(
    loop: asyncio.AbstractEventLoop,
) -> None:
    handler = Echo()
    conn, transport, _ = connect(loop, handler)
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    conn.data_received(head)
    for _ in range(8):
        conn.data_received(b"y" * (1024 * 1024))
    conn.data_received(b"y")
    ((status, _, _),) = answers(transport.written)
    assert status == 413 and handler.seen[0].too_large


def test_expect_100_continue_gets_its_interim_answer(loop: asyncio.AbstractEventLoop) -> None:
    handler = Echo()
    conn, transport, _ = connect(loop, handler)
    raw = request(b"{}", extra="Expect: 100-continue\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    conn.data_received(head + b"\r\n\r\n")
    assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.data_received(body)
    assert [s for s, _, _ in answers(transport.written)] == [100, 200]


def test_http_1_0_and_connection_close_end_the_connection(
    loop: asyncio.AbstractEventLoop,
) -> None:
    for raw in (request(version="1.0"), request(extra="Connection: close\r\n")):
        handler = Echo()
        conn, transport, _ = connect(loop, handler)
        conn.data_received(raw)
        ((status, headers, _),) = answers(transport.written)
        assert status == 200 and headers["connection"] == "close" and transport.closed


def test_bad_http_is_a_400_and_the_connection_closes(loop: asyncio.AbstractEventLoop) -> None:
    handler = Echo()
    conn, transport, _ = connect(loop, handler)
    conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
    ((status, headers, body),) = answers(transport.written)
    assert status == 400 and headers["connection"] == "close" and transport.closed
    assert json.loads(body)["__type"] == "SerializationException"
    assert handler.seen == []
    conn.data_received(request())  # nothing more is read
    assert handler.seen == []


def test_an_idle_connection_closes_and_a_busy_one_does_not(
    loop: asyncio.AbstractEventLoop,
) -> None:
    handler = Echo()
    handler.slow = loop.create_future()
    conn, transport, _ = connect(loop, handler, idle=0.05)
    conn.data_received(request(extra="X-Slow: 1\r\n"))
    loop.run_until_complete(asyncio.sleep(0.2))
    assert not transport.closed  # a request in progress is never idle
    handler.slow.set_result(None)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert answers(transport.written)[0][0] == 200 and not transport.closed
    loop.run_until_complete(asyncio.sleep(0.2))
    assert transport.closed


def test_shutdown_closes_idle_connections_and_answers_busy_ones_first(
    loop: asyncio.AbstractEventLoop,
) -> None:
    handler = Echo()
    handler.slow = loop.create_future()
    _, idle_transport, connections = connect(loop, handler)
    busy = connections()
    assert isinstance(busy, HttpConnection)
    busy_transport = Transport()
    slow = handler.slow

    async def stop() -> None:
        busy.connection_made(busy_transport)
        busy.data_received(request(extra="X-Slow: 1\r\n"))
        shutdown = asyncio.ensure_future(connections.shutdown(5.0))
        await asyncio.sleep(0.05)
        assert idle_transport.closed and not busy_transport.closed
        slow.set_result(None)
        await shutdown

    loop.run_until_complete(stop())
    ((status, headers, _),) = answers(busy_transport.written)
    assert status == 200 and headers["connection"] == "close" and busy_transport.closed
    assert not busy_transport.aborted and connections.open == set()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.sampled_from(
                [
                    request(),
                    b"POST / HTTP/1.1\r\n",
                    b"Content-Length: 5\r\n",
                    b"Transfer-Encoding: chunked\r\n\r\n",
                    b"\r\n\r\n",
                    b"5\r\nhello\r\n0\r\n\r\n",
                    b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n",
                ]
            ),
        ),
        max_size=12,
    )
)
def test_fuzz_any_bytes_give_whole_answers_or_a_400(chunks: list[bytes]) -> None:
    loop = asyncio.new_event_loop()
    try:
        handler = Echo()
        conn, transport, _ = connect(loop, handler)
        for chunk in chunks:
            if transport.closed:
                break
            conn.data_received(chunk)
        got = answers(transport.written)
        assert all(status in (100, 200, 400, 413) for status, _, _ in got)
        assert len([s for s, _, _ in got if s != 100]) >= len(handler.seen)
        if any(status == 400 for status, _, _ in got):
            assert got[-1][0] == 400 and transport.closed
    finally:
        loop.close()


# --- over real sockets ----------------------------------------------------------------


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path / "data") as ep:
        yield ep


def _raw(endpoint: Endpoint, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if "Content-Length" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    data = b""
    while True:
        try:
            got = answers(data)
            if len([a for a in got if a[0] != 100]) >= count:
                return got
        except (ValueError, KeyError, IndexError):
            pass
        chunk = sock.recv(65536)
        if not chunk:
            return answers(data)
        data += chunk


def test_pipelined_signed_requests_over_a_socket(endpoint: Endpoint) -> None:
    host, port = endpoint.host.rsplit(":", 1)
    listing = _raw(endpoint, *signed_request(endpoint, "TrentService.ListKeys", b"{}"))
    created = _raw(
        endpoint, *signed_request(endpoint, "TrentService.CreateKey", b'{"Description":"piped"}')
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # A change (run in the pool) between two reads: the order still holds.
        sock.sendall(listing + created + listing)
        got = _read_answers(sock, 3)
    assert [s for s, _, _ in got] == [200, 200, 200]
    first, made, last = (json.loads(b) for _, _, b in got)
    assert "KeyMetadata" in made
    assert len(last["Keys"]) == len(first["Keys"]) + 1


def test_chunked_and_100_continue_requests_over_a_socket(endpoint: Endpoint) -> None:
    host, port = endpoint.host.rsplit(":", 1)
    method, path, headers, body = signed_request(endpoint, "TrentService.ListKeys", b'{"Limit": 1}')
    head = {**headers, "Transfer-Encoding": "chunked", "Expect": "100-continue"}
    head.pop("Content-Length", None)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host}"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        got = _read_answers(sock, 1)
    assert got[-1][0] == 200 and len(json.loads(got[-1][2])["Keys"]) <= 1


def test_bad_http_over_a_socket(endpoint: Endpoint) -> None:
    host, port = endpoint.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        got = _read_answers(sock, 1)
        assert got[0][0] == 400
        assert sock.recv(10) == b""
