"""Key material of asymmetric and HMAC KMS keys: generation, loading, public keys.

Formats, as AWS uses them where AWS shows them:

- Asymmetric private key material is DER PKCS#8 ``PrivateKeyInfo`` (RFC 5958),
  the format ``GenerateDataKeyPair`` returns. For ML-DSA, ``cryptography`` 48
  writes the *seed-only* PKCS#8 form (a 32-byte seed, 54 bytes in all, the OIDs
  of FIPS 204 / RFC 9881) and never the expanded private key; loading accepts
  what ``cryptography`` accepts. ML-KEM private keys are seed-only PKCS#8 too
  (:mod:`kmscore.crypto.asymmetric.mlkem`).
- Public keys are DER ``SubjectPublicKeyInfo`` (RFC 5280), the format of
  ``GetPublicKey`` and of ``DeriveSharedSecret``'s ``PublicKey``.
- HMAC key material is raw random bytes, as long as the digest of the key spec
  (HMAC_224: 28 bytes, HMAC_256: 32, HMAC_384: 48, HMAC_512: 64).

A :class:`LoadedKey` parses material once and keeps the ``cryptography`` key
object, so the service caches one per key material version. It never shows key
material in its ``repr`` and refuses to be pickled.
"""

from __future__ import annotations

import secrets
from typing import Final, NoReturn, final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa

from kmscore.crypto.asymmetric import mlkem
from kmscore.crypto.asymmetric._common import expect
from kmscore.errors import UnsupportedOperationException, ValidationException
from kmscore.model.keyspecs import (
    DATA_KEY_PAIR_SPECS,
    KeyFamily,
    KeySpec,
    KeySpecInfo,
    parse_enum,
    require_supported,
)

__all__ = [
    "LoadedKey",
    "PrivateKey",
    "PublicKey",
    "generate_data_key_pair",
    "generate_private_key",
    "public_key_der",
]

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | mldsa.MLDSA44PrivateKey
    | mldsa.MLDSA65PrivateKey
    | mldsa.MLDSA87PrivateKey
    | mlkem.MLKEMPrivateKey
)
PublicKey = (
    rsa.RSAPublicKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PublicKey
    | mldsa.MLDSA44PublicKey
    | mldsa.MLDSA65PublicKey
    | mldsa.MLDSA87PublicKey
    | mlkem.MLKEMPublicKey
)

CURVES: Final[dict[KeySpec, type[ec.EllipticCurve]]] = {
    KeySpec.ECC_NIST_P256: ec.SECP256R1,
    KeySpec.ECC_NIST_P384: ec.SECP384R1,
    KeySpec.ECC_NIST_P521: ec.SECP521R1,
    KeySpec.ECC_SECG_P256K1: ec.SECP256K1,
}
"""The elliptic curve of each ECDSA/ECDH key spec."""

_MLDSA_PRIVATE: Final[dict[KeySpec, type[PrivateKey]]] = {
    KeySpec.ML_DSA_44: mldsa.MLDSA44PrivateKey,
    KeySpec.ML_DSA_65: mldsa.MLDSA65PrivateKey,
    KeySpec.ML_DSA_87: mldsa.MLDSA87PrivateKey,
}
_MLDSA_PUBLIC: Final[dict[KeySpec, type[PublicKey]]] = {
    KeySpec.ML_DSA_44: mldsa.MLDSA44PublicKey,
    KeySpec.ML_DSA_65: mldsa.MLDSA65PublicKey,
    KeySpec.ML_DSA_87: mldsa.MLDSA87PublicKey,
}

_RSA_PUBLIC_EXPONENT: Final = 65537
_SYMMETRIC_KEY_LENGTH: Final = 32


def _fits(info: KeySpecInfo, key: PrivateKey | PublicKey) -> bool:
    """Whether a parsed key is of the type and size the key spec names."""
    spec = info.key_spec
    if info.family is KeyFamily.RSA:
        return isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and (
            key.key_size == info.key_bits
        )
    if info.family is KeyFamily.ECC:
        return isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and (
            type(key.curve) is CURVES[spec]
        )
    if info.family is KeyFamily.EDWARDS:
        return isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey)
    if info.family is KeyFamily.ML_DSA:
        return isinstance(key, _MLDSA_PRIVATE[spec] | _MLDSA_PUBLIC[spec])
    return info.family is KeyFamily.ML_KEM  # mlkem's loaders check the parameter set


def _asymmetric(key_spec: str) -> KeySpecInfo:
    info = require_supported(key_spec)
    if not info.asymmetric:
        raise UnsupportedOperationException(
            f"KeySpec {info.key_spec} is symmetric: it has no key pair and no public key."
        )
    return info


def _bad_material(info: KeySpecInfo, what: str) -> NoReturn:
    # Says what was expected, never what was found: the material stays secret.
    raise ValidationException(
        f"The key material is not a valid {what} for KeySpec {info.key_spec}."
    ) from None


@final
class LoadedKey:
    """Parsed key material of one KMS key material version, ready for crypto.

    Build one with :meth:`load` (private key material or HMAC key) or
    :meth:`load_public` (a public key only: verify and encrypt, nothing else).
    Instances are immutable and safe to share between threads.
    """

    __slots__ = ("_info", "_private", "_public", "_public_der", "_secret")

    _info: KeySpecInfo
    _private: PrivateKey | None
    _public: PublicKey | None
    _public_der: bytes | None
    _secret: bytes | None

    def __init__(
        self,
        info: KeySpecInfo,
        *,
        private: PrivateKey | None = None,
        public: PublicKey | None = None,
        secret: bytes | None = None,
    ) -> None:
        """Wrap already parsed keys; use :meth:`load` or :meth:`load_public` instead."""
        self._info = info
        self._private = private
        self._public = public if public is not None or private is None else private.public_key()
        self._public_der = None
        self._secret = secret

    @classmethod
    def load(cls, key_spec: str, material: bytes, *, check: bool = True) -> LoadedKey:
        """Parse the stored key material of a KMS key.

        Args:
            key_spec: The key's ``KeySpec``.
            material: PKCS#8 DER for asymmetric key specs; the raw key for HMAC.
            check: Check an RSA private key's consistency (primality of its
                factors, CRT values): 35 ms for RSA_2048, 100 ms for RSA_3072,
                250 ms for RSA_4096 here, against microseconds without. Pass
                False only for material this service generated, or checked when
                it was imported, and that comes back authenticated from its own
                store: an inconsistent RSA key can leak its factors through
                faulty signatures. Other key types are always checked (cheaply).

        Returns:
            The loaded key.

        Raises:
            ValidationException: Unknown key spec, or material that does not parse
                or is not of the key spec's type and size.
            UnsupportedOperationException: SYMMETRIC_DEFAULT (the AES-GCM engine
                holds those keys) or SM2.
        """
        info = require_supported(key_spec)
        if info.family is KeyFamily.HMAC:
            if not material:
                _bad_material(info, "HMAC key")
            return cls(info, secret=bytes(material))
        if not info.asymmetric:
            raise UnsupportedOperationException(
                f"KeySpec {info.key_spec} key material is used by the AES-GCM engine, "
                "not loaded as an asymmetric or HMAC key."
            )
        if info.family is KeyFamily.ML_KEM:
            kem = mlkem.load_private_der(info.key_spec, material)
            if kem is None:
                _bad_material(info, "PKCS#8 DER private key")
            return cls(info, private=kem)
        try:
            key = serialization.load_der_private_key(
                bytes(material), password=None, unsafe_skip_rsa_key_validation=not check
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            _bad_material(info, "PKCS#8 DER private key")
        if not isinstance(key, PrivateKey) or not _fits(info, key):
            _bad_material(info, "private key")
        return cls(info, private=key)

    @classmethod
    def load_public(cls, key_spec: str, public_key: bytes) -> LoadedKey:
        """Parse a DER SubjectPublicKeyInfo as the public half of a key of ``key_spec``.

        Args:
            key_spec: The ``KeySpec`` the public key must belong to.
            public_key: DER SubjectPublicKeyInfo.

        Returns:
            A loaded key that can verify and encrypt, not sign, decrypt or derive.

        Raises:
            ValidationException: Unknown key spec, or a public key that does not
                parse or is not of the key spec's type and size.
            UnsupportedOperationException: A symmetric, HMAC or SM2 key spec.
        """
        info = _asymmetric(key_spec)
        if info.family is KeyFamily.ML_KEM:
            kem = mlkem.load_public_der(info.key_spec, public_key)
            if kem is None:
                _bad_material(info, "DER SubjectPublicKeyInfo")
            return cls(info, public=kem)
        try:
            key = serialization.load_der_public_key(bytes(public_key))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            _bad_material(info, "DER SubjectPublicKeyInfo")
        if not isinstance(key, PublicKey) or not _fits(info, key):
            _bad_material(info, "public key")
        return cls(info, public=key)

    @property
    def key_spec(self) -> KeySpec:
        """The key spec of this key."""
        return self._info.key_spec

    @property
    def info(self) -> KeySpecInfo:
        """The key spec's row of the key spec table."""
        return self._info

    @property
    def has_private_key(self) -> bool:
        """True when the key can sign, decrypt, derive or MAC."""
        return self._private is not None or self._secret is not None

    def public_key_der(self) -> bytes:
        """The public key as DER SubjectPublicKeyInfo, what ``GetPublicKey`` returns.

        Raises:
            UnsupportedOperationException: An HMAC key has no public key.
        """
        if self._public is None:
            raise UnsupportedOperationException(
                f"KeySpec {self.key_spec} is symmetric: it has no public key."
            )
        if self._public_der is None:
            self._public_der = self._public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        return self._public_der

    # --- for the sibling modules of this package ----------------------------

    def private_key(self) -> PrivateKey:
        """The ``cryptography`` private key object (package internal).

        Raises:
            ValueError: The key was loaded from a public key only (a caller bug).
        """
        if self._private is None:
            raise ValueError(f"this {self.key_spec} LoadedKey holds no private key")
        return self._private

    def public_key(self) -> PublicKey:
        """The ``cryptography`` public key object (package internal).

        Raises:
            ValueError: An HMAC key has no public key (a caller bug).
        """
        if self._public is None:
            raise ValueError(f"a {self.key_spec} LoadedKey has no public key")
        return self._public

    def hmac_secret(self) -> bytes:
        """The HMAC key bytes (package internal).

        Raises:
            ValueError: Not an HMAC key (a caller bug).
        """
        if self._secret is None:
            raise ValueError(f"a {self.key_spec} LoadedKey is not an HMAC key")
        return self._secret

    def __repr__(self) -> str:
        if self._secret is not None:
            kind = "secret"
        elif self._private is not None:
            kind = "private"
        else:
            kind = "public"
        return f"LoadedKey(key_spec={self.key_spec.value!r}, {kind})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("LoadedKey holds key material and cannot be pickled or copied")


def _generate(info: KeySpecInfo) -> PrivateKey:
    spec = info.key_spec
    if info.family is KeyFamily.RSA:
        bits = expect(info.key_bits)
        return rsa.generate_private_key(public_exponent=_RSA_PUBLIC_EXPONENT, key_size=bits)
    if info.family is KeyFamily.ECC:
        return ec.generate_private_key(CURVES[spec]())
    if info.family is KeyFamily.EDWARDS:
        return ed25519.Ed25519PrivateKey.generate()
    if spec is KeySpec.ML_DSA_44:
        return mldsa.MLDSA44PrivateKey.generate()
    if spec is KeySpec.ML_DSA_65:
        return mldsa.MLDSA65PrivateKey.generate()
    if spec is KeySpec.ML_DSA_87:
        return mldsa.MLDSA87PrivateKey.generate()
    if info.family is KeyFamily.ML_KEM:
        return mlkem.generate(spec)
    raise AssertionError(f"no generator for {spec}")  # pragma: no cover - table complete


def _pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_private_key(key_spec: str) -> bytes:
    """Make new key material for a KMS key of ``key_spec``.

    RSA_4096 takes up to seconds (RSA_2048 tens of milliseconds): the service
    should run this off its event loop.

    Args:
        key_spec: Any supported ``KeySpec``.

    Returns:
        PKCS#8 DER for asymmetric key specs (seed-only form for ML-DSA); random
        bytes for HMAC (as long as the digest) and SYMMETRIC_DEFAULT (32 bytes).

    Raises:
        ValidationException: ``key_spec`` is not a ``KeySpec`` name.
        UnsupportedOperationException: SM2.
    """
    info = require_supported(key_spec)
    if info.family is KeyFamily.HMAC or info.family is KeyFamily.SYMMETRIC:
        return secrets.token_bytes(expect(info.key_bits) // 8)
    return _pkcs8(_generate(info))


def public_key_der(key_spec: str, private_material: bytes, *, check: bool = True) -> bytes:
    """The DER SubjectPublicKeyInfo of stored private key material.

    Args:
        key_spec: The key's asymmetric ``KeySpec``.
        private_material: Its PKCS#8 DER private key.
        check: As for :meth:`LoadedKey.load` (False skips the slow RSA check).

    Returns:
        The public key, as ``GetPublicKey`` returns it.

    Raises:
        ValidationException: Unknown key spec, or material that is not a private
            key of that spec.
        UnsupportedOperationException: A symmetric, HMAC or SM2 key spec.
    """
    _asymmetric(key_spec)
    return LoadedKey.load(key_spec, private_material, check=check).public_key_der()


def generate_data_key_pair(key_pair_spec: str) -> tuple[bytes, bytes]:
    """Make a data key pair, as ``GenerateDataKeyPair`` returns it in plaintext.

    Args:
        key_pair_spec: A ``DataKeyPairSpec``: RSA_2048/3072/4096, ECC_NIST_P256/
            P384/P521, ECC_SECG_P256K1, ECC_NIST_EDWARDS25519 or ML_KEM_512/768/1024.

    Returns:
        ``(private_key, public_key)``: PKCS#8 DER and DER SubjectPublicKeyInfo.

    Raises:
        ValidationException: ``key_pair_spec`` is not a ``DataKeyPairSpec``.
        UnsupportedOperationException: SM2 (AWS China Regions only).
    """
    spec = parse_enum(KeySpec, key_pair_spec, "keyPairSpec")
    if spec not in DATA_KEY_PAIR_SPECS:
        allowed = ", ".join(DATA_KEY_PAIR_SPECS)
        raise ValidationException(
            f"1 validation error detected: Value {key_pair_spec!r} at 'keyPairSpec' failed "
            f"to satisfy constraint: Member must satisfy enum value set: [{allowed}]"
        )
    info = require_supported(spec)
    key = _generate(info)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _pkcs8(key), public
