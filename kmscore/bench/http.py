"""A lean AWS KMS JSON client for the ``http`` target: one keep-alive connection, SigV4.

boto3's client spends most of a call in its own machinery (parameter
validation, event hooks, retries), more than kmscore's endpoint spends
serving it, so timing an endpoint through it times boto3. This client signs
requests with botocore's SigV4 signer, writes them on one HTTP/1.1
keep-alive socket per thread (TLS for ``https://`` endpoints: AWS KMS
itself), reads the answer with as little parsing as HTTP allows, and turns it
back into boto3's shapes (blobs as bytes). A KMS error is raised as
:class:`AWSError` with the AWS code. The timed calls are
:meth:`HttpKMS.prepared`: each input is signed once and replayed, so the
client's signing is not in the figures (the server still verifies every
request).

Credentials come from botocore's usual chain (environment, shared files,
``--profile``, instance roles) unless given.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["RESIGN_AFTER", "AWSError", "HttpKMS", "credentials_from_chain"]

#: Seconds a prepared request's signature is replayed before it is signed again
#: (AWS accepts a signature within 5 minutes of its time).
RESIGN_AFTER: Final = 240.0
RECV_BYTES: Final = 256 * 1024


class _Closed(ConnectionError):
    """The server closed the connection."""


#: Response members that are blobs (base64 on the wire).
_BLOBS: Final = frozenset(
    {
        "CiphertextBlob",
        "Plaintext",
        "Signature",
        "Mac",
        "PublicKey",
        "CiphertextForRecipient",
        "PrivateKeyCiphertextBlob",
        "PrivateKeyPlaintext",
    }
)


class AWSError(Exception):
    """An error answer: ``code`` is AWS's ``__type``, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int) -> None:
        """Keep the code, message and status."""
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def credentials_from_chain(profile: str | None = None) -> tuple[str, str, str | None] | None:
    """Access key id, secret and session token from botocore's chain, or None.

    Raises:
        ImportError: botocore is not installed.
    """
    import botocore.session  # type: ignore[import-untyped,import-not-found,unused-ignore]

    session = botocore.session.Session(profile=profile)
    found = session.get_credentials()
    if found is None:
        return None
    frozen = found.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: base64.b64decode(v) if k in _BLOBS and isinstance(v, str) else _decode(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _body(request: Mapping[str, Any]) -> bytes:
    return json.dumps(request, default=_default, separators=(",", ":")).encode()


def _operation(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


class HttpKMS:
    """boto3's KMS method names over one keep-alive connection.

    Args:
        endpoint_url: ``http://host:port`` or ``https://...``.
        region: The signing region.
        access_key: Access key id.
        secret_key: Secret access key.
        session_token: Session token of temporary credentials.
        timeout: Seconds to wait for a connection or an answer.

    Raises:
        ImportError: botocore is not installed.
        ValueError: The URL is not http(s)://host[:port].
    """

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Make a client; the connection opens on the first call."""
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from botocore.credentials import Credentials  # type: ignore[import-untyped,import-not-found,unused-ignore]

        url = urlsplit(endpoint_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{endpoint_url!r} is not an http(s)://host[:port] URL")
        self.url = endpoint_url.rstrip("/") + "/"
        self.host = url.netloc
        self._https = url.scheme == "https"
        self._timeout = timeout
        self._signer: Any = SigV4Auth(
            Credentials(access_key, secret_key, session_token), "kms", region
        )
        self._sock: socket.socket | None = None
        self._buffer = bytearray()

    def _sign(self, operation: str, body: bytes) -> bytes:
        """The whole HTTP/1.1 request, signed now."""
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped,import-not-found,unused-ignore]

        signed = AWSRequest(
            method="POST",
            url=self.url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"TrentService.{operation}",
            },
        )
        self._signer.add_auth(signed)
        lines = [f"POST / HTTP/1.1\r\nHost: {self.host}"]
        lines += [f"{k}: {v}" for k, v in signed.headers.items() if k.lower() != "host"]
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "\r\n".join(lines).encode() + body

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Sign and send one request; return the answer (boto3's shape, without metadata).

        Raises:
            AWSError: The KMS answered with an error.
            OSError: The endpoint could not be reached.
        """
        return self._answer(*self._exchange(self._sign(operation, _body(request))))

    def prepared(self, operation: str, request: Mapping[str, Any]) -> Callable[[], dict[str, Any]]:
        """A call of one request, signed once and sent again as it is.

        The same signed bytes are replayed, as ``wrk`` replays them for
        bench/bench_http.py; every server verifies the signature each time (SigV4
        has no nonce). They are signed again after :data:`RESIGN_AFTER` seconds,
        before the signature's time is too far from the server's clock.
        """
        body = _body(request)
        raw, signed_at = self._sign(operation, body), time.monotonic()

        def send() -> dict[str, Any]:
            nonlocal raw, signed_at
            if time.monotonic() - signed_at > RESIGN_AFTER:
                raw, signed_at = self._sign(operation, body), time.monotonic()
            return self._answer(*self._exchange(raw))

        return send

    def _answer(self, status: int, data: bytes) -> dict[str, Any]:
        parsed = json.loads(data) if data else {}
        if status != 200:
            code = str(parsed.get("__type", f"HTTP{status}")).rpartition("#")[2]
            message = parsed.get("message") or parsed.get("Message") or ""
            raise AWSError(code, str(message), status)
        return _decode(parsed)  # type: ignore[no-any-return]

    def _connect(self) -> socket.socket:
        url = urlsplit(self.url)
        port = url.port or (443 if self._https else 80)
        sock = socket.create_connection((url.hostname, port), timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._https:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=url.hostname)
        return sock

    def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        """Send a request on the keep-alive connection; (status, body) of the answer."""
        for attempt in (0, 1):
            fresh = self._sock is None
            if self._sock is None:
                self._sock = self._connect()
                self._buffer = bytearray()
            try:
                self._sock.sendall(raw)
                return self._read()
            except (ConnectionError, _Closed):
                # A keep-alive connection the server had closed: one try on a new one.
                self.close()
                if attempt or fresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(RECV_BYTES)
        if not chunk:
            raise _Closed
        self._buffer += chunk

    def _read(self) -> tuple[int, bytes]:
        buf = self._buffer
        while (end := buf.find(b"\r\n\r\n")) < 0:
            self._fill()
            buf = self._buffer
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        status = int(head[0].split(" ", 2)[1])
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunked()
        else:
            length = int(fields.get("content-length", "0"))
            while len(self._buffer) < length:
                self._fill()
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            while (end := self._buffer.find(b"\r\n")) < 0:
                self._fill()
            size = int(bytes(self._buffer[:end]).split(b";")[0], 16)
            del self._buffer[: end + 2]
            while len(self._buffer) < size + 2:
                self._fill()
            out += self._buffer[:size]
            del self._buffer[: size + 2]
            if size == 0:
                return bytes(out)

    def __getattr__(self, name: str) -> Any:
        """``client.generate_data_key(**request)`` calls GenerateDataKey."""
        if name.startswith("_") or not re.fullmatch(r"[a-z_]+", name):
            raise AttributeError(name)
        operation = _operation(name)
        return lambda **request: self.call(operation, request)

    def close(self) -> None:
        """Close the connection (the next call opens another)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
