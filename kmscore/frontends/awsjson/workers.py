"""Several HTTP worker processes on one port and one data dir.

The first process binds the port with ``SO_REUSEPORT`` and starts the others
(``python -m kmscore.frontends.awsjson --worker``) on the same port; the
kernel spreads new connections over every process listening there. Each
worker opens the data dir itself, so each is a full writer of the one audit
trail (see :mod:`kmscore.audit.trail` on several writers).

A worker prints ``ready`` once it listens, and drains on SIGTERM: it stops
accepting, finishes the requests in flight, seals its trail and exits. The
first process stops them that way and waits for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

from kmscore.frontends.limits import ConnectionLimits
from kmscore.service import KeyService

from .app import OpsHandler
from .server import HttpServer, start_http_server

__all__ = ["READY", "HttpWorkers", "reserve_port", "spawn_worker", "workers_startup"]

READY: Final = "ready"
#: Seconds a worker may take to drain after SIGTERM before it is killed.
DRAIN_SECONDS: Final = 30.0


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) ``host:port`` with SO_REUSEPORT, so port 0 becomes one fixed port.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def spawn_worker(
    data_dir: Path | None,
    host: str,
    port: int,
    workers: int,
    *,
    loop: str = "auto",
    limits: ConnectionLimits | None = None,
    env: Mapping[str, str] | None = None,
    any_region: bool = False,
) -> subprocess.Popen[str]:
    """Start one more worker on ``host:port``; it prints :data:`READY` when it listens.

    Raises:
        OSError: the process cannot be started.
    """
    argv = [sys.executable, "-m", "kmscore.frontends.awsjson", "--worker"]
    argv += ["--listen", f"[{host}]:{port}", "--workers", str(workers), "--loop", loop]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if limits is not None:
        argv += ["--max-connections", str(limits.max_connections)]
        argv += ["--idle-timeout", str(limits.idle_timeout)]
    if any_region:
        argv.append("--any-region")
    # Our own interpreter and module with our own arguments; no shell.
    return subprocess.Popen(  # noqa: S603
        argv, stdout=subprocess.PIPE, text=True, env=dict(env) if env is not None else None
    )


async def wait_ready(children: list[subprocess.Popen[str]]) -> None:
    """Wait until every worker listens.

    Raises:
        RuntimeError: a worker exited (or printed something else) first.
    """
    for child in children:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        if line.strip() != READY:
            raise RuntimeError(f"an HTTP worker failed to start (exit {child.poll()})")


async def stop_workers(children: list[subprocess.Popen[str]]) -> None:
    """SIGTERM every worker, wait for each to drain; kill one that takes too long."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.terminate()
    for child in children:
        try:
            await asyncio.to_thread(child.wait, DRAIN_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            await asyncio.to_thread(child.wait)


class HttpWorkers:
    """This process's HTTP server and the worker processes beside it."""

    def __init__(self, server: HttpServer, children: list[subprocess.Popen[str]]) -> None:
        """Hold the running server and its started workers."""
        self.server = server
        self.children = children

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return self.server.url

    @property
    def env_line(self) -> str:
        """The line to print for clients: ``AWS_ENDPOINT_URL_KMS=<url>``."""
        return self.server.env_line

    async def close(self) -> None:
        """Stop accepting here, drain every worker, then the requests here."""
        await stop_workers(self.children)
        await self.server.close()


def workers_startup(
    host: str,
    port: int,
    workers: int,
    *,
    data_dir: Path,
    on_ready: Callable[[HttpWorkers], None] | None = None,
    limits: ConnectionLimits | None = None,
    passphrase: str | None = None,
    ops: Callable[[KeyService], OpsHandler] | None = None,
    any_region: bool = False,
) -> Callable[[KeyService, asyncio.AbstractEventLoop], Awaitable[HttpWorkers]]:
    """A startup hook for the socket daemon: ``kms serve --http HOST:PORT --workers N``.

    The daemon's process is the first worker; ``workers - 1`` more are started
    on the same port once it listens.

    Args:
        host: The address to listen on.
        port: The TCP port (0: any free one, the same for every worker).
        workers: Processes serving HTTP, this one included (at least 1).
        data_dir: The data dir every worker opens.
        on_ready: Called once every worker listens.
        limits: Connections at once and idle timeout, per worker.
        passphrase: The root key passphrase, handed to the workers in their
            environment (``KMS_PASSPHRASE``), never on a command line.
        ops: Makes this process's ``/metrics``, ``/health`` and ``/ready``
            handler (the other workers make theirs from their environment).
        any_region: Every worker answers any Region (``--any-region``).

    Returns:
        The hook: ``await hook(service, loop)`` starts the workers.
    """

    async def start(service: KeyService, loop: asyncio.AbstractEventLoop) -> HttpWorkers:
        reserved = reserve_port(host, port)
        try:
            fixed = reserved.getsockname()[1]
            server = await start_http_server(
                service,
                host,
                fixed,
                reuse_port=True,
                limits=limits,
                ops=ops(service) if ops is not None else None,
                any_region=any_region,
            )
            env = dict(os.environ)
            if passphrase:
                env["KMS_PASSPHRASE"] = passphrase
            children: list[subprocess.Popen[str]] = []
            try:
                for _ in range(workers - 1):
                    children.append(
                        spawn_worker(
                            data_dir,
                            host,
                            fixed,
                            workers,
                            limits=limits,
                            env=env,
                            any_region=any_region,
                        )
                    )
                await wait_ready(children)
            except BaseException:
                await stop_workers(children)
                await server.close()
                raise
        finally:
            reserved.close()
        running = HttpWorkers(server, children)
        if on_ready is not None:
            on_ready(running)
        return running

    return start
