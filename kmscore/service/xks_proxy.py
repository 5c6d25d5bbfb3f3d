"""kmscore as an XKS proxy: AWS's External Key Store Proxy API over kmscore's own keys.

AWS KMS (and through it S3, EBS, RDS...) can use a key that stays here: an
``EXTERNAL_KEY_STORE`` custom key store in AWS points at ``kms serve --xks``,
and each KMS key in it names a kmscore key by its id (the ``externalKeyId``).
This module does the four operations of the specification (GetKeyMetadata,
Encrypt, Decrypt, GetHealthStatus) for an authenticated proxy credential;
:mod:`kmscore.frontends.xks` speaks the HTTP.

- Only SYMMETRIC_DEFAULT ENCRYPT_DECRYPT keys are external keys (the
  specification's v1 has AES-256 only); any other id is ``KeyNotFoundException``.
- Each request is authorized like a KMS call of the proxy credential's user
  (``kms:DescribeKey``, ``kms:Encrypt``, ``kms:Decrypt`` on the key) and
  audited like one, under the XKS operation's name, with the request metadata
  AWS sent (who called AWS KMS, which KMS key, the KMS request id) and never
  the plaintext, ciphertext or additional authenticated data.
- Encryption uses the key's current material version and counts it against
  the AES-GCM limit, as KMS encryption does; the version travels in the
  ``ciphertextMetadata`` (``kx`` + 4 bytes), which the AAD binds as the
  specification asks: ``len16(aad) || aad || len8(metadata) || metadata``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any, Final

from kmscore.errors import (
    InvalidCiphertextException,
    InvalidKeyUsageException,
    KMSError,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState, state_rule
from kmscore.service.call import Call
from kmscore.service.key_service import KeyService
from kmscore.service.symmetric import current_version, known_version, open_parts, seal_parts

__all__ = [
    "HEALTH",
    "MAX_AAD",
    "MAX_PLAINTEXT",
    "XKS_OPERATIONS",
    "XksKeyNotFound",
    "cdiv",
    "create_proxy_credential",
    "decrypt",
    "encrypt",
    "get_health_status",
    "get_key_metadata",
    "proxy_policy",
]

#: The largest plaintext (and ciphertext) the proxy takes; the spec's minimum.
MAX_PLAINTEXT: Final = 4300
#: The largest additional authenticated data the proxy takes; the spec's minimum.
MAX_AAD: Final = 8192
_MAX_METADATA: Final = 20
_METADATA_PREFIX: Final = b"kx"
IV_LENGTH: Final = 12
TAG_LENGTH: Final = 16
#: The XKS operations, each with the KMS action that authorizes it.
XKS_OPERATIONS: Final = {
    "XksGetKeyMetadata": "kms:DescribeKey",
    "XksEncrypt": "kms:Encrypt",
    "XksDecrypt": "kms:Decrypt",
    "XksGetHealthStatus": None,
}
HEALTH: Final = "GetHealthStatus"


class XksKeyNotFound(NotFoundException):
    """The external key id names no key this proxy serves."""


def proxy_policy(account: str) -> str:
    """The identity policy of a proxy credential: the three actions on the account's keys."""
    return (
        '{"Version":"2012-10-17","Statement":[{"Sid":"XksProxy","Effect":"Allow",'
        '"Action":["kms:DescribeKey","kms:Encrypt","kms:Decrypt"],'
        f'"Resource":"arn:aws:kms:*:{account}:key/*"}}]}}'
    )


def create_proxy_credential(service: KeyService, name: str) -> tuple[str, str]:
    """A new user for AWS KMS to sign XKS requests as, with the proxy policy.

    Returns:
        The access key id (``AKIA`` + 16 base32 characters: the XKS pattern
        ``[A-Z2-7]{20,30}``) and the raw secret access key (32 random bytes,
        base64: 44 characters, within the XKS 43-64).

    Raises:
        ValidationException: a bad name.
        AlreadyExistsException: the name is taken.
    """
    secret = base64.b64encode(os.urandom(32)).decode("ascii")
    _, access_key_id, secret = service.principals.add(
        name, policy=proxy_policy(service.account), secret=secret
    )
    return access_key_id, secret


# --- request members --------------------------------------------------------------


def _b64(data: dict[str, Any], name: str, *, required: bool, limit: int) -> bytes | None:
    """A base64 member, decoded and checked.

    Raises:
        ValidationException: missing, not base64, or empty where it must not be.
        UnsupportedOperationException: longer than this proxy supports.
    """
    value = data.get(name)
    if value is None:
        if required:
            raise ValidationException(f"{name} is required.")
        return None
    if not isinstance(value, str):
        raise ValidationException(f"{name} must be a Base64 string.")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValidationException(f"{name} is not valid Base64.") from None
    if len(raw) > limit:
        raise UnsupportedOperationException(
            f"{name} is {len(raw)} bytes; this proxy takes at most {limit}."
        )
    return raw


def _algorithm(data: dict[str, Any]) -> None:
    if data.get("encryptionAlgorithm") != "AES_GCM":
        raise ValidationException("encryptionAlgorithm must be AES_GCM.")


def _key(call: Call, external_key_id: str) -> KeyRecord:
    """The key an external key id names: a symmetric encryption key of this account.

    Raises:
        XksKeyNotFound: no such key, or not an AES-256 encrypt/decrypt key.
    """
    try:
        key = call.resolve(external_key_id, allow_alias=False)
    except NotFoundException:
        raise XksKeyNotFound(f"No external key {external_key_id} is served here.") from None
    return key


#: What GetKeyMetadata says a key can do, in the spec's (PKCS#11's) words.
_USAGES: Final = {
    "ENCRYPT_DECRYPT": ["ENCRYPT", "DECRYPT"],
    "SIGN_VERIFY": ["SIGN", "VERIFY"],
    "GENERATE_VERIFY_MAC": ["SIGN", "VERIFY"],
    "KEY_AGREEMENT": ["DERIVE"],
}


def _aes_key(call: Call, external_key_id: str) -> KeyRecord:
    """The key, checked to be an AES-256 encrypt/decrypt key.

    Raises:
        XksKeyNotFound: no such key.
        InvalidKeyUsageException: the key does not encrypt and decrypt.
    """
    key = _key(call, external_key_id)
    if key.key_spec != "SYMMETRIC_DEFAULT" or key.key_usage != "ENCRYPT_DECRYPT":
        raise InvalidKeyUsageException(
            f"{external_key_id} is a {key.key_spec} {key.key_usage} key, not AES-256 "
            "ENCRYPT_DECRYPT."
        )
    return key


def cdiv(aad: bytes | None, metadata: bytes, iv: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    """The Ciphertext Data Integrity Value (SHA-256 over the fields, Appendix C)."""
    return hashlib.sha256((aad or b"") + metadata + iv + ciphertext + tag).digest()


def _aad(aad: bytes | None, metadata: bytes) -> bytes:
    aad = aad or b""
    return len(aad).to_bytes(2, "big") + aad + len(metadata).to_bytes(1, "big") + metadata


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the operations ------------------------------------------------------------------


def get_key_metadata(call: Call, external_key_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """GetKeyMetadata: the key's spec, usages and status (any key state)."""
    del data
    key = _key(call, external_key_id)
    call.authorize(key, action="kms:DescribeKey")
    status = "ENABLED" if call.service.key_state(key) is KeyState.ENABLED else "DISABLED"
    spec = "AES_256" if key.key_spec == "SYMMETRIC_DEFAULT" else key.key_spec
    return {"keySpec": spec, "keyUsage": _USAGES.get(key.key_usage, []), "keyStatus": status}


def encrypt(call: Call, external_key_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Encrypt: AES-GCM under the key's current material version.

    Raises:
        ValidationException: a member is missing or malformed.
        UnsupportedOperationException: a member is larger than supported.
        KMSInvalidStateException, DisabledException: the key is not enabled.
    """
    plaintext = _b64(data, "plaintext", required=True, limit=MAX_PLAINTEXT)
    assert plaintext is not None
    _algorithm(data)
    aad = _b64(data, "additionalAuthenticatedData", required=False, limit=MAX_AAD)
    integrity = data.get("ciphertextDataIntegrityValueAlgorithm")
    if integrity is not None and integrity != "SHA_256":
        raise ValidationException("ciphertextDataIntegrityValueAlgorithm must be SHA_256.")
    key = _aes_key(call, external_key_id)
    call.check_state(key)
    call.authorize(key, action="kms:Encrypt")
    svc = call.service
    key, kv = current_version(svc, key, 1)
    metadata = _METADATA_PREFIX + kv.version.to_bytes(4, "big")
    iv = os.urandom(IV_LENGTH)
    ciphertext, tag = seal_parts(kv, iv, plaintext, _aad(aad, metadata))
    out = {
        "ciphertext": _encode(ciphertext),
        "ciphertextMetadata": _encode(metadata),
        "initializationVector": _encode(iv),
        "authenticationTag": _encode(tag),
    }
    if integrity is not None:
        # Computed before the check decryption, as Appendix C of the spec asks.
        digest = cdiv(aad, metadata, iv, ciphertext, tag)
        if open_parts(kv, iv, ciphertext, tag, _aad(aad, metadata)) != plaintext:
            raise InvalidCiphertextException()  # pragma: no cover - a failing engine
        out["ciphertextDataIntegrityValue"] = _encode(digest)
    return out


def decrypt(call: Call, external_key_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Decrypt: AES-GCM with the material version the ciphertext metadata names.

    Raises:
        ValidationException: a member is missing or malformed.
        InvalidCiphertextException: the metadata, IV, tag, ciphertext or AAD
            are not those of an encryption by this key.
        KMSInvalidStateException, DisabledException: the key is not enabled.
    """
    ciphertext = _b64(data, "ciphertext", required=True, limit=MAX_PLAINTEXT)
    _algorithm(data)
    iv = _b64(data, "initializationVector", required=True, limit=16)
    tag = _b64(data, "authenticationTag", required=True, limit=TAG_LENGTH)
    aad = _b64(data, "additionalAuthenticatedData", required=False, limit=MAX_AAD)
    metadata = _b64(data, "ciphertextMetadata", required=False, limit=_MAX_METADATA)
    assert ciphertext is not None and iv is not None and tag is not None
    key = _aes_key(call, external_key_id)
    call.check_state(key)
    call.authorize(key, action="kms:Decrypt")
    if (
        metadata is None
        or len(metadata) != len(_METADATA_PREFIX) + 4
        or not metadata.startswith(_METADATA_PREFIX)
        or len(iv) != IV_LENGTH
        or len(tag) != TAG_LENGTH
    ):
        raise InvalidCiphertextException()
    version = int.from_bytes(metadata[len(_METADATA_PREFIX) :], "big")
    svc = call.service
    key = known_version(svc, key, version)
    kv = svc.keyring.load(key, version)
    plaintext = open_parts(kv, iv, ciphertext, tag, _aad(aad, metadata))
    return {"plaintext": _encode(plaintext)}


def get_health_status(call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """GetHealthStatus: a deep check, the store answering and the engine sealing.

    Raises:
        KMSError: the store does not answer (DependencyTimeoutException, ...).
    """
    del data
    svc = call.service
    # The spec excludes health checks from authorization: a signature of a
    # credential of this data dir is enough.
    call.authorized = True
    svc.store.change_token()
    from kmscore.engine import AesGcmKey

    probe = AesGcmKey(os.urandom(32))
    iv = os.urandom(IV_LENGTH)
    status = (
        "ACTIVE"
        if probe.open(iv, probe.seal(iv, b"health", b""), b"") == b"health"
        else ("UNAVAILABLE")
    )
    return {
        "xksProxyFleetSize": 1,
        "xksProxyVendor": "kmscore",
        "xksProxyModel": "kmscore XKS proxy (XKS Proxy API v1)",
        "ekmVendor": "kmscore",
        "ekmFleetDetails": [
            {"id": svc.data_dir.name or "kmscore", "model": "kmscore (AES-256-GCM engine)",
             "healthStatus": status}
        ],
    }  # fmt: skip


def new_call(service: KeyService, operation: str, caller: Any, request_id: str) -> Call:
    """The call an XKS request runs as (its state rule that of the KMS operation)."""
    call = Call(service, operation, caller, request_id, [])
    call.read_only = True
    kms_operation = {"XksEncrypt": "Encrypt", "XksDecrypt": "Decrypt"}.get(operation)
    call.states = state_rule(kms_operation or "DescribeKey")
    return call


def run(
    call: Call,
    external_key_id: str | None,
    data: dict[str, Any],
) -> dict[str, Any]:
    """Run one XKS operation and audit it (allowed or refused).

    Raises:
        KMSError: what the operation raised (the frontend maps it to XKS's names).
    """
    metadata = data.get("requestMetadata")
    audited: dict[str, Any] = {"KeyId": external_key_id} if external_key_id else {}
    if isinstance(metadata, dict):
        for name in ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId",
                     "kmsViaService", "awsSourceVpc", "awsSourceVpce"):  # fmt: skip
            value = metadata.get(name)
            if isinstance(value, str):
                audited[name] = value[:2048]
    try:
        _check_metadata(call.operation, metadata)
        if call.operation == "XksGetHealthStatus":
            response = get_health_status(call, data)
        else:
            assert external_key_id is not None
            handler = {
                "XksGetKeyMetadata": get_key_metadata,
                "XksEncrypt": encrypt,
                "XksDecrypt": decrypt,
            }[call.operation]
            response = handler(call, external_key_id, data)
    except KMSError as exc:
        call.service.auditor.record(call, audited, None, exc)
        raise
    # The audit record has only the response's non-secret facts.
    call.service.auditor.record(call, audited, {"KeyId": external_key_id}, None)
    return response


def _check_metadata(operation: str, metadata: Any) -> None:
    """The requestMetadata members the spec requires.

    Raises:
        ValidationException: missing or not strings.
    """
    if not isinstance(metadata, dict):
        raise ValidationException("requestMetadata is required.")
    required = ["kmsRequestId", "kmsOperation"]
    if operation != "XksGetHealthStatus":
        required.append("awsPrincipalArn")
    if operation in ("XksEncrypt", "XksDecrypt"):
        required.append("kmsKeyArn")
    for name in required:
        if not isinstance(metadata.get(name), str):
            raise ValidationException(f"requestMetadata.{name} is required.")
