"""The trail's Ed25519 signing key: created once, kept outside the records.

The key lives at ``<data_dir>/audit-signing.key`` (the 32-byte seed in hex,
0600) and its public half at ``<data_dir>/audit-signing.pub`` (hex, 0600). Both
sit outside ``audit/`` so that whoever is given the records to audit is not
given the key that signs them.

Creation has no race: the key file is created with ``O_CREAT|O_EXCL|O_NOFOLLOW``
and mode 0600 and filled with one write. A process that loses the creation race
reads the winner's key, waiting briefly if it is not written yet; a key file
left empty by a crash during creation is reported, never silently replaced.
"""

from __future__ import annotations

import binascii
import os
import time
from pathlib import Path
from typing import Final

from nacl.signing import SigningKey, VerifyKey

from kmscore import fsutil
from kmscore.audit import _format as fmt
from kmscore.errors import KMSInternalException

__all__ = ["load_or_create_signing_key", "load_public_key"]

_KEY_HEX_LEN: Final = 64
_WAIT_FOR_WRITER: Final = 2.0


def _read_hex(path: Path, fd: int) -> bytes:
    deadline = time.monotonic() + _WAIT_FOR_WRITER
    while True:
        text = os.pread(fd, 256, 0)
        if len(text.strip()) >= _KEY_HEX_LEN or time.monotonic() >= deadline:
            break
        time.sleep(0.02)  # the creator has the file but has not written it yet
    try:
        raw = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise KMSInternalException(
            f"{path} does not hold a 32-byte key in hex; if it was left empty by a crash "
            "while the trail had no checkpoints yet, remove it and retry"
        )
    return raw


def load_public_key(data_dir: str | os.PathLike[str]) -> VerifyKey:
    """Read the trail's public key from ``<data_dir>/audit-signing.pub``.

    Args:
        data_dir: The service's data directory.

    Returns:
        The Ed25519 verify key.

    Raises:
        KMSInternalException: If the file is missing or malformed.
    """
    path = Path(data_dir) / fmt.PUBLIC_KEY_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise KMSInternalException(f"cannot read the audit public key: {exc}") from exc
    try:
        return VerifyKey(_read_hex(path, fd))
    finally:
        os.close(fd)


def load_or_create_signing_key(data_dir: str | os.PathLike[str]) -> SigningKey:
    """Load the trail's signing key, creating it and its public key on first use.

    Args:
        data_dir: The service's data directory (must exist).

    Returns:
        The Ed25519 signing key.

    Raises:
        KMSInternalException: If a file cannot be created or read, is not ours
            or not 0600, is malformed, or the public key file does not match
            the signing key.
    """
    data = Path(data_dir)
    key_path = data / fmt.SIGNING_KEY_FILE
    pub_path = data / fmt.PUBLIC_KEY_FILE
    try:
        candidate = SigningKey.generate()
        try:
            fsutil.write_private_file(key_path, candidate.encode().hex().encode("ascii") + b"\n")
            key = candidate
        except FileExistsError:
            fd = fsutil.open_private_file(key_path, os.O_RDONLY)
            try:
                key = SigningKey(_read_hex(key_path, fd))
            finally:
                os.close(fd)
        public = key.verify_key.encode()
        try:
            fsutil.write_private_file(pub_path, public.hex().encode("ascii") + b"\n")
        except FileExistsError:
            if load_public_key(data).encode() != public:
                raise KMSInternalException(
                    f"{pub_path} does not match {key_path}: one of them was replaced"
                ) from None
    except OSError as exc:
        raise KMSInternalException(f"cannot load or create the audit signing key: {exc}") from exc
    return key
