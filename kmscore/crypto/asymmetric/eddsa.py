"""Ed25519 signatures (key spec ECC_NIST_EDWARDS25519).

- ED25519_SHA_512 is PureEdDSA (RFC 8032): MessageType RAW only, signed by
  ``cryptography``.
- ED25519_PH_SHA_512 is HashEdDSA, Ed25519ph (RFC 8032 section 5.1, FIPS 186-5
  section 7.8.2): MessageType DIGEST only (AWS refuses RAW), and AWS hashes the
  64-byte input again as the PH step ("the input is hashed twice: once by you
  and once by KMS", AWS's MessageType documentation). The signed value is
  therefore ``PH = SHA-512(input)`` under the ``dom2(1, "")`` prefix: the
  signature of a DIGEST ``d`` is the Ed25519ph signature of the message ``d``,
  which any Ed25519ph implementation checks by passing ``d`` as the message.
  ``cryptography`` 48 offers only PureEdDSA, so the scheme itself is in
  :mod:`kmscore.crypto.asymmetric.ed25519ph`.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from kmscore.crypto.asymmetric import ed25519ph

__all__ = ["sign_ed25519", "sign_ed25519ph", "verify_ed25519", "verify_ed25519ph"]


def sign_ed25519(key: ed25519.Ed25519PrivateKey, message: bytes) -> bytes:
    """Sign a message with PureEdDSA Ed25519 (ED25519_SHA_512).

    Returns:
        The 64-byte signature ``R || S``.
    """
    return key.sign(message)


def verify_ed25519(key: ed25519.Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """Verify a PureEdDSA Ed25519 signature; anything malformed is simply False."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def sign_ed25519ph(key: ed25519.Ed25519PrivateKey, digest: bytes) -> bytes:
    """Sign a DIGEST with Ed25519ph as AWS's ED25519_PH_SHA_512 does.

    Args:
        key: The private key; its 32-byte seed is the RFC 8032 secret key.
        digest: The caller's 64-byte SHA-512 digest, hashed again as PH.

    Returns:
        The 64-byte signature ``R || S``.
    """
    prehash = hashlib.sha512(digest).digest()
    return ed25519ph.sign(key.private_bytes_raw(), prehash)


def verify_ed25519ph(key: ed25519.Ed25519PublicKey, digest: bytes, signature: bytes) -> bool:
    """Verify an ED25519_PH_SHA_512 signature of a DIGEST; anything malformed is False."""
    prehash = hashlib.sha512(digest).digest()
    return ed25519ph.verify(key.public_bytes_raw(), prehash, signature)
