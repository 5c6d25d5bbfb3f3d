"""The socket client: the same KMS as :class:`~kmscore.client.LocalKMS`, served by the daemon.

``kmscore.connect()`` talks to the daemon on ``<data-dir>/kms.sock``
(``kms serve``) and has exactly LocalKMS's operation methods, with the same
results (boto3's shapes: bytes, timezone-aware datetimes) and the same
:mod:`kmscore.errors` classes::

    from kmscore import connect

    with connect() as kms:
        dk = kms.generate_data_key(KeyId="alias/app", KeySpec="AES_256")

``kmscore.connect_async()`` is the asyncio flavour: ``await
kms.generate_data_key(...)``, with any number of calls in flight on one
connection (pipelining).

The wire protocol is msgpack-RPC over a Unix stream socket (see
``docs/daemon.md``): request ``[0, msgid, method, params]``, response ``[1,
msgid, error, result]``; ``method`` is the AWS operation name, ``params`` the AWS
request members (bytes as msgpack bin), ``error`` ``{"Code", "Message"}`` or
nil, timestamps the msgpack Timestamp extension. The daemon knows the caller
from the socket (``SO_PEERCRED``): the client sends no credentials.

Reconnecting: a call that finds the connection broken before its request went
out (the daemon restarted since the last call) reconnects and is sent again,
whatever the operation. A call whose request went out but whose answer never
came (the daemon died or stopped while it ran) may or may not have run; it is
sent again on a new connection only when the operation is read-only
(``Operation.read_only``: Encrypt, Decrypt, GenerateDataKey, Describe*, List*,
...), since repeating those changes no key. Other operations raise
:class:`RemoteConnectionError`, and the caller decides.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final, cast

import msgpack  # type: ignore[import-untyped]

from kmscore.client import method_name
from kmscore.errors import KMSError, KMSInternalException, ValidationException, from_code
from kmscore.operations import OPERATIONS
from kmscore.service import default_data_dir

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "SOCKET_FILE",
    "AsyncRemoteKMS",
    "RemoteConnectionError",
    "RemoteKMS",
    "connect",
    "connect_async",
    "default_socket_path",
]

#: The socket's name inside the data dir.
SOCKET_FILE: Final = "kms.sock"
#: The largest request frame the daemon reads (bigger ones close the connection).
MAX_REQUEST_BYTES: Final = 1 << 20
#: The largest response frame the client reads; a 10,000-key batch of
#: 1024-byte data keys is about 21 MB.
MAX_RESPONSE_BYTES: Final = 256 << 20
#: Seconds a call waits for its answer, by default.
DEFAULT_TIMEOUT: Final = 60.0
#: Seconds a broken connection keeps trying to reach a restarting daemon.
RECONNECT_WAIT: Final = 5.0

REQUEST: Final = 0
RESPONSE: Final = 1
#: The msgid of an error frame the daemon sends unasked before it closes a
#: connection it refuses (too many connections); requests never use it.
REFUSAL_MSGID: Final = 0
_MAX_MSGID: Final = 0xFFFFFFFF
_RECV_BYTES: Final = 256 * 1024
# Connecting to a socket path that is not (yet) there, or has no listener.
_NOT_LISTENING: Final = frozenset({errno.ENOENT, errno.ECONNREFUSED})


class RemoteConnectionError(ConnectionError):
    """The daemon could not be reached, or the connection broke during a call.

    Not a :class:`~kmscore.errors.KMSError`: the KMS did not answer. Raised for
    a call whose request may have run (a mutating operation whose connection
    broke before the answer came) and when no daemon listens on the socket.
    """


def default_socket_path(data_dir: Path | str | None = None) -> Path:
    """The daemon's default socket: ``<data-dir>/kms.sock``.

    Args:
        data_dir: The data dir; ``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``.
    """
    base = Path(data_dir) if data_dir is not None else default_data_dir()
    return base / SOCKET_FILE


def _socket_path(socket_path: Path | str | None, data_dir: Path | str | None) -> str:
    if socket_path is not None:
        return os.fspath(socket_path)
    return os.fspath(default_socket_path(data_dir))


def _new_packer() -> Any:
    return msgpack.Packer(use_bin_type=True, datetime=True)


def _new_unpacker() -> Any:
    # timestamp=3: Timestamp extensions become timezone-aware datetimes (UTC).
    return msgpack.Unpacker(
        raw=False,
        timestamp=3,
        max_buffer_size=MAX_RESPONSE_BYTES,
        read_size=64 * 1024,
    )


def _encode(packer: Any, msgid: int, operation: str, request: dict[str, Any]) -> bytes:
    """One request frame.

    Raises:
        ValidationException: a member has a type msgpack cannot carry, or the
            request is larger than :data:`MAX_REQUEST_BYTES`.
    """
    try:
        data: bytes = packer.pack([REQUEST, msgid, operation, request])
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationException(f"The {operation} request cannot be encoded: {exc}") from None
    if len(data) > MAX_REQUEST_BYTES:
        raise ValidationException(
            f"The {operation} request is {len(data)} bytes; the daemon takes at most "
            f"{MAX_REQUEST_BYTES}."
        )
    return data


def _decode(message: Any, operation: str) -> dict[str, Any]:
    """The result of a response, or its error raised.

    Raises:
        KMSError: the error the daemon answered with, rebuilt by code.
    """
    error, result = message[2], message[3]
    if error is not None:
        if isinstance(error, dict):
            code, text = error.get("Code"), error.get("Message")
            if isinstance(code, str):
                raise from_code(code, text if isinstance(text, str) else "")
        raise KMSInternalException(f"The daemon answered {operation} with a malformed error.")
    if not isinstance(result, dict):
        raise KMSInternalException(f"The daemon answered {operation} with a malformed result.")
    return result


def _msgid_of(message: Any) -> int | None:
    """The msgid of a well-formed response, else None."""
    if type(message) is list and len(message) == 4 and message[0] == RESPONSE:
        msgid = message[1]
        if type(msgid) is int:
            return msgid
    return None


def _retry_safe(operation: str) -> bool:
    """Whether a request that may have run can be sent again: it changes no key."""
    op = OPERATIONS.get(operation)
    return op is not None and op.read_only


def _connect_socket(path: str, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


def _unreachable(path: str, exc: OSError) -> RemoteConnectionError:
    reason = exc.strerror or str(exc)
    return RemoteConnectionError(f"No kmscore daemon answers on {path}: {reason}.")


# --- the blocking client ---------------------------------------------------------


# Bumped in a forked child, whose inherited connections belong to its parent
# (cheaper to compare than os.getpid(), a system call, on every call).
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)


class _Connection:
    """One socket to the daemon, used by one thread at a time."""

    def __init__(self, path: str, timeout: float | None) -> None:
        self.sock = _connect_socket(path, timeout)
        self.generation = _fork_generation
        self.packer = _new_packer()
        self.unpacker = _new_unpacker()
        self.buffer = bytearray(_RECV_BYTES)
        self.view = memoryview(self.buffer)
        self.msgid = 0
        # Closes the socket when the thread that owned it is gone.
        self._finalizer = weakref.finalize(self, self.sock.close)

    def next_msgid(self) -> int:
        self.msgid = self.msgid + 1 if self.msgid < _MAX_MSGID else 1
        return self.msgid

    def receive(self, msgid: int) -> Any:
        """The response to ``msgid``.

        Raises:
            ConnectionError: the daemon closed the connection.
            TimeoutError: no answer within the socket's timeout.
            KMSInternalException: the daemon sent something that is not a response.
        """
        # One request at a time per connection: nothing is buffered before it.
        unpacker, view = self.unpacker, self.view
        while True:
            n = self.sock.recv_into(self.buffer)
            if not n:
                raise ConnectionResetError(errno.ECONNRESET, "the daemon closed the connection")
            try:
                unpacker.feed(view[:n])
                for message in unpacker:
                    got = _msgid_of(message)
                    if got != msgid:
                        if got == REFUSAL_MSGID:
                            _decode(message, "the connection")  # raises its error
                        raise KMSInternalException("The daemon sent an unexpected message.")
                    return message
            except msgpack.BufferFull:
                raise KMSInternalException("The daemon's answer is too large.") from None
            except (ValueError, msgpack.UnpackException) as exc:
                raise KMSInternalException(f"The daemon's answer cannot be read: {exc}") from None

    def close(self) -> None:
        self._finalizer()


class RemoteKMS:
    """A KMS served by the kmscore daemon over its Unix socket.

    Has every operation method of :class:`~kmscore.client.LocalKMS`
    (``create_key``, ``encrypt``, ``generate_data_key``, the batch extensions
    ``generate_data_keys`` and ``decrypt_many``, ...), taking the AWS request
    members as keyword arguments and returning boto3's response dicts.

    Thread-safe: each thread gets its own connection, opened at its first
    call, so threads never wait for each other's round trips. See the module
    docstring for when a call is sent again after a broken connection.
    """

    def __init__(
        self,
        socket_path: Path | str | None = None,
        *,
        data_dir: Path | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        reconnect_wait: float = RECONNECT_WAIT,
    ) -> None:
        """Connect to the daemon (the calling thread's connection is opened now).

        Args:
            socket_path: The daemon's socket; ``<data-dir>/kms.sock`` by default.
            data_dir: The data dir whose default socket to use.
            timeout: Seconds a call waits for its answer; None waits forever.
            reconnect_wait: Seconds a broken connection keeps trying to reach
                a restarting daemon before the call fails.

        Raises:
            RemoteConnectionError: no daemon listens on the socket.
        """
        self._path = _socket_path(socket_path, data_dir)
        self._timeout = timeout
        self._reconnect_wait = reconnect_wait
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._closed = False
        self._connection()

    @property
    def socket_path(self) -> str:
        """The daemon's socket."""
        return self._path

    def _open(self, wait: float) -> _Connection:
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                conn = _Connection(self._path, self._timeout)
                break
            except OSError as exc:
                if exc.errno not in _NOT_LISTENING or time.monotonic() + delay > deadline:
                    raise _unreachable(self._path, exc) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        with self._lock:
            if self._closed:
                conn.close()
                raise RemoteConnectionError("The client is closed.")
            self._connections.add(conn)
        self._local.conn = conn
        return conn

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.generation != _fork_generation:
            # A forked child must not share its parent's socket.
            if self._closed:
                raise RemoteConnectionError("The client is closed.")
            conn = self._open(0.0)
        return conn

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None

    def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """Run any operation by its AWS name.

        Raises:
            KMSError: the AWS error the operation answers with.
            RemoteConnectionError: the daemon cannot be reached, or the call
                may have run but its answer was lost.
            TimeoutError: no answer within the timeout (the connection is
                dropped; the call may have run).
        """
        conn = self._connection()
        for attempt in (1, 2):
            msgid = conn.next_msgid()
            data = _encode(conn.packer, msgid, operation, request)
            try:
                conn.sock.sendall(data)
            except OSError as exc:
                # Nothing of a request the daemon did not read whole ever runs.
                self._drop(conn)
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise RemoteConnectionError(f"Sending {operation} failed: {exc}.") from None
                conn = self._open(self._reconnect_wait)
                continue
            try:
                message = conn.receive(msgid)
            except TimeoutError:
                self._drop(conn)
                raise TimeoutError(f"No answer to {operation} within {self._timeout} s.") from None
            except KMSError:
                self._drop(conn)
                raise
            except OSError as exc:
                self._drop(conn)
                if attempt == 2 or not _retry_safe(operation):
                    raise RemoteConnectionError(
                        f"The connection broke during {operation}; it may have run: {exc}."
                    ) from None
                conn = self._open(self._reconnect_wait)
                continue
            return _decode(message, operation)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every connection of this client (of all threads)."""
        with self._lock:
            self._closed = True
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> RemoteKMS:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteKMS({self._path!r})"

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined on the class: an unknown method.
        raise AttributeError(f"RemoteKMS has no operation {name!r}")


# --- the asyncio client ----------------------------------------------------------


class _AsyncConnection(asyncio.Protocol):
    """One socket to the daemon; any number of calls in flight, matched by msgid."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.unpacker = _new_unpacker()
        self.packer = _new_packer()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.msgid = 0
        self.lost = False
        self._drained: asyncio.Future[None] | None = None
        self.write_paused = False

    def next_msgid(self) -> int:
        # Skip ids still waiting for their answer after a wrap-around.
        while True:
            self.msgid = self.msgid + 1 if self.msgid < _MAX_MSGID else 1
            if self.msgid not in self.pending:
                return self.msgid

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.unpacker.feed(data)
            for message in self.unpacker:
                msgid = _msgid_of(message)
                future = self.pending.pop(msgid, None) if msgid is not None else None
                if future is None:
                    if msgid == REFUSAL_MSGID:
                        _decode(message, "the connection")  # raises its error
                    raise KMSInternalException("The daemon sent an unexpected message.")
                # A call that timed out or was cancelled left its future done.
                if not future.done():
                    future.set_result(message)
        except Exception as exc:
            # A stream that cannot be read cannot be resynchronized.
            error = exc if isinstance(exc, KMSError) else KMSInternalException(str(exc))
            self._fail(error)
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionResetError(errno.ECONNRESET, "the daemon closed the connection"))
        self._wake()

    def _fail(self, error: Exception) -> None:
        self.lost = True
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def _wake(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    async def drain(self) -> None:
        """Wait while the transport's write buffer is full."""
        while self.write_paused and not self.lost:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AsyncRemoteKMS:
    """The asyncio flavour of :class:`RemoteKMS`: ``await kms.encrypt(...)``.

    One connection carries every call; concurrent calls are pipelined and
    their answers matched by msgid, in whatever order the daemon sends them.
    Use it from one event loop.
    """

    def __init__(
        self,
        socket_path: Path | str | None = None,
        *,
        data_dir: Path | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        reconnect_wait: float = RECONNECT_WAIT,
    ) -> None:
        """Prepare a client; :func:`connect_async` also connects it.

        Args:
            socket_path: The daemon's socket; ``<data-dir>/kms.sock`` by default.
            data_dir: The data dir whose default socket to use.
            timeout: Seconds a call waits for its answer; None waits forever.
            reconnect_wait: Seconds a broken connection keeps trying to reach
                a restarting daemon before the call fails.
        """
        self._path = _socket_path(socket_path, data_dir)
        self._timeout = timeout
        self._reconnect_wait = reconnect_wait
        self._conn: _AsyncConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    @property
    def socket_path(self) -> str:
        """The daemon's socket."""
        return self._path

    async def _open(self, wait: float) -> _AsyncConnection:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + wait
        delay = 0.01
        while True:
            try:
                _, conn = await loop.create_unix_connection(_AsyncConnection, self._path)
                return conn
            except OSError as exc:
                if exc.errno not in _NOT_LISTENING or time.monotonic() + delay > deadline:
                    raise _unreachable(self._path, exc) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)

    async def _connection(self, wait: float) -> _AsyncConnection:
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._closed:
                raise RemoteConnectionError("The client is closed.")
            conn = self._conn
            if conn is None or conn.lost:
                conn = self._conn = await self._open(wait)
            return conn

    async def connect(self) -> AsyncRemoteKMS:
        """Open the connection now rather than at the first call.

        Raises:
            RemoteConnectionError: no daemon listens on the socket.
        """
        await self._connection(0.0)
        return self

    async def call(self, operation: str, **request: Any) -> dict[str, Any]:
        """Run any operation by its AWS name.

        Raises:
            KMSError: the AWS error the operation answers with.
            RemoteConnectionError: the daemon cannot be reached, or the call
                may have run but its answer was lost.
            TimeoutError: no answer within the timeout (the call may have run).
        """
        wait = 0.0 if self._conn is None else self._reconnect_wait
        for attempt in (1, 2):
            conn = await self._connection(wait)
            wait = self._reconnect_wait
            transport = conn.transport
            if transport is None or transport.is_closing():
                # Broken before this request went out: safe to send again.
                conn.lost = True
                if attempt == 2:
                    raise RemoteConnectionError(f"Sending {operation} failed.")
                continue
            msgid = conn.next_msgid()
            data = _encode(conn.packer, msgid, operation, request)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            conn.pending[msgid] = future
            transport.write(data)
            if conn.write_paused:
                await conn.drain()
            try:
                if self._timeout is None:
                    message = await future
                else:
                    async with asyncio.timeout(self._timeout):
                        message = await future
            except TimeoutError:
                # The future stays pending-but-cancelled, so a late answer is
                # recognized and dropped.
                raise TimeoutError(f"No answer to {operation} within {self._timeout} s.") from None
            except KMSError:
                raise
            except OSError as exc:
                if attempt == 2 or not _retry_safe(operation):
                    raise RemoteConnectionError(
                        f"The connection broke during {operation}; it may have run: {exc}."
                    ) from None
                continue
            return _decode(message, operation)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection; calls still waiting fail with RemoteConnectionError."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def __aenter__(self) -> AsyncRemoteKMS:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncRemoteKMS({self._path!r})"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"AsyncRemoteKMS has no operation {name!r}")


# --- construction ------------------------------------------------------------------


def connect(
    socket_path: Path | str | None = None,
    *,
    data_dir: Path | str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> RemoteKMS:
    """Connect to the kmscore daemon.

    Args:
        socket_path: The daemon's socket; ``<data-dir>/kms.sock`` by default.
        data_dir: The data dir whose default socket to use
            (``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``).
        timeout: Seconds a call waits for its answer; None waits forever.

    Raises:
        RemoteConnectionError: no daemon listens on the socket.
    """
    return RemoteKMS(socket_path, data_dir=data_dir, timeout=timeout)


async def connect_async(
    socket_path: Path | str | None = None,
    *,
    data_dir: Path | str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> AsyncRemoteKMS:
    """Connect to the kmscore daemon from asyncio.

    Args:
        socket_path: The daemon's socket; ``<data-dir>/kms.sock`` by default.
        data_dir: The data dir whose default socket to use.
        timeout: Seconds a call waits for its answer; None waits forever.

    Raises:
        RemoteConnectionError: no daemon listens on the socket.
    """
    return await AsyncRemoteKMS(socket_path, data_dir=data_dir, timeout=timeout).connect()


def _bind(operation: str) -> Callable[..., dict[str, Any]]:
    def method(self: RemoteKMS, **request: Any) -> dict[str, Any]:
        return self.call(operation, **request)

    method.__name__ = method_name(operation)
    method.__qualname__ = f"RemoteKMS.{method.__name__}"
    method.__doc__ = f"The {operation} operation (see the AWS KMS API reference)."
    return method


def _bind_async(operation: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def method(self: AsyncRemoteKMS, **request: Any) -> dict[str, Any]:
        return await self.call(operation, **request)

    method.__name__ = method_name(operation)
    method.__qualname__ = f"AsyncRemoteKMS.{method.__name__}"
    method.__doc__ = f"The {operation} operation (see the AWS KMS API reference)."
    return method


for _op in OPERATIONS:
    setattr(RemoteKMS, method_name(_op), _bind(_op))
    setattr(AsyncRemoteKMS, method_name(_op), _bind_async(_op))
