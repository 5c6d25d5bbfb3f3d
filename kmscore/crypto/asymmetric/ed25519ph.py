"""Ed25519ph (HashEdDSA, RFC 8032 section 5.1 with ``phflag = 1``) over a given pre-hash.

Why this module exists: no library kmscore depends on signs or verifies
Ed25519ph from a pre-hash supplied by the caller. ``cryptography`` 48 offers
only PureEdDSA (no ``dom2`` prefix, no pre-hash flag), and libsodium's
``crypto_sign_ed25519ph_*`` API (PyNaCl) hashes the message itself through a
streaming SHA-512 state that cannot be seeded with a finished digest. So the
scheme is assembled here from libsodium's Edwards25519 group and scalar
primitives (``nacl.bindings``), constant-time in the secret scalars, and
``hashlib`` SHA-512, following RFC 8032 sections 5.1.6 and 5.1.7:

- ``dom2 = "SigEd25519 no Ed25519 collisions" || 0x01 || 0x00`` (phflag 1,
  empty context), ``PH`` is the 64-byte ``SHA-512(M)``.
- Sign: ``h = SHA-512(seed)``, ``a = clamp(h[0:32])``, ``prefix = h[32:64]``,
  ``A = a*B``; ``r = SHA-512(dom2 || prefix || PH) mod L``, ``R = r*B``;
  ``k = SHA-512(dom2 || R || A || PH) mod L``; ``S = (r + k*a) mod L``; the
  signature is ``R || S``.
- Verify: the cofactorless equation ``S*B = R + k*A``, checked as
  ``encode(S*B - k*A) == R`` so that only the canonical encoding of ``R`` is
  accepted. ``S >= L`` is rejected (RFC 8032's malleability check), and so are
  ``R`` and ``A`` that are not canonical encodings of points of the prime-order
  subgroup (stricter than RFC 8032, as libsodium's own verification is; every
  honestly made signature passes).

The caller decides what ``PH`` is: for AWS's ED25519_PH_SHA_512 with
MessageType DIGEST the 64-byte input is hashed once more, so ``PH`` is
``SHA-512(input)`` (see :mod:`kmscore.crypto.asymmetric.eddsa`).
"""

from __future__ import annotations

import hashlib
from typing import Final

from nacl import bindings as _sodium
from nacl.exceptions import RuntimeError as _SodiumRuntimeError

__all__ = ["DOM2", "GROUP_ORDER", "PREHASH_LENGTH", "public_key", "sign", "verify"]

GROUP_ORDER: Final = 2**252 + 27742317777372353535851937790883648493
"""L, the order of the Edwards25519 base point B."""

PREHASH_LENGTH: Final = 64
"""Length of PH(M), a SHA-512 digest."""

DOM2: Final = b"SigEd25519 no Ed25519 collisions" + bytes([1, 0])
"""RFC 8032's dom2(phflag=1, context="") prefix of every hash Ed25519ph makes."""

_SEED_LENGTH: Final = 32
_POINT_LENGTH: Final = 32
_SIGNATURE_LENGTH: Final = 64
_ZERO_SCALAR: Final = bytes(32)
_IDENTITY: Final = bytes([1]) + bytes(31)
"""Encoding of the neutral element (x = 0, y = 1)."""


def _reduce(wide: bytes) -> bytes:
    """A 64-byte little-endian integer (a SHA-512 output) reduced mod L, as 32 bytes."""
    return bytes(_sodium.crypto_core_ed25519_scalar_reduce(wide))


def _secret_scalar(seed: bytes) -> tuple[bytes, bytes]:
    """RFC 8032 5.1.5: the secret scalar ``a`` (reduced mod L) and the nonce prefix."""
    if len(seed) != _SEED_LENGTH:
        raise ValueError(f"an Ed25519 seed is {_SEED_LENGTH} bytes, not {len(seed)}")
    h = hashlib.sha512(seed).digest()
    clamped = bytearray(h[:32])
    clamped[0] &= 0xF8
    clamped[31] &= 0x7F
    clamped[31] |= 0x40
    # a*B is unchanged by reducing a mod L (B has order L); the reduced form is
    # what the scalar arithmetic below expects.
    return _reduce(bytes(clamped) + bytes(32)), h[32:]


def _base_times(scalar: bytes) -> bytes:
    """``scalar*B`` encoded; libsodium refuses the zero scalar, whose product is the identity."""
    if scalar == _ZERO_SCALAR:
        return _IDENTITY
    return bytes(_sodium.crypto_scalarmult_ed25519_base_noclamp(scalar))


def _check_prehash(prehash: bytes) -> None:
    if len(prehash) != PREHASH_LENGTH:
        raise ValueError(f"an Ed25519ph pre-hash is {PREHASH_LENGTH} bytes, not {len(prehash)}")


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key ``A = a*B`` of a 32-byte Ed25519 seed."""
    a, _ = _secret_scalar(seed)
    return _base_times(a)


def sign(seed: bytes, prehash: bytes) -> bytes:
    """Sign a pre-hash ``PH(M) = SHA-512(M)`` with Ed25519ph (empty context).

    Args:
        seed: The 32-byte private key (RFC 8032's secret key, PKCS#8's content).
        prehash: The 64-byte ``PH(M)``.

    Returns:
        The 64-byte signature ``R || S``; deterministic, as RFC 8032 defines it.

    Raises:
        ValueError: The seed or the pre-hash has the wrong length.
    """
    _check_prehash(prehash)
    a, prefix = _secret_scalar(seed)
    encoded_a = _base_times(a)
    r = _reduce(hashlib.sha512(DOM2 + prefix + prehash).digest())
    encoded_r = _base_times(r)
    k = _reduce(hashlib.sha512(DOM2 + encoded_r + encoded_a + prehash).digest())
    s = _sodium.crypto_core_ed25519_scalar_add(r, _sodium.crypto_core_ed25519_scalar_mul(k, a))
    return encoded_r + bytes(s)


def verify(public: bytes, prehash: bytes, signature: bytes) -> bool:
    """Check an Ed25519ph signature over a pre-hash ``PH(M)``; anything malformed is False.

    Args:
        public: The 32-byte public key ``A``.
        prehash: The 64-byte ``PH(M)``.
        signature: Any bytes; only a 64-byte ``R || S`` can be valid.

    Returns:
        True when ``S < L``, ``R`` and ``A`` are canonical encodings of points
        of the prime-order subgroup, and ``S*B - k*A`` encodes to ``R``.
    """
    if (
        len(public) != _POINT_LENGTH
        or len(prehash) != PREHASH_LENGTH
        or len(signature) != _SIGNATURE_LENGTH
    ):
        return False
    encoded_r, s = bytes(signature[:32]), bytes(signature[32:])
    if int.from_bytes(s, "little") >= GROUP_ORDER:
        return False
    if not (
        _sodium.crypto_core_ed25519_is_valid_point(encoded_r)
        and _sodium.crypto_core_ed25519_is_valid_point(public)
    ):
        return False
    k = _reduce(hashlib.sha512(DOM2 + encoded_r + public + prehash).digest())
    try:
        s_b = _base_times(s)
        if k == _ZERO_SCALAR:
            expected = s_b
        else:
            k_a = _sodium.crypto_scalarmult_ed25519_noclamp(k, public)
            expected = _sodium.crypto_core_ed25519_sub(s_b, k_a)
    except _SodiumRuntimeError:
        return False
    return bytes(expected) == encoded_r
