"""One-call encrypt and decrypt of bytes and files."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from kmscore.envelope.framing import (
    DEFAULT_FRAME_LENGTH,
    MemorySource,
    decrypt_stream,
    encrypt_stream,
    frames_of_bytes,
)
from kmscore.envelope.header import Header
from kmscore.envelope.keyring import MaterialsManager
from kmscore.envelope.suites import DEFAULT_SUITE, AlgorithmSuite


def encrypt(
    plaintext: bytes | bytearray | memoryview,
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    suite: AlgorithmSuite = DEFAULT_SUITE,
    frame_length: int = DEFAULT_FRAME_LENGTH,
) -> bytes:
    """Encrypt bytes into one message."""
    out = io.BytesIO()
    encrypt_stream(
        io.BytesIO(),
        out,
        materials,
        encryption_context=encryption_context,
        suite=suite,
        frame_length=frame_length,
        plaintext_length=len(plaintext),
        frames=frames_of_bytes(plaintext, frame_length),
    )
    return out.getvalue()


def decrypt(
    message: bytes | bytearray | memoryview,
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    allow_legacy: bool = False,
    max_encrypted_data_keys: int | None = None,
) -> tuple[bytes, Header]:
    """Decrypt one message; plaintext is returned only when all of it verified."""
    out = io.BytesIO()
    header = decrypt_stream(
        io.BytesIO(),
        out,
        materials,
        encryption_context=encryption_context,
        allow_legacy=allow_legacy,
        max_encrypted_data_keys=max_encrypted_data_keys,
        source=MemorySource(message),
    )
    return out.getvalue(), header


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A temporary file beside ``path``, renamed to it only if the block succeeds.

    On any failure the temporary file is removed and ``path`` is untouched.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _regular_file_size(f: BinaryIO) -> int | None:
    """The size of a regular file; None for a pipe or device (its size says nothing)."""
    st = os.fstat(f.fileno())
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    suite: AlgorithmSuite = DEFAULT_SUITE,
    frame_length: int = DEFAULT_FRAME_LENGTH,
) -> Header:
    """Encrypt a file; the output appears (atomically) only when complete."""
    src_path, dst_path = Path(src), Path(dst)
    with open(src_path, "rb") as f, atomic_output(dst_path) as out:
        return encrypt_stream(
            f,
            out,
            materials,
            encryption_context=encryption_context,
            suite=suite,
            frame_length=frame_length,
            plaintext_length=_regular_file_size(f),
        )


def decrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    allow_legacy: bool = False,
    max_encrypted_data_keys: int | None = None,
) -> Header:
    """Decrypt a file into a temporary file, renamed to ``dst`` only once all verified.

    A failure leaves no output file behind.
    """
    src_path, dst_path = Path(src), Path(dst)
    with open(src_path, "rb") as f, atomic_output(dst_path) as out:
        return decrypt_stream(
            f,
            out,
            materials,
            encryption_context=encryption_context,
            allow_legacy=allow_legacy,
            max_encrypted_data_keys=max_encrypted_data_keys,
        )
