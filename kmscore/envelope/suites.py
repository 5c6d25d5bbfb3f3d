"""Algorithm suites of the Encryption SDK message format, and their key derivation.

The committing suites (message format version 2) derive the data encryption
key and a commitment key from the data key with HKDF-SHA512, salted with the
32-byte message id. The older suites (format version 1) use HKDF with the
algorithm id and message id as info and no salt, or no KDF at all; they are
kept for reading old messages only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

IV_LEN = 12
TAG_LEN = 16


@dataclass(frozen=True)
class AlgorithmSuite:
    """One algorithm suite: what the header's algorithm id means."""

    suite_id: int
    message_version: int
    key_len: int
    kdf: type[hashes.HashAlgorithm] | None
    curve: type[ec.EllipticCurve] | None
    sig_hash: type[hashes.HashAlgorithm] | None
    committing: bool
    name: str

    @property
    def id_bytes(self) -> bytes:
        """The algorithm id as it appears in the header (big-endian u16)."""
        return struct.pack(">H", self.suite_id)

    @property
    def signed(self) -> bool:
        """Whether messages of this suite end with an ECDSA signature."""
        return self.curve is not None

    @property
    def suite_data_len(self) -> int:
        """Length of the header's algorithm suite data (the commitment key)."""
        return 32 if self.committing else 0

    def derive_key(self, data_key: bytes | bytearray, message_id: bytes) -> bytes:
        """The AES-GCM key of one message, derived from its data key."""
        if self.kdf is None:
            return bytes(data_key)
        if self.committing:
            hkdf = HKDF(
                self.kdf(), self.key_len, salt=message_id, info=self.id_bytes + b"DERIVEKEY"
            )
        else:
            hkdf = HKDF(self.kdf(), self.key_len, salt=None, info=self.id_bytes + message_id)
        return hkdf.derive(bytes(data_key))

    def commitment_key(self, data_key: bytes | bytearray, message_id: bytes) -> bytes:
        """The key commitment value written in the header (committing suites only)."""
        if not self.committing or self.kdf is None:
            raise ValueError(f"suite {self.name} does not commit to its key")
        return HKDF(self.kdf(), 32, salt=message_id, info=b"COMMITKEY").derive(bytes(data_key))


def _suite(
    sid: int,
    version: int,
    key_len: int,
    kdf: type[hashes.HashAlgorithm] | None,
    curve: type[ec.EllipticCurve] | None,
    sig_hash: type[hashes.HashAlgorithm] | None,
    name: str,
) -> AlgorithmSuite:
    return AlgorithmSuite(sid, version, key_len, kdf, curve, sig_hash, version == 2, name)


AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 = _suite(
    0x0578, 2, 32, hashes.SHA512, ec.SECP384R1, hashes.SHA384,
    "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
)  # fmt: skip
AES_256_GCM_HKDF_SHA512_COMMIT_KEY = _suite(
    0x0478, 2, 32, hashes.SHA512, None, None, "AES_256_GCM_HKDF_SHA512_COMMIT_KEY"
)

_LEGACY = [
    _suite(0x0378, 1, 32, hashes.SHA384, ec.SECP384R1, hashes.SHA384,
           "AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384"),
    _suite(0x0346, 1, 24, hashes.SHA384, ec.SECP384R1, hashes.SHA384,
           "AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384"),
    _suite(0x0214, 1, 16, hashes.SHA256, ec.SECP256R1, hashes.SHA256,
           "AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256"),
    _suite(0x0178, 1, 32, hashes.SHA256, None, None, "AES_256_GCM_IV12_TAG16_HKDF_SHA256"),
    _suite(0x0146, 1, 24, hashes.SHA256, None, None, "AES_192_GCM_IV12_TAG16_HKDF_SHA256"),
    _suite(0x0114, 1, 16, hashes.SHA256, None, None, "AES_128_GCM_IV12_TAG16_HKDF_SHA256"),
    _suite(0x0078, 1, 32, None, None, None, "AES_256_GCM_IV12_TAG16_NO_KDF"),
    _suite(0x0046, 1, 24, None, None, None, "AES_192_GCM_IV12_TAG16_NO_KDF"),
    _suite(0x0014, 1, 16, None, None, None, "AES_128_GCM_IV12_TAG16_NO_KDF"),
]  # fmt: skip

SUITES: dict[int, AlgorithmSuite] = {
    s.suite_id: s
    for s in [
        AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
        AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        *_LEGACY,
    ]
}

#: Suites this package writes.
WRITABLE = frozenset({0x0578, 0x0478})
DEFAULT_SUITE = AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384


def suite_by_id(suite_id: int) -> AlgorithmSuite | None:
    """The suite with this algorithm id, or None when unknown."""
    return SUITES.get(suite_id)
