"""Several writers, one chain: processes and threads appending to one data dir at once.

Each child process prints a request id only after ``append`` returned for it,
so the ids printed are exactly the acknowledged records.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from test_audit_support import checkpoints, event, records

from kmscore.audit import AuditTrail, query, verify
from kmscore.errors import KMSInternalException

TESTS_DIR = Path(__file__).parent

# argv: data dir, writer name, seconds to write (0: until killed), tests dir
WRITER = r"""
import os, sys, threading, time
sys.path.insert(0, sys.argv[4])
from test_audit_support import event
from kmscore.audit import AuditTrail

data_dir, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
trail = AuditTrail.open(
    data_dir, max_segment_bytes=24 * 1024, checkpoint_every=40, checkpoint_interval=0.05
)
os.write(1, b"ready\n")
sys.stdin.readline()  # start together
stop = time.monotonic() + seconds if seconds else float("inf")
out = threading.Lock()

def work(t):
    i = 0
    while time.monotonic() < stop:
        if i % 10 == 9:  # big batches: a kill can tear them
            ids = [f"{name}-{t}-{i}-{k}" for k in range(60)]
            trail.append_many([event(request_id=r) for r in ids])
        else:
            ids = [f"{name}-{t}-{i}"]
            trail.append(event(request_id=ids[0]))
        if i % 25 == 0:
            trail.checkpoint()
        with out:
            os.write(1, "".join(r + "\n" for r in ids).encode())
        i += 1

pool = [threading.Thread(target=work, args=(t,)) for t in range(3)]
for thread in pool:
    thread.start()
for thread in pool:
    thread.join()
trail.close()
os.write(1, b"closed\n")
"""


def _start(data_dir: Path, name: str, seconds: float) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), name, str(seconds), str(TESTS_DIR)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    return child


def _go(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()


def _told(child: subprocess.Popen[bytes]) -> list[str]:
    """The ids a child acknowledged (a line cut by a kill is not counted)."""
    assert child.stdout is not None
    lines = child.stdout.read().split(b"\n")
    child.wait()
    return [line.decode() for line in lines[:-1] if line and line != b"closed"]


def test_processes_and_threads_append_to_one_chain(tmp_path: Path) -> None:
    children = [_start(tmp_path, f"p{n}", 1.0) for n in range(3)]
    _go(children)
    told = [_told(child) for child in children]
    assert all(child.returncode == 0 for child in children)
    acknowledged = [i for ids in told for i in ids]
    assert all(ids for ids in told), "a writer was starved"

    report = verify(tmp_path)
    present = Counter(str(r["requestID"]) for r in query(tmp_path))
    assert set(present) == set(acknowledged)
    assert all(n == 1 for n in present.values()), "a record was written twice"
    assert report.records == len(acknowledged)
    assert report.unsealed == 0 and report.torn_tail is None
    assert report.segments > 3
    # The writers interleave in the chain: each one caught up with the others.
    writers = [str(r["requestID"]).split("-")[0] for r in query(tmp_path)]
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    assert switches > 10
    # Checkpoints chain across writers and each seals what came before it.
    found = checkpoints(tmp_path)
    assert [c["prevSignature"] for c in found[1:]] == [c["signature"] for c in found[:-1]]


def test_sigkill_of_one_writer_while_another_keeps_writing(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    acknowledged: set[str] = set()
    for round_ in range(3):
        victim = _start(tmp_path, f"v{round_}", 0)
        survivor = _start(tmp_path, f"s{round_}", 0)
        _go([victim, survivor])
        time.sleep(rng.uniform(0.1, 0.3))
        victim.send_signal(signal.SIGKILL)
        time.sleep(rng.uniform(0.1, 0.2))  # the survivor cuts any torn tail, goes on
        survivor.send_signal(signal.SIGKILL)
        told = _told(victim) + _told(survivor)
        assert any(i.startswith("s") for i in told), f"seed {seed}: the survivor wrote nothing"
        acknowledged |= set(told)
        verify(tmp_path)  # as the kills left it: a torn tail is reported, not an error
        present = Counter(str(r["requestID"]) for r in query(tmp_path))
        missing = acknowledged - set(present)
        assert not missing, f"seed {seed}, round {round_}: lost {sorted(missing)[:5]}"
        assert all(n == 1 for n in present.values()), f"seed {seed}: a record twice"
    AuditTrail.open(tmp_path, checkpoint_interval=None).close()
    report = verify(tmp_path)
    assert report.torn_tail is None and report.unsealed == 0
    ids = [str(r["requestID"]) for r in query(tmp_path)]
    assert len(ids) == len(set(ids)) == report.records
    assert acknowledged <= set(ids)


# --- in one process: what another writer can leave behind -------------------------


def _claim_as_someone_else(data_dir: Path) -> None:
    (data_dir / "audit" / "LOCK").write_text("kmscore audit writer pid 1 id other\n")


def _segment(data_dir: Path) -> Path:
    return sorted((data_dir / "audit").glob("segment-*.jsonl"))[-1]


def test_a_torn_tail_left_by_a_killed_writer_is_cut_by_the_next(tmp_path: Path) -> None:
    trail = AuditTrail.open(tmp_path, checkpoint_interval=None)
    trail.append(event(request_id="mine"))
    other = AuditTrail.open(tmp_path, checkpoint_interval=None)
    other.append(event(request_id="theirs"))
    other._close_files()  # killed: no checkpoint
    with _segment(tmp_path).open("ab") as handle:
        handle.write(b'{"seq":2,"prevHash":"0123')  # ...mid-write
    _claim_as_someone_else(tmp_path)
    trail.append(event(request_id="next"))
    trail.close()
    assert [r["requestID"] for _, _, r in records(tmp_path)] == ["mine", "theirs", "next"]
    report = verify(tmp_path)
    assert report.torn_tail is None and report.unsealed == 0


def test_a_foreign_line_that_breaks_the_chain_fails_appends(tmp_path: Path) -> None:
    trail = AuditTrail.open(tmp_path, checkpoint_interval=None)
    trail.append(event())
    segment = _segment(tmp_path)
    with segment.open("ab") as handle:
        handle.write(b'{"seq":7,"prevHash":"00","eventName":"Forged"}\n')
    size = segment.stat().st_size
    _claim_as_someone_else(tmp_path)
    with pytest.raises(KMSInternalException, match="breaks the chain"):
        trail.append(event())
    assert segment.stat().st_size == size  # a complete line is never cut
    with pytest.raises(KMSInternalException, match="breaks the chain"):
        trail.append(event())  # still refused: nothing was fixed
    with pytest.raises(KMSInternalException, match="breaks the chain"):
        trail.close()  # no final checkpoint over a damaged chain; the files are released
    assert trail._lock_fd == -1


def test_a_writer_that_saw_more_than_the_files_hold_fails(tmp_path: Path) -> None:
    trail = AuditTrail.open(tmp_path, checkpoint_interval=None)
    for _ in range(3):
        trail.append(event())
    segment = _segment(tmp_path)
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-1]))  # someone cut an acknowledged record
    _claim_as_someone_else(tmp_path)
    with pytest.raises(KMSInternalException, match="gone"):
        trail.append(event())
    trail._close_files()


def test_idle_writer_adopts_checkpoints_and_segments_of_others(tmp_path: Path) -> None:
    idle = AuditTrail.open(tmp_path, checkpoint_interval=None, max_segment_bytes=1 << 20)
    idle.append(event(request_id="first"))
    with AuditTrail.open(
        tmp_path, checkpoint_interval=None, max_segment_bytes=2000, checkpoint_every=3
    ) as busy:
        for i in range(20):
            busy.append(event(request_id=f"busy-{i}"))
    assert idle.next_seq == 1  # it has not looked yet
    idle.append(event(request_id="last"))
    assert idle.next_seq == 22
    idle.close()
    report = verify(tmp_path)
    assert (report.records, report.unsealed, report.torn_tail) == (22, 0, None)
    assert records(tmp_path)[-1][2]["requestID"] == "last"
    assert records(tmp_path)[-1][0] == _segment(tmp_path).name


def test_threads_of_two_trails_in_one_process(tmp_path: Path) -> None:
    trails = [
        AuditTrail.open(tmp_path, checkpoint_interval=0.02, max_segment_bytes=8000)
        for _ in range(2)
    ]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(60):
                trails[t % 2].append(event(request_id=f"{t}-{i}"))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for trail in trails:
        trail.close()
    assert not errors
    report = verify(tmp_path)
    assert report.records == 360 and report.unsealed == 0
    ids = [r["requestID"] for _, _, r in records(tmp_path)]
    assert len(set(ids)) == 360


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_must_reopen(tmp_path: Path) -> None:
    trail = AuditTrail.open(tmp_path, checkpoint_interval=None)
    trail.append(event())  # leaves random digits for the next ids in this process
    pid = os.fork()
    if pid == 0:  # the child: its copy refuses, a fresh open works
        code = 1
        try:
            mine = event(request_id="child")
            assert trail._lock_fd == -1  # its copy of the lock file is closed at once
            try:
                trail.append(mine)
            except KMSInternalException as exc:
                if "fork" in str(exc):
                    with AuditTrail.open(tmp_path, checkpoint_interval=None) as reopened:
                        reopened.append(mine)
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    trail.append(event(request_id="parent"))  # the parent's trail is unaffected
    trail.close()
    stored = [r for _, _, r in records(tmp_path)]
    assert [r["requestID"] for r in stored][1:] == ["child", "parent"]
    assert len({r["eventID"] for r in stored}) == 3  # the child drew its own ids
    assert verify(tmp_path).unsealed == 0
