"""One client connection of the daemon: decode, identify, dispatch, answer.

Frames are read with a streaming msgpack unpacker. Each request runs either
inline on the event loop (fast data-plane operations) or in the daemon's
worker threads (everything that touches the store), so answers can leave in
another order than the requests came; the msgid matches them.

Memory stays bounded per connection: at most :data:`MAX_IN_FLIGHT` requests
are decoded and unanswered, a partial frame is at most
:data:`MAX_REQUEST_BYTES`, and reading stops while the transport's write
buffer is above its high-water mark (a client that never reads its answers
fills its own socket, not the daemon's memory).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, cast

import msgpack  # type: ignore[import-untyped]

from kmscore.errors import (
    KMSError,
    KMSInternalException,
    SerializationException,
    ValidationException,
)
from kmscore.operations import OPERATIONS, dispatch
from kmscore.service import Caller
from kmscore.service.authorization import UNMAPPED
from kmscore.wire.rpc import MAX_REQUEST_BYTES, REFUSAL_MSGID, RESPONSE, error_response

from ..limits import REFUSAL_LINGER_SECONDS, over_limit_error
from ..ops.metrics import requests_for
from .protocol import (
    MAX_IN_FLIGHT,
    PeerCredentials,
    ProtocolViolation,
    Request,
    parse_request,
    peer_credentials,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from kmscore.service import KeyService
    from kmscore.service.refusals import RefusalRecorder

    from ..limits import ConnectionLimits

__all__ = ["USER_AGENT", "RpcConnection"]

log = logging.getLogger("kmscore.rpc")

T = TypeVar("T")

#: CloudTrail's ``userAgent`` for calls through the socket.
USER_AGENT: Final = "kmscore-rpc"
_METRICS: Final = requests_for("socket")
_SUCCESS: Final = "Success"


def _label(method: str) -> str:
    """An operation's name as a metric label: ``Unknown`` for a name no operation has."""
    return method if method in OPERATIONS else "Unknown"


#: The transport stops taking answers for a client above this many unsent
#: bytes (reading from it pauses) and starts again below the low mark.
WRITE_HIGH_WATER: Final = 1 << 20
WRITE_LOW_WATER: Final = 256 << 10
_TOO_LARGE: Final = ValidationException(
    f"The request is larger than the limit of {MAX_REQUEST_BYTES} bytes."
)


def _new_unpacker() -> Any:
    return msgpack.Unpacker(
        raw=False, timestamp=3, max_buffer_size=_BUFFER_BYTES, read_size=64 * 1024
    )


# The unpacker's buffer: one partial frame plus one read of the socket.
_BUFFER_BYTES: Final = MAX_REQUEST_BYTES + (1 << 20)


class Daemon(Protocol):
    """What a connection needs of the daemon that accepted it (``server.Daemon``).

    An interface rather than an import, so the daemon imports its connections and
    not the other way round.
    """

    service: KeyService
    limits: ConnectionLimits
    refusals: RefusalRecorder
    loop: asyncio.AbstractEventLoop
    connections: set[RpcConnection]
    stopping: bool

    def pack(self, message: Any) -> bytes:
        """Encode one response."""
        ...

    def run_in_worker(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a worker thread."""
        ...


class RpcConnection(asyncio.Protocol):
    """The protocol instance serving one connected client."""

    def __init__(self, daemon: Daemon) -> None:
        """Serve one client of ``daemon``."""
        self._daemon = daemon
        self._transport: asyncio.Transport | None = None
        # Made at the first read and dropped when the connection goes idle: an
        # unpacker holds ~44 kB (its decoding stack), most of an idle
        # connection's memory otherwise.
        self._unpacker: Any = None
        self._fed = 0  # bytes fed to the unpacker
        self._consumed = 0  # bytes of complete frames taken from it
        self._in_flight = 0
        self._write_paused = False
        self._read_paused = False
        self._closed = False
        self._eof = False
        # Answers held back while a read's requests run (see _write).
        self._held: list[bytes] | None = None
        self._held_bytes = 0
        # The requests of that read answered so far, counted in the metrics
        # once their answers went out: (operation, outcome, seconds).
        self._answered: list[tuple[str, str, float]] | None = None
        self.peer: PeerCredentials | None = None
        self._caller: Caller | None = None
        self._epoch = -1
        # Idle tracking: set on every read, cleared by the daemon's sweep.
        self._active = True
        self._idle_since = 0.0
        self._refused = False
        #: Set when the connection is gone (the daemon waits on it at shutdown).
        self.lost: asyncio.Future[None] = daemon.loop.create_future()

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        try:
            self.peer = peer_credentials(transport.get_extra_info("socket"))
        except OSError as exc:
            log.warning("closing a connection without peer credentials: %s", exc)
            self.abort()
            return
        daemon = self._daemon
        if len(daemon.connections) >= daemon.limits.max_connections:
            self._refuse()
            return
        self._idle_since = daemon.loop.time()
        daemon.connections.add(self)
        if daemon.stopping:
            self.abort()

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if self._closed:
            if self._refused:
                self.close()  # the request was read: the refusal frame goes out first
            return
        self._active = True
        self._fed += len(data)
        unpacker = self._unpacker
        if unpacker is None:
            unpacker = self._unpacker = _new_unpacker()
        try:
            unpacker.feed(data)
        except msgpack.BufferFull:
            self._violation(_TOO_LARGE)
            return
        self._process()

    def eof_received(self) -> bool:  # noqa: D102
        # The client sends nothing more (it shut down its writing side): its
        # requests still run and their answers go out, then the connection closes.
        self._eof = True
        self._process()
        return True

    def pause_writing(self) -> None:  # noqa: D102
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:  # noqa: D102
        self._write_paused = False
        self._update_reading()
        self._process()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        self._closed = True
        self._daemon.connections.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    # --- requests -----------------------------------------------------------------

    def _process(self) -> None:
        """Run the complete frames waiting in the unpacker, as far as limits allow."""
        unpacker = self._unpacker
        drained = not self._blocked()
        if drained and unpacker is not None:
            self._held = []
            self._answered = []
            try:
                # unpack() only while bytes past the last whole frame are
                # buffered: ending on OutOfData, or iterating the unpacker (its
                # StopIteration), costs a microsecond per read.
                while self._consumed < self._fed:
                    try:
                        message = unpacker.unpack()
                    except msgpack.OutOfData:
                        break  # a partial frame: the rest comes in a later read
                    if (
                        not self._take(message)
                        or self._closed
                        or self._in_flight >= MAX_IN_FLIGHT
                        or self._write_paused
                        or self._daemon.stopping
                    ):  # _blocked(), without the call
                        drained = False
                        break
            except Exception as exc:  # undecodable input, whatever msgpack raises
                self._flush()
                self._count_answered()
                why = f"The request is not valid msgpack ({type(exc).__name__})."
                self._violation(SerializationException(why))
                return
            # The answers leave first: the client's next request can be on its
            # way while the metrics are counted.
            self._flush()
            self._count_answered()
        if self._closed:
            return
        if self._fed - self._consumed > MAX_REQUEST_BYTES:
            self._violation(_TOO_LARGE)
            return
        if self._eof and drained and self._in_flight == 0:
            self.close()  # a partial frame left at EOF is never answered
            return
        self._update_reading()

    def _blocked(self) -> bool:
        return (
            self._closed
            or self._in_flight >= MAX_IN_FLIGHT
            or self._write_paused
            or self._daemon.stopping
        )

    def _take(self, message: Any) -> bool:
        """Check and start one decoded message; False when the connection was closed.

        An inline operation runs here, on the loop, in as few steps as possible
        (this is every GenerateDataKey, Encrypt and Decrypt); anything else goes
        through :meth:`_start`.
        """
        start, self._consumed = self._consumed, self._unpacker.tell()
        try:
            request = parse_request(message, self._consumed - start)
        except ProtocolViolation as exc:
            self._violation(SerializationException(f"The message is not a request: {exc}."))
            return False
        try:
            if request.weight or request.error is not None:
                self._start(request)
                return True
            started = time.perf_counter()
            caller = self._caller
            if caller is None or self._epoch != self._daemon.service.access_epoch:
                caller = self._current_caller()
            method = request.method
            label = method if method in OPERATIONS else "Unknown"
            try:
                result = dispatch(self._daemon.service, method, request.params, caller)
            except KMSError as exc:
                self._answer_error(request.msgid, exc)
                outcome = exc.code
            except Exception:
                log.exception("%s failed unexpectedly", method)
                self._answer_error(request.msgid, KMSInternalException("An internal error."))
                outcome = KMSInternalException.code
            else:
                self._answer(request.msgid, result)
                outcome = _SUCCESS
            self._count(label, outcome, started)
        except Exception:
            # A bug, not bad input: never take the daemon down with it.
            log.exception("a request could not be served")
            self.abort()
            return False
        return True

    def _start(self, request: Request) -> None:
        """Answer a request refused without running, or run one in a worker thread."""
        started = time.perf_counter()
        if request.error is not None:
            self._refusal(request.method or "Unknown", request.error)
            self._answer_error(request.msgid, request.error)
            self._count(_label(request.method or ""), request.error.code, started)
            return
        caller = self._current_caller()
        weight = request.weight
        self._in_flight += weight
        future = self._daemon.run_in_worker(
            dispatch, self._daemon.service, request.method, request.params, caller
        )
        future.add_done_callback(
            functools.partial(self._finished, request.msgid, weight, request.method, started)
        )

    def _count(self, operation: str, outcome: str, started: float) -> None:
        """Count an answered request in the metrics (after its read's answers are sent)."""
        seconds = time.perf_counter() - started
        answered = self._answered
        if answered is not None:
            answered.append((operation, outcome, seconds))
        else:
            _METRICS.observe(operation, outcome, seconds)

    def _count_answered(self) -> None:
        answered, self._answered = self._answered, None
        if answered:
            observe = _METRICS.observe
            for operation, outcome, seconds in answered:
                observe(operation, outcome, seconds)

    def _finished(
        self,
        msgid: int,
        weight: int,
        method: str,
        started: float,
        future: asyncio.Future[dict[str, Any]],
    ) -> None:
        self._in_flight -= weight
        exc = future.exception() if not future.cancelled() else KMSInternalException()
        if exc is None:
            outcome = _SUCCESS
            self._answer(msgid, future.result())
        elif isinstance(exc, KMSError):
            outcome = exc.code
            self._answer_error(msgid, exc)
        else:
            outcome = KMSInternalException.code
            log.error("an operation failed unexpectedly", exc_info=exc)
            self._answer_error(msgid, KMSInternalException("An internal error."))
        _METRICS.observe(_label(method), outcome, time.perf_counter() - started)
        if self._closed:
            return
        self._update_reading()
        self._process()

    def _current_caller(self) -> Caller:
        """The caller for this connection's uid, looked up again after access changes."""
        service = self._daemon.service
        epoch = service.access_epoch
        if self._caller is None or epoch != self._epoch:
            assert self.peer is not None
            uid, source = self.peer.uid, f"unix:{self.peer.pid}"
            principal = service.principals.by_uid(uid)
            if principal is None:
                self._caller = Caller(
                    arn=f"unix-uid:{uid}", account="", principal_id=str(uid),
                    kind=UNMAPPED, source=source, user_agent=USER_AGENT,
                )  # fmt: skip
            else:
                self._caller = service.principals.caller(
                    principal, source=source, user_agent=USER_AGENT
                )
            self._epoch = epoch
        return self._caller

    # --- answers --------------------------------------------------------------------

    def _answer(self, msgid: int, result: dict[str, Any]) -> None:
        try:
            data = self._daemon.pack([RESPONSE, msgid, None, result])
        except Exception as exc:
            log.error("cannot encode a result: %s", exc)
            self._answer_error(msgid, KMSInternalException("The result cannot be encoded."))
            return
        self._write(data)

    def _answer_error(self, msgid: int, error: KMSError) -> None:
        self._write(self._daemon.pack(error_response(msgid, error)))

    def _write(self, data: bytes) -> None:
        if self._held is not None:
            # Answers to the requests of one read leave in one write; past the
            # high-water mark they go at once, so flow control still applies.
            self._held.append(data)
            self._held_bytes += len(data)
            if self._held_bytes < WRITE_HIGH_WATER:
                return
            data = self._release()
        transport = self._transport
        if transport is not None and not self._closed and not transport.is_closing():
            transport.write(data)

    def _release(self) -> bytes:
        held = self._held or []
        self._held, self._held_bytes = [], 0
        return held[0] if len(held) == 1 else b"".join(held)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held:
            self._held_bytes = 0
            data = held[0] if len(held) == 1 else b"".join(held)
            transport = self._transport
            if transport is not None and not self._closed and not transport.is_closing():
                transport.write(data)

    # --- flow control and closing ------------------------------------------------------

    def _update_reading(self) -> None:
        pause = self._in_flight >= MAX_IN_FLIGHT or self._write_paused or self._daemon.stopping
        if pause is self._read_paused:
            return  # the common case: nothing to change
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            return
        if pause and not self._read_paused:
            self._read_paused = True
            transport.pause_reading()
        elif not pause and self._read_paused:
            self._read_paused = False
            transport.resume_reading()

    def stop_reading(self) -> None:
        """Take no more requests (shutdown); answers of running ones still go out."""
        self._update_reading()

    def close(self) -> None:
        """Close after the answers already written are sent."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def check_idle(self, now: float, timeout: float) -> None:
        """Close the connection when nothing was read or run for ``timeout`` s."""
        if self._active or self._in_flight:
            self._active = False
            self._idle_since = now
            if not self._in_flight and self._fed == self._consumed:
                # Nothing buffered: free the unpacker until the next read.
                self._unpacker = None
                self._fed = self._consumed = 0
        elif now - self._idle_since >= timeout and not self._closed:
            log.info("closing a connection idle for %.0f s", now - self._idle_since)
            self.close()

    def _refusal(self, event_name: str, error: KMSError) -> None:
        """Record a request answered without running (at the flood-bounded rate)."""
        self._daemon.refusals.refuse(self._current_caller(), event_name, error)

    def _refuse(self) -> None:
        """Turn a client past the connection limit away: one error frame, then close."""
        self._closed = self._refused = True
        error = over_limit_error(self._daemon.limits)
        self._refusal("Unknown", error)
        assert self._transport is not None
        self._transport.write(self._daemon.pack(error_response(REFUSAL_MSGID, error)))
        # Closing with the client's request unread would reset the connection
        # and could lose the frame: close once it sent something, or soon.
        self._daemon.loop.call_later(REFUSAL_LINGER_SECONDS, self.close)
        if not self.lost.done():
            self.lost.set_result(None)

    def _violation(self, error: KMSError) -> None:
        peer = self.peer
        who = f"pid {peer.pid} uid {peer.uid}" if peer is not None else "a client"
        log.warning("closing the connection of %s: %s", who, error.message)
        if peer is not None:
            self._refusal("Unknown", error)
        self.abort()

    def abort(self) -> None:
        """Close at once, dropping answers not yet sent."""
        self._closed = True
        if self._transport is not None:
            self._transport.abort()
        self._daemon.connections.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)
