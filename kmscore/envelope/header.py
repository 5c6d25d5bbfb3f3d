"""The message header: serialization and parsing.

Integers are big-endian. Version 2 (written and read)::

    version 0x02 | algorithm id u16 | message id (32) | AAD length u16 | AAD
    | EDK count u16 | EDKs | content type 0x02 | frame length u32
    | algorithm suite data (the 32-byte commitment key)
    | header auth tag (16)

Version 1 (read only) has a type byte 0x80 after the version, a 16-byte message
id, four reserved zero bytes and an IV length byte before the frame length, no
suite data, and an IV before the header auth tag.

The AAD is the encryption context: a u16 pair count, then pairs sorted by the
UTF-8 bytes of the key, each key and value a u16 length and UTF-8 bytes. An
empty context is an AAD length of 0 and no AAD at all. Each EDK is provider id,
provider info and ciphertext, each a u16 length and bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kmscore.envelope.errors import MessageFormatError
from kmscore.envelope.suites import IV_LEN, TAG_LEN, AlgorithmSuite, suite_by_id

FRAMED = 0x02
NON_FRAMED = 0x01
V1_TYPE = 0x80
MAX_FRAME_LENGTH = 2**31 - 1
RESERVED_PREFIX = "aws-crypto-"
PUBLIC_KEY_FIELD = "aws-crypto-public-key"


@dataclass(frozen=True)
class EncryptedDataKey:
    """One wrapped copy of the data key."""

    provider_id: str
    provider_info: bytes
    ciphertext: bytes


@dataclass
class Header:
    """A parsed or to-be-written header (without its authentication)."""

    suite: AlgorithmSuite
    message_id: bytes
    encryption_context: dict[str, str]
    encrypted_data_keys: list[EncryptedDataKey]
    frame_length: int
    version: int = 2
    suite_data: bytes = b""
    content_type: int = FRAMED
    #: The exact bytes the header was parsed from (authenticated by the header tag).
    raw: bytes = field(default=b"", repr=False)


def serialize_context(context: Mapping[str, str]) -> bytes:
    """The canonical AAD bytes of an encryption context (empty for an empty context)."""
    if not context:
        return b""
    pairs = sorted((k.encode("utf-8"), v.encode("utf-8")) for k, v in context.items())
    out = [struct.pack(">H", len(pairs))]
    for k, v in pairs:
        if len(k) > 0xFFFF or len(v) > 0xFFFF:
            raise ValueError("an encryption context key or value is too long")
        out += [struct.pack(">H", len(k)), k, struct.pack(">H", len(v)), v]
    data = b"".join(out)
    if len(data) > 0xFFFF:
        raise ValueError("the encryption context is too large (over 65535 bytes serialized)")
    return data


def parse_context(data: bytes) -> dict[str, str]:
    """Parse the AAD bytes of a header into an encryption context."""
    if not data:
        return {}
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise MessageFormatError("malformed encryption context")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    (count,) = struct.unpack(">H", take(2))
    if count == 0:
        raise MessageFormatError("encryption context has a zero pair count")
    out: dict[str, str] = {}
    try:
        for _ in range(count):
            (klen,) = struct.unpack(">H", take(2))
            key = take(klen).decode("utf-8")
            (vlen,) = struct.unpack(">H", take(2))
            value = take(vlen).decode("utf-8")
            if key in out:
                raise MessageFormatError("duplicate key in encryption context")
            out[key] = value
    except UnicodeDecodeError as exc:
        raise MessageFormatError("encryption context is not UTF-8") from exc
    if pos != len(data):
        raise MessageFormatError("trailing bytes after the encryption context")
    return out


def _lv(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return struct.pack(">H", len(data)) + data


def serialize_header_body(header: Header) -> bytes:
    """The version 2 header bytes that the header auth tag covers."""
    if header.version != 2 or header.content_type != FRAMED:
        raise ValueError("only framed version 2 headers are written")
    if not 0 < header.frame_length <= MAX_FRAME_LENGTH:
        raise ValueError(f"frame length must be 1..{MAX_FRAME_LENGTH}")
    if not header.encrypted_data_keys:
        raise ValueError("a message needs at least one encrypted data key")
    aad = serialize_context(header.encryption_context)
    parts = [
        bytes([2]),
        header.suite.id_bytes,
        header.message_id,
        struct.pack(">H", len(aad)),
        aad,
        struct.pack(">H", len(header.encrypted_data_keys)),
    ]
    for edk in header.encrypted_data_keys:
        parts += [
            _lv(edk.provider_id.encode("utf-8")),
            _lv(edk.provider_info),
            _lv(edk.ciphertext),
        ]
    parts += [bytes([FRAMED]), struct.pack(">I", header.frame_length), header.suite_data]
    return b"".join(parts)


Reader = Callable[[int], bytes]


def read_header(read: Reader, max_encrypted_data_keys: int | None = None) -> tuple[Header, bytes]:
    """Parse a header from ``read(n)`` (which returns exactly n bytes or raises).

    Returns the header (its ``raw`` the authenticated bytes) and the header auth
    section (v1: IV and tag; v2: tag).
    """
    raw: list[bytes] = []

    def take(n: int) -> bytes:
        chunk = read(n)
        raw.append(chunk)
        return chunk

    def u16() -> int:
        return int(struct.unpack(">H", take(2))[0])

    version = take(1)[0]
    if version == 1:
        if take(1)[0] != V1_TYPE:
            raise MessageFormatError("unknown message type in a version 1 header")
    elif version != 2:
        raise MessageFormatError(f"unknown message format version {version}")
    suite_id = u16()
    suite = suite_by_id(suite_id)
    if suite is None:
        raise MessageFormatError(f"unknown algorithm suite 0x{suite_id:04x}")
    if suite.message_version != version:
        raise MessageFormatError(
            f"algorithm suite 0x{suite_id:04x} is not valid in a version {version} message"
        )
    message_id = take(32 if version == 2 else 16)
    context = parse_context(take(u16()))
    count = u16()
    if count == 0:
        raise MessageFormatError("the message has no encrypted data keys")
    if max_encrypted_data_keys is not None and count > max_encrypted_data_keys:
        raise MessageFormatError(
            f"the message has {count} encrypted data keys, over the limit of "
            f"{max_encrypted_data_keys}"
        )
    edks = []
    for _ in range(count):
        try:
            provider_id = take(u16()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageFormatError("provider id is not UTF-8") from exc
        info = take(u16())
        edks.append(EncryptedDataKey(provider_id, info, take(u16())))
    content_type = take(1)[0]
    if content_type not in (FRAMED, NON_FRAMED):
        raise MessageFormatError(f"unknown content type {content_type}")
    if version == 1:
        if take(4) != b"\0\0\0\0":
            raise MessageFormatError("reserved header bytes are not zero")
        if take(1)[0] != IV_LEN:
            raise MessageFormatError("unsupported IV length")
    (frame_length,) = struct.unpack(">I", take(4))
    if content_type == NON_FRAMED:
        if frame_length != 0:
            raise MessageFormatError("a non-framed message has a frame length")
    elif frame_length == 0 or frame_length > MAX_FRAME_LENGTH:
        raise MessageFormatError(f"invalid frame length {frame_length}")
    suite_data = take(suite.suite_data_len)
    header = Header(
        suite=suite,
        message_id=message_id,
        encryption_context=context,
        encrypted_data_keys=edks,
        frame_length=frame_length,
        version=version,
        suite_data=suite_data,
        content_type=content_type,
        raw=b"".join(raw),
    )
    auth = read(TAG_LEN if version == 2 else IV_LEN + TAG_LEN)
    return header, auth
