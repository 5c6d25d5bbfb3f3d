"""Ed25519 signatures (key spec ECC_NIST_EDWARDS25519).

- ED25519_SHA_512 is PureEdDSA (RFC 8032): MessageType RAW only.
- ED25519_PH_SHA_512 is HashEdDSA, Ed25519ph (RFC 8032 section 5.1, FIPS 186-5
  section 7.8.2): MessageType DIGEST only, and AWS hashes the 64-byte input
  again as the PH step, so the signed value is ``SHA-512(input)`` under the
  ``dom2(1, "")`` prefix. ``cryptography`` 48 offers only PureEdDSA:
  ``Ed25519PrivateKey.sign(data)`` takes no context or pre-hash flag, so it
  cannot make or check a ``dom2``-prefixed signature, and the Edwards point
  arithmetic that would allow building one is not exposed. kmscore therefore
  answers ED25519_PH_SHA_512 with ``UnsupportedOperationException``, after
  checking the request as AWS does.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from kmscore.errors import UnsupportedOperationException

__all__ = ["ed25519ph_unsupported", "sign_ed25519", "verify_ed25519"]


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


def ed25519ph_unsupported() -> UnsupportedOperationException:
    """The error for ED25519_PH_SHA_512, which ``cryptography`` 48 cannot compute."""
    return UnsupportedOperationException(
        "SigningAlgorithm ED25519_PH_SHA_512 (Ed25519ph, HashEdDSA) is not supported by "
        "kmscore: its crypto library implements only PureEdDSA Ed25519. Use "
        "ED25519_SHA_512 with MessageType RAW."
    )
