"""``/metrics``, ``/health`` and ``/ready``: on the HTTP endpoint, or on an address of their own.

On the AWS endpoint these answer ``GET`` only (every KMS request is a
``POST``), so the KMS path pays one string comparison for them. For a
deployment that serves only the Unix socket, ``kms serve --metrics HOST:PORT``
serves the same three paths on their own listener.

``/metrics`` takes the authentication chosen with ``--metrics-auth``:
``token`` (the default) wants ``Authorization: Bearer <token>`` with the
token from ``--metrics-token-env``, compared in constant time, and refuses
every scrape while no token is set; ``none`` lets anyone who reaches the
address scrape. ``/health`` and ``/ready`` say nothing but ok or why not,
and need no authentication.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from concurrent.futures import Executor
from pathlib import Path
from typing import Final

import orjson

from kmscore.service import KeyService, new_request_id

from ..awsjson.protocol import Answer, Connections, HttpRequest
from ..limits import ConnectionLimits
from .health import readiness
from .metrics import CONTENT_TYPE, render

__all__ = ["AUTH_MODES", "OpsRoutes", "OpsServer", "start_ops_server"]

AUTH_MODES: Final = ("none", "token")
_JSON: Final = b"application/json"
_METRICS_TYPE: Final = CONTENT_TYPE.encode("ascii")


def _json(status: int, body: object, *, request_id: str) -> Answer:
    return Answer(status, orjson.dumps(body), request_id, content_type=_JSON)


class OpsRoutes:
    """Answers ``GET /metrics``, ``/health`` and ``/ready``; None for any other request.

    Args:
        service: The key service to report on.
        executor: Where the store is read (never the event loop).
        auth: ``token`` or ``none`` (see the module docstring).
        token: The bearer token ``/metrics`` wants with ``token``.
        share_dir: The data dir whose HTTP workers' counts are added.
    """

    def __init__(
        self,
        service: KeyService,
        executor: Executor | None,
        *,
        auth: str = "token",
        token: str | None = None,
        share_dir: Path | None = None,
    ) -> None:
        if auth not in AUTH_MODES:
            raise ValueError(f"metrics auth {auth!r}: use one of {', '.join(AUTH_MODES)}")
        self.service = service
        self.executor = executor
        self.auth = auth
        self._token = b"Bearer " + token.encode() if token else None
        self.share_dir = share_dir

    def __call__(self, request: HttpRequest) -> Answer | Awaitable[Answer] | None:
        """The answer to an operations request, or None when it is not one."""
        if request.method != "GET":
            return None
        path = request.raw_path.partition("?")[0]
        request_id = new_request_id()
        if path == "/health":
            return _json(200, {"status": "ok"}, request_id=request_id)
        if path == "/ready":
            return self._in_pool(self._ready, request_id)
        if path == "/metrics":
            refusal = self._refuse(request, request_id)
            if refusal is not None:
                return refusal
            return self._in_pool(self._metrics, request_id)
        return None

    def _refuse(self, request: HttpRequest, request_id: str) -> Answer | None:
        if self.auth == "none":
            return None
        if self._token is None:
            return _json(
                403,
                {
                    "message": "/metrics needs a token: set --metrics-token-env, "
                    "or --metrics-auth none"
                },
                request_id=request_id,
            )
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._token):
            return _json(401, {"message": "/metrics wants Authorization: Bearer <token>"},
                         request_id=request_id)  # fmt: skip
        return None

    async def _in_pool(self, fn: object, request_id: str) -> Answer:
        loop = asyncio.get_running_loop()
        assert callable(fn)
        result: Answer = await loop.run_in_executor(self.executor, fn, request_id)
        return result

    def _ready(self, request_id: str) -> Answer:
        result = readiness(self.service)
        return _json(200 if result.ready else 503, result.as_json(), request_id=request_id)

    def _metrics(self, request_id: str) -> Answer:
        try:
            body = render(self.service, self.share_dir)
        except Exception as exc:
            return _json(503, {"message": f"metrics unavailable: {type(exc).__name__}"},
                         request_id=request_id)  # fmt: skip
        return Answer(200, body, request_id, content_type=_METRICS_TYPE)


class OpsServer:
    """The operations listener of ``kms serve --metrics HOST:PORT``."""

    def __init__(self, server: asyncio.Server, connections: Connections, host: str) -> None:
        """Wrap a started listener (made by :func:`start_ops_server`)."""
        self._server = server
        self._connections = connections
        self.port: int = server.sockets[0].getsockname()[1]
        self.host = host

    @property
    def url(self) -> str:
        """Where it listens (``http://host:port``)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop listening; let answers in progress go out (up to a second)."""
        self._server.close()
        await self._connections.shutdown(1.0)
        await self._server.wait_closed()


class _Closing(asyncio.Protocol):
    """A connection past the limit: closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Close it."""
        transport.close()


def _not_found(request: HttpRequest) -> Answer:
    return _json(404, {"message": "not found: try /metrics, /health or /ready"},
                 request_id=new_request_id())  # fmt: skip


async def start_ops_server(routes: OpsRoutes, host: str, port: int) -> OpsServer:
    """Serve ``routes`` alone on ``host:port`` (0: any free port).

    Raises:
        OSError: the address cannot be bound.
    """
    limits = ConnectionLimits(64, 60.0)

    def handle(request: HttpRequest) -> Answer | Awaitable[Answer]:
        answer = routes(request)
        return _not_found(request) if answer is None else answer

    connections = Connections(
        handle, "application/json", limits.max_connections, limits.idle_timeout, _Closing
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(connections, host, port)
    return OpsServer(server, connections, host)
