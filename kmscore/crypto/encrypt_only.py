"""Data keys from an AEAD that can only encrypt whole blobs (a token, a proxy).

The native engine makes data keys and their blobs in one call. A key whose
material lives elsewhere (an HSM token, an external key manager) can only
encrypt, one blob at a time; :class:`DataKeysByEncrypt` gives such an adapter
the engine's data-key methods on top of its own ``encrypt``.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DataKeysByEncrypt"]


class DataKeysByEncrypt:
    """``generate_data_key`` and ``generate_data_key_blobs`` through ``self.encrypt``."""

    def encrypt(self, plaintext: Any, aad: Any = b"", header: Any = b"") -> bytes:
        """``header`` then the blob of ``plaintext`` (the adapter's own)."""
        raise NotImplementedError

    def generate_data_key(
        self, key_length: int, aad: Any = b"", header: Any = b""
    ) -> tuple[bytes, bytes]:
        """A random data key from the OS CSPRNG, and its blob."""
        plaintext = os.urandom(key_length)
        return plaintext, self.encrypt(plaintext, aad, header)

    def generate_data_key_blobs(
        self, count: int, key_length: int, aad: Any = b"", header: Any = b""
    ) -> tuple[list[bytes], list[bytes]]:
        """``count`` data keys and their blobs, one ``encrypt`` each."""
        pairs = [self.generate_data_key(key_length, aad, header) for _ in range(count)]
        return [p for p, _ in pairs], [c for _, c in pairs]
