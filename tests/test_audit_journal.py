"""The audit journal: its writers, its chain, replay, tampering, exactly-once draining."""

from __future__ import annotations

import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmscore.audit import VerifyError, query, verify
from kmscore.audit import journal as jr
from kmscore.audit import journal_format as jf
from kmscore.audit.chainer import DRAIN_LOCK, Drainer, drain_journals
from kmscore.audit.journal import Journal
from kmscore.audit.journal_format import (
    HEADER_BYTES,
    JournalDamaged,
    decode,
    event_id,
    genesis,
    journal_dir,
    parse_event_id,
)
from kmscore.audit.journal_reader import JournalReader
from kmscore.audit.setup import open_service_trail
from kmscore.client import LocalKMS
from kmscore.engine import BACKEND
from kmscore.engine import _journal_py as twin
from kmscore.errors import KMSInternalException
from kmscore.model.caller import Caller

CALLER = Caller(
    arn="arn:aws:iam::111122223333:user/bob",
    account="111122223333",
    principal_id="AIDA",
    kind="IAMUser",
)
ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET = b"\x13\x37 very secret plaintext \x00\xff"


def native_writer() -> Any:
    if BACKEND != "native":
        pytest.skip("the native writer is not built in the pure-Python run")
    from kmscore.engine import _journal

    return _journal.JournalWriter


def new_writer(cls: Any, size: int = 1 << 20) -> tuple[Any, mmap.mmap]:
    buffer = mmap.mmap(-1, size)
    writer = cls(
        buffer,
        HEADER_BYTES,
        0,
        genesis(7),
        48,
        jr._classify,
        jr._scrub,
        jr.DROP,
        jf.describe_caller,
    )
    return writer, buffer


def entries_of(buffer: mmap.mmap) -> list[list[Any]]:
    out = []
    offset, seq, digest = HEADER_BYTES, 0, genesis(7)
    while True:
        length, low, stored = struct.unpack_from("<II16s", buffer, offset)
        if length == 0:
            return out
        body = bytes(buffer[offset + 24 : offset + 24 + length])
        assert low == seq and jf.entry_digest(digest, seq, body) == stored
        out.append(decode(body))
        digest, seq = stored, seq + 1
        offset = (offset + 24 + length + 7) & ~7


text = st.text(max_size=12)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), text)
values = st.recursive(
    st.one_of(scalars, st.binary(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
names = (
    st.sampled_from(
        [
            "KeyId",
            "KeySpec",
            "EncryptionContext",
            "Plaintext",
            "CiphertextBlob",
            "GrantTokens",
            "NumberOfBytes",
            "plaintext",
            "Policy",
            "Tags",
            "DryRun",
        ]
    )
    | text
)
requests = st.dictionaries(names, values | st.dictionaries(text, text, max_size=3), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=requests, error=st.none() | text)
def test_native_and_twin_journal_the_same_scrubbed_call(
    request: dict[str, Any], error: Any
) -> None:
    native = native_writer()
    decoded = []
    for cls in (native, twin.JournalWriter):
        writer, buffer = new_writer(cls)
        writer.append_call(
            1_700_000_000_123_456_789,
            "Encrypt",
            "req-1",
            CALLER,
            "us-east-1",
            "111122223333",
            [ARN],
            True,
            "AccessDeniedException" if error is not None else None,
            error,
            request,
            None,
            {"batchSize": 3},
        )
        decoded.append(entries_of(buffer))
    assert decoded[0] == decoded[1]
    call = decoded[0][-1]
    assert call[0] == 1 and call[1] == 1_700_000_000_123_456_789
    kept = call[11]
    for name in request:
        if name.lower() in {"plaintext", "ciphertextblob", "granttokens"}:
            assert name not in kept


@settings(max_examples=60, deadline=None)
@given(
    secret_name=st.sampled_from(["Plaintext", "CiphertextBlob", "plaintext"]), nested=st.booleans()
)
def test_secrets_never_reach_the_mapping(secret_name: str, nested: bool) -> None:
    for cls in ([native_writer()] if BACKEND == "native" else []) + [twin.JournalWriter]:
        writer, buffer = new_writer(cls)
        request: dict[str, Any] = {"KeyId": "k", secret_name: SECRET}
        if nested:
            request["Recipient"] = {"AttestationDocument": SECRET, secret_name: SECRET}
        writer.append_call(
            1, "Decrypt", "r", CALLER, "r", "a", [ARN], True, None, None, request, request, None
        )
        assert SECRET not in bytes(buffer)
        assert SECRET.hex().encode() not in bytes(buffer)


@given(jid=st.integers(0, 2**60 - 1), seq=st.integers(0, 2**62 - 1))
def test_event_ids_name_their_entry(jid: int, seq: int) -> None:
    text_id = event_id(jid, seq)
    assert len(text_id) == 36 and text_id[14] == "8" and text_id[19] in "89ab"
    assert parse_event_id(text_id) == (jid, seq)


def test_other_event_ids_name_no_entry() -> None:
    assert parse_event_id("0f8fad5b-d9cb-469f-a165-70867728950e") is None
    assert parse_event_id("nonsense") is None
    assert parse_event_id(None) is None


def test_a_full_file_rolls_and_nothing_is_lost(tmp_path: Path) -> None:
    journal = Journal(tmp_path, capacity=2 * mmap.PAGESIZE)
    for n in range(200):
        journal.append_call(
            n,
            "Encrypt",
            f"r{n}",
            CALLER,
            "us-east-1",
            "1",
            [ARN],
            True,
            None,
            None,
            {"KeyId": str(n)},
            None,
            None,
        )
    files = sorted(journal_dir(tmp_path).glob("*.journal"))
    assert len(files) >= 3
    journal.close()
    trail = open_service_trail(tmp_path)
    drainer = Drainer(tmp_path, trail)
    assert drainer.drain() == 200
    drainer.close()
    trail.close()
    ids = [r["requestID"] for r in query(tmp_path)]
    assert ids == [f"r{n}" for n in range(200)]
    assert not list(journal_dir(tmp_path).glob("*.journal"))  # drained and removed
    verify(tmp_path)


def test_a_forked_child_cannot_write_its_parents_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append_event({"eventName": "Before"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            journal.append_event({"eventName": "Child"})
        except KMSInternalException:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    journal.append_event({"eventName": "After"})
    journal.close()
    drain_journals(tmp_path)
    assert [r["eventName"] for r in query(tmp_path)] == ["Before", "After"]


def test_an_append_fails_when_the_chainer_falls_too_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jr, "BEHIND_WAIT", 0.2)
    asked: list[int] = []
    journal = Journal(
        tmp_path, capacity=2 * mmap.PAGESIZE, max_behind=2, on_behind=lambda: asked.append(1)
    )
    with pytest.raises(KMSInternalException, match="not keeping up"):
        for n in range(1000):
            journal.append_event({"eventName": "E", "n": n})
    assert asked
    journal.close()


# --- a dead process's journal ---------------------------------------------------------

DYING_CHILD = r"""
import os, signal, sys
import kmscore.audit.journaled as journaled
journaled.PUMP_INTERVAL = 3600.0  # no drain before the kill
from kmscore import LocalKMS

kms = LocalKMS(sys.argv[1])
key = kms.create_key()["KeyMetadata"]["KeyId"]
for n in range(int(sys.argv[2])):
    kms.encrypt(KeyId=key, Plaintext=b"secret plaintext", EncryptionContext={"n": str(n)})
os.kill(os.getpid(), signal.SIGKILL)
"""


def die_with_a_journal(data_dir: Path, calls: int) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", DYING_CHILD, str(data_dir), str(calls)], check=False
    )
    assert done.returncode == -signal.SIGKILL
    return the_written_journal(data_dir)


def the_written_journal(data_dir: Path) -> Path:
    """The one journal with entries (a process also keeps an empty spare ready)."""
    written = []
    for path in journal_dir(data_dir).glob("*.journal"):
        reader = JournalReader(path)
        if reader.header.count:
            written.append(path)
        reader.close()
    (journal,) = written
    return journal


def segment_records(data_dir: Path) -> int:
    return sum(
        len(p.read_bytes().splitlines()) for p in (data_dir / "audit").glob("segment-*.jsonl")
    )


def test_a_dead_process_journal_is_replayed_at_the_next_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    journal = die_with_a_journal(data_dir, 50)
    before = segment_records(data_dir)  # the init's records; none of the child's calls
    assert b"secret plaintext" not in journal.read_bytes()
    with LocalKMS(data_dir, audit=True):
        assert not journal.exists()  # replayed, then removed: its writer is gone
    assert segment_records(data_dir) == before + 51
    contexts = [
        r["requestParameters"].get("encryptionContext")
        for r in query(data_dir)
        if r["eventName"] == "Encrypt"
    ]
    assert contexts == [{"n": str(n)} for n in range(50)]
    assert verify(data_dir).unsealed == 0


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x20]))


def _entry_offsets(path: Path) -> list[int]:
    reader = JournalReader(path)
    offsets = [HEADER_BYTES]
    for _seq, _body, end, _digest in reader.entries(HEADER_BYTES, 0, genesis(reader.journal_id)):
        offsets.append(end)
    reader.close()
    return offsets[:-1]


@pytest.mark.parametrize("tamper", ["byte", "swap", "cut"])
def test_a_tampered_journal_is_detected(tmp_path: Path, tamper: str) -> None:
    data_dir = tmp_path / "kms"
    journal = die_with_a_journal(data_dir, 20)
    offsets = _entry_offsets(journal)
    victim = offsets[len(offsets) // 2]
    data = bytearray(journal.read_bytes())
    if tamper == "byte":
        _flip(journal, victim + 30)  # inside the body
    elif tamper == "swap":
        a, b = offsets[-3], offsets[-2]
        c = offsets[-1]
        first, second = bytes(data[a:b]), bytes(data[b:c])
        if len(first) == len(second):
            data[a:c] = second + first
        else:
            data[a : a + len(second)] = second
        journal.write_bytes(bytes(data))
    else:  # the last entries removed: their commit words zeroed
        data[offsets[-2] :] = bytes(len(data) - offsets[-2])
        journal.write_bytes(bytes(data))
    with LocalKMS(data_dir, audit=True):
        pass
    with pytest.raises(VerifyError, match=f"{journal.name} is damaged at entry"):
        verify(data_dir)
    assert journal.exists()  # kept for whoever investigates


def test_reading_detects_a_changed_entry_directly(tmp_path: Path) -> None:
    journal = die_with_a_journal(tmp_path / "kms", 3)
    offsets = _entry_offsets(journal)
    _flip(journal, offsets[1] + 8)  # its digest
    reader = JournalReader(journal)
    with pytest.raises(JournalDamaged, match="does not match its digest"):
        list(reader.entries(HEADER_BYTES, 0, genesis(reader.journal_id)))
    reader.close()


# --- exactly once ---------------------------------------------------------------------


def _chained_then_rewound(data_dir: Path, calls: int) -> int:
    """Chain a dead writer's journal, then rewind its cursor as if the drainer had
    died between the trail write and the cursor; returns the records so far."""
    journal = die_with_a_journal(data_dir, calls)
    trail = open_service_trail(data_dir)
    drainer = Drainer(data_dir, trail)
    drainer._remove_finished = lambda: None  # type: ignore[method-assign]
    assert drainer.drain() == calls + 1  # the calls and the CreateKey
    drainer.close()
    trail.close()
    count = len(list(query(data_dir)))
    reader = JournalReader(journal)
    reader.set_chained(HEADER_BYTES, 0, genesis(reader.journal_id))
    reader.close()
    return count


@pytest.mark.parametrize("marked_busy", [True, False])
def test_reconcile_skips_entries_the_trail_holds(tmp_path: Path, marked_busy: bool) -> None:
    data_dir = tmp_path / "kms"
    count = _chained_then_rewound(data_dir, 30)
    if marked_busy:  # what a drainer leaves when it dies mid-batch
        fd = os.open(journal_dir(data_dir) / DRAIN_LOCK, os.O_WRONLY)
        os.pwrite(fd, b"busy 31\n".ljust(16), 0)
        os.close(fd)
    drain_journals(data_dir)
    if marked_busy:
        assert len(list(query(data_dir))) == count  # nothing twice
        verify(data_dir)
    else:
        # The control: without the mark the rewound entries are chained again,
        # so the mark (and the reconcile it starts) is what prevents duplicates.
        assert len(list(query(data_dir))) == count + 31


def test_a_drainer_may_chain_an_entry_before_its_writer_counts_it(tmp_path: Path) -> None:
    # A live writer stores an entry's commit word, then the count; a drainer can
    # chain the entry in between. That is not damage (bench_http found it was
    # taken for damage once).
    journal = Journal(tmp_path)
    for n in range(3):
        journal.append_event({"eventName": "E", "n": n})
    file = journal._file
    assert file is not None
    struct.pack_into("<Q", file.map, 48, 2)  # the count of a writer between the two stores
    trail = open_service_trail(tmp_path)
    drainer = Drainer(tmp_path, trail)
    assert drainer.drain() == 3
    assert not drainer.damaged
    journal.append_event({"eventName": "E", "n": 3})  # stores the count 4 again
    assert drainer.drain() == 1 and not drainer.damaged
    drainer.close()
    trail.close()
    journal.close()
    assert [r["n"] for r in query(tmp_path)] == [0, 1, 2, 3]


# --- the drainer is a parser of what the file holds -----------------------------------

junk_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), text, st.binary(max_size=6)
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=15), st.dictionaries(text, inner, max_size=3)),
    max_leaves=20,
)
small_refs = st.integers(0, 3)
call_shaped = st.tuples(
    st.integers(-(2**63), 2**64 - 1) | junk_values,  # the time
    *[small_refs | junk_values] * 12,
).map(lambda parts: msgpack.packb([1, *parts], use_bin_type=True))
definitions = st.one_of(text, st.lists(text | st.none(), min_size=8, max_size=8), junk_values).map(
    lambda value: msgpack.packb([0, value], use_bin_type=True)
)
junk_entries = st.one_of(
    call_shaped,
    definitions,
    st.binary(max_size=40),  # not MessagePack at all, or not an array
    st.tuples(st.sampled_from([0, 1, 2, 3]), st.lists(junk_values, max_size=14)).map(
        lambda t: msgpack.packb([t[0], *t[1]], use_bin_type=True)
    ),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.lists(junk_entries, min_size=1, max_size=6))
def test_entries_no_writer_makes_stop_their_journal_and_nothing_else(
    tmp_path_factory: pytest.TempPathFactory, junk: list[bytes]
) -> None:
    # Correctly chained entries whose bodies are anything at all (what a
    # corrupted or hostile file can hold): the drainer chains the good entries
    # before them, refuses the journal from the first bad one, and goes on.
    data_dir = tmp_path_factory.mktemp("junk")
    journal = Journal(data_dir, capacity=4 * mmap.PAGESIZE)  # small: 200 examples
    journal.append_event({"eventName": "Before"})
    file, native = journal._file, journal.writer
    assert file is not None
    # Raw bodies go in through the twin's commit (the one way to write an entry
    # no writer would make), continuing the chain where the first writer stopped.
    raw = twin.JournalWriter(
        file.map, native.offset, native.seq, native.digest, 48,
        jr._classify, jr._scrub, jr.DROP, jf.describe_caller,
    )  # fmt: skip
    native.release()
    journal.writer = raw
    for body in junk:
        raw._commit(body)
    raw.append_event({"eventName": "After"})
    journal.close()
    trail = open_service_trail(data_dir)
    drainer = Drainer(data_dir, trail)
    moved = drainer.drain()  # raises nothing
    drainer.close()
    trail.close()
    names = [r.get("eventName") for r in query(data_dir)]
    assert names[0] == "Before" and moved == len(names)
    if drainer.damaged:
        (damage,) = drainer.damaged.values()
        assert isinstance(damage, JournalDamaged) and "After" not in names
        with pytest.raises(VerifyError, match="is damaged at entry"):
            verify(data_dir)
    else:  # every junk entry happened to be one a writer could make
        assert names[-1] == "After"
        verify(data_dir)
    shutil.rmtree(data_dir)
