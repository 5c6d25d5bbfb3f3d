"""The kmscore daemon: the key service on a Unix socket, spoken to in msgpack-RPC.

``run()`` is ``kms serve``: it opens the data dir (initializing it on first
start) with the audit trail on, listens on ``<data-dir>/kms.sock`` (or another
path), and serves until SIGINT or SIGTERM. Then it stops accepting, lets the
calls in flight finish and their answers go out, closes the key service (which
flushes the audit trail and seals it with a checkpoint), removes the socket
file and returns 0.

One event loop (uvloop when it is installed) reads every connection. Fast
data-plane operations run on the loop; everything that writes the store runs in
a small thread pool. See ``docs/daemon.md`` for the protocol and the limits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import msgpack  # type: ignore[import-untyped]

from kmscore.crypto.rootkey import RootKeyError
from kmscore.errors import KMSError
from kmscore.fsutil import ensure_private_dir
from kmscore.service import KeyService, default_data_dir, open_service
from kmscore.service.key_service import MAINTENANCE_SECONDS
from kmscore.service.maintenance import maintain_if_due, run_maintenance
from kmscore.service.principals import CREDENTIALS_FILE
from kmscore.service.refusals import RefusalLimits, RefusalRecorder, recorder_for
from kmscore.service.regions import open_if_any
from kmscore.wire.rpc import SOCKET_FILE

from ..limits import ConnectionLimits, ensure_fd_limit
from .connection import RpcConnection
from .socketfile import DaemonError, SocketFile

__all__ = ["EVENT_LOOP_ENV", "Daemon", "StartupHook", "event_loop_factory", "run"]

log = logging.getLogger("kmscore.rpc")

T = TypeVar("T")

#: Something more to start on the daemon's loop once the service is open (the
#: HTTP frontend plugs in here). If what it returns has ``close()`` (an
#: ``asyncio.Server``, say), that is called at shutdown, and ``wait_closed()``
#: awaited when there is one.
StartupHook = Callable[[KeyService, asyncio.AbstractEventLoop], Awaitable[Any]]

#: ``uvloop`` or ``asyncio``: which event loop to run; uvloop when importable
#: by default.
EVENT_LOOP_ENV: Final = "KMSCORE_EVENT_LOOP"
#: Threads running the operations that write the store. SQLite takes one
#: writer at a time; more threads let audit records and fsyncs overlap.
WORKERS: Final = 8
#: Seconds the calls in flight get to finish at shutdown, and then the answers
#: to reach clients that read slowly.
DRAIN_SECONDS: Final = 30.0
CLOSE_SECONDS: Final = 5.0


def event_loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop to run: uvloop when importable, else asyncio's own.

    ``$KMSCORE_EVENT_LOOP`` set to ``asyncio`` or ``uvloop`` chooses.

    Raises:
        DaemonError: uvloop was asked for and is not installed, or the
            variable names neither.
    """
    choice = os.environ.get(EVENT_LOOP_ENV, "")
    if choice not in ("", "asyncio", "uvloop"):
        raise DaemonError(f"{EVENT_LOOP_ENV}={choice!r}: use 'asyncio' or 'uvloop'")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise DaemonError("uvloop is not installed (pip install kmscore[fast])") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


class Daemon:
    """What the connections share: the service, the worker threads, the encoder."""

    def __init__(
        self,
        service: KeyService,
        loop: asyncio.AbstractEventLoop,
        executor: ThreadPoolExecutor,
        limits: ConnectionLimits | None = None,
        refusals: RefusalRecorder | None = None,
    ) -> None:
        """Serve ``service`` on ``loop``, running slow operations on ``executor``.

        ``limits`` bounds the connections (the defaults if None); ``refusals``
        records the requests answered without running (the service's shared
        recorder if None).
        """
        self.service = service
        self.limits = limits or ConnectionLimits()
        self.refusals = refusals or recorder_for(service)
        self.loop = loop
        self.executor = executor
        self.connections: set[RpcConnection] = set()
        #: True once shutdown began: no new requests are taken.
        self.stopping = False
        self._packer = msgpack.Packer(use_bin_type=True, datetime=True)
        self._running: set[asyncio.Future[Any]] = set()
        self._maintenance: asyncio.TimerHandle | None = None
        self._sweep: asyncio.TimerHandle | None = None

    def pack(self, message: Any) -> bytes:
        """Encode one response (on the loop's thread only).

        Raises:
            TypeError: the message holds a value msgpack cannot encode.
            ValueError: a naive datetime or an integer out of range.
        """
        try:
            data: bytes = self._packer.pack(message)
        except Exception:
            # A failed pack may leave half a message in the packer's buffer.
            self._packer = msgpack.Packer(use_bin_type=True, datetime=True)
            raise
        return data

    def run_in_worker(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a worker thread; shutdown waits for it."""
        future = self.loop.run_in_executor(self.executor, fn, *args)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    def connection(self) -> RpcConnection:
        """A protocol instance for a new client."""
        return RpcConnection(self)

    def schedule_maintenance(self) -> None:
        """Rotate and delete due keys in a worker, regularly.

        The dispatcher would otherwise do it in whichever call finds it due,
        possibly one running on the event loop.
        """

        def tick() -> None:
            if not self.stopping:
                self.run_in_worker(partial(maintain_if_due, self.service, force=True))
                self._maintenance = self.loop.call_later(MAINTENANCE_SECONDS / 2, tick)

        self._maintenance = self.loop.call_later(MAINTENANCE_SECONDS / 2, tick)

    def schedule_idle_sweep(self) -> None:
        """Close idle connections: each is checked every quarter of the timeout.

        A connection is closed between one and one and a quarter timeouts
        after its last read, unless a request of it is still running.
        """
        timeout = self.limits.idle_timeout
        if not timeout:
            return
        every = max(timeout / 4, 0.05)

        def sweep() -> None:
            now = self.loop.time()
            for conn in list(self.connections):
                conn.check_idle(now, timeout)
            if not self.stopping:
                self._sweep = self.loop.call_later(every, sweep)

        self._sweep = self.loop.call_later(every, sweep)

    async def shutdown(self) -> None:
        """Take no more requests, let running ones finish, close every connection."""
        self.stopping = True
        for timer in (self._maintenance, self._sweep):
            if timer is not None:
                timer.cancel()
        for conn in list(self.connections):
            conn.stop_reading()
        if self._running:
            _, late = await asyncio.wait(set(self._running), timeout=DRAIN_SECONDS)
            if late:
                log.warning("%d calls still running after %.0f s", len(late), DRAIN_SECONDS)
        await asyncio.sleep(0)  # let the answers of the last calls be written
        conns = list(self.connections)
        for conn in conns:
            conn.close()
        if conns:
            _, slow = await asyncio.wait([c.lost for c in conns], timeout=CLOSE_SECONDS)
            for conn in conns:
                if conn.lost in slow:
                    conn.abort()


async def _close_extras(extras: Iterable[Any]) -> None:
    for extra in extras:
        close = getattr(extra, "close", None)
        if not callable(close):
            continue
        try:
            result = close()
            if asyncio.iscoroutine(result):
                await result
            wait_closed = getattr(extra, "wait_closed", None)
            if callable(wait_closed):
                await wait_closed()
        except Exception:
            log.exception("closing %r failed", extra)


async def _serve(
    service: KeyService,
    sock: Any,
    info: dict[str, Any],
    ready: Callable[[dict[str, Any]], None] | None,
    extra_startup: Iterable[StartupHook],
    limits: ConnectionLimits,
    refusals: RefusalRecorder,
) -> int:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="kmscore-rpc")
    daemon = Daemon(service, loop, executor, limits, refusals)
    stop = asyncio.Event()
    signals = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
            signals.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            log.warning("cannot handle %s here (not the main thread?)", signum.name)
    extras: list[Any] = []
    status = 0
    server = None
    try:
        server = await loop.create_unix_server(daemon.connection, sock=sock, backlog=1024)
        for start in extra_startup:
            extras.append(await start(service, loop))
        daemon.schedule_maintenance()
        daemon.schedule_idle_sweep()
        refusals.schedule(loop)
        if ready is not None:
            ready(dict(info))
        await stop.wait()
    except Exception:
        log.exception("the daemon failed")
        status = 1
    finally:
        if server is not None:
            server.close()
        await daemon.shutdown()
        await _close_extras(extras)
        refusals.close()  # the last flood summaries, before the trail closes
        await loop.run_in_executor(None, executor.shutdown, True)
        for signum in signals:
            loop.remove_signal_handler(signum)
    return status


def run(
    data_dir: Path | None = None,
    socket_path: Path | None = None,
    socket_mode: int = 0o600,
    *,
    audit: bool = True,
    ready: Callable[[dict[str, Any]], None] | None = None,
    extra_startup: Iterable[StartupHook] = (),
    passphrase: bytes | str | None = None,
    limits: ConnectionLimits | None = None,
    refusal_limits: RefusalLimits | None = None,
    fd_connections: int = 0,
) -> int:
    """Serve the key service on a Unix socket until SIGINT or SIGTERM.

    Args:
        data_dir: The data dir; ``$KMS_DATA_DIR`` or ``~/.local/share/kmscore``.
            Initialized on first start (root key, admin user, credentials).
        socket_path: Where to listen; ``<data-dir>/kms.sock`` by default.
        socket_mode: 0o600 (the owner only), 0o660 (its group too) or 0o666
            (everyone). A socket inside the 0700 data dir stays reachable by
            the owner only whatever its mode; put it elsewhere to share it.
        audit: Record every call in the data dir's audit trail.
        ready: Called once listening, with ``socket``, ``data_dir``,
            ``credentials`` (the admin's credentials file, or None), ``pid``
            and ``event_loop``.
        extra_startup: Coroutine functions run on the daemon's loop after the
            service opened, before ``ready``; see :data:`StartupHook`.
        passphrase: The root key passphrase of a passphrase-protected data dir.
        limits: Connections at once and idle timeout on the socket
            (:class:`~kmscore.frontends.limits.ConnectionLimits` defaults).
        refusal_limits: How many refused requests per source and window
            are recorded one by one (:class:`~kmscore.service.refusals.RefusalLimits`).
        fd_connections: Connections other listeners (the HTTP endpoint) may
            hold, counted when the descriptor limit is checked.

    Returns:
        The exit status: 0 after a signal, 1 when the daemon cannot start or
        fails (the reason is printed on stderr).
    """
    try:
        return _run(
            data_dir,
            socket_path,
            socket_mode,
            audit,
            ready,
            extra_startup,
            passphrase,
            limits or ConnectionLimits(),
            refusal_limits,
            fd_connections,
        )
    except DaemonError as exc:
        print(f"kmscore daemon: {exc}", file=sys.stderr)
        return 1


def _run(
    data_dir: Path | None,
    socket_path: Path | None,
    socket_mode: int,
    audit: bool,
    ready: Callable[[dict[str, Any]], None] | None,
    extra_startup: Iterable[StartupHook],
    passphrase: bytes | str | None,
    limits: ConnectionLimits,
    refusal_limits: RefusalLimits | None,
    fd_connections: int,
) -> int:
    loop_name, loop_factory = event_loop_factory()
    ensure_fd_limit(limits.max_connections + fd_connections)
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        ensure_private_dir(data)
    except OSError as exc:
        raise DaemonError(f"cannot use the data dir {data}: {exc}") from None
    path = Path(socket_path) if socket_path is not None else data / SOCKET_FILE
    socket_file = SocketFile(path.absolute(), socket_mode)
    # Bound before the service starts any thread: see socketfile.py.
    sock = socket_file.acquire()
    try:
        try:
            service = open_service(data, audit=audit, passphrase=passphrase)
        except (RootKeyError, KMSError, ValueError, OSError) as exc:
            raise DaemonError(f"cannot open the data dir {data}: {exc}") from None
        try:
            open_if_any(service)  # other Regions and peers, for multi-Region keys
            run_maintenance(service)
            credentials = data / CREDENTIALS_FILE
            info = {
                "socket": str(socket_file.path),
                "data_dir": str(data.absolute()),
                "credentials": str(credentials.absolute()) if credentials.exists() else None,
                "pid": os.getpid(),
                "event_loop": loop_name,
            }
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                refusals = recorder_for(service, refusal_limits)
                return runner.run(
                    _serve(service, sock, info, ready, extra_startup, limits, refusals)
                )
        finally:
            service.close()
    finally:
        sock.close()
        socket_file.release()
