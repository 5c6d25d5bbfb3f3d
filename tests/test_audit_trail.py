"""The trail writer: chain, segments, checkpoints, reopening, locking, modes, fail closed."""

from __future__ import annotations

import errno
import itertools
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from test_audit_support import checkpoints, event, records

from kmscore.audit import AuditTrail, verify
from kmscore.errors import KMSInternalException


def small(data_dir: Path, **options: object) -> AuditTrail:
    settings: dict[str, object] = {
        "max_segment_bytes": 4096,
        "checkpoint_every": 7,
        "checkpoint_interval": None,
    }
    settings.update(options)
    return AuditTrail.open(data_dir, **settings)  # type: ignore[arg-type]


def test_records_chain_and_carry_sequence_numbers(tmp_path: Path) -> None:
    with small(tmp_path) as trail:
        for _ in range(30):
            trail.append(event())
        assert trail.next_seq == 30
    stored = records(tmp_path)
    assert [r["seq"] for _, _, r in stored] == list(range(30))
    assert stored[0][2]["prevHash"] == "0" * 64
    # Every file is JSON Lines: one event object per line, readable by jq.
    for path in (tmp_path / "audit").glob("segment-*.jsonl"):
        for line in path.read_bytes().splitlines():
            assert json.loads(line)["eventSource"] == "kms.amazonaws.com"


def test_segments_rotate_and_each_closed_segment_is_sealed(tmp_path: Path) -> None:
    with small(tmp_path) as trail:
        for _ in range(40):
            trail.append(event())
    segments = sorted((tmp_path / "audit").glob("segment-*.jsonl"))
    assert len(segments) > 3
    sealed = {c["seq"] for c in checkpoints(tmp_path)}
    for path in segments:
        last = json.loads(path.read_bytes().splitlines()[-1])
        assert last["seq"] in sealed
        first = json.loads(path.read_bytes().splitlines()[0])
        assert path.name == f"segment-{first['seq']:020d}.jsonl"
    report = verify(tmp_path)
    assert (report.records, report.unsealed, report.sealed_through) == (40, 0, 39)
    assert report.segments == len(segments)


def test_checkpoint_contents(tmp_path: Path) -> None:
    with small(tmp_path, max_segment_bytes=1 << 20, checkpoint_every=5) as trail:
        for _ in range(12):
            trail.append(event())
    found = checkpoints(tmp_path)
    assert [(c["seq"], c["count"]) for c in found] == [(4, 5), (9, 5), (11, 2)]
    assert found[0]["prevSignature"] is None
    assert found[1]["prevSignature"] == found[0]["signature"]
    for c in found:
        assert c["fromTime"] <= c["toTime"]
        assert set(c) >= {"seq", "count", "fromTime", "toTime", "head", "signature"}


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    for round_ in range(4):
        with small(tmp_path) as trail:
            assert trail.next_seq == round_ * 9
            for _ in range(9):
                trail.append(event())
    assert verify(tmp_path).records == 36
    assert [r["seq"] for _, _, r in records(tmp_path)] == list(range(36))


def test_reopening_after_unsealed_appends(tmp_path: Path) -> None:
    trail = small(tmp_path, checkpoint_every=1000)
    for _ in range(5):
        trail.append(event())
    report = verify(tmp_path)  # readers need no lock
    assert (report.records, report.unsealed, report.checkpoints) == (5, 5, 0)
    trail._close_files()  # a crash: no final checkpoint
    with small(tmp_path) as trail:
        assert trail.next_seq == 5
        trail.append(event())
    report = verify(tmp_path)
    assert (report.records, report.unsealed) == (6, 0)


def test_append_many_is_consecutive(tmp_path: Path) -> None:
    with small(tmp_path) as trail:
        trail.append(event())
        trail.append_many([event(request_id=f"batch-{i}") for i in range(10)])
        trail.append_many([])
    ids = [r["requestID"] for _, _, r in records(tmp_path)][1:]
    assert ids == [f"batch-{i}" for i in range(10)]
    verify(tmp_path)


def test_append_rejects_non_mappings(tmp_path: Path) -> None:
    with small(tmp_path) as trail:
        with pytest.raises(TypeError):
            trail.append(["not", "an", "event"])  # type: ignore[arg-type]


def test_timer_seals_records(tmp_path: Path) -> None:
    trail = small(tmp_path, checkpoint_every=1000, checkpoint_interval=0.1)
    try:
        trail.append(event())
        trail.append(event())
        deadline = time.monotonic() + 5
        while verify(tmp_path).unsealed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert verify(tmp_path).unsealed == 0
    finally:
        trail.close()


def test_checkpoint_flush_and_close_are_idempotent(tmp_path: Path) -> None:
    trail = small(tmp_path, checkpoint_every=1000)
    trail.checkpoint()  # nothing to seal
    trail.append(event())
    trail.flush()
    trail.checkpoint()
    trail.checkpoint()
    trail.close()
    trail.close()
    assert len(checkpoints(tmp_path)) == 1
    with pytest.raises(KMSInternalException, match="closed"):
        trail.append(event())
    with pytest.raises(KMSInternalException, match="closed"):
        trail.checkpoint()


# --- files on disk ------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_file_modes(tmp_path: Path, umask: int) -> None:
    data_dir = tmp_path / "data"
    old = os.umask(umask)
    try:
        with small(data_dir) as trail:
            for _ in range(20):
                trail.append(event())
    finally:
        os.umask(old)
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "audit") == 0o700
    assert _mode(data_dir / "audit-signing.key") == 0o600
    assert _mode(data_dir / "audit-signing.pub") == 0o600
    for path in (data_dir / "audit").iterdir():
        assert _mode(path) == 0o600, path.name


def test_signing_key_is_kept_and_matches_public_key(tmp_path: Path) -> None:
    small(tmp_path).close()
    seed = (tmp_path / "audit-signing.key").read_text().strip()
    public = (tmp_path / "audit-signing.pub").read_text().strip()
    assert SigningKey(bytes.fromhex(seed)).verify_key.encode().hex() == public
    small(tmp_path).close()
    assert (tmp_path / "audit-signing.key").read_text().strip() == seed


def test_unsafe_key_file_is_refused(tmp_path: Path) -> None:
    small(tmp_path).close()
    os.chmod(tmp_path / "audit-signing.key", 0o644)
    with pytest.raises(KMSInternalException, match="signing key"):
        small(tmp_path)


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    tmp_path.joinpath("elsewhere").write_text("00" * 32)
    os.symlink(tmp_path / "elsewhere", tmp_path / "audit-signing.key")
    with pytest.raises(KMSInternalException):
        small(tmp_path)


def test_mismatched_public_key_is_refused(tmp_path: Path) -> None:
    small(tmp_path).close()
    other = SigningKey.generate().verify_key.encode().hex()
    (tmp_path / "audit-signing.pub").write_text(other + "\n")
    with pytest.raises(KMSInternalException, match="does not match"):
        small(tmp_path)


def test_open_audit_dir_is_tightened(tmp_path: Path) -> None:
    small(tmp_path).close()
    os.chmod(tmp_path / "audit", 0o755)
    small(tmp_path).close()
    assert stat.S_IMODE(os.stat(tmp_path / "audit").st_mode) == 0o700


def test_open_segment_file_is_refused(tmp_path: Path) -> None:
    small(tmp_path).close()
    (segment,) = (tmp_path / "audit").glob("segment-*")
    os.chmod(segment, 0o644)
    with pytest.raises(KMSInternalException, match="open to others"):
        small(tmp_path)


@pytest.mark.parametrize("sync", ["batch", "always"])
def test_two_writers_in_one_process_share_the_chain(tmp_path: Path, sync: str) -> None:
    first = small(tmp_path, sync=sync)
    second = small(tmp_path, sync="batch")
    for i in range(30):
        (first if i % 3 else second).append(event(request_id=f"r{i}"))
    first.close()
    second.append(event(request_id="last"))
    second.close()
    stored = records(tmp_path)
    assert [r["requestID"] for _, _, r in stored] == [f"r{i}" for i in range(30)] + ["last"]
    report = verify(tmp_path)
    assert (report.records, report.unsealed, report.torn_tail) == (31, 0, None)
    assert report.segments > 1  # rotation decided by whoever wrote next


def test_lock_file_names_the_last_writer(tmp_path: Path) -> None:
    with small(tmp_path) as trail:
        trail.append(event())
        holder = (tmp_path / "audit" / "LOCK").read_text()
        assert f"pid {os.getpid():>10}" in holder


def test_reading_a_line_backwards(tmp_path: Path) -> None:
    from kmscore.audit._format import read_line_ending_at

    lines = [b"a" * n for n in (0, 1, 4095, 4096, 4097, 20000, 100_000, 3)]
    path = tmp_path / "lines"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    fd = os.open(path, os.O_RDONLY)
    try:
        end = 0
        for line in lines:
            end += len(line) + 1
            assert read_line_ending_at(fd, end) == line
        with pytest.raises(ValueError):
            read_line_ending_at(fd, end - 1)
    finally:
        os.close(fd)


# --- concurrency --------------------------------------------------------------


def test_concurrent_appends_are_all_recorded_once(tmp_path: Path) -> None:
    threads, per_thread = 8, 150
    trail = small(
        tmp_path, max_segment_bytes=64 * 1024, checkpoint_every=50, checkpoint_interval=0.05
    )
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(per_thread):
                if i % 25 == 0:
                    trail.append_many(
                        [event(request_id=f"{t}-{i}-a"), event(request_id=f"{t}-{i}-b")]
                    )
                else:
                    trail.append(event(request_id=f"{t}-{i}"))
                if i % 40 == 0:
                    trail.checkpoint()
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    trail.close()
    assert not errors
    stored = records(tmp_path)
    ids = [r["requestID"] for _, _, r in stored]
    expected = threads * (per_thread + per_thread // 25)
    assert len(ids) == len(set(ids)) == expected
    assert [r["seq"] for _, _, r in stored] == list(range(expected))
    # append_many keeps its records adjacent, even under contention
    for a, b in itertools.pairwise(ids):
        if a.endswith("-a"):
            assert b == a[:-1] + "b"
    report = verify(tmp_path)
    assert (report.records, report.unsealed) == (expected, 0)


def test_group_commit_batches_fsyncs_when_syncing_always(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.002)  # a slow disk makes followers queue up
        real_fsync(fd)

    trail = small(tmp_path, max_segment_bytes=1 << 30, checkpoint_every=1 << 30, sync="always")
    monkeypatch.setattr(os, "fsync", counting_fsync)
    pool = [
        threading.Thread(target=lambda: [trail.append(event()) for _ in range(50)])
        for _ in range(8)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    monkeypatch.undo()
    trail.close()
    assert verify(tmp_path).records == 400
    assert calls < 400 / 3, f"{calls} fsyncs for 400 records: no batching"


def test_batch_mode_writes_before_returning_and_fsyncs_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[float] = []
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.003)
        real_fsync(fd)
        synced.append(time.monotonic())

    trail = small(
        tmp_path, max_segment_bytes=1 << 30, checkpoint_every=1 << 30, fsync_interval=0.02
    )
    segment = next((tmp_path / "audit").glob("segment-*.jsonl"))
    monkeypatch.setattr(os, "fsync", slow_fsync)
    started = time.monotonic()
    for i in range(300):
        trail.append(event(request_id=f"r{i}"))
        # written to the kernel before append returned: another reader sees it
        assert segment.read_bytes().count(b"\n") == i + 1
    written = time.monotonic()
    deadline = time.monotonic() + 5
    while not synced or synced[-1] < written:
        assert time.monotonic() < deadline, "the flusher never caught up"
        time.sleep(0.005)
    monkeypatch.undo()
    # at most one background fsync per interval (plus the one in flight)
    assert len(synced) <= (synced[-1] - started) / 0.02 + 2
    assert len(synced) < 300 / 3
    trail.close()
    assert verify(tmp_path).records == 300


def test_flush_and_close_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trail = small(tmp_path, fsync_interval=60.0)
    trail.append(event())  # the flusher fsyncs at once, then not for a minute
    time.sleep(0.05)
    calls: list[int] = []
    real_fsync = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting)
    trail.append(event())
    assert calls == []
    trail.flush()
    assert len(calls) == 1
    trail.append(event())
    trail.close()
    assert len(calls) >= 3  # segment before the checkpoint, checkpoint file
    monkeypatch.undo()
    assert verify(tmp_path).records == 3


def test_checkpoints_seal_only_fsynced_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path, checkpoint_every=5, max_segment_bytes=1 << 30, fsync_interval=60.0)
    audit = tmp_path / "audit"
    segment = next(audit.glob("segment-*.jsonl"))
    events: list[tuple[str, int]] = []
    real_fsync, real_write = os.fsync, os.write

    def name_of(fd: int) -> str:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).name

    def logged_fsync(fd: int) -> None:
        real_fsync(fd)
        events.append(("fsync " + name_of(fd), segment.stat().st_size))

    def logged_write(fd: int, data: bytes) -> int:
        if name_of(fd) == "checkpoints.jsonl":
            sealed = json.loads(bytes(data))["offset"]
            synced = [size for what, size in events if what == f"fsync {segment.name}"]
            assert synced and synced[-1] >= sealed, "a checkpoint sealed unsynced records"
        return real_write(fd, data)

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "write", logged_write)
    for _ in range(12):
        trail.append(event())
    trail.close()
    monkeypatch.undo()
    assert len(checkpoints(tmp_path)) == 3


# --- fail closed --------------------------------------------------------------


def _enospc(*_: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_write_failure_raises_and_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path)
    for _ in range(3):
        trail.append(event())
    size_before = sum(p.stat().st_size for p in (tmp_path / "audit").glob("segment-*"))
    real_write = os.write
    calls = 0

    def half_then_enospc(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # a torn write...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then a full disk

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(KMSInternalException, match="No space left"):
        trail.append(event(request_id="lost"))
    monkeypatch.undo()
    size_after = sum(p.stat().st_size for p in (tmp_path / "audit").glob("segment-*"))
    assert size_after == size_before
    report = verify(tmp_path)
    assert report.records == 3 and report.torn_tail is None
    trail.append(event(request_id="next"))  # the disk has room again
    trail.close()
    ids = [r["requestID"] for _, _, r in records(tmp_path)]
    assert "lost" not in ids and ids[-1] == "next"
    assert verify(tmp_path).records == 4


def test_fsync_failure_raises_and_rolls_back_when_syncing_always(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path, sync="always")
    trail.append(event())
    real_fsync = os.fsync
    failed = False

    def fail_once(fd: int) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_once)
    with pytest.raises(KMSInternalException, match="could not be written"):
        trail.append(event(request_id="lost"))
    monkeypatch.undo()
    trail.append(event())
    trail.close()
    assert "lost" not in [r["requestID"] for _, _, r in records(tmp_path)]
    assert verify(tmp_path).records == 2


def test_background_fsync_failure_fails_the_trail_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path, checkpoint_every=1000)
    trail.append(event(request_id="before"))
    trail.flush()
    failed = threading.Event()

    def eio(fd: int) -> None:
        failed.set()
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", eio)
    trail.append(event(request_id="written"))  # acknowledged once written
    assert failed.wait(5)
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while True:  # the failure is recorded right after the fsync returns
        try:
            trail.append(event(request_id="refused"))
        except KMSInternalException as exc:
            assert "fsync" in str(exc) and "reopen" in str(exc)
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(KMSInternalException, match="fsync"):
        trail.flush()
    with pytest.raises(KMSInternalException, match="fsync"):
        trail.checkpoint()
    trail.close()  # releases the files; no checkpoint over records not known durable
    assert checkpoints(tmp_path) == []
    with small(tmp_path) as reopened:
        reopened.append(event(request_id="after"))
    ids = [r["requestID"] for _, _, r in records(tmp_path)]
    assert ids[:2] == ["before", "written"] and ids[-1] == "after"
    assert verify(tmp_path).unsealed == 0


def test_every_concurrent_caller_of_a_failed_batch_gets_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path, max_segment_bytes=1 << 30, checkpoint_every=1 << 30)
    monkeypatch.setattr(os, "write", _enospc)
    outcomes: list[str] = []

    def worker() -> None:
        try:
            trail.append(event())
            outcomes.append("ok")
        except KMSInternalException:
            outcomes.append("failed")

    pool = [threading.Thread(target=worker) for _ in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    monkeypatch.undo()
    assert outcomes == ["failed"] * 8
    trail.close()
    assert verify(tmp_path).records == 0


def test_failed_rollback_stops_the_trail_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path)
    trail.append(event())
    real_write = os.write
    monkeypatch.setattr(
        os, "write", lambda fd, data: real_write(fd, bytes(data[:10])) and _enospc()
    )
    monkeypatch.setattr(os, "ftruncate", _enospc)
    with pytest.raises(KMSInternalException):
        trail.append(event(request_id="lost"))
    monkeypatch.undo()
    with pytest.raises(KMSInternalException, match="rolled back"):
        trail.append(event())
    trail.close()
    # The next open cuts the torn, never acknowledged bytes.
    with small(tmp_path) as trail:
        trail.append(event(request_id="after"))
    assert [r["requestID"] for _, _, r in records(tmp_path)][-1] == "after"
    assert verify(tmp_path).records == 2


def test_checkpoint_failure_does_not_fail_durable_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path, max_segment_bytes=1 << 30, checkpoint_every=2)
    real_write = os.write
    ckpt = os.open(tmp_path / "audit" / "checkpoints.jsonl", os.O_RDONLY)
    ckpt_inode = os.fstat(ckpt).st_ino
    os.close(ckpt)

    def no_checkpoints(fd: int, data: bytes) -> int:
        if os.fstat(fd).st_ino == ckpt_inode:
            _enospc()
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", no_checkpoints)
    for _ in range(5):
        trail.append(event())  # durable; sealing is retried later
    with pytest.raises(KMSInternalException):
        trail.checkpoint()  # an explicit checkpoint reports the failure
    monkeypatch.undo()
    trail.close()
    report = verify(tmp_path)
    assert (report.records, report.unsealed, report.checkpoints) == (5, 0, 1)


# --- crash recovery at open -----------------------------------------------------


def _last_segment(data_dir: Path) -> Path:
    return sorted((data_dir / "audit").glob("segment-*.jsonl"))[-1]


@pytest.mark.parametrize(
    "tail",
    [b'{"seq":5,"prevHash":"ab', b"\0" * 300, b'{"seq":5}', b"garbage\n\0\0\0"],
    ids=["partial-line", "zeros", "complete-json-no-newline", "junk-lines"],
)
def test_torn_tail_is_cut_at_open(tmp_path: Path, tail: bytes) -> None:
    with small(tmp_path, checkpoint_every=1000) as trail:
        for _ in range(5):
            trail.append(event())
    with _last_segment(tmp_path).open("ab") as handle:
        handle.write(tail)
    report = verify(tmp_path)
    assert report.torn_tail is not None and report.records == 5
    with small(tmp_path) as trail:
        trail.append(event())
    report = verify(tmp_path)
    assert report.torn_tail is None and report.records == 6


def test_torn_checkpoint_is_cut_at_open(tmp_path: Path) -> None:
    with small(tmp_path) as trail:
        trail.append(event())
    with (tmp_path / "audit" / "checkpoints.jsonl").open("ab") as handle:
        handle.write(b'{"count":1,"createdAt":"2')
    verify(tmp_path)
    with small(tmp_path) as trail:
        trail.append(event())
    assert verify(tmp_path).checkpoints == 2


def test_a_broken_chain_is_not_mistaken_for_a_torn_tail(tmp_path: Path) -> None:
    trail = small(tmp_path, checkpoint_every=1000)
    for _ in range(3):
        trail.append(event())
    trail.checkpoint()
    trail.append(event())
    trail._close_files()  # a crash: the last record stays unsealed
    path = _last_segment(tmp_path)
    lines = path.read_bytes().splitlines()
    lines[-1] = lines[-1].replace(b'"seq":3', b'"seq":7')
    path.write_bytes(b"\n".join(lines) + b"\n")
    size = path.stat().st_size
    with pytest.raises(KMSInternalException, match="breaks the chain"):
        small(tmp_path)
    assert path.stat().st_size == size  # nothing was cut


def test_open_refuses_a_trail_cut_below_its_checkpoint(tmp_path: Path) -> None:
    with small(tmp_path, checkpoint_every=1000) as trail:
        for _ in range(5):
            trail.append(event())
    path = _last_segment(tmp_path)
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"".join(line + b"\n" for line in lines[:-2]))
    with pytest.raises(KMSInternalException, match="sealed by the last checkpoint"):
        small(tmp_path)


def test_open_refuses_checkpoints_signed_by_another_key(tmp_path: Path) -> None:
    small(tmp_path).close()
    trail = small(tmp_path)
    trail.append(event())
    trail.close()
    audit = tmp_path / "audit"
    other = SigningKey.generate()
    with pytest.raises(KMSInternalException, match="signature"):
        AuditTrail(audit, other, checkpoint_interval=None)


@pytest.mark.parametrize("sync", ["always", "batch"])
def test_interrupted_write_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync: str
) -> None:
    trail = small(tmp_path, sync=sync)
    trail.append(event())
    trail.flush()
    real_fsync, real_write = os.fsync, os.write
    interrupted = False

    def interrupt_fsync_once(fd: int) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt
        real_fsync(fd)

    def interrupt_write_once(fd: int, data: bytes) -> int:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            real_write(fd, bytes(data[:20]))  # part of the line is out
            raise KeyboardInterrupt
        return real_write(fd, data)

    if sync == "always":
        monkeypatch.setattr(os, "fsync", interrupt_fsync_once)
    else:
        monkeypatch.setattr(os, "write", interrupt_write_once)
    with pytest.raises(KeyboardInterrupt):
        trail.append(event(request_id="lost"))
    monkeypatch.undo()
    trail.append(event())  # the chain continues from the acknowledged head
    trail.close()
    assert "lost" not in [r["requestID"] for _, _, r in records(tmp_path)]
    report = verify(tmp_path)
    assert report.records == 2 and report.torn_tail is None


def test_failed_rotation_keeps_writing_to_the_full_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmscore import fsutil

    trail = small(tmp_path, max_segment_bytes=1)
    trail.append(event())

    def no_new_files(*_: object, **__: object) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(fsutil, "create_private_file", no_new_files)
    for _ in range(3):
        trail.append(event())
    monkeypatch.undo()
    assert len(list((tmp_path / "audit").glob("segment-*"))) == 1
    trail.append(event())  # rotation works again
    trail.close()
    assert len(list((tmp_path / "audit").glob("segment-*"))) == 2
    assert verify(tmp_path).records == 5


def test_failed_fsync_when_closing_a_segment_fails_the_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = small(tmp_path, max_segment_bytes=1, fsync_interval=60.0)
    trail.append(event())
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(KMSInternalException, match="fsync"):
        trail.append(event(request_id="lost"))  # must rotate first: seal, fsync, close
    monkeypatch.undo()
    with pytest.raises(KMSInternalException, match="reopen"):
        trail.append(event())
    trail.close()
    assert "lost" not in [r["requestID"] for _, _, r in records(tmp_path)]
    with small(tmp_path) as trail:
        trail.append(event())
    assert verify(tmp_path).records == 2


def test_constructor_with_own_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with AuditTrail(tmp_path / "records", key, checkpoint_interval=None) as trail:
        trail.append(event())
    line = (tmp_path / "records" / "checkpoints.jsonl").read_bytes()
    assert json.loads(line)["seq"] == 0
    assert _mode(tmp_path / "records") == 0o700
    with pytest.raises(ValueError):
        AuditTrail(tmp_path / "other", key, checkpoint_every=0)


def test_concurrent_first_opens_agree_on_one_signing_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from kmscore.audit import load_or_create_signing_key\n"
        "print(load_or_create_signing_key(sys.argv[1]).verify_key.encode().hex())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE)
        for _ in range(6)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert keys == {(tmp_path / "audit-signing.pub").read_text().strip().encode()}
