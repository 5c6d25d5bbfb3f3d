"""Sealing and opening symmetric ciphertext blobs under KMS keys.

The operation handlers decide *whether* (state, usage, authorization); this
module does the work: pick the key's current version, count the invocation,
rotate first if the version is exhausted, and call the engine with the AAD of
:func:`kmscore.model.blob.aad`. It is the only module that seals or opens a
blob; handlers call it rather than the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from kmscore.errors import InvalidCiphertextException, KMSInternalException
from kmscore.model import blob
from kmscore.model.key import KeyRecord
from kmscore.service.rotation import AUTOMATIC, rotate
from kmscore.service.versions import KeyVersion

if TYPE_CHECKING:
    from kmscore.service.key_service import KeyService

__all__ = [
    "blob_key_id",
    "current_version",
    "generate_data_key",
    "generate_data_keys",
    "known_version",
    "open_blob",
    "open_blobs",
    "open_parts",
    "seal",
    "seal_parts",
]


#: Rotations one call may wait through before it gives up.
_ROTATION_ATTEMPTS: Final = 8
_TAG: Final = 16


def current_version(svc: KeyService, key: KeyRecord, count: int) -> tuple[KeyRecord, KeyVersion]:
    """The version to encrypt ``count`` items under, counted before use.

    Rotates the key first when its current version has reached the AES-GCM
    invocation limit.

    Raises:
        KMSInternalException: even fresh versions refuse the count.
    """
    for _ in range(_ROTATION_ATTEMPTS):
        version = key.current_version
        kv = svc.keyring.reserve(key, version, count)
        if kv is not None:
            return key, kv
        # Other threads or processes may use up the version this rotation
        # (theirs or ours) makes before this call reserves from it: try again.
        key = rotate(svc, key, AUTOMATIC, after_version=version)
    raise KMSInternalException(f"{key.arn} cannot encrypt {count} items under one version.")


def seal(
    svc: KeyService, key: KeyRecord, plaintext: bytes, context: bytes
) -> tuple[bytes, KeyVersion]:
    """Encrypt under the key's current version; return the blob and version."""
    key, kv = current_version(svc, key, 1)
    return kv.aead.encrypt(plaintext, blob.aad(kv.header, context), kv.header), kv


def generate_data_key(
    svc: KeyService, key: KeyRecord, length: int, context: bytes
) -> tuple[bytes, bytes, KeyVersion]:
    """A random data key of ``length`` bytes and its blob under the current version.

    Raises:
        KMSInternalException: even fresh versions refuse the count.
    """
    key, kv = current_version(svc, key, 1)
    plaintext, ciphertext = kv.aead.generate_data_key(
        length, blob.aad(kv.header, context), kv.header
    )
    return plaintext, ciphertext, kv


def generate_data_keys(
    svc: KeyService, key: KeyRecord, count: int, length: int, context: bytes
) -> tuple[list[bytes], list[bytes], KeyVersion]:
    """``count`` data keys and their blobs, counted and made in one engine call.

    Raises:
        KMSInternalException: even fresh versions refuse the count.
    """
    key, kv = current_version(svc, key, count)
    keys, blobs = kv.aead.generate_data_key_blobs(
        count, length, blob.aad(kv.header, context), kv.header
    )
    return keys, blobs, kv


def blob_key_id(svc: KeyService, data: bytes) -> tuple[str, int]:
    """The key id and material version a blob names.

    Raises:
        InvalidCiphertextException: the blob is malformed.
    """
    if len(data) < blob.MIN_LENGTH:
        raise InvalidCiphertextException()
    kv = svc.keyring.lookup_header(data[: blob.HEADER_LENGTH])
    if kv is not None:
        return kv.key_id, kv.version
    parsed = blob.parse(data)
    return parsed.key_id, parsed.material_version


def known_version(svc: KeyService, key: KeyRecord, version: int) -> KeyRecord:
    """The key, checked to have material ``version``.

    A version past the cached record's current one may have been made by
    another process that rotated the key since this one cached it, so the
    store is asked before the blob is refused.

    Raises:
        InvalidCiphertextException: the key has no such version.
    """
    if 1 <= version <= key.current_version:
        return key
    if version > key.current_version:
        fresh = svc.store.get_key(key.key_id)
        if fresh is not None and version <= fresh.current_version:
            svc.forget(key.key_id)
            return fresh
    raise InvalidCiphertextException()


def open_blob(
    svc: KeyService, key: KeyRecord, version: int, data: bytes, context: bytes
) -> tuple[bytes, KeyVersion]:
    """Decrypt a blob made under ``key``'s material ``version``.

    Raises:
        InvalidCiphertextException: the version does not exist, or the blob
            does not authenticate with this context.
    """
    key = known_version(svc, key, version)
    kv = svc.keyring.load(key, version)
    header = data[: blob.HEADER_LENGTH]
    return kv.aead.decrypt(data, blob.aad(header, context), blob.HEADER_LENGTH), kv


def open_blobs(
    kv: KeyVersion, data: Sequence[bytes], contexts: Sequence[bytes]
) -> list[bytes | None]:
    """Open blobs that all name ``kv``'s key and version, in one engine call.

    Returns:
        Each plaintext, or None where the blob does not authenticate with
        its context.
    """
    header = kv.header
    return kv.aead.open_many(
        [memoryview(item)[len(header) :] for item in data],
        [blob.aad(header, context) for context in contexts],
    )


def seal_parts(kv: KeyVersion, iv: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-GCM under a key version with a given IV and AAD: (ciphertext, tag).

    For the XKS proxy (:mod:`kmscore.service.xks_proxy`), whose answers carry
    the parts of an encryption, not a blob.
    """
    sealed = kv.aead.seal(iv, plaintext, aad)
    return sealed[:-_TAG], sealed[-_TAG:]


def open_parts(kv: KeyVersion, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
    """Open what :func:`seal_parts` made.

    Raises:
        InvalidCiphertextException: it does not authenticate.
    """
    return kv.aead.open(iv, ciphertext + tag, aad)
