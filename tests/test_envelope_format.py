"""Envelope encryption: round trips and tampering, over the in-process KMS.

Messages are framed version 2 (suites 0x0478 and 0x0578). Every kind of
tampering must fail with an EnvelopeError subclass, and a stream decrypt must
have released only whole, verified frames of the true plaintext.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kmscore import LocalKMS
from kmscore import envelope as E
from kmscore.envelope.header import serialize_header_body

UNSIGNED = E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
SIGNED = E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
SUITES = [UNSIGNED, SIGNED]


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with LocalKMS(tmp_path_factory.mktemp("envelope") / "kms", audit=False) as client:
        yield client


@pytest.fixture(scope="module")
def keys(kms: LocalKMS) -> list[str]:
    return [kms.create_key(Description=f"env {i}")["KeyMetadata"]["Arn"] for i in range(3)]


@pytest.fixture(scope="module")
def keyring(kms: LocalKMS, keys: list[str]) -> E.KmsKeyring:
    return E.KmsKeyring(kms, [keys[0]])


F = 4096


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"{s.suite_id:04x}")
@pytest.mark.parametrize("size", [0, 1, F - 1, F, F + 1, 2 * F, 3 * 1024 * 1024 + 7])
def test_round_trip_sizes(keyring: E.KmsKeyring, suite: E.AlgorithmSuite, size: int) -> None:
    data = os.urandom(size)
    msg = E.encrypt(data, keyring, encryption_context={"t": "42"}, suite=suite, frame_length=F)
    plain, header = E.decrypt(msg, keyring, encryption_context={"t": "42"})
    assert plain == data
    assert header.suite is suite
    assert header.frame_length == F
    assert header.encryption_context["t"] == "42"
    assert ("aws-crypto-public-key" in header.encryption_context) == (suite is SIGNED)
    assert [e.provider_id for e in header.encrypted_data_keys] == ["aws-kms"]


def test_header_layout(kms: LocalKMS, keys: list[str], keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"abc", keyring, encryption_context={"b": "2", "a": "1"}, suite=UNSIGNED)
    assert msg[0] == 2
    assert msg[1:3] == b"\x04\x78"
    # AAD: length, then pair count 2, pairs sorted by key
    (aad_len,) = struct.unpack(">H", msg[35:37])
    assert msg[37 : 37 + aad_len] == b"\x00\x02\x00\x01a\x00\x011\x00\x01b\x00\x012"
    _, header = E.decrypt(msg, keyring)
    edk = header.encrypted_data_keys[0]
    assert edk.provider_info == keys[0].encode()
    # the EDK is a KMS ciphertext blob that KMS itself decrypts
    out = kms.decrypt(CiphertextBlob=edk.ciphertext, EncryptionContext={"a": "1", "b": "2"})
    assert len(out["Plaintext"]) == 32
    assert msg.startswith(serialize_header_body(header))


def test_empty_context_has_no_aad(keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"x", keyring, suite=UNSIGNED)
    assert msg[35:37] == b"\x00\x00"
    assert E.decrypt(msg, keyring)[0] == b"x"


def test_reserved_context_key_refused(keyring: E.KmsKeyring) -> None:
    with pytest.raises(ValueError, match="reserved"):
        E.encrypt(b"x", keyring, encryption_context={"aws-crypto-x": "1"})


def test_tiny_frames_stream(keyring: E.KmsKeyring) -> None:
    data = os.urandom(1000)
    out = io.BytesIO()
    E.encrypt_stream(io.BytesIO(data), out, keyring, frame_length=1, suite=UNSIGNED)
    back = io.BytesIO()
    E.decrypt_stream(io.BytesIO(out.getvalue()), back, keyring)
    assert back.getvalue() == data


class Trickle(io.RawIOBase):
    """A source that returns at most 3 bytes per read (like a pipe)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        chunk = self.data[self.pos : self.pos + min(n, 3)]
        self.pos += len(chunk)
        return chunk


def test_short_reads(keyring: E.KmsKeyring) -> None:
    data = os.urandom(10_000)
    out = io.BytesIO()
    E.encrypt_stream(Trickle(data), out, keyring, frame_length=777)  # type: ignore[arg-type]
    back = io.BytesIO()
    E.decrypt_stream(Trickle(out.getvalue()), back, keyring)  # type: ignore[arg-type]
    assert back.getvalue() == data


def test_multi_key(kms: LocalKMS, keys: list[str]) -> None:
    both = E.KmsKeyring(kms, keys[:2])
    msg = E.encrypt(b"two regions", both, encryption_context={"c": "d"})
    _, header = E.decrypt(msg, both)
    assert [e.provider_info.decode() for e in header.encrypted_data_keys] == keys[:2]
    # either key alone decrypts
    assert E.decrypt(msg, E.KmsKeyring(kms, [keys[1]]))[0] == b"two regions"
    assert E.decrypt(msg, E.KmsKeyring(kms, [keys[0]]))[0] == b"two regions"
    # with the first key disabled, the second still works
    kms.disable_key(KeyId=keys[0])
    try:
        assert E.decrypt(msg, both)[0] == b"two regions"
        assert E.decrypt(msg, E.KmsKeyring(kms, discovery=True))[0] == b"two regions"
        with pytest.raises(E.KeyUnavailableError, match="DisabledException"):
            E.decrypt(msg, E.KmsKeyring(kms, [keys[0]]))
    finally:
        kms.enable_key(KeyId=keys[0])
    # a keyring of an unrelated key finds nothing to try
    with pytest.raises(E.KeyUnavailableError):
        E.decrypt(msg, E.KmsKeyring(kms, [keys[2]]))


def test_key_id_matches_arn(kms: LocalKMS, keys: list[str]) -> None:
    key_id = keys[0].rsplit("/", 1)[1]
    ring = E.KmsKeyring(kms, [key_id])
    msg = E.encrypt(b"by id", ring)
    assert E.decrypt(msg, ring)[0] == b"by id"


def test_context_check(keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"x", keyring, encryption_context={"tenant": "a"})
    with pytest.raises(E.ContextMismatchError):
        E.decrypt(msg, keyring, encryption_context={"tenant": "b"})
    with pytest.raises(E.ContextMismatchError):
        E.decrypt(msg, keyring, encryption_context={"other": "a"})


def test_max_encrypted_data_keys(kms: LocalKMS, keys: list[str]) -> None:
    msg = E.encrypt(b"x", E.KmsKeyring(kms, keys))
    with pytest.raises(E.MessageFormatError, match="over the limit"):
        E.decrypt(msg, E.KmsKeyring(kms, keys), max_encrypted_data_keys=2)
    assert E.decrypt(msg, E.KmsKeyring(kms, keys), max_encrypted_data_keys=3)[0] == b"x"


def test_legacy_suites_not_written(keyring: E.KmsKeyring) -> None:
    with pytest.raises(E.PolicyError):
        E.encrypt(b"x", keyring, suite=E.SUITES[0x0178])


# --- tampering -------------------------------------------------------------------------

FT = 64  # frame length of the tampering tests
PLAIN = bytes(range(256)) * 2  # 8 regular frames; the messages add a 4-byte final frame


def _layout(msg: bytes, keyring: E.KmsKeyring) -> tuple[int, int]:
    """Offset of the first frame and the size of a regular frame."""
    _, header = E.decrypt(msg, keyring)
    return len(header.raw) + 16, 4 + 12 + FT + 16


def _stream_decrypt(msg: bytes, keyring: E.KmsKeyring, **kw: Any) -> tuple[bytes, Exception]:
    out = io.BytesIO()
    with pytest.raises(E.EnvelopeError) as info:
        E.decrypt_stream(io.BytesIO(msg), out, keyring, **kw)
    released = out.getvalue()
    # only whole, verified frames of the true plaintext were released
    assert PLAIN.startswith(released)
    assert len(released) % FT == 0
    return released, info.value


@pytest.fixture(scope="module", params=SUITES, ids=lambda s: f"{s.suite_id:04x}")
def sealed(request: pytest.FixtureRequest, keyring: E.KmsKeyring) -> bytes:
    return E.encrypt(PLAIN + b"tail", keyring, suite=request.param, frame_length=FT)


def test_truncation_everywhere(sealed: bytes, keyring: E.KmsKeyring) -> None:
    for cut in range(len(sealed)):
        out = io.BytesIO()
        with pytest.raises(E.EnvelopeError):
            E.decrypt_stream(io.BytesIO(sealed[:cut]), out, keyring)
        released = out.getvalue()
        assert (PLAIN + b"tail").startswith(released)
        # whole frames only; all of them (final frame verified) only while a
        # signed message's footer is what is missing
        assert len(released) % FT == 0 or (released == PLAIN + b"tail" and cut > len(sealed) - 120)


def test_bit_flips_everywhere(sealed: bytes, keyring: E.KmsKeyring) -> None:
    step = 1 if len(sealed) < 2000 else 3
    for pos in range(0, len(sealed), step):
        bad = bytearray(sealed)
        bad[pos] ^= 0x01
        out = io.BytesIO()
        with pytest.raises(E.EnvelopeError):
            E.decrypt_stream(io.BytesIO(bytes(bad)), out, keyring)
        assert (PLAIN + b"tail").startswith(out.getvalue())


def test_reordered_duplicated_dropped_frames(keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(PLAIN + b"tail", keyring, suite=UNSIGNED, frame_length=FT)
    start, size = _layout(msg, keyring)
    frames = [msg[start + i * size : start + (i + 1) * size] for i in range(8)]
    head, final = msg[:start], msg[start + 8 * size :]
    swapped = head + frames[1] + frames[0] + b"".join(frames[2:]) + final
    released, err = _stream_decrypt(swapped, keyring)
    assert isinstance(err, E.AuthenticationError) and released == b""
    dup = head + frames[0] + frames[0] + b"".join(frames[1:]) + final
    released, err = _stream_decrypt(dup, keyring)
    assert isinstance(err, E.AuthenticationError) and released == PLAIN[:FT]
    dropped = head + frames[0] + b"".join(frames[2:]) + final
    released, err = _stream_decrypt(dropped, keyring)
    assert isinstance(err, E.AuthenticationError) and released == PLAIN[:FT]
    # the final frame moved forward (the message cut short, but "complete")
    released, err = _stream_decrypt(head + frames[0] + final, keyring)
    assert isinstance(err, E.AuthenticationError)
    # a frame from another message under the same key
    other = E.encrypt(PLAIN + b"tail", keyring, suite=UNSIGNED, frame_length=FT)
    spliced = head + other[start : start + size] + msg[start + size :]
    released, err = _stream_decrypt(spliced, keyring)
    assert isinstance(err, E.EnvelopeError) and released == b""


def test_changed_header(kms: LocalKMS, keys: list[str], keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"x" * 200, keyring, suite=UNSIGNED, frame_length=FT)
    _, header = E.decrypt(msg, keyring)
    body = len(header.raw)
    # frame length field (just before the 32-byte commitment): header auth fails
    bad = bytearray(msg)
    bad[body - 32 - 1] ^= 0x01
    with pytest.raises(E.AuthenticationError, match="header"):
        E.decrypt(bytes(bad), keyring)
    # a second EDK added for another key: the header tag no longer verifies
    other = E.encrypt(b"x", E.KmsKeyring(kms, [keys[1]]), suite=UNSIGNED)
    _, oh = E.decrypt(other, E.KmsKeyring(kms, [keys[1]]))
    header.encrypted_data_keys.append(oh.encrypted_data_keys[0])
    forged = serialize_header_body(header) + msg[body:]
    with pytest.raises(E.AuthenticationError, match="header"):
        E.decrypt(forged, keyring)


def test_wrong_commitment(keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"x" * 200, keyring, suite=UNSIGNED)
    _, header = E.decrypt(msg, keyring)
    pos = len(header.raw) - 5  # inside the commitment key
    bad = bytearray(msg)
    bad[pos] ^= 0xFF
    with pytest.raises(E.AuthenticationError, match="commitment"):
        E.decrypt(bytes(bad), keyring)


def test_signature_checked(keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"signed", keyring, suite=SIGNED)
    bad = bytearray(msg)
    bad[-1] ^= 0x01
    with pytest.raises(E.AuthenticationError, match="signature"):
        E.decrypt(bytes(bad), keyring)
    with pytest.raises(E.MessageFormatError, match="after the end"):
        E.decrypt(msg + b"\0", keyring)


def test_trailing_data(keyring: E.KmsKeyring) -> None:
    msg = E.encrypt(b"x", keyring, suite=UNSIGNED)
    with pytest.raises(E.MessageFormatError, match="after the end"):
        E.decrypt(msg + b"junk", keyring)


def test_not_a_message(keyring: E.KmsKeyring) -> None:
    for junk in [b"", b"\x03", b"\x02\x99\x99" + bytes(60), os.urandom(100)]:
        with pytest.raises(E.EnvelopeError):
            E.decrypt(junk, keyring)


# --- files -----------------------------------------------------------------------------


def test_files_round_trip_and_failure_leaves_nothing(keyring: E.KmsKeyring, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    E.encrypt_file(src, tmp_path / "in.enc", keyring, encryption_context={"f": "1"})
    E.decrypt_file(tmp_path / "in.enc", tmp_path / "out.bin", keyring)
    assert (tmp_path / "out.bin").read_bytes() == data
    sealed = bytearray((tmp_path / "in.enc").read_bytes())
    sealed[-1] ^= 1  # the signature: every frame verifies, the footer does not
    (tmp_path / "bad.enc").write_bytes(bytes(sealed))
    with pytest.raises(E.AuthenticationError):
        E.decrypt_file(tmp_path / "bad.enc", tmp_path / "bad.out", keyring)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.enc", "in.bin", "in.enc", "out.bin"]
    # an existing output is left as it was
    (tmp_path / "keep.out").write_bytes(b"old")
    with pytest.raises(E.AuthenticationError):
        E.decrypt_file(tmp_path / "bad.enc", tmp_path / "keep.out", keyring)
    assert (tmp_path / "keep.out").read_bytes() == b"old"
