"""``Encapsulate`` and ``Decapsulate`` on a loaded ML-KEM key (FIPS 203)."""

from __future__ import annotations

from kmscore.crypto.asymmetric import mlkem
from kmscore.crypto.asymmetric.material import LoadedKey
from kmscore.errors import InvalidKeyUsageException
from kmscore.model.keyspecs import EncapsulationAlgorithm, KeyFamily, parse_enum

__all__ = ["decapsulate", "encapsulate"]


def _check(key: LoadedKey, encapsulation_algorithm: str) -> None:
    parse_enum(EncapsulationAlgorithm, encapsulation_algorithm, "encapsulationAlgorithm")
    if key.info.family is not KeyFamily.ML_KEM:
        raise InvalidKeyUsageException(
            f"KeySpec {key.key_spec} cannot encapsulate; only ML_KEM key specs can."
        )


def encapsulate(key: LoadedKey, encapsulation_algorithm: str) -> tuple[bytes, bytes]:
    """A fresh 32-byte shared secret and its ciphertext under the key's public key.

    Returns:
        ``(shared_secret, ciphertext)``.

    Raises:
        ValidationException: An unknown encapsulation algorithm.
        InvalidKeyUsageException: Not an ML-KEM key.
    """
    _check(key, encapsulation_algorithm)
    public = key.public_key()
    assert isinstance(public, mlkem.MLKEMPublicKey)
    return mlkem.encapsulate(key.key_spec, public)


def decapsulate(key: LoadedKey, encapsulation_algorithm: str, ciphertext: bytes) -> bytes:
    """The shared secret of a ciphertext, with the key's private key.

    Raises:
        ValidationException: An unknown encapsulation algorithm.
        InvalidKeyUsageException: Not an ML-KEM key.
        InvalidCiphertextException: The ciphertext is not as long as the key spec's.
    """
    _check(key, encapsulation_algorithm)
    private = key.private_key()
    assert isinstance(private, mlkem.MLKEMPrivateKey)
    return mlkem.decapsulate(key.key_spec, private, ciphertext)
