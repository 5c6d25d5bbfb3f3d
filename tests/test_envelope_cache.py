"""DataKeyCache: each limit, partitioning, LRU, wiping, and the effect on KMS calls.

KMS calls are counted two ways: a counting wrapper around the client, and (for
the headline effect) the data dir's audit trail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kmscore import LocalKMS, audit
from kmscore import envelope as E

SUITE = E.AES_256_GCM_HKDF_SHA512_COMMIT_KEY


class Counting:
    """A KMS client that counts calls by operation."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        def call(**kw: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(**kw)

        return call


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with LocalKMS(tmp_path_factory.mktemp("cache") / "kms", audit=False) as client:
        yield client


@pytest.fixture(scope="module")
def arns(kms: LocalKMS) -> list[str]:
    return [kms.create_key()["KeyMetadata"]["Arn"] for _ in range(2)]


@pytest.fixture
def client(kms: LocalKMS) -> Counting:
    return Counting(kms)


def _cache(client: Counting, arns: list[str], **kw: Any) -> E.DataKeyCache:
    kw.setdefault("max_age", 600)
    return E.DataKeyCache(E.KmsKeyring(client, arns[:1]), **kw)


def _edk(msg: bytes, client: Counting, arns: list[str]) -> bytes:
    _, header = E.decrypt(msg, E.KmsKeyring(client, arns))
    return header.encrypted_data_keys[0].ciphertext


def test_max_age_is_required(client: Counting, arns: list[str]) -> None:
    with pytest.raises(TypeError):
        E.DataKeyCache(E.KmsKeyring(client, arns))  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        E.DataKeyCache(E.KmsKeyring(client, arns), max_age=0)


def test_max_messages(client: Counting, arns: list[str]) -> None:
    cache = _cache(client, arns, max_messages=3)
    msgs = [E.encrypt(b"m", cache, suite=SUITE) for _ in range(7)]
    assert client.calls["generate_data_key"] == 3  # 3 + 3 + 1
    edks = [_edk(m, client, arns) for m in msgs]
    assert edks[0] == edks[1] == edks[2] != edks[3]
    assert edks[3] == edks[4] == edks[5] != edks[6]
    assert len(set(m[3:35] for m in msgs)) == 7  # a fresh message id (so key) each time


def test_max_bytes(client: Counting, arns: list[str]) -> None:
    cache = _cache(client, arns, max_bytes=100)
    sizes = [40, 40, 20, 1, 60, 50, 101, 10]
    msgs = [E.encrypt(os.urandom(n), cache, suite=SUITE) for n in sizes]
    edks = [_edk(m, client, arns) for m in msgs]
    # 40+40+20 = 100 fits exactly; 1 more needs a new key; 60 more fits (61);
    # 50 would pass 100: new key; 101 is over the limit alone: bypasses the cache
    assert edks[0] == edks[1] == edks[2]
    assert edks[3] == edks[4] != edks[2]
    assert edks[5] not in (edks[4], edks[6])
    assert edks[7] == edks[5]
    assert client.calls["generate_data_key"] == 4


def test_unknown_length_bypasses(client: Counting, arns: list[str]) -> None:
    import io

    cache = _cache(client, arns)
    for _ in range(3):
        E.encrypt_stream(io.BytesIO(b"x"), io.BytesIO(), cache, suite=SUITE)
    assert client.calls["generate_data_key"] == 3
    assert len(cache) == 0


def test_max_age(client: Counting, arns: list[str]) -> None:
    clock = Clock()
    cache = _cache(client, arns, max_age=10, clock=clock)
    E.encrypt(b"a", cache, suite=SUITE)
    clock.now += 9.9
    E.encrypt(b"b", cache, suite=SUITE)
    assert client.calls["generate_data_key"] == 1
    clock.now += 0.1
    E.encrypt(b"c", cache, suite=SUITE)
    assert client.calls["generate_data_key"] == 2


def test_partitioned_by_context_suite_and_keys(client: Counting, arns: list[str]) -> None:
    cache = _cache(client, arns)
    for _ in range(2):
        E.encrypt(b"x", cache, encryption_context={"t": "1"}, suite=SUITE)
        E.encrypt(b"x", cache, encryption_context={"t": "2"}, suite=SUITE)
        E.encrypt(b"x", cache, encryption_context={"t": "1"})  # the signed suite
    assert client.calls["generate_data_key"] == 3
    other = E.DataKeyCache(E.KmsKeyring(client, arns[1:]), max_age=600)
    E.encrypt(b"x", other, encryption_context={"t": "1"}, suite=SUITE)
    assert client.calls["generate_data_key"] == 4
    # the partition names the key set, so one cache object never mixes keyrings
    assert cache.keyring.partition != other.keyring.partition


def test_capacity_lru_and_wipe(client: Counting, arns: list[str]) -> None:
    cache = _cache(client, arns, capacity=2)
    E.encrypt(b"x", cache, encryption_context={"n": "1"}, suite=SUITE)
    E.encrypt(b"x", cache, encryption_context={"n": "2"}, suite=SUITE)
    E.encrypt(b"x", cache, encryption_context={"n": "1"}, suite=SUITE)  # n=1 most recent
    E.encrypt(b"x", cache, encryption_context={"n": "3"}, suite=SUITE)  # evicts n=2
    assert len(cache) == 2
    assert client.calls["generate_data_key"] == 3
    E.encrypt(b"x", cache, encryption_context={"n": "1"}, suite=SUITE)
    assert client.calls["generate_data_key"] == 3
    E.encrypt(b"x", cache, encryption_context={"n": "2"}, suite=SUITE)
    assert client.calls["generate_data_key"] == 4
    held = [e.materials.data_key for e in cache._entries.values()]
    cache.clear()
    assert all(buf == bytearray(32) for buf in held)
    assert len(cache) == 0


def test_evicted_buffer_is_zeroed(client: Counting, arns: list[str]) -> None:
    cache = _cache(client, arns, capacity=1)
    E.encrypt(b"x", cache, encryption_context={"n": "1"}, suite=SUITE)
    buf = next(iter(cache._entries.values())).materials.data_key
    assert buf != bytearray(32)
    E.encrypt(b"x", cache, encryption_context={"n": "2"}, suite=SUITE)
    assert buf == bytearray(32)


def test_decryption_materials_cached(client: Counting, arns: list[str]) -> None:
    clock = Clock()
    cache = E.DataKeyCache(E.KmsKeyring(client, arns), max_age=60, clock=clock)
    msg = E.encrypt(b"secret", E.KmsKeyring(client, arns[:1]), encryption_context={"a": "b"})
    for _ in range(5):
        assert E.decrypt(msg, cache)[0] == b"secret"
    assert client.calls["decrypt"] == 1
    clock.now += 60
    assert E.decrypt(msg, cache)[0] == b"secret"
    assert client.calls["decrypt"] == 2
    # a different message (other EDK) is its own entry
    msg2 = E.encrypt(b"other", E.KmsKeyring(client, arns[:1]), encryption_context={"a": "b"})
    assert E.decrypt(msg2, cache)[0] == b"other"
    assert client.calls["decrypt"] == 3


def test_cached_messages_interoperate(client: Counting, arns: list[str]) -> None:
    cache = _cache(client, arns, max_messages=10)
    ring = E.KmsKeyring(client, arns)
    for n in (0, 10, 5000):
        data = os.urandom(n)
        assert E.decrypt(E.encrypt(data, cache), ring)[0] == data


def test_ten_thousand_messages_cost_at_most_100_data_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    with LocalKMS(data_dir, audit=True) as kms:
        arn = kms.create_key()["KeyMetadata"]["Arn"]
        cache = E.DataKeyCache(E.KmsKeyring(kms, [arn]), max_age=3600, max_messages=100)
        ring = E.KmsKeyring(kms, [arn])
        msgs = [
            E.encrypt(b"small message %d" % i, cache, encryption_context={"app": "t"}, suite=SUITE)
            for i in range(10_000)
        ]
        assert E.decrypt(msgs[-1], ring)[0] == b"small message 9999"
    calls = list(audit.query(data_dir, event_name="GenerateDataKey"))
    assert 0 < len(calls) <= 100
    assert len(calls) == 100


def test_limits_hold_under_threads(client: Counting, arns: list[str]) -> None:
    import collections
    import threading

    cache = _cache(client, arns, max_messages=50, max_bytes=10_000)
    msgs: list[bytes] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [E.encrypt(b"x" * 30, cache, suite=SUITE) for _ in range(250)]
        with lock:
            msgs.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ring = E.KmsKeyring(client, arns)
    uses = collections.Counter(
        E.decrypt(m, ring)[1].encrypted_data_keys[0].ciphertext for m in msgs
    )
    assert len(msgs) == 2000
    assert max(uses.values()) <= 50  # and 50 * 30 = 1500 bytes, under max_bytes
    assert len(uses) >= 40


def test_a_pipe_is_not_counted_as_empty(client: Counting, arns: list[str], tmp_path: Path) -> None:
    # encrypt_file of a FIFO: its st_size (0) must not be taken as the length,
    # or the cache would count no bytes against max_bytes
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cache = _cache(client, arns, max_bytes=10)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"y" * 1000))
    writer.start()
    E.encrypt_file(fifo, tmp_path / "out.enc", cache, suite=SUITE)
    writer.join()
    assert len(cache) == 0  # unknown length: not cached
    ring = E.KmsKeyring(client, arns)
    assert E.decrypt((tmp_path / "out.enc").read_bytes(), ring)[0] == b"y" * 1000


def test_declared_length_is_enforced(client: Counting, arns: list[str]) -> None:
    import io

    cache = _cache(client, arns, max_bytes=100)
    with pytest.raises(ValueError, match="longer than plaintext_length"):
        E.encrypt_stream(
            io.BytesIO(b"z" * 500), io.BytesIO(), cache, suite=SUITE,
            plaintext_length=50, frame_length=64,
        )  # fmt: skip
    out = io.BytesIO()
    E.encrypt_stream(io.BytesIO(b"z" * 50), out, cache, suite=SUITE, plaintext_length=50)
    assert E.decrypt(out.getvalue(), E.KmsKeyring(client, arns))[0] == b"z" * 50
