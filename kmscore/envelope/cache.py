"""A data key cache with the semantics of the Encryption SDK's caching materials manager.

:class:`DataKeyCache` wraps a keyring and reuses its materials:

- an encryption entry serves messages until it is ``max_age`` seconds old, or
  has served ``max_messages`` messages, or would pass ``max_bytes`` plaintext
  bytes; the message that would pass a limit gets a fresh data key instead, so
  a plaintext key is never used past a limit;
- encryption requests of unknown length, or longer than ``max_bytes``, bypass
  the cache;
- entries are partitioned by the keyring's KMS key set, the encryption context
  and the algorithm suite; decryption entries by the keyring, the suite, the
  encrypted data keys and the context, and expire by age;
- at most ``capacity`` entries are kept, least recently used evicted first;
- an evicted or expired entry's data key buffer is overwritten with zeros.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kmscore.envelope.header import Header, serialize_context
from kmscore.envelope.keyring import (
    DecryptionMaterials,
    EncryptionMaterials,
    KmsKeyring,
    check_context,
    wipe,
)
from kmscore.envelope.suites import AlgorithmSuite

MAX_MESSAGES_LIMIT = 2**32


@dataclass
class _Entry:
    materials: EncryptionMaterials | DecryptionMaterials
    created: float
    messages: int = 0
    bytes: int = 0


class DataKeyCache:
    """Caches materials of a :class:`KmsKeyring`; see the module docstring.

    Args:
        keyring: Where fresh materials come from.
        max_age: Seconds an entry may be used (required, > 0).
        max_messages: Messages per data key (1..2**32).
        max_bytes: Plaintext bytes per data key.
        capacity: Entries kept (LRU).
        clock: Monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        keyring: KmsKeyring,
        *,
        max_age: float,
        max_messages: int = MAX_MESSAGES_LIMIT,
        max_bytes: int = 2**63 - 1,
        capacity: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Make a cache; see the class docstring."""
        if not max_age > 0:
            raise ValueError("max_age must be positive")
        if not 1 <= max_messages <= MAX_MESSAGES_LIMIT:
            raise ValueError("max_messages must be 1..2**32")
        if max_bytes < 0 or capacity < 1:
            raise ValueError("max_bytes must be >= 0 and capacity >= 1")
        self.keyring = keyring
        self.max_age = max_age
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        """The number of entries held."""
        return len(self._entries)

    def clear(self) -> None:
        """Evict (and wipe) every entry."""
        with self._lock:
            for key in list(self._entries):
                self._evict(key)

    def _evict(self, key: tuple[Any, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            wipe(entry.materials.data_key)

    def _lookup(self, key: tuple[Any, ...]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry.created >= self.max_age:
            self._evict(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def _store(self, key: tuple[Any, ...], entry: _Entry) -> None:
        self._evict(key)
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            self._evict(next(iter(self._entries)))

    def get_encryption_materials(
        self, suite: AlgorithmSuite, context: Mapping[str, str], plaintext_length: int | None
    ) -> EncryptionMaterials:
        """Cached materials when within every limit, else fresh ones (then cached)."""
        ctx = check_context(context)
        if plaintext_length is None or plaintext_length > self.max_bytes:
            self.misses += 1
            return self.keyring.get_encryption_materials(suite, ctx, plaintext_length)
        key = ("encrypt", self.keyring.partition, suite.suite_id, serialize_context(ctx))
        with self._lock:
            entry = self._lookup(key)
            if entry is not None:
                if (
                    entry.messages + 1 <= self.max_messages
                    and entry.bytes + plaintext_length <= self.max_bytes
                ):
                    entry.messages += 1
                    entry.bytes += plaintext_length
                    self.hits += 1
                    return _copy_enc(entry.materials)  # type: ignore[arg-type]
                self._evict(key)
        self.misses += 1
        fresh = self.keyring.get_encryption_materials(suite, ctx, plaintext_length)
        entry = _Entry(_copy_enc(fresh), self._clock(), 1, plaintext_length)
        if self.max_messages > 1:
            with self._lock:
                self._store(key, entry)
        else:
            wipe(entry.materials.data_key)
        return fresh

    def decrypt_materials(self, header: Header) -> DecryptionMaterials:
        """Cached decryption materials for these EDKs and context, else fresh ones."""
        edks = tuple(
            sorted(
                (e.provider_id, e.provider_info, e.ciphertext) for e in header.encrypted_data_keys
            )
        )
        key = (
            "decrypt",
            self.keyring.partition,
            header.suite.suite_id,
            edks,
            serialize_context(header.encryption_context),
        )
        with self._lock:
            entry = self._lookup(key)
            if entry is not None:
                self.hits += 1
                mats = entry.materials
                return DecryptionMaterials(
                    mats.suite, bytearray(mats.data_key), getattr(mats, "verification_key", None)
                )
        self.misses += 1
        fresh = self.keyring.decrypt_materials(header)
        with self._lock:
            self._store(
                key,
                _Entry(
                    DecryptionMaterials(
                        fresh.suite, bytearray(fresh.data_key), fresh.verification_key
                    ),
                    self._clock(),
                ),
            )
        return fresh


def _copy_enc(m: EncryptionMaterials) -> EncryptionMaterials:
    return EncryptionMaterials(
        m.suite,
        dict(m.encryption_context),
        bytearray(m.data_key),
        list(m.encrypted_data_keys),
        m.signing_key,
    )
