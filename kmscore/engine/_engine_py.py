"""Pure-Python twin of the native engine, over ``cryptography``'s AESGCM.

Chosen only when ``KMSCORE_PUREPYTHON=1`` is set. Same classes, same results,
same errors as :mod:`kmscore.engine._engine`; the same tests run on both.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.backends.openssl.backend import backend as _ossl_backend
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmscore.errors import InvalidCiphertextException

KEY_LENGTH = 32
IV_LENGTH = 12
TAG_LENGTH = 16
DATA_KEY_MAX = 1024
_SEAL_OVERHEAD = IV_LENGTH + TAG_LENGTH
Buffer = bytes | bytearray | memoryview


def _bytes(data: Buffer) -> bytes:
    # Through memoryview, as the native engine pins buffers: bytes(5) would be
    # five zero bytes and bytes([1, 2]) two, silently sealed instead of refused.
    return data if type(data) is bytes else memoryview(data).tobytes()


def _nbytes(data: Buffer) -> int:
    # Lengths in bytes, as the native engine counts them, not in items.
    return memoryview(data).nbytes


class AesGcmKey:
    """An AES-256-GCM key. See :class:`kmscore.engine.AesGcmKey`."""

    __slots__ = ("_aead",)

    def __init__(self, key: Buffer) -> None:
        if _nbytes(key) != KEY_LENGTH:
            raise ValueError("AES-256-GCM keys are 32 bytes")
        self._aead = AESGCM(_bytes(key))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("AesGcmKey holds key material and cannot be pickled")

    def __repr__(self) -> str:
        return "<AesGcmKey AES-256-GCM>"

    def seal(self, iv: Buffer, plaintext: Buffer, aad: Buffer = b"") -> bytes:
        iv_b, pt_b, aad_b = _bytes(iv), _bytes(plaintext), _bytes(aad)
        if len(iv_b) != IV_LENGTH:
            raise ValueError("AES-256-GCM IVs are 12 bytes")
        return self._aead.encrypt(iv_b, pt_b, aad_b)

    def open(self, iv: Buffer, data: Buffer, aad: Buffer = b"") -> bytes:
        iv_b, data_b, aad_b = _bytes(iv), _bytes(data), _bytes(aad)
        if len(iv_b) != IV_LENGTH or len(data_b) < TAG_LENGTH:
            raise InvalidCiphertextException()
        try:
            return self._aead.decrypt(iv_b, data_b, aad_b)
        except InvalidTag:
            raise InvalidCiphertextException() from None

    def generate_data_keys(
        self, count: int, key_length: int, aad: Buffer = b""
    ) -> tuple[bytes, bytes]:
        if count < 0:
            raise ValueError("count must not be negative")
        if not 1 <= key_length <= DATA_KEY_MAX:
            raise ValueError("data keys are 1 to 1024 bytes")
        if count > 0x7FFFFFFF // (key_length + _SEAL_OVERHEAD):
            raise ValueError("count is too large for one batch")
        draw = os.urandom(count * (key_length + IV_LENGTH))
        plain = draw[: count * key_length]
        ivs = draw[count * key_length :]
        aad_b = _bytes(aad)
        sealed = bytearray()
        for i in range(count):
            iv = ivs[i * IV_LENGTH : (i + 1) * IV_LENGTH]
            sealed += iv
            sealed += self._aead.encrypt(iv, plain[i * key_length : (i + 1) * key_length], aad_b)
        return plain, bytes(sealed)

    def seal_many(self, plaintexts: Sequence[Buffer], aads: Sequence[Buffer]) -> list[bytes]:
        if len(aads) != len(plaintexts):
            raise ValueError("seal_many needs one AAD per plaintext")
        ivs = os.urandom(IV_LENGTH * len(plaintexts))
        out = []
        for i, (pt, aad) in enumerate(zip(plaintexts, aads, strict=True)):
            iv = ivs[i * IV_LENGTH : (i + 1) * IV_LENGTH]
            out.append(iv + self._aead.encrypt(iv, _bytes(pt), _bytes(aad)))
        return out

    def open_many(self, sealed: Sequence[Buffer], aads: Sequence[Buffer]) -> list[bytes | None]:
        if len(aads) != len(sealed):
            raise ValueError("open_many needs one AAD per ciphertext")
        out: list[bytes | None] = []
        for item, aad in zip(sealed, aads, strict=True):
            b, aad_b = _bytes(item), _bytes(aad)
            if len(b) < _SEAL_OVERHEAD:
                out.append(None)
                continue
            try:
                out.append(self._aead.decrypt(b[:IV_LENGTH], b[IV_LENGTH:], aad_b))
            except InvalidTag:
                out.append(None)
        return out

    def encrypt(self, plaintext: Buffer, aad: Buffer = b"", header: Buffer = b"") -> bytes:
        iv = os.urandom(IV_LENGTH)
        return bytes(header) + iv + self._aead.encrypt(iv, bytes(plaintext), bytes(aad))

    def decrypt(self, data: Buffer, aad: Buffer = b"", offset: int = 0) -> bytes:
        b = bytes(data)
        if offset < 0 or len(b) - offset < _SEAL_OVERHEAD:
            raise InvalidCiphertextException()
        iv = b[offset : offset + IV_LENGTH]
        try:
            return self._aead.decrypt(iv, b[offset + IV_LENGTH :], bytes(aad))
        except InvalidTag:
            raise InvalidCiphertextException() from None

    def generate_data_key(
        self, key_length: int, aad: Buffer = b"", header: Buffer = b""
    ) -> tuple[bytes, bytes]:
        keys, blobs = self.generate_data_key_blobs(1, key_length, aad, header)
        return keys[0], blobs[0]

    def generate_data_key_blobs(
        self, count: int, key_length: int, aad: Buffer = b"", header: Buffer = b""
    ) -> tuple[list[bytes], list[bytes]]:
        plain, sealed = self.generate_data_keys(count, key_length, aad)
        item = key_length + _SEAL_OVERHEAD
        h = bytes(header)
        keys = [plain[i * key_length : (i + 1) * key_length] for i in range(count)]
        blobs = [h + sealed[i * item : (i + 1) * item] for i in range(count)]
        return keys, blobs


def constant_time_equals(a: Buffer, b: Buffer) -> bool:
    """True when two byte strings are equal, compared in constant time."""
    return hmac.compare_digest(_bytes(a), _bytes(b))


def openssl_version() -> str:
    """The version text of the OpenSSL inside ``cryptography``."""
    return str(_ossl_backend.openssl_version_text())


def openssl_header_version() -> str:
    """The twin is not built against headers; the same as :func:`openssl_version`."""
    return openssl_version()
