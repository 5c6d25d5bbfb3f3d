"""verify(): a clean trail passes; each kind of tampering fails, naming the spot.

Out of scope: replacing ``audit-signing.pub`` together with re-signed
checkpoints. Whoever can do that controls what "valid" means; the defence is to
pin the public key elsewhere and pass it as ``public_key`` (tested below).
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from test_audit_support import checkpoints, event, locate, records, rewrite_lines

from kmscore.audit import AuditTrail, VerifyError, verify
from kmscore.audit._format import canonical, checkpoint_message, line_hash

CKPT = "checkpoints.jsonl"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 records in several segments, written over three openings, all sealed."""
    data_dir = tmp_path_factory.mktemp("pristine")
    for _ in range(3):
        with AuditTrail.open(
            data_dir, max_segment_bytes=6000, checkpoint_every=9, checkpoint_interval=None
        ) as trail:
            for i in range(20):
                trail.append(event("Decrypt" if i % 3 else "Encrypt"))
    return data_dir


@pytest.fixture
def trail_dir(pristine: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(pristine, data_dir)
    return data_dir


def _unsealed_middle_seq(data_dir: Path) -> int:
    """A record that no checkpoint names and that is not last in its segment."""
    sealed = {c["seq"] for c in checkpoints(data_dir)}
    stored = records(data_dir)
    for (name, _, record), (next_name, _, _) in itertools.pairwise(stored):
        if record["seq"] > 20 and record["seq"] not in sealed and next_name == name:
            return int(record["seq"])
    raise AssertionError("no suitable record")


def test_clean_trail_verifies(pristine: Path) -> None:
    report = verify(pristine)
    assert report.records == 60
    assert report.segments >= 4
    assert report.checkpoints >= 7
    assert (report.sealed_through, report.unsealed, report.torn_tail) == (59, 0, None)
    assert report.last_signature == checkpoints(pristine)[-1]["signature"]
    assert verify(pristine, anchor=checkpoints(pristine)[2]["signature"]) == report


def test_edited_field(trail_dir: Path) -> None:
    seq = _unsealed_middle_seq(trail_dir)
    path, line = locate(trail_dir, seq)

    def edit(lines: list[bytes]) -> list[bytes]:
        lines[line - 1] = lines[line - 1].replace(b"kmscore-tests/1.0", b"kmscore-tests/2.0")
        return lines

    rewrite_lines(path, edit)
    with pytest.raises(VerifyError) as caught:
        verify(trail_dir)
    error = caught.value
    assert (error.file, error.line, error.seq) == (path.name, line, seq)
    assert "record changed" in str(error)
    assert f"{path.name}:{line}" in str(error)


def test_edited_sealed_record(trail_dir: Path) -> None:
    seq = checkpoints(trail_dir)[3]["seq"]
    path, line = locate(trail_dir, seq)
    rewrite_lines(
        path, lambda ls: [*ls[: line - 1], ls[line - 1].replace(b"unix:", b"unix:9"), *ls[line:]]
    )
    with pytest.raises(VerifyError, match="hash differs from the sealed head") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line, caught.value.seq) == (path.name, line, seq)


def test_rewritten_chain_is_caught_by_the_checkpoint(trail_dir: Path) -> None:
    """An attacker who changes a record and recomputes every later link."""
    seq = _unsealed_middle_seq(trail_dir)
    path, line = locate(trail_dir, seq)
    lines = path.read_bytes().splitlines()
    head = json.loads(lines[line - 1])["prevHash"]
    for index in range(line - 1, len(lines)):
        record = json.loads(lines[index])
        record["prevHash"] = head
        if index == line - 1:
            record["eventName"] = "ScheduleKeyDeletion"
        lines[index] = json.dumps(record, separators=(",", ":")).encode()
        head = line_hash(lines[index])
    path.write_bytes(b"".join(x + b"\n" for x in lines))
    with pytest.raises(VerifyError, match="does not match checkpoint") as caught:
        verify(trail_dir)
    assert caught.value.file == path.name and caught.value.seq > seq


def test_deleted_line(trail_dir: Path) -> None:
    seq = _unsealed_middle_seq(trail_dir)
    path, line = locate(trail_dir, seq)
    rewrite_lines(path, lambda ls: ls[: line - 1] + ls[line:])
    with pytest.raises(VerifyError, match=f"records {seq}..{seq} are missing") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line, caught.value.seq) == (path.name, line, seq + 1)


def test_inserted_duplicate_line(trail_dir: Path) -> None:
    seq = _unsealed_middle_seq(trail_dir)
    path, line = locate(trail_dir, seq)
    rewrite_lines(path, lambda ls: [*ls[:line], ls[line - 1], *ls[line:]])
    with pytest.raises(VerifyError, match="inserted") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line, caught.value.seq) == (path.name, line + 1, seq)


def test_inserted_well_linked_forgery(trail_dir: Path) -> None:
    """A forged record with the right seq and prevHash pushes the real one aside."""
    seq = _unsealed_middle_seq(trail_dir)
    path, line = locate(trail_dir, seq)
    real = json.loads(path.read_bytes().splitlines()[line - 1])
    forged = dict(real, eventName="DisableKey", eventID="forged")
    forged_line = json.dumps(forged, separators=(",", ":")).encode()
    rewrite_lines(path, lambda ls: [*ls[: line - 1], forged_line, *ls[line - 1 :]])
    with pytest.raises(VerifyError, match="repeat") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line, caught.value.seq) == (path.name, line + 1, seq)


def test_swapped_lines(trail_dir: Path) -> None:
    seq = _unsealed_middle_seq(trail_dir)
    path, line = locate(trail_dir, seq)

    def swap(lines: list[bytes]) -> list[bytes]:
        lines[line - 1], lines[line] = lines[line], lines[line - 1]
        return lines

    rewrite_lines(path, swap)
    with pytest.raises(VerifyError, match="moved later") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line, caught.value.seq) == (path.name, line, seq + 1)


def test_deleted_middle_segment(trail_dir: Path) -> None:
    segments = sorted((trail_dir / "audit").glob("segment-*.jsonl"))
    segments[1].unlink()
    with pytest.raises(VerifyError, match="segment was removed") as caught:
        verify(trail_dir)
    assert caught.value.file == segments[2].name


def test_deleted_first_segment(trail_dir: Path) -> None:
    sorted((trail_dir / "audit").glob("segment-*.jsonl"))[0].unlink()
    with pytest.raises(VerifyError, match="records 0\\.\\."):
        verify(trail_dir)


def test_deleted_last_segment(trail_dir: Path) -> None:
    sorted((trail_dir / "audit").glob("segment-*.jsonl"))[-1].unlink()
    last = len(checkpoints(trail_dir))
    with pytest.raises(VerifyError, match="cut off or removed") as caught:
        verify(trail_dir)
    assert caught.value.file == CKPT
    assert caught.value.line == last and caught.value.seq == 59


@pytest.mark.parametrize("keep", [-3, -1], ids=["whole-lines", "mid-line"])
def test_tail_cut_after_a_checkpoint(trail_dir: Path, keep: int) -> None:
    path = sorted((trail_dir / "audit").glob("segment-*.jsonl"))[-1]
    data = path.read_bytes()
    if keep == -1:
        path.write_bytes(data[: len(data) - 40])  # leaves a torn line
    else:
        path.write_bytes(b"".join(x + b"\n" for x in data.splitlines()[:keep]))
    with pytest.raises(VerifyError, match="trail ends at seq") as caught:
        verify(trail_dir)
    assert caught.value.file == CKPT and caught.value.seq == 59


def test_forged_checkpoint_signature(trail_dir: Path) -> None:
    def forge(lines: list[bytes]) -> list[bytes]:
        body = json.loads(lines[2])
        body["signature"] = ("0" if body["signature"][0] != "0" else "1") + body["signature"][1:]
        lines[2] = canonical(body)
        return lines

    rewrite_lines(trail_dir / "audit" / CKPT, forge)
    with pytest.raises(VerifyError, match="bad signature") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line) == (CKPT, 3)


def test_checkpoint_signed_by_another_key(trail_dir: Path) -> None:
    other = SigningKey.generate()

    def resign(lines: list[bytes]) -> list[bytes]:
        body = json.loads(lines[-1])
        body["seq"] -= 1
        body["signature"] = other.sign(checkpoint_message(body)).signature.hex()
        lines[-1] = canonical(body)
        return lines

    rewrite_lines(trail_dir / "audit" / CKPT, resign)
    with pytest.raises(VerifyError, match="bad signature"):
        verify(trail_dir)


def test_removed_checkpoint(trail_dir: Path) -> None:
    rewrite_lines(trail_dir / "audit" / CKPT, lambda ls: ls[:2] + ls[3:])
    with pytest.raises(VerifyError, match="prevSignature") as caught:
        verify(trail_dir)
    assert (caught.value.file, caught.value.line) == (CKPT, 3)


def test_emptied_checkpoints_file(trail_dir: Path) -> None:
    (trail_dir / "audit" / CKPT).write_bytes(b"")
    with pytest.raises(VerifyError, match="closed without a checkpoint"):
        verify(trail_dir)


def test_missing_checkpoints_file(trail_dir: Path) -> None:
    (trail_dir / "audit" / CKPT).unlink()
    with pytest.raises(VerifyError, match="missing"):
        verify(trail_dir)


def test_cutting_records_and_checkpoints_together_needs_an_anchor(trail_dir: Path) -> None:
    anchor = verify(trail_dir).last_signature
    # Drop the last checkpoint and every record it alone sealed.
    found = checkpoints(trail_dir)
    keep_through = found[-2]["seq"]
    rewrite_lines(trail_dir / "audit" / CKPT, lambda ls: ls[:-1])
    for path in sorted((trail_dir / "audit").glob("segment-*.jsonl")):
        rewrite_lines(path, lambda ls: [x for x in ls if json.loads(x)["seq"] <= keep_through])
        if path.stat().st_size == 0:
            path.unlink()
    assert verify(trail_dir).records == keep_through + 1  # undetectable from inside
    with pytest.raises(VerifyError, match="anchor"):
        verify(trail_dir, anchor=anchor)


def test_pinned_public_key_defeats_a_replaced_key_file(trail_dir: Path) -> None:
    pinned = bytes.fromhex((trail_dir / "audit-signing.pub").read_text())
    other = SigningKey.generate()

    def resign_all(lines: list[bytes]) -> list[bytes]:
        out, previous = [], None
        for line in lines:
            body = json.loads(line)
            body["prevSignature"] = previous
            body["signature"] = other.sign(checkpoint_message(body)).signature.hex()
            previous = body["signature"]
            out.append(canonical(body))
        return out

    rewrite_lines(trail_dir / "audit" / CKPT, resign_all)
    (trail_dir / "audit-signing.pub").write_text(other.verify_key.encode().hex() + "\n")
    verify(trail_dir)  # the replaced key file vouches for the forgery (out of scope)
    with pytest.raises(VerifyError, match="bad signature"):
        verify(trail_dir, public_key=pinned)


def test_unsealed_records_are_reported(tmp_path: Path) -> None:
    trail = AuditTrail.open(tmp_path, checkpoint_every=4, checkpoint_interval=None)
    for _ in range(10):
        trail.append(event())
    report = verify(tmp_path)
    assert (report.records, report.sealed_through, report.unsealed) == (10, 7, 2)
    # Unsealed records are still chain-checked.
    path, line = locate(tmp_path, 8)
    rewrite_lines(
        path, lambda ls: [*ls[: line - 1], ls[line - 1].replace(b"Encrypt", b"Decrypt"), *ls[line:]]
    )
    with pytest.raises(VerifyError, match="record changed") as caught:
        verify(tmp_path)
    assert caught.value.seq == 8
    trail._close_files()


def test_verify_and_query_beside_a_live_writer(tmp_path: Path) -> None:
    import threading

    from kmscore.audit import query

    trail = AuditTrail.open(
        tmp_path, max_segment_bytes=3000, checkpoint_every=5, checkpoint_interval=0.01
    )
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            trail.append(event())

    pool = [threading.Thread(target=writer) for _ in range(4)]
    for thread in pool:
        thread.start()
    try:
        seen, rounds = 0, 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline or rounds < 20:
            report = verify(tmp_path)
            assert report.records >= seen
            seen = report.records
            assert sum(1 for _ in query(tmp_path)) >= seen
            rounds += 1
            time.sleep(0.002)  # let the writers run
    finally:
        stop.set()
        for thread in pool:
            thread.join()
        trail.close()
    report = verify(tmp_path)
    assert report.unsealed == 0 and report.records >= seen > 100
    assert report.describe().startswith(f"OK: {report.records} records in ")


def test_verify_retries_when_a_segment_closes_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer seals and closes a segment between our two directory reads."""
    from kmscore.audit import _verify as verify_module

    trail = AuditTrail.open(
        tmp_path, max_segment_bytes=1, checkpoint_every=1000, checkpoint_interval=None
    )
    trail.append(event())
    real = verify_module._load_checkpoints
    calls = 0

    def stale_then_fresh(*args: object) -> object:
        nonlocal calls
        calls += 1
        loaded = real(*args)  # type: ignore[arg-type]
        if calls == 1:
            trail.append(event())  # seals segment 0 and starts segment 1
            trail.append(event())
        return loaded

    monkeypatch.setattr(verify_module, "_load_checkpoints", stale_then_fresh)
    assert verify(tmp_path).records == 3
    assert calls == 2
    trail.close()
