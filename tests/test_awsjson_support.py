"""Shared helpers of the HTTP endpoint tests (tests/test_awsjson_*.py).

A real endpoint on a free port, served by an event loop in a thread of the test
process (so tests can add users and read the audit trail through the same key
service), and real boto3 clients pointed at it. The data dir uses a Region and
account other than the defaults, so every ARN a client sees proves it comes from
the data dir's settings.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from kmscore.frontends.awsjson import HttpServer, start_http_server
from kmscore.frontends.limits import ConnectionLimits
from kmscore.service import KeyService, open_service
from kmscore.service.refusals import RefusalLimits, recorder_for

REGION = "eu-west-3"
ACCOUNT = "444455556666"

# No retries: a test wants the first answer, and a 500 retried four times
# would only hide it.
NO_RETRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@dataclass
class Endpoint:
    """A running endpoint and what clients need to reach it."""

    service: KeyService
    url: str
    data_dir: Path
    access_key_id: str
    secret: str
    server: HttpServer
    loop: asyncio.AbstractEventLoop

    @property
    def host(self) -> str:
        """``host:port`` of the endpoint."""
        return self.url.split("//", 1)[1]

    def client(
        self,
        access_key_id: str | None = None,
        secret: str | None = None,
        *,
        region: str = REGION,
        **options: Any,
    ) -> Any:
        """A boto3 KMS client for the admin, or for the given access key."""
        return boto3.client(
            "kms",
            endpoint_url=options.pop("endpoint_url", self.url),
            region_name=region,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret or self.secret,
            config=options.pop("config", NO_RETRY),
            **options,
        )


def admin_credentials(data_dir: Path) -> tuple[str, str]:
    """The access key id and secret that init wrote to ``<data-dir>/credentials``."""
    parser = configparser.ConfigParser()
    parser.read(data_dir / "credentials")
    return parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]


@contextlib.contextmanager
def running_endpoint(
    data_dir: Path,
    *,
    limits: ConnectionLimits | None = None,
    refusal_limits: RefusalLimits | None = None,
    ops: Any = None,
    any_region: bool = False,
    **service_options: Any,
) -> Iterator[Endpoint]:
    """Open a key service on ``data_dir`` and serve it over HTTP until the block ends.

    ``ops`` makes the endpoint's ``/metrics``, ``/health``, ``/ready`` handler
    from the service (none by default).
    """
    service_options.setdefault("region", REGION)
    service_options.setdefault("account", ACCOUNT)
    service_options.setdefault("audit", True)
    service = open_service(data_dir, **service_options)
    recorder_for(service, refusal_limits)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=_run_loop, args=(loop, started), daemon=True)
    thread.start()
    started.wait()
    try:
        server = asyncio.run_coroutine_threadsafe(
            start_http_server(
                service,
                "127.0.0.1",
                0,
                limits=limits,
                ops=ops(service) if ops else None,
                any_region=any_region,
            ),
            loop,
        ).result(10)
        try:
            key_id, secret = admin_credentials(data_dir)
            yield Endpoint(service, server.url, data_dir, key_id, secret, server, loop)
        finally:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        service.close()


def _run_loop(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(started.set)
    loop.run_forever()


def audit_records(data_dir: Path) -> list[dict[str, Any]]:
    """Every audit record of the data dir, oldest first (journals chained first)."""
    import json

    from kmscore.audit.chainer import drain_journals

    drain_journals(data_dir)
    out = []
    for segment in sorted((data_dir / "audit").glob("segment-*.jsonl")):
        for line in segment.read_bytes().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def flush_audit(service: KeyService) -> None:
    """Wait until the trail has written what it acknowledged (it is, on return)."""
    trail = getattr(service.auditor, "trail", None)
    if trail is not None:
        trail.flush()


@dataclass
class Answer:
    """A raw HTTP answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        import json

        return json.loads(self.body)


def signed_request(
    endpoint: Endpoint,
    target: str | None,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    access_key_id: str | None = None,
    secret: str | None = None,
    region: str = REGION,
    path: str = "/",
) -> tuple[str, str, dict[str, str], bytes]:
    """A request signed by botocore's own SigV4 signer: (method, path, headers, body)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    all_headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target is not None:
        all_headers["X-Amz-Target"] = target
    all_headers.update(headers or {})
    request = AWSRequest(method="POST", url=endpoint.url + path, data=body, headers=all_headers)
    credentials = Credentials(access_key_id or endpoint.access_key_id, secret or endpoint.secret)
    SigV4Auth(credentials, "kms", region).add_auth(request)
    return "POST", path, dict(request.headers.items()), body


def send(
    endpoint: Endpoint,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    connection: Any = None,
) -> Answer:
    """Send one raw request (on ``connection``, an http.client connection, if given)."""
    import http.client

    conn = connection or http.client.HTTPConnection(endpoint.host, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        if connection is None:
            conn.close()


def call(endpoint: Endpoint, operation: str, members: dict[str, Any]) -> Answer:
    """A signed call of any operation by name, extensions included, as raw JSON."""
    import json

    body = json.dumps(members).encode()
    return send(endpoint, *signed_request(endpoint, f"TrentService.{operation}", body))
