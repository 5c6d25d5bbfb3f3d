"""ML-DSA signatures (FIPS 204), key specs ML_DSA_44, ML_DSA_65 and ML_DSA_87.

AWS signs with ML_DSA_SHAKE_256, which is pure ML-DSA (not HashML-DSA) with an
empty context string:

- MessageType RAW: the message itself, up to 4096 bytes.
- MessageType EXTERNAL_MU: the caller sends the 64-byte message representative
  mu of FIPS 204 section 6.2 (``SHAKE256(SHAKE256(pk, 64) || 0 || 0 || M, 64)``)
  and the signer skips computing it. ``cryptography`` 48 exposes only
  ``sign(data, context)`` and ``verify(signature, data, context)``, which always
  compute mu from the message; there is no way to pass mu in, so kmscore answers
  EXTERNAL_MU with ``UnsupportedOperationException`` after checking its length.
- MessageType DIGEST is not valid with ML-DSA (AWS answers ValidationException).

ML-DSA signing in ``cryptography`` is hedged (randomized), so two signatures of
one message differ; both verify.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import mldsa

from kmscore.errors import UnsupportedOperationException

__all__ = ["external_mu_unsupported", "sign_mldsa", "verify_mldsa"]

MLDSAPrivateKey = mldsa.MLDSA44PrivateKey | mldsa.MLDSA65PrivateKey | mldsa.MLDSA87PrivateKey
MLDSAPublicKey = mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey


def sign_mldsa(key: MLDSAPrivateKey, message: bytes) -> bytes:
    """Sign a message with pure ML-DSA and an empty context.

    Returns:
        The signature (2420, 3309 or 4627 bytes for ML-DSA-44/65/87).
    """
    return key.sign(message)


def verify_mldsa(key: MLDSAPublicKey, message: bytes, signature: bytes) -> bool:
    """Verify a pure ML-DSA signature (empty context); anything malformed is False."""
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def external_mu_unsupported() -> UnsupportedOperationException:
    """The error for MessageType EXTERNAL_MU, which ``cryptography`` 48 cannot take."""
    return UnsupportedOperationException(
        "MessageType EXTERNAL_MU is not supported by kmscore: its crypto library "
        "computes the ML-DSA message representative itself and cannot take one from the "
        "caller. Send the message with MessageType RAW (up to 4096 bytes)."
    )
