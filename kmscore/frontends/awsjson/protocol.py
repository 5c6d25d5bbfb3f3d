"""HTTP/1.1 for the endpoint: httptools parses, one asyncio protocol per connection.

The endpoint answers one kind of request (a ``POST`` of a small JSON body) on
keep-alive connections, so it needs little of an HTTP framework and pays for
all of it on every request: aiohttp's low-level server spends about 25 us of
CPU per request on its request and response objects, against about 3 us for
this protocol on the same loop (docs/performance.md, issue 13). The parsing,
which is where HTTP is hard (chunked bodies, header folding, request
smuggling), is httptools' (llhttp, the parser of Node.js and of aiohttp
itself).

What a connection does:

- requests are answered in the order they arrive, pipelined or not; an answer
  that is ready at once (the read-only operations) is written from the
  parser's callback, and one that is not (an operation that changes the store
  runs in a thread) holds the requests behind it, with reading paused;
- a body past :data:`MAX_BODY_BYTES` is read and dropped, then answered 413
  and the connection closed, so the client sees the answer and not a reset;
- ``Expect: 100-continue`` gets its interim answer;
- a request the parser refuses gets a 400 and the connection closes;
- a connection that waits for a request longer than the idle timeout (from
  its start or from its last answer) is closed; one with a request in
  progress never is;
- the writes back-pressure the reads: while the client does not read its
  answers, its requests are not read either.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final, NamedTuple

import httptools
from multidict import CIMultiDict

__all__ = [
    "MAX_BODY_BYTES",
    "Answer",
    "Connections",
    "HttpConnection",
    "HttpRequest",
    "RequestHandler",
]

#: The largest request body read. AWS KMS requests are small (a 32 KB key
#: policy is the largest member); batch extensions of many blobs fit too.
MAX_BODY_BYTES: Final = 8 * 1024 * 1024

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEAD: Final = (
    b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
    b"x-amzn-RequestId: %s\r\nDate: %s\r\n"
)


@dataclass(slots=True)
class HttpRequest:
    """One request, read whole.

    Attributes:
        method: The HTTP method, as sent (``POST``).
        raw_path: The request target as received: path and query, still
            percent-encoded.
        headers: The request headers (case-insensitive, repeats kept).
        body: The body (empty when it was too large).
        remote: The client's address, or None when the transport has none.
        too_large: The body was longer than :data:`MAX_BODY_BYTES` and was
            dropped.
    """

    method: str
    raw_path: str
    headers: CIMultiDict[str]
    body: bytes
    remote: str | None
    too_large: bool = False


class Answer(NamedTuple):
    """One answer: status, the JSON body and its request id."""

    status: int
    body: bytes
    request_id: str
    #: Close the connection once this answer is written.
    close: bool = False
    #: The ``Content-Type`` when it is not the listener's (``/metrics``).
    content_type: bytes | None = None


#: Answers a request: at once (an :class:`Answer`) or later (an awaitable of one).
#: It must not raise.
RequestHandler = Callable[[HttpRequest], "Answer | Awaitable[Answer]"]


class _Clock:
    """The ``Date`` header's value, made once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


class Connections:
    """The protocol factory of one listener, and the connections it made.

    Args:
        handler: Answers each request.
        content_type: The ``Content-Type`` of every answer.
        max_connections: Connections served at once; past it, ``refuse()``
            makes the protocol of the one too many.
        idle_timeout: Seconds a connection may wait for a request; 0 never
            closes one.
        refuse: Makes the protocol that answers a connection past the limit.
    """

    def __init__(
        self,
        handler: RequestHandler,
        content_type: str,
        max_connections: int,
        idle_timeout: float,
        refuse: Callable[[], asyncio.Protocol],
    ) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.open: set[HttpConnection] = set()
        self.clock = _Clock()
        self.content_type = content_type.encode("ascii")
        self._refuse = refuse
        self._closing = False

    def __call__(self) -> asyncio.Protocol:
        """The protocol of a new connection (asyncio's protocol factory)."""
        if len(self.open) >= self.max_connections:
            return self._refuse()
        return HttpConnection(self)

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections now and busy ones after their answer; abort stragglers.

        Args:
            timeout: Seconds to wait for the requests in progress.
        """
        self._closing = True
        for connection in list(self.open):
            connection.close_when_idle()
        deadline = time.monotonic() + timeout
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.open):
            connection.abort()

    @property
    def closing(self) -> bool:
        """Whether the listener is shutting down (answers then close their connection)."""
        return self._closing


class HttpConnection(asyncio.Protocol):
    """One client connection (see the module docstring for what it does)."""

    #: The loop that serves the connection (known once it is made).
    _loop: asyncio.AbstractEventLoop

    def __init__(self, connections: Connections) -> None:
        """Serve one connection of ``connections``."""
        self._connections = connections
        self._handler = connections.handler
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._remote: str | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._too_large = False
        self._queue: collections.deque[tuple[HttpRequest, bool]] = collections.deque()
        self._busy = False
        self._paused_writing = False
        self._close_when_idle = False
        self._timer: asyncio.TimerHandle | None = None
        #: When the connection last received bytes or sent an answer.
        self._last_active = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Note the transport and the client's address; start the idle timer."""
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._remote = str(peer[0])
        self._loop = loop = asyncio.get_running_loop()
        self._connections.open.add(self)
        self._last_active = loop.time()
        self._arm_idle_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection (an answer still being made is dropped)."""
        self._transport = None
        self._release()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; complete requests are answered from its callbacks."""
        self._last_active = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()

    def pause_writing(self) -> None:
        """The client is not reading its answers: stop reading its requests."""
        self._paused_writing = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        """The client reads again."""
        self._paused_writing = False
        if self._transport is not None and not self._busy:
            self._transport.resume_reading()

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        """A new request starts."""
        self._url = b""
        self._headers = []
        self._body = []
        self._size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        """A piece of the request target."""
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header, whole."""
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        """Refuse a declared length past the limit; answer ``Expect: 100-continue``."""
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-length" and value.strip().isdigit():
                if int(value) > MAX_BODY_BYTES:
                    self._too_large = True
            elif lowered == "expect" and value.strip().lower() == "100-continue":
                if self._transport is not None:
                    self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        """A piece of the body; dropped once the body is too large."""
        if self._too_large:
            return
        self._size += len(body)
        if self._size > MAX_BODY_BYTES:
            self._too_large = True
            self._body = []
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        """A whole request: queue it, and answer it now unless one is in progress."""
        parser = self._parser
        request = HttpRequest(
            method=parser.get_method().decode("latin-1"),
            raw_path=self._url.decode("utf-8", "surrogateescape"),
            headers=CIMultiDict(self._headers),
            body=b"".join(self._body) if len(self._body) != 1 else self._body[0],
            remote=self._remote,
            too_large=self._too_large,
        )
        self._body = []
        self._queue.append((request, parser.should_keep_alive()))
        if not self._busy:
            self._answer_queued()

    # --- answering ----------------------------------------------------------------------

    def _answer_queued(self) -> None:
        while self._queue and not self._busy and self._transport is not None:
            request, keep_alive = self._queue.popleft()
            result = self._handler(request)
            if isinstance(result, Answer):
                self._write(result, keep_alive)
                continue
            self._busy = True
            self._transport.pause_reading()
            task = asyncio.ensure_future(result)
            task.add_done_callback(functools.partial(self._finished, keep_alive))

    def _finished(self, keep_alive: bool, task: asyncio.Future[Answer]) -> None:
        self._busy = False
        if task.cancelled() or task.exception() is not None or self._transport is None:
            # The handler answers every failure itself; this is a dropped connection.
            self.abort()
            return
        self._write(task.result(), keep_alive)
        if self._transport is not None:
            if not self._paused_writing:
                self._transport.resume_reading()
            self._answer_queued()

    def _write(self, answer: Answer, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None:
            return
        close = answer.close or not keep_alive or self._connections.closing
        connections = self._connections
        head = _HEAD % (
            answer.status,
            _REASONS.get(answer.status, "Unknown").encode("ascii"),
            answer.content_type or connections.content_type,
            len(answer.body),
            answer.request_id.encode("ascii"),
            connections.clock.date(),
        )
        head += b"Connection: close\r\n\r\n" if close else b"\r\n"
        transport.write(head + answer.body)
        self._last_active = self._loop.time()
        if close:
            self._release()
        elif self._close_when_idle and not self._queue:
            self.close_when_idle()

    def _bad_request(self) -> None:
        transport = self._transport
        if transport is None:
            return
        body = b'{"__type":"SerializationException","message":"The request is not valid HTTP/1.1."}'
        self._busy = True  # nothing more is read or answered
        transport.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (self._connections.content_type, len(body), body)
        )
        self._release()

    # --- idle and shutdown --------------------------------------------------------------

    # One timer per connection, armed once: when it fires, it closes the
    # connection if it has been idle long enough, or sets itself again for the
    # rest of the time (cheaper than a new timer for every request).

    def _arm_idle_timer(self, delay: float | None = None) -> None:
        timeout = self._connections.idle_timeout
        if timeout > 0 and self._timer is None:
            self._timer = self._loop.call_later(timeout if delay is None else delay, self._idle)

    def _cancel_idle_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        self._timer = None
        if self._transport is None:
            return
        timeout = self._connections.idle_timeout
        if self._busy or self._queue:
            self._arm_idle_timer()  # a request in progress is never idle
            return
        idle = self._loop.time() - self._last_active
        if idle >= timeout:
            self.close_when_idle()
        else:
            self._arm_idle_timer(timeout - idle)

    def close_when_idle(self) -> None:
        """Close now if no request is in progress, else after its answer."""
        self._close_when_idle = True
        if not self._busy and not self._queue and self._transport is not None:
            self._release()

    def abort(self) -> None:
        """Drop the connection at once."""
        self._release(abort=True)

    def _release(self, *, abort: bool = False) -> None:
        """Close the transport (after its writes, or at once) and forget the connection."""
        transport, self._transport = self._transport, None
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
        self._queue.clear()
        self._connections.open.discard(self)
        self._cancel_idle_timer()
