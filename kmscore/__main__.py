"""``python -m kmscore``: show which engine runs and prove it works.

Prints the version, the AES-GCM engine backend and its OpenSSL, then seals and
opens a message under a fresh key and checks that a changed ciphertext is
refused. This will become ``kms serve``.
"""

from __future__ import annotations

import os
import sys

from kmscore import __version__, engine
from kmscore.errors import InvalidCiphertextException


def main() -> int:
    """Report the engine and run one seal/open round trip.

    Returns:
        The process exit status: 0 when the round trip succeeded and a tampered
        ciphertext was refused, 1 otherwise.
    """
    key = engine.AesGcmKey(os.urandom(engine.KEY_LENGTH))
    iv = os.urandom(engine.IV_LENGTH)
    plaintext = b"kmscore engine self-check"
    aad = b"python -m kmscore"

    sealed = key.seal(iv, plaintext, aad)
    round_trip = engine.constant_time_equals(key.open(iv, sealed, aad), plaintext)
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    try:
        key.open(iv, tampered, aad)
        tamper_refused = False
    except InvalidCiphertextException:
        tamper_refused = True

    def verdict(ok: bool) -> str:
        return "ok" if ok else "FAILED"

    print(f"kmscore {__version__}")
    print(f"engine backend: {engine.BACKEND}")
    print(f"OpenSSL: {engine.openssl_version()}")
    print(
        f"seal/open round trip: {len(plaintext)} bytes -> {len(sealed)} bytes sealed "
        f"-> {verdict(round_trip)}"
    )
    print(f"tampered ciphertext refused: {verdict(tamper_refused)}")
    return 0 if round_trip and tamper_refused else 1


if __name__ == "__main__":
    sys.exit(main())
