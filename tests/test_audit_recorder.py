"""The auditor's hot path (the engine's CallRecorder) and the journal's pre-faulted pages."""

from __future__ import annotations

import mmap
import resource
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_audit_journal import ARN, CALLER, SECRET

from kmscore.audit import journal as jr
from kmscore.audit import journal_format as jf
from kmscore.audit import query, verify
from kmscore.audit.chainer import Drainer
from kmscore.audit.journal import Journal, JournalFile
from kmscore.audit.journal_format import HEADER_BYTES, decode, genesis
from kmscore.audit.setup import open_service_trail
from kmscore.engine import BACKEND
from kmscore.engine import _journal_py as twin
from kmscore.engine.journal import CallRecorder, prefault_writable
from kmscore.errors import AccessDeniedException
from kmscore.service.call import Call

SERVICE = SimpleNamespace(region="us-east-1", account="111122223333")


def batch_size(operation: str, request: Any) -> dict[str, Any]:
    return {"batchSize": request.get("Count")}


def recorder_for(journal: Journal, slow: list[str]) -> CallRecorder:
    def fallback(call: Any, request: Any, response: Any, error: Any, extra: Any) -> None:
        slow.append(call.request_id)
        journal.append_service_call(call, request, response, error, extra)

    return CallRecorder(journal, fallback, {"GenerateDataKeys"}, batch_size)


def a_call(n: int, operation: str = "Encrypt", cls: type[Call] = Call, **fields: Any) -> Call:
    return cls(SERVICE, operation, CALLER, f"req-{n}", [ARN], **fields)  # type: ignore[arg-type]


def records(data_dir: Path) -> list[dict[str, Any]]:
    trail = open_service_trail(data_dir)
    drainer = Drainer(data_dir, trail)
    drainer.drain()
    drainer.close()
    trail.close()
    verify(data_dir)
    return list(query(data_dir))


def test_the_recorder_keeps_every_call_across_rolls(tmp_path: Path) -> None:
    journal = Journal(tmp_path, capacity=2 * mmap.PAGESIZE)  # about 20 calls a file
    slow: list[str] = []
    recorder = recorder_for(journal, slow)
    for n in range(150):
        error = AccessDeniedException("no") if n % 7 == 0 else None
        recorder.record(
            a_call(n, read_only=n % 2 == 0),
            {"KeyId": str(n), "EncryptionContext": {"n": str(n)}, "Plaintext": SECRET},
            {"KeyId": ARN, "CiphertextBlob": SECRET},
            error,
        )
    journal.close()
    got = records(tmp_path)
    assert [r["requestID"] for r in got] == [f"req-{n}" for n in range(150)]
    # The first call made the file, and each roll went the slow way once.
    assert slow[0] == "req-0" and 5 <= len(slow) < 30
    for n, r in enumerate(got):
        assert r["requestParameters"] == {"keyId": str(n), "encryptionContext": {"n": str(n)}}
        assert r["readOnly"] is (n % 2 == 0)
        assert (r.get("responseElements") is None) is (n % 2 == 0)
        assert r.get("errorCode") == ("AccessDeniedException" if n % 7 == 0 else None)


def test_the_recorder_adds_a_batch_size_when_the_call_has_none(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    recorder = recorder_for(journal, [])
    recorder.record(a_call(1, "GenerateDataKeys"), {"KeyId": ARN, "Count": 3}, None, None)
    given = a_call(2, "GenerateDataKeys", additional_event_data={"batchSize": 9})
    recorder.record(given, {"KeyId": ARN, "Count": 3}, None, None)
    recorder.record(a_call(3, "Encrypt"), {"KeyId": ARN, "Count": 3}, None, None)
    journal.close()
    extras = [r.get("additionalEventData") for r in records(tmp_path)]
    assert extras[:2] == [{"batchSize": 3}, {"batchSize": 9}]
    assert not (extras[2] or {}).get("batchSize")


def test_no_secret_reaches_the_journal_through_the_recorder(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    recorder = recorder_for(journal, [])
    for n in range(30):
        recorder.record(
            a_call(n, "ImportKeyMaterial"),
            {"KeyId": ARN, "EncryptedKeyMaterial": SECRET, "ImportToken": SECRET},
            {"Plaintext": SECRET, "KeyMaterial": SECRET, "Nested": {"Plaintext": SECRET}},
            None,
        )
    file = journal._file
    assert file is not None
    held = bytes(file.map)
    assert SECRET not in held and SECRET.hex().encode() not in held
    journal.close()


class SlotCall(Call):
    __slots__ = ()


class PlainCall:
    """Not a slots class: every field is read by name."""

    def __init__(self, n: int) -> None:
        self.service, self.operation, self.caller = SERVICE, "Decrypt", CALLER
        self.request_id, self.resources, self.read_only = f"plain-{n}", [ARN], True
        self.additional_event_data = None


def test_fields_are_read_as_getattr_reads_them_whatever_the_call_type(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    recorder = recorder_for(journal, [])
    recorder.record(a_call(1), {"KeyId": "a"}, None, None)
    recorder.record(PlainCall(2), {"KeyId": "b"}, None, None)
    recorder.record(a_call(3, cls=SlotCall), {"KeyId": "c"}, None, None)
    # A changed type is not trusted by its old slot offsets.
    fourth = a_call(4, cls=SlotCall)
    SlotCall.request_id = property(lambda self: "patched")  # type: ignore[assignment,misc]
    try:
        recorder.record(fourth, {"KeyId": "d"}, None, None)
    finally:
        del SlotCall.request_id
    recorder.record(a_call(5, cls=SlotCall), {"KeyId": "e"}, None, None)
    unset = Call.__new__(Call)  # slots never set: AttributeError, and nothing written
    with pytest.raises(AttributeError):
        recorder.record(unset, {}, None, None)
    journal.close()
    ids = [r["requestID"] for r in records(tmp_path)]
    assert ids == ["req-1", "plain-2", "req-3", "patched", "req-5"]


def test_a_released_writer_sends_the_recorder_the_slow_way(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    slow: list[str] = []
    recorder = recorder_for(journal, slow)
    recorder.record(a_call(1), {}, None, None)
    recorder.record(a_call(2), {}, None, None)
    journal.roll()  # the writer is let go, as on a failed fsync
    recorder.record(a_call(3), {}, None, None)
    recorder.record(a_call(4), {}, None, None)
    journal.close()
    with pytest.raises(Exception, match="closed"):
        recorder.record(a_call(5), {}, None, None)
    assert slow == ["req-1", "req-3", "req-5"]
    assert [r["requestID"] for r in records(tmp_path)] == ["req-1", "req-2", "req-3", "req-4"]


def writers() -> list[Any]:
    found: list[Any] = [twin.JournalWriter]
    if BACKEND == "native":
        from kmscore.engine import _journal

        found.append(_journal.JournalWriter)
    return found


def scratch_writer(cls: Any) -> tuple[mmap.mmap, Any]:
    """A writer of ``cls`` over a fresh 64 KiB anonymous mapping."""
    buffer = mmap.mmap(-1, 1 << 16)
    writer = cls(
        buffer, HEADER_BYTES, 0, genesis(7), 48,
        jr._classify, jr._scrub, jr.DROP, jf.describe_caller,
    )  # fmt: skip
    return buffer, writer


def test_many_members_pack_the_same_in_both_writers() -> None:
    # Sixteen members or more take the writer's map32 heads, fewer its fixmaps.
    request: dict[str, Any] = {f"Member{i}": i for i in range(20)}
    request["EncryptionContext"] = {f"k{i}": f"v{i}" for i in range(18)}
    request["Small"] = {"a": 1}
    small = {"EncryptionContext": {"k": "v"}, "KeyId": "x"}
    decoded = []
    for cls in writers():
        buffer, writer = scratch_writer(cls)
        for req in (request, small):
            writer.append_call(1, "Encrypt", "r", CALLER, "r", "a", [ARN], False,
                               None, None, req, req, None)  # fmt: skip
        offset, seq, digest, bodies = HEADER_BYTES, 0, genesis(7), []
        while True:
            length, low, stored = struct.unpack_from("<II16s", buffer, offset)
            if length == 0:
                break
            body = bytes(buffer[offset + 24 : offset + 24 + length])
            assert low == seq and jf.entry_digest(digest, seq, body) == stored
            bodies.append(decode(body))
            digest, seq = stored, seq + 1
            offset = (offset + 24 + length + 7) & ~7
        decoded.append(bodies)
    assert all(d == decoded[0] for d in decoded)
    assert decoded[0][-2][11] == request and decoded[0][-1][11] == small


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_prefaulted_pages_take_no_fault_on_their_first_store(tmp_path: Path) -> None:
    file = JournalFile(tmp_path, 1 << 20)
    try:
        first = file.prefaulted
        assert first > HEADER_BYTES  # the maker faulted the first pages in
        pages = range(first, first + 64 * mmap.PAGESIZE, mmap.PAGESIZE)
        before = minor_faults()
        for at in pages:
            file.map[at] = 1
        cold = minor_faults() - before
        if not prefault_writable(file.map, pages.stop, 64 * mmap.PAGESIZE):
            pytest.skip("this kernel lacks MADV_POPULATE_WRITE")
        before = minor_faults()
        for at in range(pages.stop, pages.stop + 64 * mmap.PAGESIZE, mmap.PAGESIZE):
            file.map[at] = 1
        warm = minor_faults() - before
        assert cold >= 60 and warm <= 4  # the control faults once a page
    finally:
        file.seal()


def test_prefault_ahead_follows_the_writer_and_stays_inside_the_file(tmp_path: Path) -> None:
    file = JournalFile(tmp_path, 1 << 20)
    try:
        start = file.prefaulted
        assert start == HEADER_BYTES + jr.PREFAULT_MIN or start == file.capacity
        file.prefault_ahead(HEADER_BYTES + 300_000)  # written since: 300 kB, twice that ahead
        assert file.prefaulted == min(file.capacity, HEADER_BYTES + 900_000)
        file.prefault_ahead(file.capacity - 8)
        assert file.prefaulted == file.capacity
        with pytest.raises(ValueError):
            prefault_writable(file.map, file.capacity - 10, 100)
    finally:
        file.seal()
    file.prefault_ahead(file.capacity)  # unmapped: nothing to do, no error


REQUEST_IDS = [
    "0123abcd-4567-89ef-0123-000000000001",
    "0123abcd-4567-89ef-0123-000000000002",
    "ffffeeee-4567-89ef-0123-000000000003",  # another prefix
    "0123abcd-4567-89ef-0123-000000000004",  # the first again
    "short-id",
    "é" * 36,  # 36 characters, not ASCII: kept whole
    "x" * 35,
    "y" * 37,
    "",
]


def test_request_ids_come_back_whole(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    recorder = recorder_for(journal, [])
    for n, rid in enumerate(REQUEST_IDS):
        call = a_call(n)
        call.request_id = rid
        recorder.record(call, {"KeyId": str(n)}, None, None)
    journal.close()
    assert [r["requestID"] for r in records(tmp_path)] == REQUEST_IDS


def test_both_writers_split_request_ids_alike() -> None:
    decoded = []
    for cls in writers():
        buffer, writer = scratch_writer(cls)
        for rid in REQUEST_IDS:
            writer.append_call(1, "Encrypt", rid, CALLER, "r", "a", [ARN], True,
                               None, None, {}, None, None)  # fmt: skip
        offset, bodies = HEADER_BYTES, []
        while (length := struct.unpack_from("<I", buffer, offset)[0]) != 0:
            bodies.append(decode(bytes(buffer[offset + 24 : offset + 24 + length])))
            offset = (offset + 24 + length + 7) & ~7
        decoded.append(bodies)
    assert all(d == decoded[0] for d in decoded)
    calls = [body[3] for body in decoded[0] if body[0] == 1]
    assert calls[0][1] == "000000000001" and calls[0][0] == calls[3][0] != calls[2][0]
    assert calls[4:] == REQUEST_IDS[4:]
