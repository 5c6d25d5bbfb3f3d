"""Starting and stopping the HTTP endpoint on a running event loop.

:func:`start_http_server` binds the endpoint on the caller's loop, so it runs
beside the Unix-socket daemon (``kms serve --http HOST:PORT``) or alone
(``python -m kmscore.frontends.awsjson``). Each connection is an
:class:`~.protocol.HttpConnection` (httptools parses; no framework on the hot
path).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Final

from kmscore.errors import LimitExceededException
from kmscore.service import KeyService
from kmscore.service.regions import open_deployment

from ..limits import REFUSAL_LINGER_SECONDS, ConnectionLimits, over_limit_error
from .app import KMSHandler, OpsHandler
from .protocol import Connections
from .wire import CONTENT_TYPE, encode_error

__all__ = ["HttpServer", "endpoint_url", "http_startup", "start_http_server"]

_SHUTDOWN_SECONDS: Final = 5.0


class _Refusal(asyncio.Protocol):
    """A client past the connection limit: a 503, then the connection closes."""

    def __init__(self, handler: KMSHandler, error: LimitExceededException) -> None:
        self._handler = handler
        self._error = error
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        source = peer[0] if isinstance(peer, tuple) and peer else "unknown"
        handler = self._handler
        caller = handler.refused_caller_from(source)
        handler.refusals.refuse(caller, "Unknown", self._error)
        body = encode_error(self._error.code, self._error.message)
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            f"Content-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        assert self._transport is not None
        self._transport.write(head.encode("ascii") + body)
        # Closing with the request unread would reset the connection and could
        # lose the answer: close once the client sent something, or soon.
        asyncio.get_running_loop().call_later(REFUSAL_LINGER_SECONDS, self._close)

    def data_received(self, data: bytes) -> None:
        self._close()

    def eof_received(self) -> bool:
        self._close()
        return False

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


def endpoint_url(host: str, port: int, *, tls: bool = False) -> str:
    """The endpoint URL clients use (``AWS_ENDPOINT_URL_KMS``)."""
    scheme = "https" if tls else "http"
    if host in ("", "0.0.0.0"):  # noqa: S104 - naming the wildcard, not binding it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


class HttpServer:
    """A running HTTP endpoint: where it listens, and how to stop it."""

    def __init__(
        self,
        server: asyncio.Server,
        connections: Connections,
        handler: KMSHandler,
        host: str,
        port: int,
        tls: bool,
    ) -> None:
        """Wrap a started server (made by :func:`start_http_server`)."""
        self._server = server
        self._connections = connections
        self._handler = handler
        self.host = host
        self.port = port
        self.url = endpoint_url(host, port, tls=tls)

    @property
    def env_line(self) -> str:
        """The line to print for clients: ``AWS_ENDPOINT_URL_KMS=<url>``."""
        return f"AWS_ENDPOINT_URL_KMS={self.url}"

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish (up to 5 s), release the pool."""
        self._server.close()
        # Idle keep-alive connections close now; busy ones after their answer.
        await self._connections.shutdown(_SHUTDOWN_SECONDS)
        await self._server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self._handler.close)
        if self._handler.deployment is not None:
            self._handler.deployment.close()
        self._handler.refusals.flush(everything=True)


async def start_http_server(
    service: KeyService,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
    limits: ConnectionLimits | None = None,
    ops: OpsHandler | None = None,
    any_region: bool = False,
) -> HttpServer:
    """Serve the AWS KMS JSON protocol for ``service`` on the running loop.

    Args:
        service: The key service (its data dir's Region, account and users).
        host: The address to listen on (``127.0.0.1``, ``0.0.0.0``, ``::``).
        port: The TCP port; 0 picks a free one (see :attr:`HttpServer.port`).
        ssl_context: Serve HTTPS with this context; requests then count as
            secure transport in policy conditions.
        reuse_port: Set ``SO_REUSEPORT``, so several processes serving one
            data dir can listen on the same port.
        sock: A listening socket to serve instead of binding ``host:port``.
        limits: Connections at once and the idle timeout (the keep-alive
            timeout of a connection with no request in progress, counted from
            its start or its last answer); the defaults if None.
        ops: Answers ``GET /metrics``, ``/health`` and ``/ready``
            (:class:`kmscore.frontends.ops.endpoint.OpsRoutes`); None: 404.
        any_region: Answer any Region a credential scope names, making its
            namespace on first use (``kms serve --any-region`` and ``--dev``, as
            moto and LocalStack); otherwise the Regions the data dir holds
            (:mod:`kmscore.service.regions`).

    Returns:
        The running server; ``await server.close()`` stops it.

    Raises:
        OSError: the address cannot be bound.
    """
    deployment = open_deployment(service, any_region=any_region)
    handler = KMSHandler(
        service, secure_transport=ssl_context is not None, ops=ops, deployment=deployment
    )
    loop = asyncio.get_running_loop()
    limits = limits or ConnectionLimits()
    over = over_limit_error(limits)
    connections = Connections(
        handler,
        CONTENT_TYPE,
        limits.max_connections,
        limits.idle_timeout,
        lambda: _Refusal(handler, over),
    )
    handler.refusals.schedule(loop)
    if sock is not None:
        server = await loop.create_server(connections, sock=sock, ssl=ssl_context)
    else:
        server = await loop.create_server(
            connections, host, port, ssl=ssl_context, reuse_port=reuse_port or None
        )
    bound = server.sockets[0].getsockname()
    return HttpServer(server, connections, handler, host, bound[1], ssl_context is not None)


def http_startup(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    on_ready: Callable[[HttpServer], None] | None = None,
    limits: ConnectionLimits | None = None,
    ops: Callable[[KeyService], OpsHandler] | None = None,
    any_region: bool = False,
) -> Callable[[KeyService, asyncio.AbstractEventLoop], Awaitable[HttpServer]]:
    """A startup hook for the socket daemon (``kms serve --http HOST:PORT``).

    The daemon calls it on its loop once the key service is open, and calls
    the returned server's ``close()`` at shutdown.

    Args:
        host: The address to listen on.
        port: The TCP port (0: any free one).
        ssl_context: Serve HTTPS with this context.
        on_ready: Called with the running server, e.g. to print its
            :attr:`HttpServer.env_line`.
        limits: Connections at once and idle timeout of the endpoint.
        ops: Makes the endpoint's operations handler for the service.
        any_region: Answer any Region (see :func:`start_http_server`).

    Returns:
        The hook: ``await hook(service, loop)`` starts the endpoint.
    """

    async def start(service: KeyService, loop: asyncio.AbstractEventLoop) -> HttpServer:
        server = await start_http_server(
            service,
            host,
            port,
            ssl_context=ssl_context,
            limits=limits,
            ops=ops(service) if ops is not None else None,
            any_region=any_region,
        )
        if on_ready is not None:
            on_ready(server)
        return server

    return start
