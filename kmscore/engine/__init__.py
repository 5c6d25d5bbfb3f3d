"""The AES-256-GCM engine: the hot path of every data key.

``AesGcmKey(key)`` sets the key schedule once; its methods are:

- ``seal(iv, plaintext, aad) -> ciphertext || tag``: ``ValueError`` for an IV
  that is not 12 bytes (a caller bug: the service makes its own IVs).
- ``open(iv, data, aad) -> plaintext``: raises
  :class:`~kmscore.errors.InvalidCiphertextException` for any authentication
  failure, wrong IV length or short data, without saying which.
- ``generate_data_keys(count, key_length, aad) -> (plaintexts, sealed)``: makes
  ``count`` random data keys of 1-1024 bytes and seals each under this key with
  its own random IV and the same AAD, drawing all randomness in one RNG call.
  ``plaintexts`` packs the keys back to back; ``sealed`` packs
  ``IV || ciphertext || tag`` items of ``12 + key_length + 16`` bytes.
- ``seal_many(plaintexts, aads) -> [IV || ciphertext || tag, ...]`` with fresh
  random IVs drawn in one RNG call.
- ``open_many(sealed, aads) -> [plaintext or None, ...]``: ``None`` marks an
  item that failed to authenticate; the others are unaffected.

Service-shaped calls, which save Python steps on the hot path:

- ``encrypt(plaintext, aad, header) -> header || IV || ciphertext || tag`` with
  a fresh random IV drawn by the engine.
- ``decrypt(data, aad, offset) -> plaintext`` opens the ``IV || ciphertext ||
  tag`` that starts at ``data[offset]`` without slicing it out first.
- ``generate_data_key(key_length, aad, header) -> (key, header || IV ||
  ciphertext || tag)``: one data key, with key and IV from one RNG draw.
- ``generate_data_key_blobs(count, key_length, aad, header) -> ([key, ...],
  [header || IV || ciphertext || tag, ...])``: the batch call, split into
  ready-made ciphertext blobs. The engine's packed copy of the keys is wiped.

Keys of other sizes raise ``ValueError``. The service uses only 256-bit keys,
96-bit IVs and 128-bit tags.

``BACKEND`` is ``"native"`` (the C engine over the system OpenSSL, via Cython)
or ``"python"`` (``cryptography``'s AESGCM). The Python twin is chosen only when
``KMSCORE_PUREPYTHON=1`` is set; otherwise a missing native extension is an
ImportError, never a silent fallback.
"""

from __future__ import annotations

import os
from typing import Final, Literal

__all__ = [
    "BACKEND",
    "DATA_KEY_MAX",
    "IV_LENGTH",
    "KEY_LENGTH",
    "TAG_LENGTH",
    "AesGcmKey",
    "constant_time_equals",
    "openssl_header_version",
    "openssl_version",
]

_PUREPYTHON = os.environ.get("KMSCORE_PUREPYTHON") == "1"
BACKEND: Final[Literal["native", "python"]] = "python" if _PUREPYTHON else "native"

if _PUREPYTHON:
    from kmscore.engine._engine_py import (
        DATA_KEY_MAX,
        IV_LENGTH,
        KEY_LENGTH,
        TAG_LENGTH,
        AesGcmKey,
        constant_time_equals,
        openssl_header_version,
        openssl_version,
    )
else:
    try:
        # mypy types this module by the twin imported above; both share one interface.
        from kmscore.engine._engine import (  # type: ignore[assignment]
            DATA_KEY_MAX,
            IV_LENGTH,
            KEY_LENGTH,
            TAG_LENGTH,
            AesGcmKey,
            constant_time_equals,
            openssl_header_version,
            openssl_version,
        )
    except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
        raise ImportError(
            "kmscore's native engine (kmscore.engine._engine) is not built. Install the "
            "package with its build (pip install -e .), or set KMSCORE_PUREPYTHON=1 "
            "to use the pure-Python twin on purpose."
        ) from exc
