"""The envelope over the socket client (a real ``kms`` daemon), and the message
layout checked field by field against the published structure."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_rpc_support import running_daemon

import kmscore
from kmscore import LocalKMS
from kmscore import envelope as E


def test_over_the_socket_client(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "data") as daemon, kmscore.connect(daemon.socket) as remote:
        arns = [remote.create_key()["KeyMetadata"]["Arn"] for _ in range(2)]
        ring = E.KmsKeyring(remote, arns)
        data = os.urandom(100_000)
        msg = E.encrypt(data, ring, encryption_context={"via": "socket"}, frame_length=1024)
        assert E.decrypt(msg, ring, encryption_context={"via": "socket"})[0] == data
        cache = E.DataKeyCache(ring, max_age=60, max_messages=5)
        for _ in range(10):
            assert E.decrypt(E.encrypt(b"x", cache), cache)[0] == b"x"


def test_layout_field_by_field(tmp_path: Path) -> None:
    with LocalKMS(tmp_path / "kms", audit=False) as kms:
        arn = kms.create_key()["KeyMetadata"]["Arn"]
        ring = E.KmsKeyring(kms, [arn])
        frame, size = 100, 250  # two regular frames and a final frame of 50
        msg = E.encrypt(
            os.urandom(size), ring, encryption_context={"k": "v"},
            suite=E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, frame_length=frame,
        )  # fmt: skip
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        pos += n
        return msg[pos - n : pos]

    def u16() -> int:
        return int(struct.unpack(">H", take(2))[0])

    def u32() -> int:
        return int(struct.unpack(">I", take(4))[0])

    assert take(1) == b"\x02"  # version
    assert take(2) == b"\x04\x78"  # algorithm id
    message_id = take(32)
    aad = take(u16())
    assert aad == b"\x00\x01" + b"\x00\x01k" + b"\x00\x01v"
    assert u16() == 1  # one encrypted data key
    assert take(u16()) == b"aws-kms"
    assert take(u16()) == arn.encode()
    assert take(u16())[0] == 0xC5  # a kmscore KMS ciphertext blob
    assert take(1) == b"\x02"  # framed
    assert u32() == frame
    take(32)  # commitment key
    take(16)  # header auth tag
    for seq in (1, 2):
        assert u32() == seq
        assert take(12) == bytes(8) + struct.pack(">I", seq)
        take(frame + 16)
    assert take(4) == b"\xff\xff\xff\xff"
    assert u32() == 3
    assert take(12) == bytes(8) + struct.pack(">I", 3)
    assert u32() == 50
    take(50 + 16)
    assert pos == len(msg)  # no footer for an unsigned suite
    assert len(set(message_id)) > 8


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E.KmsKeyring]:
    with LocalKMS(tmp_path_factory.mktemp("prop") / "kms", audit=False) as kms:
        yield E.KmsKeyring(kms, [kms.create_key()["KeyMetadata"]["Arn"]])


@settings(max_examples=40, deadline=None)
@given(
    data=st.binary(max_size=3000),
    frame=st.integers(1, 700),
    signed=st.booleans(),
    chunk=st.integers(1, 5000),
)
def test_round_trip_property(
    ring: E.KmsKeyring, data: bytes, frame: int, signed: bool, chunk: int
) -> None:
    suite = E.SUITES[0x0578 if signed else 0x0478]
    msg = E.encrypt(data, ring, suite=suite, frame_length=frame)
    assert E.decrypt(msg, ring)[0] == data
    # the stream reader, fed in chunks of any size, agrees
    import io

    class Chunked(io.RawIOBase):
        def __init__(self, b: bytes) -> None:
            self.b, self.p = b, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
            n = min(len(buf), chunk, len(self.b) - self.p)
            buf[:n] = self.b[self.p : self.p + n]
            self.p += n
            return n

    out = io.BytesIO()
    E.decrypt_stream(Chunked(msg), out, ring)  # type: ignore[arg-type]
    assert out.getvalue() == data
    sealed = io.BytesIO()
    E.encrypt_stream(Chunked(data), sealed, ring, suite=suite, frame_length=frame)  # type: ignore[arg-type]
    assert E.decrypt(sealed.getvalue(), ring)[0] == data


class _Zeros(io.RawIOBase):
    """``size`` bytes of a pattern, generated as read: no whole-input buffer."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self.left)
        buf[:n] = b"\x5a" * n
        self.left -= n
        return n


class _Sink(io.RawIOBase):
    """Counts what is written and keeps nothing."""

    def __init__(self) -> None:
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = memoryview(b).nbytes
        self.count += n
        return n


def test_memory_is_bounded_by_the_frame_size(ring: E.KmsKeyring, tmp_path: Path) -> None:
    size, frame = 48 * 1024 * 1024, 64 * 1024
    sealed = tmp_path / "big.enc"
    tracemalloc.start()
    try:
        with open(sealed, "wb") as out:
            E.encrypt_stream(_Zeros(size), out, ring, frame_length=frame)  # type: ignore[arg-type]
        _, enc_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sink = _Sink()
        with open(sealed, "rb") as src:
            E.decrypt_stream(src, sink, ring)  # type: ignore[arg-type]
        _, dec_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.count == size
    # a few frames' worth, whatever the data size (48 MiB here)
    print(f"peak: encrypt {enc_peak} B, decrypt {dec_peak} B")
    assert enc_peak < 8 * frame, enc_peak
    assert dec_peak < 8 * frame, dec_peak
