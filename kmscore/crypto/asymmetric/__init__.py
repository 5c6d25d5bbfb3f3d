"""The crypto core of asymmetric and HMAC KMS keys, as AWS KMS defines them.

Pure functions over key material; no key store, no state checks, no policy.
The service loads a key material version once into a :class:`LoadedKey`,
caches it, and calls:

- :func:`sign` / :func:`verify`: ``Sign`` and ``Verify`` (RSA PSS and PKCS#1
  v1.5, ECDSA, Ed25519 and Ed25519ph, ML-DSA) with AWS's ``MessageType`` rules.
- :func:`rsa_encrypt` / :func:`rsa_decrypt`: RSAES-OAEP ``Encrypt`` and
  ``Decrypt`` with AWS's plaintext limits (:func:`max_plaintext_length`).
- :func:`generate_mac` / :func:`verify_mac`: ``GenerateMac`` and ``VerifyMac``.
- :func:`derive_shared_secret`: ``DeriveSharedSecret`` (ECDH).
- :func:`encapsulate` / :func:`decapsulate`: ``Encapsulate`` and ``Decapsulate``
  (ML-KEM, :mod:`kmscore.crypto.asymmetric.mlkem`).
- :func:`generate_private_key`, :func:`public_key_der`,
  :func:`generate_data_key_pair`: key material for ``CreateKey``,
  ``GetPublicKey`` and ``GenerateDataKeyPair``.

Errors are :mod:`kmscore.errors` classes with AWS's codes. A signature or MAC
that does not verify is ``False``, never an exception: the service turns it
into ``KMSInvalidSignatureException`` or ``KMSInvalidMacException``.

Not available with ``cryptography`` 48 (``UnsupportedOperationException``):
ML-DSA MessageType EXTERNAL_MU; SM2 keys. ED25519_PH_SHA_512 (Ed25519ph), which
``cryptography`` cannot compute either, is built on libsodium's Edwards25519
primitives in :mod:`kmscore.crypto.asymmetric.ed25519ph`.
"""

from __future__ import annotations

from kmscore.crypto.asymmetric._common import MAX_MESSAGE_LENGTH
from kmscore.crypto.asymmetric.ecc import derive_shared_secret
from kmscore.crypto.asymmetric.encapsulation import decapsulate, encapsulate
from kmscore.crypto.asymmetric.hmac import generate_mac, verify_mac
from kmscore.crypto.asymmetric.material import (
    LoadedKey,
    generate_data_key_pair,
    generate_private_key,
    public_key_der,
)
from kmscore.crypto.asymmetric.rsa import max_plaintext_length, rsa_decrypt, rsa_encrypt
from kmscore.crypto.asymmetric.signing import SIGNING_SCHEMES, SigningScheme, sign, verify

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "SIGNING_SCHEMES",
    "LoadedKey",
    "SigningScheme",
    "decapsulate",
    "derive_shared_secret",
    "encapsulate",
    "generate_data_key_pair",
    "generate_mac",
    "generate_private_key",
    "max_plaintext_length",
    "public_key_der",
    "rsa_decrypt",
    "rsa_encrypt",
    "sign",
    "verify",
    "verify_mac",
]
