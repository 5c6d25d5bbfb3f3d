"""Elliptic curves: ECDSA signatures and ECDH key agreement.

AWS's rules, which this module follows:

- ECDSA signatures are DER ``ECDSA-Sig-Value`` (RFC 3279), never raw ``r||s``.
- Each curve has one digest: ECC_NIST_P256 and ECC_SECG_P256K1 use
  ECDSA_SHA_256, ECC_NIST_P384 ECDSA_SHA_384, ECC_NIST_P521 ECDSA_SHA_512
  (the pairing is in :mod:`kmscore.model.keyspecs`).
- ``DeriveSharedSecret`` (``ECDH``) works on the NIST curves only (not
  secp256k1, not Ed25519). The peer's public key is DER SubjectPublicKeyInfo on
  the same curve; the result is the raw shared secret (the x-coordinate), to be
  fed to a KDF by the caller. The NIST prime curves have cofactor 1, so plain
  and cofactor ECDH agree.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kmscore.crypto.asymmetric._common import require_algorithm, wrong_key_type
from kmscore.crypto.asymmetric.material import CURVES, LoadedKey
from kmscore.errors import ValidationException
from kmscore.model.keyspecs import KeyAgreementAlgorithm, parse_enum

__all__ = ["derive_shared_secret", "sign_ecdsa", "verify_ecdsa"]


def sign_ecdsa(
    key: ec.EllipticCurvePrivateKey,
    hash_algorithm: hashes.HashAlgorithm,
    data: bytes,
    prehashed: bool,
) -> bytes:
    """Sign ``data`` (a message, or its digest when ``prehashed``) with ECDSA.

    Returns:
        The DER-encoded signature.
    """
    algorithm = Prehashed(hash_algorithm) if prehashed else hash_algorithm
    return key.sign(data, ec.ECDSA(algorithm))


def verify_ecdsa(
    key: ec.EllipticCurvePublicKey,
    hash_algorithm: hashes.HashAlgorithm,
    data: bytes,
    prehashed: bool,
    signature: bytes,
) -> bool:
    """Verify a DER ECDSA signature; anything malformed is simply False."""
    algorithm = Prehashed(hash_algorithm) if prehashed else hash_algorithm
    try:
        key.verify(signature, data, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def derive_shared_secret(key: LoadedKey, key_agreement_algorithm: str, public_key: bytes) -> bytes:
    """Derive the raw ECDH shared secret of a KMS key and a peer's public key.

    Args:
        key: A KEY_AGREEMENT-capable key (ECC_NIST_P256/P384/P521) with its
            private key.
        key_agreement_algorithm: ``ECDH``.
        public_key: The peer's DER SubjectPublicKeyInfo, on the key's curve.

    Returns:
        The shared secret: the x-coordinate of the shared point, as long as the
        curve's field (32, 48 or 66 bytes).

    Raises:
        ValidationException: Unknown algorithm; a peer key that is not DER
            SubjectPublicKeyInfo, not an elliptic curve key, or on another curve.
        InvalidKeyUsageException: The key spec cannot do ECDH (RSA, secp256k1,
            Ed25519, ML-DSA, HMAC).
    """
    algorithm = parse_enum(KeyAgreementAlgorithm, key_agreement_algorithm, "keyAgreementAlgorithm")
    require_algorithm(key.key_spec, key.info.key_agreement_algorithms, algorithm)
    private = key.private_key()
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        wrong_key_type(key.key_spec, private)
    curve = CURVES[key.key_spec]
    try:
        peer = serialization.load_der_public_key(bytes(public_key))
    except (ValueError, UnsupportedAlgorithm):
        raise ValidationException(
            "PublicKey is not a valid DER-encoded SubjectPublicKeyInfo (X.509) public key."
        ) from None
    if not isinstance(peer, ec.EllipticCurvePublicKey):
        raise ValidationException(
            f"PublicKey must be an elliptic curve key on {curve.name} to agree with a "
            f"{key.key_spec} key."
        )
    if type(peer.curve) is not curve:
        raise ValidationException(
            f"PublicKey is on curve {peer.curve.name}; a {key.key_spec} key needs a peer "
            f"key on {curve.name}."
        )
    # The peer point was validated (on the curve, not infinity) when it was loaded.
    return private.exchange(ec.ECDH(), peer)
