"""Batch operations, sizes on both sides of the GIL-released path, buffer types,
bad types and lengths, and threads sharing one key; on both backends.

Batch results must equal what the single operations give for the same items,
failing items included.
"""

from __future__ import annotations

import os
import threading
from array import array
from collections.abc import Callable
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmscore.errors import InvalidCiphertextException

# The native engine releases the GIL (on a context of its own) once the bytes of
# one call reach 16 KiB; below that it works on the key's shared context.
NOGIL_BYTES = 16 * 1024
OVERHEAD = 12 + 16


def _open_single(key: object, item: bytes, aad: bytes) -> bytes | None:
    """What open_many must say for one item, told by the single-item API."""
    try:
        return key.open(item[:12], item[12:], aad)  # type: ignore[attr-defined,no-any-return]
    except InvalidCiphertextException:
        return None


def _split(packed: bytes, size: int) -> list[bytes]:
    assert len(packed) % size == 0
    return [packed[i : i + size] for i in range(0, len(packed), size)]


@pytest.fixture
def key_bytes() -> bytes:
    return os.urandom(32)


# --- generate_data_keys


@pytest.mark.parametrize(
    ("count", "key_length"),
    [(1, 1), (7, 16), (64, 32), (3, 1024), (15, 1024), (16, 1024), (40, 1024), (700, 32)],
    ids=lambda v: str(v),
)
def test_data_keys_open_singly(
    engine: ModuleType, key_bytes: bytes, count: int, key_length: int
) -> None:
    k = engine.AesGcmKey(key_bytes)
    aad = b"header|" + os.urandom(20)
    plain, sealed = k.generate_data_keys(count, key_length, aad)
    assert type(plain) is bytes and type(sealed) is bytes
    assert len(plain) == count * key_length
    assert len(sealed) == count * (OVERHEAD + key_length)
    data_keys = _split(plain, key_length)
    items = _split(sealed, OVERHEAD + key_length)
    for data_key, item in zip(data_keys, items, strict=True):
        assert k.open(item[:12], item[12:], aad) == data_key
        with pytest.raises(InvalidCiphertextException):
            k.open(item[:12], item[12:], aad + b"x")
    assert k.open_many(items, [aad] * count) == data_keys
    # An independent AES-GCM agrees that each item is the data key sealed under this key.
    ref = AESGCM(key_bytes)
    assert ref.decrypt(items[-1][:12], items[-1][12:], aad) == data_keys[-1]


def test_data_keys_and_ivs_are_fresh(engine: ModuleType, key_bytes: bytes) -> None:
    k = engine.AesGcmKey(key_bytes)
    count = 256
    plain, sealed = k.generate_data_keys(count, 32, b"")
    data_keys = _split(plain, 32)
    ivs = [item[:12] for item in _split(sealed, OVERHEAD + 32)]
    assert len(set(data_keys)) == count
    assert len(set(ivs)) == count
    # Keys and IVs come from one RNG draw: they must not overlap each other.
    assert not any(iv in plain for iv in ivs)
    plain2, _ = k.generate_data_keys(count, 32, b"")
    assert plain2 != plain
    assert not set(_split(plain2, 32)) & set(data_keys)


@pytest.mark.parametrize("key_length", [1, 32, 1024])
def test_data_keys_count_zero(engine: ModuleType, key_bytes: bytes, key_length: int) -> None:
    assert engine.AesGcmKey(key_bytes).generate_data_keys(0, key_length, b"aad") == (b"", b"")


@pytest.mark.parametrize("key_length", [0, -1, 1025, 4096])
def test_data_keys_length_out_of_range(
    engine: ModuleType, key_bytes: bytes, key_length: int
) -> None:
    with pytest.raises(ValueError, match="1 to 1024"):
        engine.AesGcmKey(key_bytes).generate_data_keys(1, key_length)


def test_data_keys_bad_count(engine: ModuleType, key_bytes: bytes) -> None:
    k = engine.AesGcmKey(key_bytes)
    with pytest.raises(ValueError, match="negative"):
        k.generate_data_keys(-1, 32)
    # Refused before anything is allocated.
    with pytest.raises(ValueError, match="too large"):
        k.generate_data_keys(2**40, 32)
    with pytest.raises(ValueError, match="too large"):
        k.generate_data_keys(0x7FFFFFFF // (1 + OVERHEAD) + 1, 1)


def test_data_keys_limits_match_the_engine(engine: ModuleType) -> None:
    assert engine.DATA_KEY_MAX == 1024
    assert (engine.KEY_LENGTH, engine.IV_LENGTH, engine.TAG_LENGTH) == (32, 12, 16)


# --- seal_many / open_many


def _mixed_plaintexts(big: bool) -> list[bytes]:
    sizes = [0, 1, 15, 16, 17, 32, 1000, 4096]
    if big:
        sizes += [NOGIL_BYTES, 70_000, (1 << 20) + 3]
    return [os.urandom(n) for n in sizes]


@pytest.mark.parametrize("big", [False, True], ids=["small", "over-16KiB"])
def test_seal_many_outputs_open_singly(engine: ModuleType, key_bytes: bytes, big: bool) -> None:
    k = engine.AesGcmKey(key_bytes)
    pts = _mixed_plaintexts(big)
    item_aads = [os.urandom(i % 40) for i in range(len(pts))]
    assert (sum(map(len, pts)) >= NOGIL_BYTES) == big
    sealed = k.seal_many(pts, item_aads)
    assert [len(s) for s in sealed] == [len(p) + OVERHEAD for p in pts]
    assert all(type(s) is bytes for s in sealed)
    assert len({s[:12] for s in sealed}) == len(pts)
    for item, pt, aad in zip(sealed, pts, item_aads, strict=True):
        assert k.open(item[:12], item[12:], aad) == pt
        # Each item is bound to its own AAD.
        with pytest.raises(InvalidCiphertextException):
            k.open(item[:12], item[12:], aad + b"\0")


def test_seal_many_empty(engine: ModuleType, key_bytes: bytes) -> None:
    k = engine.AesGcmKey(key_bytes)
    assert k.seal_many([], []) == []
    assert k.open_many([], []) == []


def test_batch_lengths_must_match(engine: ModuleType, key_bytes: bytes) -> None:
    k = engine.AesGcmKey(key_bytes)
    with pytest.raises(ValueError, match="one AAD"):
        k.seal_many([b"a", b"b"], [b""])
    with pytest.raises(ValueError, match="one AAD"):
        k.seal_many([b"a"], [b"", b""])
    with pytest.raises(ValueError, match="one AAD"):
        k.seal_many([], [b""])
    good = k.seal_many([b"a"], [b""])
    with pytest.raises(ValueError, match="one AAD"):
        k.open_many(good, [])
    with pytest.raises(ValueError, match="one AAD"):
        k.open_many(good + good, [b""])


def _good_and_bad_items(k: object, big: bool) -> tuple[list[bytes], list[bytes], list[bool]]:
    """Sealed items with their AADs, about half of them spoiled in different ways."""
    pts = _mixed_plaintexts(big)
    item_aads = [os.urandom(7) for _ in pts]
    sealed: list[bytes] = k.seal_many(pts, item_aads)  # type: ignore[attr-defined]
    items, aads, ok = [], [], []

    def add(item: bytes, aad: bytes, valid: bool) -> None:
        items.append(item)
        aads.append(aad)
        ok.append(valid)

    for i, (item, aad) in enumerate(zip(sealed, item_aads, strict=True)):
        add(item, aad, True)
        spoil = i % 5
        if spoil == 0:
            add(item[:-1] + bytes([item[-1] ^ 0x80]), aad, False)  # tag
        elif spoil == 1:
            add(bytes([item[0] ^ 1]) + item[1:], aad, False)  # IV
        elif spoil == 2:
            add(item, aad[:-1], False)  # AAD
        elif spoil == 3:
            add(item + b"\0", aad, False)  # appended byte
        else:
            add(item[:-16], aad, False)  # tag dropped
    # Items too short to hold an IV and a tag, and one exactly that short.
    for n in (0, 1, 11, 12, 27):
        add(os.urandom(n), b"", False)
    empty = k.seal_many([b""], [b"e"])[0]  # type: ignore[attr-defined]
    assert len(empty) == OVERHEAD
    add(empty, b"e", True)
    add(empty, b"", False)
    return items, aads, ok


@pytest.mark.parametrize("big", [False, True], ids=["small", "over-16KiB"])
def test_open_many_equals_single_opens(engine: ModuleType, key_bytes: bytes, big: bool) -> None:
    k = engine.AesGcmKey(key_bytes)
    items, aads, ok = _good_and_bad_items(k, big)
    results = k.open_many(items, aads)
    singles = [_open_single(k, item, aad) for item, aad in zip(items, aads, strict=True)]
    assert results == singles
    # Not vacuous: exactly the valid items opened, and a failure never spills over.
    assert [r is not None for r in results] == ok
    assert all(type(r) is bytes for r in results if r is not None)


def test_open_many_does_not_change_its_inputs(engine: ModuleType, key_bytes: bytes) -> None:
    k = engine.AesGcmKey(key_bytes)
    items, aads, _ = _good_and_bad_items(k, big=False)
    buffers = [bytearray(i) for i in items]
    before = [bytes(b) for b in buffers]
    k.open_many(buffers, aads)
    assert [bytes(b) for b in buffers] == before


# --- sizes on both sides of the GIL-released path


SIZES = [
    (0, 0),
    (1, 0),
    (0, 1),
    (4096, 200),
    (NOGIL_BYTES - 1, 0),
    (NOGIL_BYTES, 0),
    (NOGIL_BYTES - 100, 100),
    (0, NOGIL_BYTES + 5),
    (100_000, 17),
    ((1 << 20) + 1, 33),
]


@pytest.mark.parametrize(("pt_len", "aad_len"), SIZES, ids=lambda v: str(v))
def test_seal_open_sizes(engine: ModuleType, key_bytes: bytes, pt_len: int, aad_len: int) -> None:
    k = engine.AesGcmKey(key_bytes)
    iv, pt, aad = os.urandom(12), os.urandom(pt_len), os.urandom(aad_len)
    sealed = k.seal(iv, pt, aad)
    assert sealed == AESGCM(key_bytes).encrypt(iv, pt, aad)
    assert k.open(iv, sealed, aad) == pt
    bad = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(InvalidCiphertextException):
        k.open(iv, bad, aad)
    if pt_len:
        bad = bytes([sealed[0] ^ 1]) + sealed[1:]
        with pytest.raises(InvalidCiphertextException):
            k.open(iv, bad, aad)


# --- buffer types


def _as(kind: str, data: bytes) -> bytes | bytearray | memoryview:
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    # A slice of a larger buffer: the pointer does not start at the buffer's start.
    assert kind == "memoryview-slice"
    return memoryview(b"<<" + data + b">>")[2:-2]


BUFFER_KINDS = ["bytes", "bytearray", "memoryview", "memoryview-slice"]


@pytest.mark.parametrize("kind", BUFFER_KINDS)
@pytest.mark.parametrize("pt_len", [33, NOGIL_BYTES + 1])
def test_buffer_types(engine: ModuleType, key_bytes: bytes, kind: str, pt_len: int) -> None:
    iv, pt, aad = os.urandom(12), os.urandom(pt_len), os.urandom(10)
    expected = engine.AesGcmKey(key_bytes).seal(iv, pt, aad)
    k = engine.AesGcmKey(_as(kind, key_bytes))
    sealed = k.seal(_as(kind, iv), _as(kind, pt), _as(kind, aad))
    assert type(sealed) is bytes
    assert sealed == expected
    opened = k.open(_as(kind, iv), _as(kind, sealed), _as(kind, aad))
    assert type(opened) is bytes
    assert opened == pt

    many = k.seal_many([_as(kind, pt)], [_as(kind, aad)])
    assert k.open_many([_as(kind, many[0])], [_as(kind, aad)]) == [pt]

    plain, sealed_keys = k.generate_data_keys(2, 32, _as(kind, aad))
    items = _split(sealed_keys, OVERHEAD + 32)
    assert k.open_many(items, [aad, aad]) == _split(plain, 32)


def test_buffer_lengths_are_counted_in_bytes(engine: ModuleType, key_bytes: bytes) -> None:
    """A buffer of wider items (array('Q'), a cast memoryview) has len() != nbytes."""
    iv, pt = os.urandom(12), os.urandom(40)
    expected = engine.AesGcmKey(key_bytes).seal(iv, pt)
    wide_key = array("Q", key_bytes)
    wide_iv = memoryview(iv).cast("I")
    assert len(wide_key) != 32 and len(wide_iv) != 12
    k = engine.AesGcmKey(wide_key)
    assert k.seal(wide_iv, pt) == expected
    assert k.open(wide_iv, expected) == pt


BAD_VALUES = [5, "text", None, 1.5, [1, 2]]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda v: type(v).__name__)
def test_non_buffers_raise_type_error(engine: ModuleType, key_bytes: bytes, bad: object) -> None:
    """Never coerced: bytes(5) would be five zero bytes, silently sealed."""
    k = engine.AesGcmKey(key_bytes)
    iv = os.urandom(12)
    good = k.seal(iv, b"x" * 20)
    calls: dict[str, Callable[[], object]] = {
        "AesGcmKey(key)": lambda: engine.AesGcmKey(bad),
        "seal(iv)": lambda: k.seal(bad, b"pt"),
        "seal(plaintext)": lambda: k.seal(iv, bad),
        "seal(aad)": lambda: k.seal(iv, b"pt", bad),
        "open(iv)": lambda: k.open(bad, good),
        "open(data)": lambda: k.open(iv, bad),
        "open(aad)": lambda: k.open(iv, good, bad),
        "generate_data_keys(aad)": lambda: k.generate_data_keys(1, 32, bad),
        "generate_data_keys(count=0, aad)": lambda: k.generate_data_keys(0, 32, bad),
        "seal_many(plaintexts)": lambda: k.seal_many([bad], [b""]),
        "seal_many(aads)": lambda: k.seal_many([b"pt"], [bad]),
        "open_many(sealed)": lambda: k.open_many([bad], [b""]),
        "open_many(aads)": lambda: k.open_many([iv + good], [bad]),
        "open_many(aads) of a short item": lambda: k.open_many([b""], [bad]),
    }
    accepted = []
    for name, call in calls.items():
        try:
            call()
        except TypeError:
            continue
        accepted.append(name)
    assert accepted == []


@pytest.mark.parametrize("length", [0, 1, 16, 24, 31, 33, 64])
def test_wrong_key_length(engine: ModuleType, length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        engine.AesGcmKey(os.urandom(length))


@pytest.mark.parametrize("length", [0, 1, 8, 11, 13, 16, 64])
def test_wrong_iv_length(engine: ModuleType, key_bytes: bytes, length: int) -> None:
    k = engine.AesGcmKey(key_bytes)
    sealed = k.seal(os.urandom(12), b"secret")
    with pytest.raises(ValueError, match="12 bytes"):
        k.seal(os.urandom(length), b"secret")
    # Opening gives the one opaque error, whatever is wrong.
    with pytest.raises(InvalidCiphertextException):
        k.open(os.urandom(length), sealed)


@pytest.mark.parametrize("length", range(16))
def test_data_shorter_than_a_tag(engine: ModuleType, key_bytes: bytes, length: int) -> None:
    with pytest.raises(InvalidCiphertextException):
        engine.AesGcmKey(key_bytes).open(os.urandom(12), os.urandom(length))


def test_key_is_not_picklable_and_hides_its_material(engine: ModuleType) -> None:
    import pickle

    material = os.urandom(32)
    k = engine.AesGcmKey(material)
    with pytest.raises(TypeError):
        pickle.dumps(k)
    assert material.hex() not in repr(k)
    assert repr(material) not in repr(k)


# --- threads sharing one key


@pytest.mark.parametrize("size", [48, 3000, 40_000], ids=["small", "medium", "over-16KiB"])
def test_threads_share_one_key(engine: ModuleType, key_bytes: bytes, size: int) -> None:
    threads, rounds = 4, 60 if size < NOGIL_BYTES else 15
    ref = AESGCM(key_bytes)
    k = engine.AesGcmKey(key_bytes)
    # Expected answers are made up front, by another implementation, one thread.
    work = []
    for t in range(threads):
        jobs = []
        for r in range(rounds):
            iv, aad = os.urandom(12), os.urandom(r % 30)
            pt = os.urandom(size + t * 7 + r)
            jobs.append((iv, pt, aad, ref.encrypt(iv, pt, aad)))
        work.append(jobs)
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(jobs: list[tuple[bytes, bytes, bytes, bytes]]) -> None:
        try:
            start.wait()
            for iv, pt, aad, expected in jobs:
                assert k.seal(iv, pt, aad) == expected
                assert k.open(iv, expected, aad) == pt
                tampered = expected[:-1] + bytes([expected[-1] ^ 4])
                assert k.open_many([iv + expected, iv + tampered], [aad, aad]) == [pt, None]
                many = k.seal_many([pt, pt[:5]], [aad, b""])
                assert k.open_many(many, [aad, b""]) == [pt, pt[:5]]
                plain, sealed = k.generate_data_keys(3, 32, aad)
                assert k.open_many(_split(sealed, OVERHEAD + 32), [aad] * 3) == _split(plain, 32)
        except BaseException as exc:  # handed to the main thread, which fails the test
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(jobs,)) for jobs in work]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in pool)
    if errors:
        raise errors[0]
