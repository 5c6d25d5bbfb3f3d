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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from kmscore.crypto.asymmetric import LoadedKey
from kmscore.crypto.pkcs11_token import TokenAead
from kmscore.crypto.rootkey import RootKey
from kmscore.engine import AesGcmKey
from kmscore.errors import KMSError, KMSInternalException
from kmscore.model import blob
from kmscore.model.key import KeyMaterialRecord, KeyRecord
from kmscore.store import KeyStore

if TYPE_CHECKING:
    from kmscore.service.xks_client import XksAead

#: Makes the AEAD of a custom key store's key version (kmscore.service.custom_key_stores).
CustomAead = Callable[[KeyRecord, KeyMaterialRecord], "TokenAead | XksAead"]

__all__ = ["DEFAULT_BLOCK", "DEFAULT_LIMIT", "AsymmetricVersion", "KeyVersion", "Keyring"]

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
    aead: AesGcmKey | TokenAead | XksAead
    material_id: str
    header: bytes
    used: int = 0
    reserved: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class AsymmetricVersion:
    """One loaded version of an asymmetric or HMAC key: its parsed key."""

    key_id: str
    version: int
    key: LoadedKey
    material_id: str


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
        self._asymmetric: dict[tuple[str, int], AsymmetricVersion] = {}
        self._lock = threading.Lock()
        #: Makes the AEAD of a key version whose material lives in a custom
        #: key store (set by the service; see kmscore.service.custom_key_stores).
        self.custom_aead: Callable[[KeyRecord, KeyMaterialRecord], TokenAead | XksAead] | None = (
            None
        )

    def _load(self, key: KeyRecord, version: int) -> KeyVersion:
        slot = self._versions.get((key.key_id, version))
        if slot is not None:
            return slot
        with self._lock:
            slot = self._versions.get((key.key_id, version))
            if slot is not None:
                return slot
            if key.key_spec != "SYMMETRIC_DEFAULT":
                raise KMSInternalException(f"Key {key.arn} is not a symmetric encryption key.")
            material = self._store.get_material(key.key_id, version)
            if material is None:
                raise KMSInternalException(f"Key {key.arn} has no key material version {version}.")
            if key.custom_key_store_id is not None and self.custom_aead is not None:
                # Material in a custom key store: the store does the AES-GCM.
                aead: AesGcmKey | TokenAead | XksAead = self.custom_aead(key, material)
            else:
                raw = self._root_key.unwrap(material.wrapped, key.arn, version)
                aead = AesGcmKey(raw)
                del raw
            slot = KeyVersion(
                key.key_id,
                version,
                aead,
                material.material_id,
                blob.header(key.key_id, version),
            )
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

    def asymmetric(self, key: KeyRecord, version: int) -> AsymmetricVersion:
        """One version of an asymmetric or HMAC key, parsed once and cached.

        The material was generated by this service and comes back
        authenticated by the root key, so the slow RSA consistency check is
        skipped (see :meth:`LoadedKey.load`).

        Raises:
            KMSInternalException: the version does not exist, its stored
                material does not authenticate, or it does not parse as a key
                of the key's spec.
        """
        slot = self._asymmetric.get((key.key_id, version))
        if slot is not None:
            return slot
        with self._lock:
            slot = self._asymmetric.get((key.key_id, version))
            if slot is not None:
                return slot
            material = self._store.get_material(key.key_id, version)
            if material is None:
                raise KMSInternalException(f"Key {key.arn} has no key material version {version}.")
            raw = self._root_key.unwrap(material.wrapped, key.arn, version)
            try:
                loaded = LoadedKey.load(key.key_spec, raw, check=False)
            except KMSError:
                raise KMSInternalException(
                    f"Key {key.arn} material version {version} is not a {key.key_spec} key."
                ) from None
            finally:
                del raw
            slot = AsymmetricVersion(key.key_id, version, loaded, material.material_id)
            self._asymmetric[(key.key_id, version)] = slot
            return slot

    def lookup_header(self, header: bytes) -> KeyVersion | None:
        """The loaded version whose blobs start with ``header``, if any."""
        return self._by_header.get(header)

    def aead(self, key: KeyRecord, version: int) -> AesGcmKey | TokenAead | XksAead:
        """The engine context of one key version (loaded on first use).

        Raises:
            KMSInternalException: the version does not exist or its stored
                material does not authenticate.
        """
        return self._load(key, version).aead

    def material_id(self, key: KeyRecord, version: int) -> str:
        """The KeyMaterialId of one key version."""
        if key.key_spec != "SYMMETRIC_DEFAULT":
            slot = self._asymmetric.get((key.key_id, version))
            if slot is not None:
                return slot.material_id
            # DescribeKey needs only the id: no need to parse the key.
            material = self._store.get_material(key.key_id, version)
            if material is None:
                raise KMSInternalException(f"Key {key.arn} has no key material version {version}.")
            return material.material_id
        return self._load(key, version).material_id

    def reserve(self, key: KeyRecord, version: int, count: int) -> KeyVersion | None:
        """Count ``count`` encryptions under a key version before they happen.

        Returns:
            The version, loaded, when they may proceed; None when they would
            pass the limit, so the caller must rotate the key and use the new
            version.

        Raises:
            KMSInternalException: as :meth:`load`.
        """
        slot = self._versions.get((key.key_id, version)) or self._load(key, version)
        with slot.lock:
            if slot.used + count <= slot.reserved:
                slot.used += count
                return slot
            want = max(self._block, count)
            total = self._store.reserve_invocations(key.key_id, version, want)
            if total > self._limit:
                # Spent or not, this reservation is counted durably: the
                # version stays retired for encryption.
                slot.used = slot.reserved = total
                return None
            slot.used, slot.reserved = total - want + count, total
            return slot

    def invalidate(self, key_id: str) -> None:
        """Forget every cached version of a key (its state changed)."""
        with self._lock:
            for k in [k for k in self._versions if k[0] == key_id]:
                self._by_header.pop(self._versions.pop(k).header, None)
            for k in [k for k in self._asymmetric if k[0] == key_id]:
                del self._asymmetric[k]

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._versions.clear()
            self._by_header.clear()
            self._asymmetric.clear()
