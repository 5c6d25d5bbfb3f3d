"""``Sign`` and ``Verify``: one table of signing algorithms and AWS's message rules.

For every signing algorithm the table says which key family signs with it,
which digest it uses and which ``MessageType`` values it accepts. The checks run
in this order, each with AWS's error:

1. Unknown algorithm or message type name: ``ValidationException``.
2. Message over 4096 bytes: ``ValidationException``.
3. Algorithm not allowed for the key spec (e.g. ECDSA_SHA_384 with an
   ECC_NIST_P256 key, or any RSA algorithm with an ECC key):
   ``InvalidKeyUsageException``.
4. Message type not accepted by the algorithm (DIGEST with ED25519_SHA_512 or
   ML-DSA, RAW with ED25519_PH_SHA_512, EXTERNAL_MU with anything but ML-DSA):
   ``ValidationException``.
5. DIGEST whose length is not the algorithm's digest length (32, 48 or 64
   bytes), or EXTERNAL_MU that is not 64 bytes: ``ValidationException``.
6. What ``cryptography`` 48 cannot compute (EXTERNAL_MU):
   ``UnsupportedOperationException``.

A DIGEST message is signed as the digest of a RAW message (``Prehashed``), so a
signature made over RAW ``m`` verifies over DIGEST ``H(m)`` and back. The
exception is ED25519_PH_SHA_512 (DIGEST only), where AWS hashes the digest once
more as Ed25519ph's PH step (:mod:`kmscore.crypto.asymmetric.eddsa`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

from kmscore.crypto.asymmetric import ecc, eddsa
from kmscore.crypto.asymmetric import mldsa as _mldsa
from kmscore.crypto.asymmetric import rsa as _rsa
from kmscore.crypto.asymmetric._common import (
    check_message_length,
    require_algorithm,
    wrong_key_type,
)
from kmscore.crypto.asymmetric.material import LoadedKey
from kmscore.errors import ValidationException
from kmscore.model.keyspecs import KeyFamily, MessageType, SigningAlgorithm, parse_enum

__all__ = ["SIGNING_SCHEMES", "SigningScheme", "sign", "verify"]

_MU_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class SigningScheme:
    """How one signing algorithm works.

    Attributes:
        algorithm: The ``SigningAlgorithmSpec``.
        family: The key family that signs with it.
        hash_algorithm: The digest applied to a RAW message (None where the
            signature scheme hashes internally: Ed25519, ML-DSA).
        message_types: The ``MessageType`` values AWS accepts with it.
        digest_length: Required length of a DIGEST (or EXTERNAL_MU) message.
        pss: RSASSA-PSS rather than PKCS#1 v1.5 (RSA only).
    """

    algorithm: SigningAlgorithm
    family: KeyFamily
    hash_algorithm: hashes.HashAlgorithm | None
    message_types: frozenset[MessageType]
    digest_length: int | None
    pss: bool = False


_RAW_DIGEST = frozenset({MessageType.RAW, MessageType.DIGEST})


def _hashed(
    algorithm: SigningAlgorithm, family: KeyFamily, hash_algorithm: hashes.HashAlgorithm
) -> SigningScheme:
    pss = algorithm.startswith("RSASSA_PSS_")
    return SigningScheme(
        algorithm, family, hash_algorithm, _RAW_DIGEST, hash_algorithm.digest_size, pss
    )


_S = SigningAlgorithm

SIGNING_SCHEMES: Final[Mapping[SigningAlgorithm, SigningScheme]] = MappingProxyType({
    scheme.algorithm: scheme
    for scheme in (
        _hashed(_S.RSASSA_PSS_SHA_256, KeyFamily.RSA, hashes.SHA256()),
        _hashed(_S.RSASSA_PSS_SHA_384, KeyFamily.RSA, hashes.SHA384()),
        _hashed(_S.RSASSA_PSS_SHA_512, KeyFamily.RSA, hashes.SHA512()),
        _hashed(_S.RSASSA_PKCS1_V1_5_SHA_256, KeyFamily.RSA, hashes.SHA256()),
        _hashed(_S.RSASSA_PKCS1_V1_5_SHA_384, KeyFamily.RSA, hashes.SHA384()),
        _hashed(_S.RSASSA_PKCS1_V1_5_SHA_512, KeyFamily.RSA, hashes.SHA512()),
        _hashed(_S.ECDSA_SHA_256, KeyFamily.ECC, hashes.SHA256()),
        _hashed(_S.ECDSA_SHA_384, KeyFamily.ECC, hashes.SHA384()),
        _hashed(_S.ECDSA_SHA_512, KeyFamily.ECC, hashes.SHA512()),
        SigningScheme(
            _S.ED25519_SHA_512, KeyFamily.EDWARDS, None, frozenset({MessageType.RAW}), None
        ),
        SigningScheme(
            _S.ED25519_PH_SHA_512, KeyFamily.EDWARDS, hashes.SHA512(),
            frozenset({MessageType.DIGEST}), hashes.SHA512().digest_size,
        ),
        SigningScheme(
            _S.ML_DSA_SHAKE_256, KeyFamily.ML_DSA, None,
            frozenset({MessageType.RAW, MessageType.EXTERNAL_MU}), _MU_LENGTH,
        ),
    )
})  # fmt: skip
"""Every signing algorithm kmscore knows how to check; SM2DSA is not among them."""


def _checked(
    key: LoadedKey, signing_algorithm: str, message: bytes, message_type: str
) -> tuple[SigningScheme, MessageType]:
    """Run checks 1-6 of the module docstring; return what to compute."""
    algorithm = parse_enum(SigningAlgorithm, signing_algorithm, "signingAlgorithm")
    kind = parse_enum(MessageType, message_type, "messageType")
    check_message_length(message)
    require_algorithm(key.key_spec, key.info.signing_algorithms, algorithm)
    scheme = SIGNING_SCHEMES[algorithm]
    if kind not in scheme.message_types:
        accepted = " or ".join(sorted(scheme.message_types))
        raise ValidationException(
            f"MessageType {kind} is not valid with SigningAlgorithm {algorithm}; "
            f"use MessageType {accepted}."
        )
    if kind is not MessageType.RAW and len(message) != scheme.digest_length:
        raise ValidationException(
            f"With MessageType {kind} and SigningAlgorithm {algorithm} the message must "
            f"be exactly {scheme.digest_length} bytes (the digest length); it is "
            f"{len(message)} bytes."
        )
    if kind is MessageType.EXTERNAL_MU:
        raise _mldsa.external_mu_unsupported()
    return scheme, kind


def sign(key: LoadedKey, signing_algorithm: str, message: bytes, message_type: str) -> bytes:
    """Sign a message or digest with a KMS key's private key, as ``Sign`` does.

    Args:
        key: A SIGN_VERIFY-capable key with its private key.
        signing_algorithm: A ``SigningAlgorithmSpec`` the key spec allows.
        message: The message (RAW, up to 4096 bytes) or its digest (DIGEST).
        message_type: ``RAW``, ``DIGEST`` or ``EXTERNAL_MU``.

    Returns:
        The signature: PKCS#1 for RSA, DER for ECDSA, 64 bytes for Ed25519, the
        FIPS 204 encoding for ML-DSA.

    Raises:
        ValidationException: Unknown names, message too long, message type not
            valid with the algorithm, or a digest of the wrong length.
        InvalidKeyUsageException: The algorithm does not fit the key spec.
        UnsupportedOperationException: EXTERNAL_MU.
    """
    scheme, kind = _checked(key, signing_algorithm, message, message_type)
    data = bytes(message)
    prehashed = kind is MessageType.DIGEST
    private = key.private_key()
    if scheme.family is KeyFamily.RSA:
        if not isinstance(private, rsa.RSAPrivateKey) or scheme.hash_algorithm is None:
            wrong_key_type(key.key_spec, private)
        return _rsa.sign_rsa(private, scheme.pss, scheme.hash_algorithm, data, prehashed)
    if scheme.family is KeyFamily.ECC:
        if not isinstance(private, ec.EllipticCurvePrivateKey) or scheme.hash_algorithm is None:
            wrong_key_type(key.key_spec, private)
        return ecc.sign_ecdsa(private, scheme.hash_algorithm, data, prehashed)
    if scheme.family is KeyFamily.EDWARDS:
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            wrong_key_type(key.key_spec, private)
        if scheme.algorithm is SigningAlgorithm.ED25519_PH_SHA_512:
            return eddsa.sign_ed25519ph(private, data)
        return eddsa.sign_ed25519(private, data)
    if not isinstance(
        private, mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
    ):
        wrong_key_type(key.key_spec, private)
    return _mldsa.sign_mldsa(private, data)


def verify(
    key: LoadedKey, signing_algorithm: str, message: bytes, message_type: str, signature: bytes
) -> bool:
    """Check a signature with a KMS key's public key, as ``Verify`` does.

    Args:
        key: A SIGN_VERIFY-capable key (private or public only).
        signing_algorithm: A ``SigningAlgorithmSpec`` the key spec allows.
        message: The message (RAW, up to 4096 bytes) or its digest (DIGEST).
        message_type: ``RAW``, ``DIGEST`` or ``EXTERNAL_MU``.
        signature: Any bytes.

    Returns:
        True when the signature is valid. False for any other signature,
        malformed ones included; the service raises
        ``KMSInvalidSignatureException`` on False.

    Raises:
        ValidationException: Unknown names, message too long, message type not
            valid with the algorithm, or a digest of the wrong length.
        InvalidKeyUsageException: The algorithm does not fit the key spec.
        UnsupportedOperationException: EXTERNAL_MU.
    """
    scheme, kind = _checked(key, signing_algorithm, message, message_type)
    data = bytes(message)
    sig = bytes(signature)
    prehashed = kind is MessageType.DIGEST
    public = key.public_key()
    if scheme.family is KeyFamily.RSA:
        if not isinstance(public, rsa.RSAPublicKey) or scheme.hash_algorithm is None:
            wrong_key_type(key.key_spec, public)
        return _rsa.verify_rsa(public, scheme.pss, scheme.hash_algorithm, data, prehashed, sig)
    if scheme.family is KeyFamily.ECC:
        if not isinstance(public, ec.EllipticCurvePublicKey) or scheme.hash_algorithm is None:
            wrong_key_type(key.key_spec, public)
        return ecc.verify_ecdsa(public, scheme.hash_algorithm, data, prehashed, sig)
    if scheme.family is KeyFamily.EDWARDS:
        if not isinstance(public, ed25519.Ed25519PublicKey):
            wrong_key_type(key.key_spec, public)
        if scheme.algorithm is SigningAlgorithm.ED25519_PH_SHA_512:
            return eddsa.verify_ed25519ph(public, data, sig)
        return eddsa.verify_ed25519(public, data, sig)
    if not isinstance(
        public, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey
    ):
        wrong_key_type(key.key_spec, public)
    return _mldsa.verify_mldsa(public, data, sig)
