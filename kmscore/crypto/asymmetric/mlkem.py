"""ML-KEM key encapsulation (FIPS 203), key specs ML_KEM_512, ML_KEM_768 and ML_KEM_1024.

Which library does the work:

- ML_KEM_768 and ML_KEM_1024: ``cryptography`` (47 and later), on the OpenSSL
  it is built with. It is the project's crypto library, constant-time, and
  well kept.
- ML_KEM_512: ``cryptography`` does not offer it (only 768 and 1024). The best
  kept library that does, installable from PyPI without a C toolchain or a
  download at run time, is ``kyber-py``: a pure-Python FIPS 203 implementation,
  checked upstream against NIST's ACVP vectors, and here too
  (``tests/test_mlkem_vectors.py``). Pure Python is not constant-time; its
  README says it is not meant for production. kmscore therefore serves
  ML_KEM_512 for compatibility with AWS's API and says so in docs/service.md;
  ML_KEM_768 (AWS's recommendation) and ML_KEM_1024 never touch it.
  ``liboqs-python`` was the other candidate: it needs the liboqs C library,
  which it builds from a git checkout at first import, which a CI machine
  without outside access cannot do.

Formats, the same for all three:

- Private key material: DER PKCS#8 in the *seed-only* form of RFC 9935 (the
  64-byte seed ``d || z`` of FIPS 203 in an ``[0x80]``-tagged OCTET STRING), the
  form ``cryptography`` writes. For ML_KEM_512 kmscore writes the same DER
  itself; for 768 and 1024 tests check that both writers agree byte for byte.
- Public key: DER SubjectPublicKeyInfo holding the raw encapsulation key, as
  ``GetPublicKey`` returns it.

The shared secret is 32 bytes; the ciphertext is 768, 1088 or 1568 bytes. A
ciphertext of another length is ``InvalidCiphertextException`` (as AWS answers);
one of the right length always decapsulates, to a pseudo-random secret when it
was altered (FIPS 203 implicit rejection).
"""

from __future__ import annotations

import secrets
from typing import Final, final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem

from kmscore.errors import InvalidCiphertextException
from kmscore.model.keyspecs import KeySpec

__all__ = [
    "CIPHERTEXT_LENGTHS",
    "SEED_LENGTH",
    "SHARED_SECRET_LENGTH",
    "MLKEM512PrivateKey",
    "MLKEM512PublicKey",
    "MLKEMPrivateKey",
    "MLKEMPublicKey",
    "decapsulate",
    "encapsulate",
    "from_seed",
    "generate",
    "load_private_der",
    "load_public_der",
    "pkcs8_seed_der",
    "spki_der",
]

SEED_LENGTH: Final = 64
SHARED_SECRET_LENGTH: Final = 32

CIPHERTEXT_LENGTHS: Final[dict[KeySpec, int]] = {
    KeySpec.ML_KEM_512: 768,
    KeySpec.ML_KEM_768: 1088,
    KeySpec.ML_KEM_1024: 1568,
}
"""The ciphertext (SharedSecretCiphertextBlob) length of each key spec."""

_ENCAPSULATION_KEY_LENGTHS: Final[dict[KeySpec, int]] = {
    KeySpec.ML_KEM_512: 800,
    KeySpec.ML_KEM_768: 1184,
    KeySpec.ML_KEM_1024: 1568,
}

# id-alg-ml-kem-512/768/1024: 2.16.840.1.101.3.4.4.{1,2,3} (NIST CSOR, RFC 9935).
_OID_PREFIX: Final = bytes.fromhex("06096086480165030404")
_OID_LAST: Final[dict[KeySpec, int]] = {
    KeySpec.ML_KEM_512: 1,
    KeySpec.ML_KEM_768: 2,
    KeySpec.ML_KEM_1024: 3,
}


def _algorithm_identifier(spec: KeySpec) -> bytes:
    oid = _OID_PREFIX + bytes([_OID_LAST[spec]])
    return b"\x30" + bytes([len(oid)]) + oid  # parameters absent


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def spki_der(spec: KeySpec, encapsulation_key: bytes) -> bytes:
    """DER SubjectPublicKeyInfo of a raw ML-KEM encapsulation key."""
    return _tlv(0x30, _algorithm_identifier(spec) + _tlv(0x03, b"\x00" + encapsulation_key))


def pkcs8_seed_der(spec: KeySpec, seed: bytes) -> bytes:
    """DER PKCS#8 of an ML-KEM private key in the seed-only form (RFC 9935)."""
    private_key = _tlv(0x04, _tlv(0x80, seed))
    return _tlv(0x30, b"\x02\x01\x00" + _algorithm_identifier(spec) + private_key)


@final
class MLKEM512PublicKey:
    """An ML-KEM-512 encapsulation key (kyber-py), shaped like ``cryptography``'s keys."""

    __slots__ = ("_ek",)

    def __init__(self, encapsulation_key: bytes) -> None:
        """Wrap a raw 800-byte encapsulation key; use :func:`load_public_der`."""
        self._ek = encapsulation_key

    def encapsulate(self) -> tuple[bytes, bytes]:
        """A fresh shared secret and its ciphertext: ``(shared_secret, ciphertext)``."""
        from kyber_py.ml_kem import ML_KEM_512  # type: ignore[import-untyped]

        shared_secret, ciphertext = ML_KEM_512.encaps(self._ek)
        return shared_secret, ciphertext

    def public_bytes_raw(self) -> bytes:
        """The raw encapsulation key (800 bytes)."""
        return self._ek

    def public_bytes(
        self, encoding: serialization.Encoding, format: serialization.PublicFormat
    ) -> bytes:
        """DER SubjectPublicKeyInfo (the only encoding kmscore asks for)."""
        if encoding is not serialization.Encoding.DER or (
            format is not serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ValueError("ML-KEM-512 public keys are written only as DER SPKI here")
        return spki_der(KeySpec.ML_KEM_512, self._ek)


@final
class MLKEM512PrivateKey:
    """An ML-KEM-512 key pair derived from its 64-byte seed (kyber-py)."""

    __slots__ = ("_dk", "_public", "_seed")

    def __init__(self, seed: bytes) -> None:
        """Derive the key pair from ``d || z``; use :func:`generate` or :func:`load_private_der`."""
        from kyber_py.ml_kem import ML_KEM_512

        if len(seed) != SEED_LENGTH:
            raise ValueError("an ML-KEM seed is 64 bytes")
        ek, dk = ML_KEM_512.key_derive(seed)
        self._seed = bytes(seed)
        self._dk = dk
        self._public = MLKEM512PublicKey(ek)

    def public_key(self) -> MLKEM512PublicKey:
        """The encapsulation key."""
        return self._public

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """The shared secret of a 768-byte ciphertext (implicit rejection included)."""
        from kyber_py.ml_kem import ML_KEM_512

        shared_secret: bytes = ML_KEM_512.decaps(self._dk, ciphertext)
        return shared_secret

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        """Seed-only DER PKCS#8, unencrypted (the only form kmscore asks for)."""
        if (
            encoding is not serialization.Encoding.DER
            or format is not serialization.PrivateFormat.PKCS8
            or not isinstance(encryption_algorithm, serialization.NoEncryption)
        ):
            raise ValueError("ML-KEM-512 private keys are written only as plain DER PKCS#8 here")
        return pkcs8_seed_der(KeySpec.ML_KEM_512, self._seed)

    def __repr__(self) -> str:
        return "MLKEM512PrivateKey(<secret>)"

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("an ML-KEM private key cannot be pickled or copied")


MLKEMPrivateKey = mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey | MLKEM512PrivateKey
MLKEMPublicKey = mlkem.MLKEM768PublicKey | mlkem.MLKEM1024PublicKey | MLKEM512PublicKey


def from_seed(spec: KeySpec, seed: bytes) -> MLKEMPrivateKey:
    """The key pair FIPS 203 ML-KEM.KeyGen_internal derives from the seed ``d || z``.

    This is what the ACVP keyGen vectors check.
    """
    if spec is KeySpec.ML_KEM_768:
        return mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
    if spec is KeySpec.ML_KEM_1024:
        return mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed)
    return MLKEM512PrivateKey(seed)


def generate(spec: KeySpec) -> MLKEMPrivateKey:
    """A new ML-KEM key pair of ``spec`` from 64 bytes of the system CSPRNG."""
    if spec is KeySpec.ML_KEM_768:
        return mlkem.MLKEM768PrivateKey.generate()
    if spec is KeySpec.ML_KEM_1024:
        return mlkem.MLKEM1024PrivateKey.generate()
    return MLKEM512PrivateKey(secrets.token_bytes(SEED_LENGTH))


def _seed_of(spec: KeySpec, material: bytes) -> bytes | None:
    """The seed of seed-only PKCS#8 DER of ``spec``, or None when it is not that."""
    empty = pkcs8_seed_der(spec, bytes(SEED_LENGTH))
    prefix = empty[:-SEED_LENGTH]
    if len(material) != len(empty) or not material.startswith(prefix):
        return None
    return material[len(prefix) :]


def load_private_der(spec: KeySpec, material: bytes) -> MLKEMPrivateKey | None:
    """Parse stored PKCS#8 private key material of an ML-KEM key.

    Returns:
        The key, or None when the material is not an ML-KEM private key of
        ``spec`` (the caller raises its own error, which names no material).
    """
    if spec is not KeySpec.ML_KEM_512:
        try:
            key = serialization.load_der_private_key(bytes(material), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return None
        want = mlkem.MLKEM768PrivateKey if spec is KeySpec.ML_KEM_768 else mlkem.MLKEM1024PrivateKey
        return key if isinstance(key, want) else None
    seed = _seed_of(spec, bytes(material))
    return None if seed is None else MLKEM512PrivateKey(seed)


def load_public_der(spec: KeySpec, public_key: bytes) -> MLKEMPublicKey | None:
    """Parse a DER SubjectPublicKeyInfo as an ML-KEM encapsulation key of ``spec``.

    Returns:
        The key, or None when it is not an ML-KEM public key of ``spec``.
    """
    if spec is not KeySpec.ML_KEM_512:
        try:
            key = serialization.load_der_public_key(bytes(public_key))
        except (ValueError, TypeError, UnsupportedAlgorithm):
            return None
        want = mlkem.MLKEM768PublicKey if spec is KeySpec.ML_KEM_768 else mlkem.MLKEM1024PublicKey
        return key if isinstance(key, want) else None
    length = _ENCAPSULATION_KEY_LENGTHS[spec]
    prefix = spki_der(spec, bytes(length))[:-length]
    data = bytes(public_key)
    if len(data) != len(prefix) + length or not data.startswith(prefix):
        return None
    return MLKEM512PublicKey(data[len(prefix) :])


def encapsulate(spec: KeySpec, key: MLKEMPublicKey) -> tuple[bytes, bytes]:
    """Encapsulate: ``(shared_secret, ciphertext)`` under the key's encapsulation key."""
    del spec  # every key type encapsulates the same way
    shared_secret, ciphertext = key.encapsulate()
    return shared_secret, ciphertext


def decapsulate(spec: KeySpec, key: MLKEMPrivateKey, ciphertext: bytes) -> bytes:
    """Decapsulate a ciphertext with the key's decapsulation key.

    Raises:
        InvalidCiphertextException: The ciphertext is not as long as ``spec``'s.
    """
    expected = CIPHERTEXT_LENGTHS[spec]
    if len(ciphertext) != expected:
        raise InvalidCiphertextException(
            f"The SharedSecretCiphertextBlob is {len(ciphertext)} bytes; a {spec} key "
            f"decapsulates only ciphertexts of {expected} bytes."
        )
    try:
        return key.decapsulate(bytes(ciphertext))
    except ValueError:
        raise InvalidCiphertextException(
            f"The SharedSecretCiphertextBlob is not a valid {spec} ciphertext."
        ) from None
