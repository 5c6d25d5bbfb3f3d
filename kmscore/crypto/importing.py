"""Importing key material: wrapping keys, import tokens and unwrapping.

``GetParametersForImport`` makes an RSA wrapping key pair and returns its
public key with an *import token*. The token is the wrapping private key and
its facts (the key it is for, its wrapping algorithm and key spec, when it
expires, a random token id), sealed under the root key with the key's ARN as
additional data: the private key is never stored in clear, and a token for
another key, or altered, does not open. ``ImportKeyMaterial`` opens it and
unwraps the material with the private key:

- ``RSAES_OAEP_SHA_1`` / ``RSAES_OAEP_SHA_256``: the material is RSA-OAEP
  encrypted (MGF1 with the same hash, empty label), as ``openssl pkeyutl
  -encrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256`` makes.
- ``RSA_AES_KEY_WRAP_SHA_1`` / ``..._SHA_256``: an ephemeral AES-256 key,
  RSA-OAEP encrypted, followed by the material wrapped with it by AES key
  wrap with padding (RFC 5649; ``openssl enc -id-aes256-wrap-pad``), the
  format of PKCS #11's ``CKM_RSA_AES_KEY_WRAP``.

Token layout (before sealing): a format byte, a 16-byte token id, ``valid_to``
as 8 bytes of big-endian epoch seconds, the wrapping key spec and algorithm
as one byte each, then the DER PKCS#8 private key.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from kmscore.crypto.rootkey import RootKey
from kmscore.errors import (
    InvalidCiphertextException,
    InvalidImportTokenException,
    KMSInternalException,
    UnsupportedOperationException,
)

__all__ = [
    "WRAPPING_ALGORITHMS",
    "WRAPPING_KEY_SPECS",
    "ImportParameters",
    "new_import_parameters",
    "open_import_token",
    "unwrap_key_material",
]

#: The RSA wrapping key specs and their sizes in bits.
WRAPPING_KEY_SPECS: Final = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
#: The wrapping algorithms kmscore serves, and their OAEP hash.
WRAPPING_ALGORITHMS: Final = {
    "RSAES_OAEP_SHA_1": "sha1",
    "RSAES_OAEP_SHA_256": "sha256",
    "RSA_AES_KEY_WRAP_SHA_1": "sha1",
    "RSA_AES_KEY_WRAP_SHA_256": "sha256",
}
_SPEC_CODES: Final = tuple(WRAPPING_KEY_SPECS)
_ALGORITHM_CODES: Final = tuple(WRAPPING_ALGORITHMS)
_FORMAT: Final = 1
_HEAD: Final = struct.Struct(">B16sQBB")
_TOKEN_AAD: Final = b"kmscore/import-token/v1\x00"
#: AWS's import tokens and wrapped material are at most 6144 bytes.
MAX_TOKEN: Final = 6144
_AES_KEY_LENGTH: Final = 32


@dataclass(frozen=True, slots=True)
class ImportParameters:
    """What an import token holds. Never shows the private key in its repr."""

    token_id: bytes
    valid_to: int
    wrapping_key_spec: str
    wrapping_algorithm: str
    private_key: bytes

    def __repr__(self) -> str:
        return (
            f"ImportParameters({self.wrapping_key_spec}, {self.wrapping_algorithm}, "
            f"valid_to={self.valid_to})"
        )


def new_import_parameters(
    root_key: RootKey, key_arn: str, wrapping_key_spec: str, wrapping_algorithm: str, valid_to: int
) -> tuple[bytes, bytes]:
    """A fresh wrapping key pair and its import token.

    Args:
        root_key: Seals the token.
        key_arn: The key the token is for (bound as additional data).
        wrapping_key_spec: ``RSA_2048``, ``RSA_3072`` or ``RSA_4096``.
        wrapping_algorithm: One of :data:`WRAPPING_ALGORITHMS`.
        valid_to: When the token expires, in epoch seconds.

    Returns:
        The DER SubjectPublicKeyInfo public key and the import token.

    Raises:
        UnsupportedOperationException: a spec or algorithm kmscore does not serve.
    """
    if wrapping_key_spec not in WRAPPING_KEY_SPECS:
        raise UnsupportedOperationException(
            f"WrappingKeySpec {wrapping_key_spec} is not supported (RSA_2048, RSA_3072, RSA_4096)."
        )
    if wrapping_algorithm not in WRAPPING_ALGORITHMS:
        raise UnsupportedOperationException(
            f"WrappingAlgorithm {wrapping_algorithm} is not supported."
        )
    private = rsa.generate_private_key(65537, WRAPPING_KEY_SPECS[wrapping_key_spec])
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    der = private.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    head = _HEAD.pack(
        _FORMAT,
        os.urandom(16),
        valid_to,
        _SPEC_CODES.index(wrapping_key_spec),
        _ALGORITHM_CODES.index(wrapping_algorithm),
    )
    token = root_key.wrap_secret(head + der, _TOKEN_AAD + key_arn.encode())
    del der
    return public, token


def open_import_token(root_key: RootKey, key_arn: str, token: bytes) -> ImportParameters:
    """Open an import token made for ``key_arn``.

    Raises:
        InvalidImportTokenException: the token is malformed, altered, or was
            made for another key (or another data dir).
    """
    if not 0 < len(token) <= MAX_TOKEN:
        raise InvalidImportTokenException("The import token is not valid.")
    try:
        payload = root_key.unwrap_secret(token, _TOKEN_AAD + key_arn.encode())
    except KMSInternalException:
        raise InvalidImportTokenException("The import token is not valid.") from None
    if len(payload) <= _HEAD.size:
        raise InvalidImportTokenException("The import token is not valid.")
    fmt, token_id, valid_to, spec, algorithm = _HEAD.unpack_from(payload)
    if fmt != _FORMAT or spec >= len(_SPEC_CODES) or algorithm >= len(_ALGORITHM_CODES):
        raise InvalidImportTokenException("The import token is not valid.")
    return ImportParameters(
        token_id, valid_to, _SPEC_CODES[spec], _ALGORITHM_CODES[algorithm], payload[_HEAD.size :]
    )


def _oaep(hash_name: str) -> padding.OAEP:
    # SHA-1 only as OAEP's hash, where AWS's RSAES_OAEP_SHA_1 asks for it
    # (OAEP needs no collision resistance).
    algorithm: hashes.HashAlgorithm = (
        hashes.SHA1() if hash_name == "sha1" else hashes.SHA256()  # noqa: S303
    )
    return padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)


def unwrap_key_material(params: ImportParameters, encrypted: bytes) -> bytes:
    """The key material ``encrypted`` wraps under the token's wrapping key.

    Raises:
        InvalidCiphertextException: it does not decrypt under the wrapping key
            with the token's algorithm (says nothing of which check failed).
        KMSInternalException: the token's private key does not load.
    """
    try:
        private = serialization.load_der_private_key(params.private_key, password=None)
    except (ValueError, TypeError):
        raise KMSInternalException("The import token's wrapping key does not load.") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise KMSInternalException("The import token's wrapping key is not an RSA key.")
    modulus = private.key_size // 8
    oaep = _oaep(WRAPPING_ALGORITHMS[params.wrapping_algorithm])
    bad = InvalidCiphertextException(
        "The EncryptedKeyMaterial does not decrypt under the wrapping key "
        f"with {params.wrapping_algorithm}."
    )
    try:
        if params.wrapping_algorithm.startswith("RSAES_OAEP"):
            if len(encrypted) != modulus:
                raise bad
            return private.decrypt(encrypted, oaep)
        if len(encrypted) <= modulus:
            raise bad
        aes_key = private.decrypt(encrypted[:modulus], oaep)
        if len(aes_key) != _AES_KEY_LENGTH:
            raise bad
        return aes_key_unwrap_with_padding(aes_key, encrypted[modulus:])
    except (ValueError, InvalidUnwrap):
        raise bad from None
