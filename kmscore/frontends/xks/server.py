"""Listening for XKS Proxy API requests (HTTPS; plain HTTP only when asked)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from kmscore.service import KeyService

from ..awsjson.protocol import Connections
from ..awsjson.server import endpoint_url
from ..limits import ConnectionLimits
from .handler import DEFAULT_URI_PATH, XksHandler

__all__ = ["XksServer", "start_xks_server", "tls_context", "xks_startup"]

_CONTENT_TYPE: Final = "application/json"
_SHUTDOWN_SECONDS: Final = 5.0


class _Busy(asyncio.Protocol):
    """The connection past the limit: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class XksServer:
    """A running XKS proxy endpoint."""

    def __init__(
        self, server: asyncio.Server, connections: Connections, handler: XksHandler, url: str
    ) -> None:
        """Wrap a started server (made by :func:`start_xks_server`)."""
        self._server, self._connections, self._handler = server, connections, handler
        self.port = server.sockets[0].getsockname()[1]
        self.url = url

    @property
    def uri(self) -> str:
        """The endpoint and path to configure in AWS KMS (``XksProxyUriEndpoint`` + path)."""
        return self.url + self._handler.uri_path

    async def close(self) -> None:
        """Stop accepting, let requests in flight finish, release the pool."""
        self._server.close()
        await self._connections.shutdown(_SHUTDOWN_SECONDS)
        await self._server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self._handler.close)
        self._handler.refusals.flush(everything=True)


def tls_context(certificate: str, private_key: str) -> ssl.SSLContext:
    """A server context of TLS 1.2 or later, as the XKS specification requires.

    Raises:
        OSError, ssl.SSLError: the files cannot be read or do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, private_key)
    return context


async def start_xks_server(
    service: KeyService,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    uri_path: str | Sequence[str] = DEFAULT_URI_PATH,
    limits: ConnectionLimits | None = None,
    region: str | None = None,
) -> XksServer:
    """Serve the XKS Proxy API for ``service`` on the running loop.

    Args:
        service: The key service whose keys are the external keys.
        host: The address to listen on.
        port: The TCP port; 0 picks a free one.
        ssl_context: HTTPS with this context; None for plain HTTP (only
            behind a proxy that terminates TLS: AWS KMS speaks HTTPS only).
        uri_path: ``[/prefix]/kms/xks/v1``, or several (one per tenant).
        limits: Connections at once and the idle timeout.
        region: The AWS Region whose KMS signs requests (default: the data dir's).

    Raises:
        OSError: the address cannot be bound.
        ValueError: a malformed ``uri_path``.
    """
    handler = XksHandler(
        service, uri_path=uri_path, secure_transport=ssl_context is not None, region=region
    )
    limits = limits or ConnectionLimits()
    connections = Connections(
        handler, _CONTENT_TYPE, limits.max_connections, limits.idle_timeout, _Busy
    )
    loop = asyncio.get_running_loop()
    handler.refusals.schedule(loop)
    server = await loop.create_server(connections, host, port, ssl=ssl_context)
    bound = server.sockets[0].getsockname()[1]
    return XksServer(
        server, connections, handler, endpoint_url(host, bound, tls=ssl_context is not None)
    )


def xks_startup(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    uri_path: str | Sequence[str] = DEFAULT_URI_PATH,
    on_ready: Callable[[XksServer], None] | None = None,
    region: str | None = None,
) -> Callable[[KeyService, asyncio.AbstractEventLoop], Awaitable[XksServer]]:
    """A startup hook for the socket daemon (``kms serve --xks HOST:PORT``)."""

    async def start(service: KeyService, loop: asyncio.AbstractEventLoop) -> XksServer:
        server = await start_xks_server(
            service, host, port, ssl_context=ssl_context, uri_path=uri_path, region=region
        )
        if on_ready is not None:
            on_ready(server)
        return server

    return start
