"""The asyncio socket client: ``await kms.generate_data_key(...)``.

:class:`AsyncRemoteKMS` has the operation methods of
:class:`~kmscore.client.remote.RemoteKMS` as coroutines, with any number of
calls in flight on one connection (pipelining, matched by msgid). Reconnecting
follows the same rule as the blocking client.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import msgpack  # type: ignore[import-untyped]

from kmscore.client._methods import AsyncKMSMethods
from kmscore.client.remote import (
    DEFAULT_TIMEOUT,
    RECONNECT_WAIT,
    Reconnect,
    RemoteConnectionError,
    check_resend,
    socket_path_for,
)
from kmscore.errors import KMSError, KMSInternalException
from kmscore.wire.rpc import (
    MAX_MSGID,
    REFUSAL_MSGID,
    decode_response,
    encode_request,
    msgid_of,
    new_packer,
    new_unpacker,
)

__all__ = ["AsyncRemoteKMS", "connect_async"]


class _AsyncConnection(asyncio.Protocol):
    """One socket to the daemon; any number of calls in flight, matched by msgid."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.unpacker = new_unpacker()
        self.fed = 0  # bytes fed to the unpacker
        self.consumed = 0  # bytes of the whole responses taken from it
        self.packer = new_packer()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.msgid = 0
        self.lost = False
        self._drained: asyncio.Future[None] | None = None
        self.write_paused = False

    def next_msgid(self) -> int:
        # Skip ids still waiting for their answer after a wrap-around.
        while True:
            self.msgid = self.msgid + 1 if self.msgid < MAX_MSGID else 1
            if self.msgid not in self.pending:
                return self.msgid

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            unpacker = self.unpacker
            unpacker.feed(data)
            self.fed += len(data)
            # unpack() while bytes past the last whole response are buffered:
            # iterating ends in a StopIteration, which costs a microsecond.
            while self.consumed < self.fed:
                try:
                    message = unpacker.unpack()
                except msgpack.OutOfData:
                    break  # the rest of a response comes in a later read
                self.consumed = unpacker.tell()
                msgid = msgid_of(message)
                future = self.pending.pop(msgid, None) if msgid is not None else None
                if future is None:
                    if msgid == REFUSAL_MSGID:
                        decode_response(message, "the connection")  # raises its error
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


class AsyncRemoteKMS(AsyncKMSMethods):
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
        self._path = socket_path_for(socket_path, data_dir)
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
        reconnect = Reconnect(self._path, wait)
        while True:
            try:
                _, conn = await loop.create_unix_connection(_AsyncConnection, self._path)
                return conn
            except OSError as exc:
                await asyncio.sleep(reconnect.delay_after(exc))

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
        return await self._invoke(operation, request)

    async def _invoke(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
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
            data = encode_request(conn.packer, msgid, operation, request)
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
                check_resend(operation, attempt, exc)
                continue
            return decode_response(message, operation)
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
