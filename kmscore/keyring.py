"""Key material in use: engine contexts cached per key version, and counts.

The hot path never touches the store for material: each (key, version) is
unwrapped once into an :class:`~kmscore.engine.AesGcmKey` whose schedule is set
once, and cached until the key changes state.

AES-GCM with random 96-bit IVs is safe for 2**32 invocations per key (NIST SP
800-38D). Encryptions are counted per key version against blocks reserved
durably in the store *before* use: after a crash, a process starts a fresh
block, so the durable total always covers every invocation ever made, in any
process. When a reservation would cross the limit, :meth:`Keyring.reserve`
says so and the service rotates the key first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Final

from kmscore import blob
from kmscore.engine import AesGcmKey
from kmscore.errors import KMSInternalException
from kmscore.keys import KeyRecord
from kmscore.rootkey import RootKey
from kmscore.store import KeyStore

__all__ = ["DEFAULT_BLOCK", "DEFAULT_LIMIT", "KeyVersion", "Keyring"]

#: Invocations reserved per store write.
DEFAULT_BLOCK: Final = 1 << 20
#: Rotate before this many invocations of one key version (2**32 less a margin
#: of one block per process that may hold an unused reservation).
DEFAULT_LIMIT: Final = (1 << 32) - (1 << 26)


@dataclass(slots=True)
class KeyVersion:
    """One loaded key material version: its engine context and blob header."""

    key_id: str
    version: int
    aead: AesGcmKey
    material_id: str
    header: bytes
    used: int = 0
    reserved: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Keyring:
    """Cache of unwrapped key versions, with durable invocation counting."""

    def __init__(
        self,
        store: KeyStore,
        root_key: RootKey,
        *,
        block: int = DEFAULT_BLOCK,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        """Create an empty keyring.

        Args:
            store: Where wrapped material and reservations live.
            root_key: Unwraps material.
            block: Invocations reserved per store write.
            limit: Invocations per key version before rotation is required.
        """
        self._store = store
        self._root_key = root_key
        self._block = block
        self._limit = limit
        self._versions: dict[tuple[str, int], KeyVersion] = {}
        self._by_header: dict[bytes, KeyVersion] = {}
        self._lock = threading.Lock()

    def _load(self, key: KeyRecord, version: int) -> KeyVersion:
        slot = self._versions.get((key.key_id, version))
        if slot is not None:
            return slot
        with self._lock:
            slot = self._versions.get((key.key_id, version))
            if slot is not None:
                return slot
            material = self._store.get_material(key.key_id, version)
            if material is None:
                raise KMSInternalException(f"Key {key.arn} has no key material version {version}.")
            raw = self._root_key.unwrap(material.wrapped, key.arn, version)
            slot = KeyVersion(
                key.key_id,
                version,
                AesGcmKey(raw),
                material.material_id,
                blob.header(key.key_id, version),
            )
            del raw
            self._versions[(key.key_id, version)] = slot
            self._by_header[slot.header] = slot
            return slot

    def load(self, key: KeyRecord, version: int) -> KeyVersion:
        """One key version, loaded on first use.

        Raises:
            KMSInternalException: the version does not exist or its stored
                material does not authenticate.
        """
        return self._load(key, version)

    def lookup_header(self, header: bytes) -> KeyVersion | None:
        """The loaded version whose blobs start with ``header``, if any."""
        return self._by_header.get(header)

    def aead(self, key: KeyRecord, version: int) -> AesGcmKey:
        """The engine context of one key version (loaded on first use).

        Raises:
            KMSInternalException: the version does not exist or its stored
                material does not authenticate.
        """
        return self._load(key, version).aead

    def material_id(self, key: KeyRecord, version: int) -> str:
        """The KeyMaterialId of one key version."""
        return self._load(key, version).material_id

    def reserve(self, key: KeyRecord, version: int, count: int) -> bool:
        """Count ``count`` encryptions under a key version before they happen.

        Returns:
            True when they may proceed; False when they would pass the limit,
            so the caller must rotate the key and use the new version.
        """
        slot = self._load(key, version)
        with slot.lock:
            if slot.used + count <= slot.reserved:
                slot.used += count
                return True
            want = max(self._block, count)
            total = self._store.reserve_invocations(key.key_id, version, want)
            if total > self._limit:
                # Spent or not, this reservation is counted durably: the
                # version stays retired for encryption.
                slot.used = slot.reserved = total
                return False
            slot.used, slot.reserved = total - want + count, total
            return True

    def invalidate(self, key_id: str) -> None:
        """Forget every cached version of a key (its state changed)."""
        with self._lock:
            for k in [k for k in self._versions if k[0] == key_id]:
                self._by_header.pop(self._versions.pop(k).header, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._versions.clear()
            self._by_header.clear()
