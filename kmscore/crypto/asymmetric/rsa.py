"""RSA: RSASSA-PSS and PKCS#1 v1.5 signatures, RSAES-OAEP encryption.

AWS's rules, which this module follows:

- RSASSA_PSS_SHA_*: MGF1 with the same hash, salt as long as the digest.
- RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256: MGF1 with the same hash, empty label.
  Plaintext limits (``k - 2*hLen - 2`` for a ``k``-byte modulus, as the AWS
  Encrypt reference lists them): RSA_2048 214 / 190 bytes, RSA_3072 342 / 318,
  RSA_4096 470 / 446 (SHA-1 / SHA-256).
- Decryption failures of any kind are one opaque ``InvalidCiphertextException``.
"""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kmscore.crypto.asymmetric._common import expect, require_algorithm, wrong_key_type
from kmscore.crypto.asymmetric.material import LoadedKey
from kmscore.errors import InvalidCiphertextException, ValidationException
from kmscore.model.keyspecs import EncryptionAlgorithm, KeyFamily, parse_enum, spec_info

__all__ = [
    "OAEP_HASHES",
    "max_plaintext_length",
    "rsa_decrypt",
    "rsa_encrypt",
    "sign_rsa",
    "verify_rsa",
]

OAEP_HASHES: Final[dict[EncryptionAlgorithm, type[hashes.HashAlgorithm]]] = {
    EncryptionAlgorithm.RSAES_OAEP_SHA_1: hashes.SHA1,
    EncryptionAlgorithm.RSAES_OAEP_SHA_256: hashes.SHA256,
}


def _signature_padding(
    pss: bool, hash_algorithm: hashes.HashAlgorithm
) -> padding.AsymmetricPadding:
    if pss:
        # DIGEST_LENGTH: the salt is as long as the digest, when signing and when
        # verifying (a signature with another salt length does not verify).
        return padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
    return padding.PKCS1v15()


def sign_rsa(
    key: rsa.RSAPrivateKey,
    pss: bool,
    hash_algorithm: hashes.HashAlgorithm,
    data: bytes,
    prehashed: bool,
) -> bytes:
    """Sign ``data`` (a message, or its digest when ``prehashed``) with RSA.

    Args:
        key: The private key.
        pss: RSASSA-PSS when True, RSASSA-PKCS1-v1_5 otherwise.
        hash_algorithm: The digest of the signing algorithm.
        data: The message, or its digest (length already checked).
        prehashed: Whether ``data`` is already the digest.

    Returns:
        The signature, as long as the modulus.
    """
    algorithm = Prehashed(hash_algorithm) if prehashed else hash_algorithm
    return key.sign(data, _signature_padding(pss, hash_algorithm), algorithm)


def verify_rsa(
    key: rsa.RSAPublicKey,
    pss: bool,
    hash_algorithm: hashes.HashAlgorithm,
    data: bytes,
    prehashed: bool,
    signature: bytes,
) -> bool:
    """Verify an RSA signature; any malformed signature is simply False."""
    algorithm = Prehashed(hash_algorithm) if prehashed else hash_algorithm
    try:
        key.verify(signature, data, _signature_padding(pss, hash_algorithm), algorithm)
    except InvalidSignature:
        return False
    return True


def _oaep(algorithm: EncryptionAlgorithm) -> padding.OAEP:
    hash_algorithm = OAEP_HASHES[algorithm]()
    return padding.OAEP(mgf=padding.MGF1(hash_algorithm), algorithm=hash_algorithm, label=None)


def _encryption_algorithm(key: LoadedKey, encryption_algorithm: str) -> EncryptionAlgorithm:
    algorithm = parse_enum(EncryptionAlgorithm, encryption_algorithm, "encryptionAlgorithm")
    require_algorithm(key.key_spec, key.info.encryption_algorithms, algorithm)
    return algorithm


def max_plaintext_length(key_spec: str, encryption_algorithm: str) -> int:
    """The longest plaintext AWS encrypts with this RSA key spec and algorithm.

    Args:
        key_spec: RSA_2048, RSA_3072 or RSA_4096.
        encryption_algorithm: RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256.

    Returns:
        ``modulus bytes - 2 * digest bytes - 2``.

    Raises:
        ValidationException: Unknown names.
        InvalidKeyUsageException: Not an RSA key spec and OAEP algorithm pair.
    """
    info = spec_info(key_spec)
    algorithm = parse_enum(EncryptionAlgorithm, encryption_algorithm, "encryptionAlgorithm")
    rsa_oaep = info.encryption_algorithms if info.family is KeyFamily.RSA else ()
    require_algorithm(info.key_spec, rsa_oaep, algorithm)
    modulus_bytes = expect(info.key_bits) // 8
    return modulus_bytes - 2 * OAEP_HASHES[algorithm]().digest_size - 2


def rsa_encrypt(key: LoadedKey, encryption_algorithm: str, plaintext: bytes) -> bytes:
    """Encrypt with the public key of an RSA KMS key, as AWS Encrypt does.

    Args:
        key: An RSA key (private or public only).
        encryption_algorithm: RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256.
        plaintext: At most :func:`max_plaintext_length` bytes.

    Returns:
        The ciphertext, as long as the modulus.

    Raises:
        ValidationException: Unknown algorithm, or plaintext over the limit.
        InvalidKeyUsageException: The algorithm does not fit the key spec (for
            example SYMMETRIC_DEFAULT, or any algorithm with a non-RSA key).
    """
    algorithm = _encryption_algorithm(key, encryption_algorithm)
    limit = max_plaintext_length(key.key_spec, algorithm)
    if len(plaintext) > limit:
        raise ValidationException(
            f"Plaintext is {len(plaintext)} bytes; {algorithm} with a {key.key_spec} key "
            f"encrypts at most {limit} bytes."
        )
    public = key.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        wrong_key_type(key.key_spec, public)
    return public.encrypt(bytes(plaintext), _oaep(algorithm))


def rsa_decrypt(key: LoadedKey, encryption_algorithm: str, ciphertext: bytes) -> bytes:
    """Decrypt with the private key of an RSA KMS key, as AWS Decrypt does.

    Args:
        key: An RSA key with its private key.
        encryption_algorithm: The algorithm the data was encrypted with.
        ciphertext: The ciphertext.

    Returns:
        The plaintext.

    Raises:
        ValidationException: Unknown algorithm.
        InvalidKeyUsageException: The algorithm does not fit the key spec.
        InvalidCiphertextException: The ciphertext does not decrypt under this key
            and algorithm, for whatever reason (length, padding, wrong key).
    """
    algorithm = _encryption_algorithm(key, encryption_algorithm)
    private = key.private_key()
    if not isinstance(private, rsa.RSAPrivateKey):
        wrong_key_type(key.key_spec, private)
    try:
        return private.decrypt(bytes(ciphertext), _oaep(algorithm))
    except ValueError:
        # One answer for every failure: which check failed is an oracle.
        raise InvalidCiphertextException() from None
