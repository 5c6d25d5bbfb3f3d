"""The symmetric ciphertext blob, version 1.

Layout (integers big-endian)::

    magic (1) = 0xC5 | version (1) | key id (16) | material version (4)
    | IV (12) | ciphertext | tag (16)

The version byte's high bit flags a multi-Region key id (``mrk-`` + 32 hex),
whose 16 raw bytes are stored the same way as a UUID's. The AAD of the
AES-GCM seal is the 22-byte header followed by the canonical encryption
context, so the key id, the material version and the context are all
authenticated. Every way a blob can be malformed raises the same
:class:`~kmscore.errors.InvalidCiphertextException`, with no detail.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from kmscore.errors import InvalidCiphertextException
from kmscore.model.arn import is_multi_region_id, key_id_from_bytes, key_id_to_bytes

__all__ = ["HEADER_LENGTH", "MIN_LENGTH", "ParsedBlob", "aad", "header", "parse"]

MAGIC: Final = 0xC5
VERSION: Final = 1
_MRK_FLAG: Final = 0x80
_HEADER: Final = struct.Struct(">BB16sI")
HEADER_LENGTH: Final = _HEADER.size  # 22
IV_LENGTH: Final = 12
TAG_LENGTH: Final = 16
#: The shortest blob: header, IV and tag around a one-byte ciphertext.
MIN_LENGTH: Final = HEADER_LENGTH + IV_LENGTH + 1 + TAG_LENGTH


def header(key_id: str, material_version: int) -> bytes:
    """The 22-byte header of a blob made under ``key_id``'s material version."""
    flag = _MRK_FLAG if is_multi_region_id(key_id) else 0
    return _HEADER.pack(MAGIC, VERSION | flag, key_id_to_bytes(key_id), material_version)


def aad(blob_header: bytes, context: bytes) -> bytes:
    """The AES-GCM AAD of a blob: its header, then the canonical context.

    This is the one place the rule is written: every seal and open of a blob
    (:mod:`kmscore.service.symmetric`) takes its AAD from here.

    Args:
        blob_header: The blob's 22-byte header (:func:`header`).
        context: The canonical encryption context
            (:func:`kmscore.model.context.prepare`), ``b""`` for none.
    """
    return blob_header + context


@dataclass(frozen=True, slots=True)
class ParsedBlob:
    """A blob split into its parts. ``sealed`` is IV || ciphertext || tag."""

    key_id: str
    material_version: int
    header: bytes
    sealed: bytes


def parse(blob: bytes) -> ParsedBlob:
    """Split a blob; the tag is checked later, by the engine.

    Raises:
        InvalidCiphertextException: too short, wrong magic or unknown version.
    """
    if len(blob) < MIN_LENGTH:
        raise InvalidCiphertextException()
    magic, version, raw_id, material_version = _HEADER.unpack_from(blob)
    if magic != MAGIC or (version & ~_MRK_FLAG) != VERSION:
        raise InvalidCiphertextException()
    key_id = key_id_from_bytes(raw_id, bool(version & _MRK_FLAG))
    return ParsedBlob(key_id, material_version, blob[:HEADER_LENGTH], blob[HEADER_LENGTH:])
