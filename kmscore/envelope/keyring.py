"""Cryptographic materials and the KMS keyring.

:class:`KmsKeyring` is both the keyring and the default materials manager: it
makes the signing key pair of signed suites (the public key goes into the
encryption context as ``aws-crypto-public-key``), gets the data key from KMS
and wraps it under every KMS key of the keyring. It works over any client with
boto3's KMS shape (``generate_data_key``, ``encrypt``, ``decrypt``):
:class:`kmscore.LocalKMS`, the socket client, or a boto3 client.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kmscore.envelope.errors import KeyUnavailableError, MessageFormatError
from kmscore.envelope.header import (
    PUBLIC_KEY_FIELD,
    RESERVED_PREFIX,
    EncryptedDataKey,
    Header,
)
from kmscore.envelope.suites import AlgorithmSuite

PROVIDER_ID = "aws-kms"


def wipe(buf: bytearray) -> None:
    """Overwrite a key buffer with zeros (as far as Python lets us)."""
    buf[:] = bytes(len(buf))


@dataclass
class EncryptionMaterials:
    """What encrypting one message needs."""

    suite: AlgorithmSuite
    encryption_context: dict[str, str]
    data_key: bytearray
    encrypted_data_keys: list[EncryptedDataKey]
    signing_key: ec.EllipticCurvePrivateKey | None = None


@dataclass
class DecryptionMaterials:
    """What decrypting one message needs."""

    suite: AlgorithmSuite
    data_key: bytearray
    verification_key: ec.EllipticCurvePublicKey | None = None


class MaterialsManager(Protocol):
    """Supplies materials: a :class:`KmsKeyring` or a :class:`DataKeyCache`."""

    def get_encryption_materials(
        self, suite: AlgorithmSuite, context: Mapping[str, str], plaintext_length: int | None
    ) -> EncryptionMaterials:
        """Materials to encrypt one message of ``plaintext_length`` bytes (None: unknown)."""
        ...

    def decrypt_materials(self, header: Header) -> DecryptionMaterials:
        """Materials to decrypt the message with this header."""
        ...


def check_context(context: Mapping[str, str]) -> dict[str, str]:
    """A copy of a caller's encryption context, refusing the reserved prefix."""
    out = {}
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("encryption context keys and values must be str")
        if k.startswith(RESERVED_PREFIX):
            raise ValueError(f"encryption context keys starting {RESERVED_PREFIX!r} are reserved")
        out[k] = v
    return out


def verification_key_for(
    suite: AlgorithmSuite, context: Mapping[str, str]
) -> ec.EllipticCurvePublicKey | None:
    """The signature verification key a message's context carries (signed suites)."""
    encoded = context.get(PUBLIC_KEY_FIELD)
    if suite.curve is None:
        if encoded is not None:
            raise MessageFormatError("an unsigned message carries a signing public key")
        return None
    if encoded is None:
        raise MessageFormatError("a signed message lacks its public key in the context")
    try:
        point = base64.b64decode(encoded, validate=True)
        return ec.EllipticCurvePublicKey.from_encoded_point(suite.curve(), point)
    except ValueError as exc:
        raise MessageFormatError("malformed signing public key in the context") from exc


def _kms_context(context: Mapping[str, str]) -> dict[str, Any]:
    return {"EncryptionContext": dict(context)} if context else {}


def _arn_matches(configured: str, arn: str) -> bool:
    return configured == arn or arn.endswith(f":key/{configured}")


class KmsKeyring:
    """Wraps data keys under one or more KMS keys.

    Args:
        client: A KMS client with boto3's shape.
        key_ids: KMS keys. Encrypting generates the data key under the first
            and encrypts it under each other one. Decrypting (strict mode)
            tries only EDKs whose provider info is one of these keys (an ARN,
            or a key id matching the ARN's key part).
        discovery: Decrypt with any ``aws-kms`` EDK, whatever its key.
        grant_tokens: Passed to every KMS call.
    """

    def __init__(
        self,
        client: Any,
        key_ids: Sequence[str] = (),
        *,
        discovery: bool = False,
        grant_tokens: Sequence[str] = (),
    ) -> None:
        """Make a keyring; see the class docstring."""
        if isinstance(key_ids, str):
            key_ids = [key_ids]
        if not key_ids and not discovery:
            raise ValueError("a KMS keyring needs key ids, or discovery=True")
        self.client = client
        self.key_ids = tuple(key_ids)
        self.discovery = discovery
        self._extra: dict[str, Any] = {"GrantTokens": list(grant_tokens)} if grant_tokens else {}

    @property
    def partition(self) -> tuple[str, ...]:
        """What identifies this keyring's keys in a cache."""
        return (*self.key_ids, "discovery" if self.discovery else "strict")

    def get_encryption_materials(
        self, suite: AlgorithmSuite, context: Mapping[str, str], plaintext_length: int | None
    ) -> EncryptionMaterials:
        """Make a data key under the first KMS key and wrap it under the others."""
        if not self.key_ids:
            raise ValueError("a discovery keyring cannot encrypt")
        ctx = check_context(context)
        signing_key = None
        if suite.curve is not None:
            signing_key = ec.generate_private_key(suite.curve())
            point = signing_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
            ctx[PUBLIC_KEY_FIELD] = base64.b64encode(point).decode("ascii")
        first, *others = self.key_ids
        resp = self.client.generate_data_key(
            KeyId=first, NumberOfBytes=suite.key_len, **_kms_context(ctx), **self._extra
        )
        data_key = bytearray(resp["Plaintext"])
        if len(data_key) != suite.key_len:
            raise KeyUnavailableError("KMS returned a data key of the wrong length")
        edks = [EncryptedDataKey(PROVIDER_ID, resp["KeyId"].encode(), resp["CiphertextBlob"])]
        for key_id in others:
            wrapped = self.client.encrypt(
                KeyId=key_id, Plaintext=bytes(data_key), **_kms_context(ctx), **self._extra
            )
            edks.append(
                EncryptedDataKey(PROVIDER_ID, wrapped["KeyId"].encode(), wrapped["CiphertextBlob"])
            )
        return EncryptionMaterials(suite, ctx, data_key, edks, signing_key)

    def decrypt_materials(self, header: Header) -> DecryptionMaterials:
        """Unwrap the data key with the first EDK that KMS decrypts."""
        suite = header.suite
        verification_key = verification_key_for(suite, header.encryption_context)
        errors = []
        for edk in header.encrypted_data_keys:
            if edk.provider_id != PROVIDER_ID:
                continue
            try:
                arn = edk.provider_info.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if not self.discovery and not any(_arn_matches(k, arn) for k in self.key_ids):
                continue
            try:
                resp = self.client.decrypt(
                    KeyId=arn,
                    CiphertextBlob=edk.ciphertext,
                    **_kms_context(header.encryption_context),
                    **self._extra,
                )
            except Exception as exc:  # any KMS failure: try the next EDK
                errors.append(f"{arn}: {getattr(exc, 'code', type(exc).__name__)}")
                continue
            if resp.get("KeyId") != arn or len(resp["Plaintext"]) != suite.key_len:
                errors.append(f"{arn}: KMS answered for another key or a wrong length")
                continue
            return DecryptionMaterials(suite, bytearray(resp["Plaintext"]), verification_key)
        detail = "; ".join(errors) if errors else "no aws-kms EDK for the keyring's keys"
        raise KeyUnavailableError(f"no encrypted data key could be decrypted ({detail})")
