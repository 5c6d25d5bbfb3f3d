"""Property tests of the engine on both backends, and the backend switch.

Round trip, then change anything at all (one bit of the IV, ciphertext, tag or
AAD; a shorter tag; extra bytes) and opening must fail. The two backends must
produce identical ciphertexts and open each other's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import kmscore.engine
from kmscore.errors import InvalidCiphertextException

keys = st.binary(min_size=32, max_size=32)
ivs = st.binary(min_size=12, max_size=12)
# Mostly short messages (data keys, small secrets), sometimes up to a few blocks
# past 4 KiB, the largest plaintext Encrypt accepts.
plaintexts = st.one_of(st.binary(max_size=64), st.binary(min_size=4080, max_size=4200))
aads = st.binary(max_size=96)


def _flip(data: bytes, index: int, mask: int) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


@given(key=keys, iv=ivs, pt=plaintexts, aad=aads)
def test_round_trip(engine: ModuleType, key: bytes, iv: bytes, pt: bytes, aad: bytes) -> None:
    k = engine.AesGcmKey(key)
    sealed = k.seal(iv, pt, aad)
    assert type(sealed) is bytes
    assert len(sealed) == len(pt) + engine.TAG_LENGTH
    if len(pt) >= 16:
        # Not the identity: 16 bytes left unchanged by chance happen with odds 2**-128.
        assert sealed[: len(pt)] != pt
    # A fixed IV makes sealing deterministic: the same input, the same output.
    assert k.seal(iv, pt, aad) == sealed
    assert k.open(iv, sealed, aad) == pt
    assert k.open_many([iv + sealed], [aad]) == [pt]


@given(key=keys, iv=ivs, pt=plaintexts, aad=aads, data=st.data())
def test_flipping_bits_anywhere_fails(
    engine: ModuleType, key: bytes, iv: bytes, pt: bytes, aad: bytes, data: st.DataObject
) -> None:
    k = engine.AesGcmKey(key)
    sealed = k.seal(iv, pt, aad)
    parts = {"iv": iv, "ciphertext": sealed[: len(pt)], "tag": sealed[len(pt) :], "aad": aad}
    target = data.draw(st.sampled_from([name for name, value in parts.items() if value]))
    index = data.draw(st.integers(0, len(parts[target]) - 1))
    mask = data.draw(st.integers(1, 255))
    parts[target] = _flip(parts[target], index, mask)
    with pytest.raises(InvalidCiphertextException):
        k.open(parts["iv"], parts["ciphertext"] + parts["tag"], parts["aad"])
    item = parts["iv"] + parts["ciphertext"] + parts["tag"]
    assert k.open_many([item], [parts["aad"]]) == [None]


@given(key=keys, iv=ivs, pt=plaintexts, aad=aads, drop=st.integers(1, 16))
def test_truncated_tag_fails(
    engine: ModuleType, key: bytes, iv: bytes, pt: bytes, aad: bytes, drop: int
) -> None:
    k = engine.AesGcmKey(key)
    sealed = k.seal(iv, pt, aad)
    with pytest.raises(InvalidCiphertextException):
        k.open(iv, sealed[:-drop], aad)
    assert k.open_many([iv + sealed[:-drop]], [aad]) == [None]


@given(key=keys, iv=ivs, pt=plaintexts, aad=aads, extra=st.binary(min_size=1, max_size=32))
def test_appended_bytes_fail(
    engine: ModuleType, key: bytes, iv: bytes, pt: bytes, aad: bytes, extra: bytes
) -> None:
    k = engine.AesGcmKey(key)
    sealed = k.seal(iv, pt, aad)
    with pytest.raises(InvalidCiphertextException):
        k.open(iv, sealed + extra, aad)
    assert k.open_many([iv + sealed + extra], [aad]) == [None]
    # The AAD's length is authenticated too: padding it with zeros must not pass.
    with pytest.raises(InvalidCiphertextException):
        k.open(iv, sealed, aad + bytes(len(extra)))


@given(key=keys, other=keys, iv=ivs, pt=plaintexts, aad=aads)
def test_other_key_fails(
    engine: ModuleType, key: bytes, other: bytes, iv: bytes, pt: bytes, aad: bytes
) -> None:
    assume(key != other)
    sealed = engine.AesGcmKey(key).seal(iv, pt, aad)
    with pytest.raises(InvalidCiphertextException):
        engine.AesGcmKey(other).open(iv, sealed, aad)


def test_every_single_bit_flip_fails(engine: ModuleType) -> None:
    """Exhaustive over one small message: every bit of IV, ciphertext, tag and AAD."""
    k = engine.AesGcmKey(os.urandom(32))
    iv, pt, aad = os.urandom(12), os.urandom(23), os.urandom(9)
    sealed = k.seal(iv, pt, aad)
    wire = iv + sealed
    tampered = []
    for i in range(len(wire)):
        for bit in range(8):
            tampered.append((_flip(wire, i, 1 << bit), aad))
    for i in range(len(aad)):
        for bit in range(8):
            tampered.append((wire, _flip(aad, i, 1 << bit)))
    for item, item_aad in tampered:
        with pytest.raises(InvalidCiphertextException):
            k.open(item[:12], item[12:], item_aad)
    results = k.open_many([t[0] for t in tampered], [t[1] for t in tampered])
    assert results == [None] * len(tampered)
    assert k.open(iv, sealed, aad) == pt


# --- differential: the native engine and the twin are interchangeable


@given(key=keys, iv=ivs, pt=plaintexts, aad=aads)
def test_backends_make_identical_ciphertexts(
    native: ModuleType, python_twin: ModuleType, key: bytes, iv: bytes, pt: bytes, aad: bytes
) -> None:
    a = native.AesGcmKey(key).seal(iv, pt, aad)
    b = python_twin.AesGcmKey(key).seal(iv, pt, aad)
    assert a == b


@given(key=keys, iv=ivs, pt=plaintexts, aad=aads)
def test_backends_open_each_others_seal(
    engine_pair: tuple[ModuleType, ModuleType], key: bytes, iv: bytes, pt: bytes, aad: bytes
) -> None:
    sealer, opener = engine_pair
    sealed = sealer.AesGcmKey(key).seal(iv, pt, aad)
    assert opener.AesGcmKey(key).open(iv, sealed, aad) == pt


@given(key=keys, pts=st.lists(plaintexts, max_size=8), data=st.data())
def test_backends_open_each_others_seal_many(
    engine_pair: tuple[ModuleType, ModuleType], key: bytes, pts: list[bytes], data: st.DataObject
) -> None:
    sealer, opener = engine_pair
    item_aads = [data.draw(aads) for _ in pts]
    sealed = sealer.AesGcmKey(key).seal_many(pts, item_aads)
    k = opener.AesGcmKey(key)
    assert k.open_many(sealed, item_aads) == pts
    for item, pt, aad in zip(sealed, pts, item_aads, strict=True):
        assert k.open(item[:12], item[12:], aad) == pt


@given(key=keys, count=st.integers(0, 40), key_length=st.integers(1, 1024), aad=aads)
def test_backends_open_each_others_data_keys(
    engine_pair: tuple[ModuleType, ModuleType], key: bytes, count: int, key_length: int, aad: bytes
) -> None:
    sealer, opener = engine_pair
    plain, sealed = sealer.AesGcmKey(key).generate_data_keys(count, key_length, aad)
    item = 12 + key_length + 16
    items = [sealed[i * item : (i + 1) * item] for i in range(count)]
    expected = [plain[i * key_length : (i + 1) * key_length] for i in range(count)]
    assert opener.AesGcmKey(key).open_many(items, [aad] * count) == expected


def test_backends_agree_on_constant_time_equals(engine: ModuleType) -> None:
    a = os.urandom(32)
    assert engine.constant_time_equals(a, bytes(a))
    assert engine.constant_time_equals(b"", b"")
    assert not engine.constant_time_equals(a, _flip(a, 31, 1))
    assert not engine.constant_time_equals(a, a[:-1])
    assert engine.constant_time_equals(bytearray(a), memoryview(a))


def test_openssl_version_is_reported(engine: ModuleType) -> None:
    assert "OpenSSL" in engine.openssl_version()
    assert "OpenSSL" in engine.openssl_header_version()


# --- the backend switch


def test_public_engine_backend_matches_the_environment() -> None:
    expected = "python" if os.environ.get("KMSCORE_PUREPYTHON") == "1" else "native"
    assert kmscore.engine.BACKEND == expected
    module = "kmscore.engine._engine_py" if expected == "python" else "kmscore.engine._engine"
    assert kmscore.engine.AesGcmKey.__module__ == module


def _backend_in_subprocess(tmp_path: Path, purepython: str | None) -> str:
    env = dict(os.environ)
    env.pop("KMSCORE_PUREPYTHON", None)
    if purepython is not None:
        env["KMSCORE_PUREPYTHON"] = purepython
    # cwd is a scratch directory so that `python -c` cannot import a kmscore/
    # source folder from the current directory instead of the installed package.
    done = subprocess.run(
        [sys.executable, "-c", "import kmscore.engine as e; print(e.BACKEND)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_purepython_variable_selects_the_twin(tmp_path: Path) -> None:
    assert _backend_in_subprocess(tmp_path, "1") == "python"


def test_native_is_the_default(tmp_path: Path, native: ModuleType) -> None:
    assert _backend_in_subprocess(tmp_path, None) == "native"
    # Only "1" asks for the twin; anything else keeps the native engine.
    assert _backend_in_subprocess(tmp_path, "0") == "native"


def test_python_m_kmscore_self_check(tmp_path: Path) -> None:
    # Its own home: the runner's default data dir may be another build's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMS_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "kmscore"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"engine backend: {kmscore.engine.BACKEND}" in done.stdout
    assert "round trip" in done.stdout
    assert "FAILED" not in done.stdout
