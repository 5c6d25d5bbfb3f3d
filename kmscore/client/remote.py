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
(:func:`kmscore.wire.operations.is_retry_safe`: Encrypt, Decrypt, GenerateDataKey, Describe*, List*,
...), since repeating those changes no key. Other operations raise
:class:`RemoteConnectionError`, and the caller decides.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]

from kmscore.client._methods import KMSMethods
from kmscore.errors import KMSError, KMSInternalException
from kmscore.wire.operations import is_retry_safe
from kmscore.wire.rpc import (
    MAX_MSGID,
    REFUSAL_MSGID,
    decode_response,
    default_socket_path,
    encode_request,
    msgid_of,
    new_packer,
    new_unpacker,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "RECONNECT_WAIT",
    "Reconnect",
    "RemoteConnectionError",
    "RemoteKMS",
    "connect",
    "default_socket_path",
]

#: Seconds a call waits for its answer, by default.
DEFAULT_TIMEOUT: Final = 60.0
#: Seconds a broken connection keeps trying to reach a restarting daemon.
RECONNECT_WAIT: Final = 5.0

RECV_BYTES: Final = 256 * 1024
# Connecting to a socket path that is not (yet) there, or has no listener.
NOT_LISTENING: Final = frozenset({errno.ENOENT, errno.ECONNREFUSED})


class RemoteConnectionError(ConnectionError):
    """The daemon could not be reached, or the connection broke during a call.

    Not a :class:`~kmscore.errors.KMSError`: the KMS did not answer. Raised for
    a call whose request may have run (a mutating operation whose connection
    broke before the answer came) and when no daemon listens on the socket.
    """


def socket_path_for(socket_path: Path | str | None, data_dir: Path | str | None) -> str:
    if socket_path is not None:
        return os.fspath(socket_path)
    return os.fspath(default_socket_path(data_dir))


def connect_socket(path: str, timeout: float | None) -> socket.socket:
    """A connected blocking socket whose sends and receives time out after ``timeout`` s.

    The timeout is the kernel's (``SO_RCVTIMEO``/``SO_SNDTIMEO``) rather than
    Python's: a Python socket timeout polls before every send and receive,
    two system calls more per call (7 us of a 50 us round trip, measured in
    ``bench/bench_daemon.py``'s echo). A send or receive past it raises
    :class:`BlockingIOError`, which the client turns into ``TimeoutError``.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
        if timeout is not None:
            seconds = int(timeout)
            micros = max(int((timeout - seconds) * 1_000_000), 0 if seconds else 1)
            value = struct.pack("@ll", seconds, micros)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    except BaseException:
        sock.close()
        raise
    return sock


def unreachable(path: str, exc: OSError) -> RemoteConnectionError:
    """The error of a socket no daemon answers on."""
    reason = exc.strerror or str(exc)
    return RemoteConnectionError(f"No kmscore daemon answers on {path}: {reason}.")


class Reconnect:
    """The waits between attempts to reach a daemon that is restarting.

    Shared by the thread and asyncio clients, which differ only in how they
    sleep: 10 ms, doubling to 200 ms, until ``wait`` seconds have passed.
    """

    __slots__ = ("_deadline", "_delay", "_path")

    def __init__(self, path: str, wait: float) -> None:
        """Start the clock: attempts end ``wait`` seconds from now."""
        self._path = path
        self._deadline = time.monotonic() + wait
        self._delay = 0.01

    def delay_after(self, exc: OSError) -> float:
        """Seconds to sleep before the next attempt after ``exc``.

        Raises:
            RemoteConnectionError: ``exc`` is not a daemon still starting (no
                socket, nobody listening), or the time is up.
        """
        delay = self._delay
        if exc.errno not in NOT_LISTENING or time.monotonic() + delay > self._deadline:
            raise unreachable(self._path, exc) from None
        self._delay = min(delay * 2, 0.2)
        return delay


def check_resend(operation: str, attempt: int, exc: OSError) -> None:
    """Whether a call whose connection broke after sending may be sent again.

    Raises:
        RemoteConnectionError: it was the second attempt, or the operation
            changes something (it may have run; see the module docstring).
    """
    if attempt == 2 or not is_retry_safe(operation):
        raise RemoteConnectionError(
            f"The connection broke during {operation}; it may have run: {exc}."
        ) from None


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
        self.sock = connect_socket(path, timeout)
        self.generation = _fork_generation
        self.packer = new_packer()
        self.unpacker = new_unpacker()
        self.buffer = bytearray(RECV_BYTES)
        self.view = memoryview(self.buffer)
        self.msgid = 0
        # Closes the socket when the thread that owned it is gone.
        self._finalizer = weakref.finalize(self, self.sock.close)

    def next_msgid(self) -> int:
        self.msgid = self.msgid + 1 if self.msgid < MAX_MSGID else 1
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
            try:
                n = self.sock.recv_into(self.buffer)
            except BlockingIOError:
                raise TimeoutError("no answer within the socket's timeout") from None
            if not n:
                raise ConnectionResetError(errno.ECONNRESET, "the daemon closed the connection")
            try:
                unpacker.feed(view[:n])
                for message in unpacker:
                    got = msgid_of(message)
                    if got != msgid:
                        if got == REFUSAL_MSGID:
                            decode_response(message, "the connection")  # raises its error
                        raise KMSInternalException("The daemon sent an unexpected message.")
                    return message
            except msgpack.BufferFull:
                raise KMSInternalException("The daemon's answer is too large.") from None
            except (ValueError, msgpack.UnpackException) as exc:
                raise KMSInternalException(f"The daemon's answer cannot be read: {exc}") from None

    def close(self) -> None:
        self._finalizer()


class RemoteKMS(KMSMethods):
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
        self._path = socket_path_for(socket_path, data_dir)
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
        reconnect = Reconnect(self._path, wait)
        while True:
            try:
                conn = _Connection(self._path, self._timeout)
                break
            except OSError as exc:
                time.sleep(reconnect.delay_after(exc))
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
        return self._invoke(operation, request)

    def _invoke(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        conn = self._connection()
        for attempt in (1, 2):
            msgid = conn.next_msgid()
            data = encode_request(conn.packer, msgid, operation, request)
            try:
                try:
                    conn.sock.sendall(data)
                except BlockingIOError:
                    raise TimeoutError("the daemon did not take the request in time") from None
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
                check_resend(operation, attempt, exc)
                conn = self._open(self._reconnect_wait)
                continue
            return decode_response(message, operation)
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
