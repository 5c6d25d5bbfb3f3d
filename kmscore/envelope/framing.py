"""Framed message bodies: streaming encrypt and decrypt.

Memory is bounded by the frame size (the encryptor holds at most two frames of
plaintext, to know which one is final). A regular frame is::

    sequence number u32 | IV (12) | ciphertext (frame length) | tag (16)

and the final frame, which every message has (it may be empty)::

    0xFFFFFFFF | sequence number u32 | IV (12) | content length u32 | ciphertext | tag

Sequence numbers count from 1; a frame's IV is its sequence number, big-endian,
padded to 12 bytes. Each frame's AAD is the message id, the body AAD content
string, the sequence number (u32) and the plaintext length (u64), so frames
cannot be reordered, dropped, duplicated or moved to another message. Signed
suites end with a footer: the u16 length and DER bytes of an ECDSA signature
over the SHA-384 of everything before it.

The decryptor writes a frame's plaintext only after its tag verified. With a
signed suite, frames reach a *stream* before the footer's signature is checked
(as with the Encryption SDK); :func:`kmscore.envelope.decrypt_file` and
:func:`kmscore.envelope.decrypt` release nothing until the signature verified.

Non-framed bodies (read only) are one block: IV, u64 length, ciphertext, tag,
with the single-block AAD string and sequence number 1; the block is decrypted
whole and written only after its tag verified, so its size is capped.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterator, Mapping
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmscore.envelope.errors import (
    AuthenticationError,
    ContextMismatchError,
    MessageFormatError,
    PolicyError,
)
from kmscore.envelope.header import NON_FRAMED, Header, read_header, serialize_header_body
from kmscore.envelope.keyring import MaterialsManager, wipe
from kmscore.envelope.suites import DEFAULT_SUITE, IV_LEN, TAG_LEN, WRITABLE, AlgorithmSuite

FRAME_AAD = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD = b"AWSKMSEncryptionClient Final Frame"
SINGLE_BLOCK_AAD = b"AWSKMSEncryptionClient Single Block"
#: Largest non-framed body read by default (it is held in memory whole).
MAX_NON_FRAMED_LENGTH = 64 * 1024 * 1024
FINAL_MARKER = b"\xff\xff\xff\xff"
MAX_SEQUENCE = 0xFFFFFFFE
DEFAULT_FRAME_LENGTH = 64 * 1024
_ZERO_IV = bytes(IV_LEN)
_IV_PAD = bytes(IV_LEN - 4)


def _read_full(src: BinaryIO, n: int) -> bytes:
    """Up to n bytes: fewer only at end of input."""
    data = src.read(n) or b""
    if len(data) == n or not data:
        return bytes(data)
    parts = [data]
    got = len(data)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _readinto_full(src: BinaryIO, buf: memoryview) -> int:
    """Fill ``buf`` from ``src``; fewer bytes only at end of input."""
    got = 0
    readinto = getattr(src, "readinto", None)
    while got < len(buf):
        if readinto is not None:
            try:
                n = readinto(buf[got:]) or 0
            except NotImplementedError:  # a RawIOBase that only has read()
                readinto = None
                continue
        else:
            chunk = src.read(len(buf) - got) or b""
            n = len(chunk)
            buf[got : got + n] = chunk
        if n == 0:
            break
        got += n
    return got


class Source(Protocol):
    """Where the decryptor reads a message from."""

    def take(self, n: int) -> bytes:
        """Exactly n bytes (small reads), or MessageFormatError when truncated."""
        ...

    def take_view(self, n: int) -> memoryview:
        """Exactly n bytes, valid until the next take_view."""
        ...

    def at_end(self) -> bool:
        """Whether the input is exhausted."""
        ...


class StreamSource:
    """Reads from a binary stream, the large reads into one reused buffer."""

    def __init__(self, src: BinaryIO) -> None:
        """Read from ``src``."""
        self.src = src
        self.buf = memoryview(bytearray(0))

    def take(self, n: int) -> bytes:
        """Exactly n bytes."""
        data = _read_full(self.src, n)
        if len(data) != n:
            raise MessageFormatError("the message is truncated")
        return data

    def take_view(self, n: int) -> memoryview:
        """Exactly n bytes in the reused buffer."""
        if len(self.buf) < n:
            self.buf = memoryview(bytearray(n))
        view = self.buf[:n]
        if _readinto_full(self.src, view) != n:
            raise MessageFormatError("the message is truncated")
        return view

    def at_end(self) -> bool:
        """Whether the stream has nothing more."""
        return not self.src.read(1)


class MemorySource:
    """Reads a message held in memory, without copying the frames."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        """Read ``data``."""
        self.view = memoryview(data).cast("B")
        self.pos = 0

    def take_view(self, n: int) -> memoryview:
        """Exactly n bytes, a view of the message."""
        end = self.pos + n
        if end > len(self.view):
            raise MessageFormatError("the message is truncated")
        view = self.view[self.pos : end]
        self.pos = end
        return view

    def take(self, n: int) -> bytes:
        """Exactly n bytes."""
        return bytes(self.take_view(n))

    def at_end(self) -> bool:
        """Whether all of the message was read."""
        return self.pos == len(self.view)


Frames = Iterator[tuple[memoryview, bool]]


def frames_of_bytes(data: bytes | bytearray | memoryview, frame_length: int) -> Frames:
    """(plaintext, is_final) per frame of in-memory data, without copying."""
    view = memoryview(data).cast("B")
    pos = 0
    while len(view) - pos > frame_length:
        yield view[pos : pos + frame_length], False
        pos += frame_length
    yield view[pos:], True


def frames_of_stream(src: BinaryIO, frame_length: int) -> Frames:
    """(plaintext, is_final) per frame read from a stream into two reused buffers.

    Each yielded view is valid until the next one is requested.
    """
    cur, nxt = memoryview(bytearray(frame_length)), memoryview(bytearray(frame_length))
    n = _readinto_full(src, cur)
    while True:
        m = _readinto_full(src, nxt) if n == frame_length else 0
        yield cur[:n], m == 0
        if m == 0:
            return
        cur, nxt, n = nxt, cur, m


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    suite: AlgorithmSuite = DEFAULT_SUITE,
    frame_length: int = DEFAULT_FRAME_LENGTH,
    plaintext_length: int | None = None,
    frames: Frames | None = None,
) -> Header:
    """Encrypt ``src`` to ``dst`` as one framed version 2 message.

    Args:
        src: Plaintext, read in frame-sized pieces.
        dst: Receives the message.
        materials: A :class:`KmsKeyring` or :class:`DataKeyCache`.
        encryption_context: Authenticated, not secret; stored in the header.
        suite: 0x0578 (signed, the default) or 0x0478.
        frame_length: Plaintext bytes per frame.
        plaintext_length: The length, when known (lets a cache count bytes);
            longer input raises ValueError before its excess is encrypted.
        frames: The plaintext already split (:func:`frames_of_bytes`); then
            ``src`` is not read.

    Returns:
        The header written.
    """
    if suite.suite_id not in WRITABLE:
        raise PolicyError(f"suite {suite.name} is read only")
    if not 0 < frame_length <= 2**31 - 1:
        raise ValueError("frame_length must be 1..2**31-1")
    mats = materials.get_encryption_materials(suite, encryption_context or {}, plaintext_length)
    message_id = os.urandom(32)
    try:
        key = suite.derive_key(mats.data_key, message_id)
        commitment = suite.commitment_key(mats.data_key, message_id)
    finally:
        wipe(mats.data_key)
    header = Header(
        suite=suite,
        message_id=message_id,
        encryption_context=mats.encryption_context,
        encrypted_data_keys=mats.encrypted_data_keys,
        frame_length=frame_length,
        suite_data=commitment,
    )
    aead = AESGCM(key)
    body = serialize_header_body(header)
    header.raw = body
    hasher = hashes.Hash(suite.sig_hash()) if mats.signing_key and suite.sig_hash else None

    def out(data: bytes | memoryview) -> None:
        dst.write(data)
        if hasher is not None:
            hasher.update(data)

    out(body + aead.encrypt(_ZERO_IV, b"", body))
    regular_aad = message_id + FRAME_AAD
    final_aad = message_id + FINAL_FRAME_AAD
    buf = memoryview(bytearray(4 + 4 + IV_LEN + 4 + frame_length + TAG_LEN))
    seq, total = 1, 0
    for plain, final in frames if frames is not None else frames_of_stream(src, frame_length):
        if seq > MAX_SEQUENCE:
            raise ValueError("too many frames for one message")
        seq_bytes = struct.pack(">I", seq)
        iv = _IV_PAD + seq_bytes
        length = len(plain)
        total += length
        if plaintext_length is not None and total > plaintext_length:
            raise ValueError(f"the input is longer than plaintext_length ({plaintext_length})")
        if final:
            prefix = FINAL_MARKER + seq_bytes + iv + struct.pack(">I", length)
            aad = final_aad + seq_bytes + struct.pack(">Q", length)
        else:
            prefix = seq_bytes + iv
            aad = regular_aad + seq_bytes + struct.pack(">Q", length)
        k = len(prefix)
        buf[:k] = prefix
        aead.encrypt_into(iv, plain, aad, buf[k : k + length + TAG_LEN])
        out(buf[: k + length + TAG_LEN])
        seq += 1
    if hasher is not None and mats.signing_key is not None and suite.sig_hash is not None:
        signature = mats.signing_key.sign(hasher.finalize(), ec.ECDSA(Prehashed(suite.sig_hash())))
        dst.write(struct.pack(">H", len(signature)) + signature)
    return header


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    allow_legacy: bool = False,
    max_encrypted_data_keys: int | None = None,
    source: Source | None = None,
    max_body_length: int = MAX_NON_FRAMED_LENGTH,
) -> Header:
    """Decrypt one message from ``src`` to ``dst``, frame by verified frame.

    Args:
        src: The message; it must end where the message ends.
        dst: Receives plaintext, one frame at a time, each after its tag verified.
        materials: A :class:`KmsKeyring` or :class:`DataKeyCache`.
        encryption_context: Pairs the message's context must contain.
        allow_legacy: Also read version 1 messages (non-committing suites).
        max_encrypted_data_keys: Refuse messages with more EDKs than this.
        source: Read the message from this (:class:`MemorySource`) instead of ``src``.
        max_body_length: Largest non-framed body accepted (such a body is
            decrypted whole, in memory, before any of it is written).

    Returns:
        The message's header.

    Raises:
        MessageFormatError, AuthenticationError, KeyUnavailableError,
        ContextMismatchError, PolicyError.
    """
    source = source or StreamSource(src)
    read_exact = source.take
    header, auth = read_header(read_exact, max_encrypted_data_keys)
    suite = header.suite
    if not suite.committing and not allow_legacy:
        raise PolicyError(
            f"message uses the non-committing suite {suite.name}; pass allow_legacy=True to read it"
        )
    for k, v in (encryption_context or {}).items():
        if header.encryption_context.get(k) != v:
            raise ContextMismatchError(f"the message's encryption context does not have {k!r}")
    mats = materials.decrypt_materials(header)
    try:
        key = suite.derive_key(mats.data_key, header.message_id)
        if suite.committing and not hmac.compare_digest(
            suite.commitment_key(mats.data_key, header.message_id), header.suite_data
        ):
            raise AuthenticationError("the key commitment does not match the data key")
    finally:
        wipe(mats.data_key)
    aead = AESGCM(key)
    iv, tag = (_ZERO_IV, auth) if header.version == 2 else (auth[:IV_LEN], auth[IV_LEN:])
    try:
        aead.decrypt(iv, tag, header.raw)
    except InvalidTag:
        raise AuthenticationError("the header does not authenticate") from None
    verifier = mats.verification_key
    hasher = hashes.Hash(suite.sig_hash()) if verifier and suite.sig_hash else None
    if hasher is not None:
        hasher.update(header.raw + auth)
    if header.content_type == NON_FRAMED:
        _decrypt_single_block(source, dst, aead, header, hasher, max_body_length)
    else:
        _decrypt_frames(source, dst, aead, header, hasher)
    if hasher is not None and verifier is not None and suite.sig_hash is not None:
        (sig_len,) = struct.unpack(">H", read_exact(2))
        signature = read_exact(sig_len)
        try:
            verifier.verify(signature, hasher.finalize(), ec.ECDSA(Prehashed(suite.sig_hash())))
        except InvalidSignature:
            raise AuthenticationError("the message signature does not verify") from None
    if not source.at_end():
        raise MessageFormatError("unexpected data after the end of the message")
    return header


def _decrypt_frames(
    source: Source, dst: BinaryIO, aead: AESGCM, header: Header, hasher: hashes.Hash | None
) -> None:
    """Decrypt the frames of a framed body, writing each once its tag verified."""
    regular_aad = header.message_id + FRAME_AAD
    final_aad = header.message_id + FINAL_FRAME_AAD
    frame_length = header.frame_length
    plain_buf = memoryview(bytearray(frame_length))
    seq = 1
    while True:
        first = source.take(4)
        final = first == FINAL_MARKER
        head = first + source.take(4 + IV_LEN + 4) if final else first + source.take(IV_LEN)
        seq_bytes = head[4:8] if final else first
        if struct.unpack(">I", seq_bytes)[0] != seq:
            raise AuthenticationError(f"frame {seq} is missing or out of order")
        iv = head[-IV_LEN - 4 : -4] if final else head[4:]
        if iv != _IV_PAD + seq_bytes:
            raise AuthenticationError(f"frame {seq} has an unexpected IV")
        if final:
            (length,) = struct.unpack(">I", head[-4:])
            if length > frame_length:
                raise MessageFormatError("the final frame is longer than the frame length")
        else:
            length = frame_length
        sealed = source.take_view(length + TAG_LEN)
        if hasher is not None:
            hasher.update(head)
            hasher.update(sealed)
        aad = (final_aad if final else regular_aad) + seq_bytes + struct.pack(">Q", length)
        plain = plain_buf[:length]
        try:
            aead.decrypt_into(iv, sealed, aad, plain)
        except InvalidTag:
            raise AuthenticationError(f"frame {seq} does not authenticate") from None
        dst.write(plain)
        if final:
            return
        if seq >= MAX_SEQUENCE:
            raise MessageFormatError("too many frames")
        seq += 1


def _decrypt_single_block(
    source: Source,
    dst: BinaryIO,
    aead: AESGCM,
    header: Header,
    hasher: hashes.Hash | None,
    max_body_length: int,
) -> None:
    """Decrypt a non-framed body (read only): one block, held whole until its tag verified."""
    iv = source.take(IV_LEN)
    length_bytes = source.take(8)
    (length,) = struct.unpack(">Q", length_bytes)
    if length > max_body_length:
        raise MessageFormatError(
            f"non-framed content of {length} bytes is over the limit of {max_body_length}"
        )
    sealed = source.take_view(length + TAG_LEN)
    if hasher is not None:
        hasher.update(iv + length_bytes)
        hasher.update(sealed)
    aad = header.message_id + SINGLE_BLOCK_AAD + struct.pack(">IQ", 1, length)
    plain = bytearray(length)
    try:
        aead.decrypt_into(iv, sealed, aad, plain)
    except InvalidTag:
        raise AuthenticationError("the message body does not authenticate") from None
    dst.write(plain)
