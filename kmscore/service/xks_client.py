"""kmscore as an XKS client: keys of an external key store, used through its proxy.

An ``EXTERNAL_KEY_STORE`` custom key store names a proxy that speaks AWS's
XKS Proxy API (``https://host`` and ``[/prefix]/kms/xks/v1``) and the
credential to sign its requests with (SigV4, service ``kms-xks-proxy``, the
data dir's Region). Each KMS key in it names an external key (``XksKeyId``).

Double encryption, as AWS does it: a key in an external key store also has
kmscore material of its own (made and wrapped under the root key like any
key's). Encrypt seals the plaintext under that material first (the KMS
layer), then has the proxy encrypt the result under the external key (the
external layer), both bound to the blob header and encryption context. So
neither the proxy alone nor this data dir alone can decrypt. The blob is::

    header | len(metadata) (1) | metadata | IV (12) | tag (16) | external ciphertext

where the external ciphertext is the proxy's encryption of the inner
``IV | ciphertext | tag``. Proxy failures become the errors AWS's table
gives (``XksProxy...`` for store operations, ``XksKey...`` for CreateKey,
``KMSInvalidStateException`` for cryptographic operations), with the
specification's messages.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime
import hashlib
import hmac
import http.client
import json
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from kmscore.crypto.encrypt_only import DataKeysByEncrypt
from kmscore.engine import AesGcmKey
from kmscore.errors import InvalidCiphertextException, KMSError, KMSInvalidStateException

if TYPE_CHECKING:
    from kmscore.service.call import Call

__all__ = [
    "CURRENT_CALL",
    "ProxyConfig",
    "XksAead",
    "XksFailure",
    "XksProxyClient",
]

#: The call in progress (set by the dispatcher): its caller and request id go
#: into each proxy request's requestMetadata.
CURRENT_CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar(
    "kmscore_current_call", default=None
)
SIGNING_SERVICE: Final = "kms-xks-proxy"
#: AWS KMS gives a proxy 250 ms; kmscore a little more by default.
DEFAULT_TIMEOUT: Final = 1.0
_IV: Final = 12
_TAG: Final = 16

# The failure scenarios of the spec's table, with its messages.
MESSAGES: Final = {
    "ValidationException": "AWS KMS cannot interpret the response from the external key store "
    "proxy. If you see this error repeatedly, report it to your external key store proxy "
    "administrator.",
    "InvalidStateException": "The external key associated with this KMS key in an external key "
    "store is not enabled in the external key manager. Enable the external key in the external "
    "key manager and retry the request.",
    "InvalidCiphertextException": "The external key store proxy rejected the request because the "
    "specified ciphertext or encryption context is corrupted, missing, or otherwise invalid.",
    "InvalidKeyUsageException": "The external key associated with this KMS key in an external key "
    "store does not support the requested operation. Enable the operation on the key in your "
    "external key manager, and try the request again.",
    "AuthenticationFailedException": "The external key store proxy rejected the request because it "
    "could not authenticate AWS KMS. Verify the XKS proxy authentication credentials for your "
    "external key store and update if necessary.",
    "AccessDeniedException": "The external key store proxy denied access to the operation. Verify "
    "that the user and the external key are both authorized for this operation, and try the "
    "request again.",
    "KeyNotFoundException": "The external key associated with this KMS key in an external key "
    "store was not found in its external key manager. If the external key ID associated with "
    "this KMS key is incorrect, create a new KMS key with the correct external key ID.",
    "InvalidUriPathException": "The external key store proxy rejected the request because of an "
    "invalid URI path. Verify the URI path for your external key store and update if necessary.",
    "UnsupportedOperationException": "The external key store proxy rejected the request because "
    "it does not support the requested operation. If you see this error repeatedly, report it to "
    "your external key store proxy administrator.",
    "DependencyTimeoutException": "The external key store proxy did not respond to the request in "
    "the time allotted. Retry the request. If you see this error repeatedly, report it to your "
    "external key store proxy administrator.",
    "ThrottlingException": "The external key store proxy rejected the request due to a very high "
    "request rate. Reduce the frequency of your calls using KMS keys in this external key store.",
    "InternalException": "The external key store proxy rejected the request because it cannot "
    "communicate with the external key manager. Verify that the external key store proxy "
    "configuration is correct and that the external key manager is available.",
    "Unreachable": "AWS KMS cannot communicate with the external key store proxy. This might be a "
    "transient network issue. If you see this error repeatedly, verify that your external key "
    "store proxy is active and is connected to the network, and that its endpoint URI is correct "
    "in your external keystore.",
    "Tls": "AWS KMS cannot establish a TLS connection to the external key store proxy. Verify the "
    "TLS configuration, including its certificate.",
    "Timeout": "AWS KMS rejected the request because the external key store proxy did not respond "
    "in time. Retry the request. If you see this error repeatedly, report it to your external key "
    "store proxy administrator.",
    "Malformed": "AWS KMS cannot interpret the response from the external key store proxy. If you "
    "see this error repeatedly, report it to your external key store proxy administrator.",
}
#: The ConnectionErrorCode a failed health check leaves on the store.
CONNECTION_ERROR: Final = {
    "AuthenticationFailedException": "INVALID_CREDENTIALS",
    "AccessDeniedException": "XKS_PROXY_ACCESS_DENIED",
    "InvalidUriPathException": "XKS_PROXY_INVALID_CONFIGURATION",
    "Unreachable": "XKS_PROXY_NOT_REACHABLE",
    "Tls": "XKS_PROXY_INVALID_TLS_CONFIGURATION",
    "Timeout": "XKS_PROXY_TIMED_OUT",
    "DependencyTimeoutException": "XKS_PROXY_TIMED_OUT",
    "ThrottlingException": "XKS_PROXY_TIMED_OUT",
}


class XksFailure(Exception):
    """A proxy request failed.

    ``scenario`` is the spec's errorName, or ``Unreachable``, ``Tls``,
    ``Timeout`` or ``Malformed`` for failures of the transport.
    """

    def __init__(self, scenario: str) -> None:
        super().__init__(MESSAGES.get(scenario, MESSAGES["Malformed"]))
        self.scenario = scenario if scenario in MESSAGES else "Malformed"

    @property
    def message(self) -> str:
        """The message AWS KMS gives for the scenario."""
        return str(self)

    @property
    def connection_error(self) -> str:
        """The ConnectionErrorCode of a health check that failed so."""
        return CONNECTION_ERROR.get(self.scenario, "XKS_PROXY_INVALID_RESPONSE")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Where a proxy is and how to sign for it."""

    uri_endpoint: str
    uri_path: str
    access_key_id: str
    secret: str
    region: str
    #: Connect here instead of the endpoint's host on port 443 (tests, a local proxy).
    address: tuple[str, int] | None = None
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT


def _sign(config: ProxyConfig, host: str, path: str, body: bytes) -> dict[str, str]:
    """SigV4 headers of a POST (host and x-amz-date signed, as the spec has KMS sign)."""
    now = datetime.datetime.now(datetime.UTC)
    stamp, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        ("POST", path, "", f"host:{host}\nx-amz-date:{stamp}\n", "host;x-amz-date", payload)
    )
    scope = f"{date}/{config.region}/{SIGNING_SERVICE}/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = hmac.digest(b"AWS4" + config.secret.encode(), date.encode(), "sha256")
    for part in (config.region, SIGNING_SERVICE, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    signature = hmac.digest(key, to_sign.encode(), "sha256").hex()
    return {
        "Host": host,
        "X-Amz-Date": stamp,
        "Content-Type": "application/json",
        "Authorization": f"AWS4-HMAC-SHA256 Credential={config.access_key_id}/{scope}, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}",
    }


def _metadata(operation: str, key_arn: str | None = None) -> dict[str, str]:
    call = CURRENT_CALL.get()
    out = {
        "kmsRequestId": call.request_id if call is not None else str(uuid.uuid4()),
        "kmsOperation": call.operation if call is not None else operation,
    }
    if operation != "GetHealthStatus":
        out["awsPrincipalArn"] = call.caller.arn if call is not None else "kmscore"
    if key_arn is not None:
        out["kmsKeyArn"] = key_arn
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _field(answer: dict[str, Any], name: str, *, optional: bool = False) -> bytes:
    value = answer.get(name)
    if value is None and optional:
        return b""
    if not isinstance(value, str):
        raise XksFailure("Malformed")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise XksFailure("Malformed") from None


class XksProxyClient:
    """Requests to one proxy: health, key metadata, encrypt, decrypt."""

    def __init__(self, config: ProxyConfig) -> None:
        """Talk to the proxy ``config`` names."""
        self.config = config
        self._host = config.uri_endpoint.removeprefix("https://")

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One signed request; the decoded answer.

        Raises:
            XksFailure: the proxy answered an error, or could not be reached,
                or answered something that is not the spec's.
        """
        body = json.dumps(payload, separators=(",", ":")).encode()
        full = self.config.uri_path + path
        host, port = self.config.address or (self._host, 443)
        context = ssl.create_default_context(cafile=self.config.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        conn = http.client.HTTPSConnection(host, port, timeout=self.config.timeout, context=context)
        try:
            headers = _sign(self.config, self._host, full, body)
            conn.request("POST", full, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        except ssl.SSLError:
            raise XksFailure("Tls") from None
        except TimeoutError:
            raise XksFailure("Timeout") from None
        except (OSError, http.client.HTTPException):
            raise XksFailure("Unreachable") from None
        finally:
            conn.close()
        try:
            decoded = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise XksFailure("Malformed") from None
        if not isinstance(decoded, dict):
            raise XksFailure("Malformed")
        if answer.status != 200:
            raise XksFailure(str(decoded.get("errorName", "Malformed")))
        return decoded

    def health(self) -> dict[str, Any]:
        """GetHealthStatus (the store operation's name in requestMetadata).

        Raises:
            XksFailure: as :meth:`_post`, or a fleet with no usable manager.
        """
        answer = self._post("/health", {"requestMetadata": _metadata("GetHealthStatus")})
        fleet = answer.get("ekmFleetDetails")
        if not isinstance(fleet, list) or not fleet:
            raise XksFailure("Malformed")
        if all(isinstance(m, dict) and m.get("healthStatus") == "UNAVAILABLE" for m in fleet):
            raise XksFailure("InternalException")
        return answer

    def metadata(self, xks_key_id: str, key_arn: str | None) -> dict[str, Any]:
        """GetKeyMetadata of an external key.

        Raises:
            XksFailure: as :meth:`_post`.
        """
        return self._post(
            f"/keys/{xks_key_id}/metadata",
            {"requestMetadata": _metadata("DescribeKey", key_arn)},
        )

    def encrypt(
        self, xks_key_id: str, key_arn: str, plaintext: bytes, aad: bytes
    ) -> tuple[bytes, bytes, bytes, bytes]:
        """Encrypt under the external key: (metadata, IV, tag, ciphertext), CDIV checked.

        Raises:
            XksFailure: as :meth:`_post`, or an answer whose integrity value,
                lengths or metadata size are wrong.
        """
        answer = self._post(
            f"/keys/{xks_key_id}/encrypt",
            {
                "requestMetadata": _metadata("Encrypt", key_arn),
                "plaintext": _b64(plaintext),
                "additionalAuthenticatedData": _b64(aad),
                "encryptionAlgorithm": "AES_GCM",
                "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
            },
        )
        ciphertext = _field(answer, "ciphertext")
        iv = _field(answer, "initializationVector")
        tag = _field(answer, "authenticationTag")
        meta = _field(answer, "ciphertextMetadata", optional=True)
        integrity = _field(answer, "ciphertextDataIntegrityValue")
        if (
            len(iv) != _IV
            or len(tag) != _TAG
            or len(meta) > 20
            or len(ciphertext) != len(plaintext)
        ):
            raise XksFailure("Malformed")
        expected = hashlib.sha256(aad + meta + iv + ciphertext + tag).digest()
        if not hmac.compare_digest(expected, integrity):
            raise XksFailure("Malformed")
        return meta, iv, tag, ciphertext

    def decrypt(
        self,
        xks_key_id: str,
        key_arn: str,
        parts: tuple[bytes, bytes, bytes, bytes],
        aad: bytes,
    ) -> bytes:
        """Decrypt (metadata, IV, tag, ciphertext) under the external key.

        Raises:
            XksFailure: as :meth:`_post`, or a plaintext of the wrong length.
        """
        meta, iv, tag, ciphertext = parts
        payload: dict[str, Any] = {
            "requestMetadata": _metadata("Decrypt", key_arn),
            "ciphertext": _b64(ciphertext),
            "encryptionAlgorithm": "AES_GCM",
            "additionalAuthenticatedData": _b64(aad),
            "initializationVector": _b64(iv),
            "authenticationTag": _b64(tag),
        }
        if meta:
            payload["ciphertextMetadata"] = _b64(meta)
        plaintext = _field(self._post(f"/keys/{xks_key_id}/decrypt", payload), "plaintext")
        if len(plaintext) != len(ciphertext):
            raise XksFailure("Malformed")
        return plaintext


Buffer = bytes | bytearray | memoryview


class XksAead(DataKeysByEncrypt):
    """The engine's AEAD interface for a key in an external key store: both layers."""

    __slots__ = ("_client", "_inner", "_key_arn", "_xks_key_id")

    def __init__(
        self, inner: AesGcmKey, client: XksProxyClient, xks_key_id: str, key_arn: str
    ) -> None:
        """Seal under ``inner`` (the KMS layer), then through ``client`` (the external layer)."""
        self._inner, self._client = inner, client
        self._xks_key_id, self._key_arn = xks_key_id, key_arn

    def __repr__(self) -> str:
        return "<XksAead>"

    def _outer(self, inner: bytes, aad: bytes) -> bytes:
        try:
            meta, iv, tag, ciphertext = self._client.encrypt(
                self._xks_key_id, self._key_arn, inner, aad
            )
        except XksFailure as exc:
            raise KMSInvalidStateException(exc.message) from None
        return bytes([len(meta)]) + meta + iv + tag + ciphertext

    def encrypt(self, plaintext: Buffer, aad: Buffer = b"", header: Buffer = b"") -> bytes:
        """``header | external layer of (IV | ciphertext | tag)``.

        Raises:
            KMSInvalidStateException: the proxy failed (the spec's message).
        """
        inner = self._inner.encrypt(plaintext, aad, b"")
        return bytes(header) + self._outer(inner, bytes(aad))

    def decrypt(self, data: Buffer, aad: Buffer = b"", offset: int = 0) -> bytes:
        """Open both layers of a blob made by :meth:`encrypt`.

        Raises:
            InvalidCiphertextException: the blob is malformed, or the KMS layer
                does not authenticate.
            KMSInvalidStateException: the proxy failed or refused (a wrong
                context fails there first, as AWS answers).
        """
        b = bytes(data)[offset:]
        if not b:
            raise InvalidCiphertextException()
        n = b[0]
        if n > 20 or len(b) < 1 + n + _IV + _TAG + _IV + _TAG:
            raise InvalidCiphertextException()
        meta, rest = b[1 : 1 + n], b[1 + n :]
        parts = (meta, rest[:_IV], rest[_IV : _IV + _TAG], rest[_IV + _TAG :])
        try:
            inner = self._client.decrypt(self._xks_key_id, self._key_arn, parts, bytes(aad))
        except XksFailure as exc:
            raise KMSInvalidStateException(exc.message) from None
        return self._inner.decrypt(inner, aad, 0)

    def seal(self, iv: Buffer, plaintext: Buffer, aad: Buffer = b"") -> bytes:
        """Not offered: an external key's blobs are only made by :meth:`encrypt`.

        Raises:
            KMSInvalidStateException: always.
        """
        raise KMSInvalidStateException("Keys in external key stores do not seal raw items.")

    def open(self, iv: Buffer, data: Buffer, aad: Buffer = b"") -> bytes:
        """Not offered (see :meth:`seal`).

        Raises:
            KMSInvalidStateException: always.
        """
        raise KMSInvalidStateException("Keys in external key stores do not open raw items.")

    def seal_many(self, plaintexts: Sequence[Buffer], aads: Sequence[Buffer]) -> list[bytes]:
        """Not offered (see :meth:`seal`).

        Raises:
            KMSInvalidStateException: always.
        """
        raise KMSInvalidStateException("Keys in external key stores do not seal raw items.")

    def open_many(self, sealed: Sequence[Buffer], aads: Sequence[Buffer]) -> list[bytes | None]:
        """Open items of ``IV | ...`` made by :meth:`encrypt` without header.

        Raises:
            KMSInvalidStateException: the proxy failed.
        """
        out: list[bytes | None] = []
        for item, aad in zip(sealed, aads, strict=True):
            try:
                out.append(self.decrypt(item, aad, 0))
            except InvalidCiphertextException:
                out.append(None)
            except KMSError:
                raise
        return out
