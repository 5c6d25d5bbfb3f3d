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
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Mapping
from typing import BinaryIO

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
from kmscore.envelope.header import Header, read_header, serialize_header_body
from kmscore.envelope.keyring import MaterialsManager, wipe
from kmscore.envelope.suites import DEFAULT_SUITE, IV_LEN, TAG_LEN, WRITABLE, AlgorithmSuite

FRAME_AAD = b"AWSKMSEncryptionClient Frame"
FINAL_FRAME_AAD = b"AWSKMSEncryptionClient Final Frame"
FINAL_MARKER = b"\xff\xff\xff\xff"
MAX_SEQUENCE = 0xFFFFFFFE
DEFAULT_FRAME_LENGTH = 64 * 1024
_ZERO_IV = bytes(IV_LEN)
_IV_PAD = bytes(IV_LEN - 4)


def _read_full(src: BinaryIO, n: int) -> bytes:
    """Up to n bytes: fewer only at end of input."""
    data = src.read(n)
    if data is None:
        data = b""
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


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    materials: MaterialsManager,
    *,
    encryption_context: Mapping[str, str] | None = None,
    suite: AlgorithmSuite = DEFAULT_SUITE,
    frame_length: int = DEFAULT_FRAME_LENGTH,
    plaintext_length: int | None = None,
) -> Header:
    """Encrypt ``src`` to ``dst`` as one framed version 2 message.

    Args:
        src: Plaintext, read in frame-sized pieces.
        dst: Receives the message.
        materials: A :class:`KmsKeyring` or :class:`DataKeyCache`.
        encryption_context: Authenticated, not secret; stored in the header.
        suite: 0x0578 (signed, the default) or 0x0478.
        frame_length: Plaintext bytes per frame.
        plaintext_length: The length, when known (lets a cache count bytes).

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

    def out(data: bytes) -> None:
        dst.write(data)
        if hasher is not None:
            hasher.update(data)

    out(body + aead.encrypt(_ZERO_IV, b"", body))
    regular_aad = message_id + FRAME_AAD
    final_aad = message_id + FINAL_FRAME_AAD
    seq = 1
    pending = _read_full(src, frame_length)
    while True:
        nxt = _read_full(src, frame_length) if len(pending) == frame_length else b""
        if seq > MAX_SEQUENCE:
            raise ValueError("too many frames for one message")
        seq_bytes = struct.pack(">I", seq)
        iv = _IV_PAD + seq_bytes
        length = len(pending)
        if nxt:
            aad = regular_aad + seq_bytes + struct.pack(">Q", length)
            out(seq_bytes + iv + aead.encrypt(iv, pending, aad))
            pending = nxt
            seq += 1
            continue
        aad = final_aad + seq_bytes + struct.pack(">Q", length)
        out(
            FINAL_MARKER + seq_bytes + iv + struct.pack(">I", length)
            + aead.encrypt(iv, pending, aad)
        )  # fmt: skip
        break
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
) -> Header:
    """Decrypt one message from ``src`` to ``dst``, frame by verified frame.

    Args:
        src: The message; it must end where the message ends.
        dst: Receives plaintext, one frame at a time, each after its tag verified.
        materials: A :class:`KmsKeyring` or :class:`DataKeyCache`.
        encryption_context: Pairs the message's context must contain.
        allow_legacy: Also read version 1 messages (non-committing suites).
        max_encrypted_data_keys: Refuse messages with more EDKs than this.

    Returns:
        The message's header.

    Raises:
        MessageFormatError, AuthenticationError, KeyUnavailableError,
        ContextMismatchError, PolicyError.
    """

    def read_exact(n: int) -> bytes:
        data = _read_full(src, n)
        if len(data) != n:
            raise MessageFormatError("the message is truncated")
        return data

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
    regular_aad = header.message_id + FRAME_AAD
    final_aad = header.message_id + FINAL_FRAME_AAD
    frame_length = header.frame_length
    seq = 1
    while True:
        first = read_exact(4)
        final = first == FINAL_MARKER
        head = first + read_exact(4 + IV_LEN + 4) if final else first + read_exact(IV_LEN)
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
        sealed = read_exact(length + TAG_LEN)
        if hasher is not None:
            hasher.update(head)
            hasher.update(sealed)
        aad = (final_aad if final else regular_aad) + seq_bytes + struct.pack(">Q", length)
        try:
            plain = aead.decrypt(iv, sealed, aad)
        except InvalidTag:
            raise AuthenticationError(f"frame {seq} does not authenticate") from None
        dst.write(plain)
        if final:
            break
        if seq >= MAX_SEQUENCE:
            raise MessageFormatError("too many frames")
        seq += 1
    if hasher is not None and verifier is not None and suite.sig_hash is not None:
        (sig_len,) = struct.unpack(">H", read_exact(2))
        signature = read_exact(sig_len)
        try:
            verifier.verify(signature, hasher.finalize(), ec.ECDSA(Prehashed(suite.sig_hash())))
        except InvalidSignature:
            raise AuthenticationError("the message signature does not verify") from None
    if src.read(1):
        raise MessageFormatError("unexpected data after the end of the message")
    return header
