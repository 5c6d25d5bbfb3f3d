"""Envelope encryption in the AWS Encryption SDK message format.

Messages are written in format version 2, framed, with the committing suites
0x0578 (AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384; the default)
and 0x0478 (the same without signature). Version 1 messages and the
non-committing suites are read only, with ``allow_legacy=True``. Data keys come
from KMS through :class:`KmsKeyring`, optionally through a
:class:`DataKeyCache`. See docs/envelope.md.
"""

from kmscore.envelope.api import decrypt, decrypt_file, encrypt, encrypt_file
from kmscore.envelope.cache import DataKeyCache
from kmscore.envelope.errors import (
    AuthenticationError,
    ContextMismatchError,
    EnvelopeError,
    KeyUnavailableError,
    MessageFormatError,
    PolicyError,
)
from kmscore.envelope.framing import DEFAULT_FRAME_LENGTH, decrypt_stream, encrypt_stream
from kmscore.envelope.header import EncryptedDataKey, Header
from kmscore.envelope.keyring import (
    DecryptionMaterials,
    EncryptionMaterials,
    KmsKeyring,
    MaterialsManager,
)
from kmscore.envelope.suites import (
    AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
    AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
    SUITES,
    AlgorithmSuite,
)

__all__ = [
    "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
    "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
    "DEFAULT_FRAME_LENGTH",
    "SUITES",
    "AlgorithmSuite",
    "AuthenticationError",
    "ContextMismatchError",
    "DataKeyCache",
    "DecryptionMaterials",
    "EncryptedDataKey",
    "EncryptionMaterials",
    "EnvelopeError",
    "Header",
    "KeyUnavailableError",
    "KmsKeyring",
    "MaterialsManager",
    "MessageFormatError",
    "PolicyError",
    "decrypt",
    "decrypt_file",
    "decrypt_stream",
    "encrypt",
    "encrypt_file",
    "encrypt_stream",
]
