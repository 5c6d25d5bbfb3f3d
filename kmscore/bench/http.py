"""A lean AWS KMS JSON client for the ``http`` target: one keep-alive connection, SigV4.

boto3's client spends most of a call in its own machinery (parameter
validation, event hooks, retries), more than kmscore's endpoint spends
serving it, so timing an endpoint through it times boto3. This client signs
each request with botocore's SigV4 signer, sends it on one HTTP/1.1
keep-alive connection per thread (HTTPS for ``https://`` endpoints: AWS KMS
itself), and turns the answer back into boto3's shapes (blobs as bytes). A
KMS error is raised as :class:`AWSError` with the AWS code.

Credentials come from botocore's usual chain (environment, shared files,
``--profile``, instance roles) unless given.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["AWSError", "HttpKMS", "credentials_from_chain"]

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
        self._conn: http.client.HTTPConnection | None = None

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and return the answer (boto3's shape, without metadata).

        Raises:
            AWSError: The KMS answered with an error.
            OSError: The endpoint could not be reached.
        """
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped,import-not-found,unused-ignore]

        body = json.dumps(request, default=_default, separators=(",", ":")).encode()
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
        headers = dict(signed.headers.items())
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = (
                    http.client.HTTPSConnection(self.host, timeout=self._timeout)
                    if self._https
                    else http.client.HTTPConnection(self.host, timeout=self._timeout)
                )
            try:
                self._conn.request("POST", "/", body, headers)
                answer = self._conn.getresponse()
                data = answer.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A keep-alive connection the server closed; one fresh try.
                self.close()
                if attempt:
                    raise
        parsed = json.loads(data) if data else {}
        if answer.status != 200:
            code = str(parsed.get("__type", f"HTTP{answer.status}")).rpartition("#")[2]
            message = parsed.get("message") or parsed.get("Message") or ""
            raise AWSError(code, str(message), answer.status)
        return _decode(parsed)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        """``client.generate_data_key(**request)`` calls GenerateDataKey."""
        if name.startswith("_") or not re.fullmatch(r"[a-z_]+", name):
            raise AttributeError(name)
        operation = _operation(name)
        return lambda **request: self.call(operation, request)

    def close(self) -> None:
        """Close the connection (the next call opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
