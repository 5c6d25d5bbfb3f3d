"""An XKS proxy to test against: kmscore's, over TLS, and a signed-request client.

Requests are signed with botocore's own SigV4 signer (service
``kms-xks-proxy``), an implementation independent of the proxy's verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kmscore.frontends.xks.server import XksServer, start_xks_server, tls_context
from kmscore.service import KeyService, open_service
from kmscore.service.xks_proxy import create_proxy_credential

REGION = "eu-west-1"
ACCOUNT = "111122223333"


def self_signed(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``host`` (and 127.0.0.1): (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "proxy.pem", directory / "proxy.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class Proxy:
    """A running proxy and what a client needs."""

    service: KeyService
    server: XksServer
    cert: Path
    access_key_id: str
    secret: str
    loop: asyncio.AbstractEventLoop

    @property
    def port(self) -> int:
        return self.server.port

    def post(
        self,
        path: str,
        payload: Any,
        *,
        access_key_id: str | None = None,
        secret: str | None = None,
        method: str = "POST",
        region: str = REGION,
        sign: bool = True,
    ) -> tuple[int, Any]:
        """Send one request; return the status and the decoded JSON answer."""
        return signed_post(
            self.port,
            self.cert,
            access_key_id or self.access_key_id,
            secret or self.secret,
            path,
            payload,
            method=method,
            region=region,
            sign=sign,
        )


def signed_post(
    port: int,
    cert: Path,
    access_key_id: str,
    secret: str,
    path: str,
    payload: Any,
    *,
    method: str = "POST",
    region: str = REGION,
    sign: bool = True,
) -> tuple[int, Any]:
    """One request to a proxy on ``localhost:port``, signed by botocore's SigV4."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    url = f"https://localhost:{port}{path}"
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    if sign:
        SigV4Auth(Credentials(access_key_id, secret), "kms-xks-proxy", region).add_auth(request)
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request(method, path, body=body, headers=dict(request.headers.items()))
        answer = conn.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else None
    finally:
        conn.close()


@contextlib.contextmanager
def running_proxy(data_dir: Path, **options: Any) -> Iterator[Proxy]:
    """A key service on ``data_dir`` served as an XKS proxy over TLS."""
    service = open_service(data_dir, region=REGION, account=ACCOUNT, audit=True)
    access_key_id, secret = create_proxy_credential(service, "xks-proxy")
    cert, key = self_signed(data_dir.parent)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait()
    try:
        server = asyncio.run_coroutine_threadsafe(
            start_xks_server(
                service,
                "127.0.0.1",
                0,
                ssl_context=tls_context(str(cert), str(key)),
                **options,
            ),
            loop,
        ).result(10)
        try:
            yield Proxy(service, server, cert, access_key_id, secret, loop)
        finally:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        service.close()
