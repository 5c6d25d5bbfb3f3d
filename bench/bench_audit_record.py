"""The audit record alone: the journal writer and the auditor, per record.

Captures one real GenerateDataKey and one real Decrypt call (the ``Call``,
request, response) from an audited ``LocalKMS``, then times, in loops of
``--records`` records into a fresh file-backed journal each (mapped as the
service maps it), best of ``--repeats``:

- ``writer``: the native writer's ``append_service_call`` called directly,
  into pages the kernel has not faulted in for writing (``fresh``), and into
  pages faulted in beforehand (``ready``: what the sink's pump thread does
  ahead of a busy writer since stop 29; skipped on a checkout without it);
- ``auditor``: ``TrailAuditor.record``, the whole record as the service calls
  it, with the audit pump stopped (nothing drains meanwhile), into ready pages
  where the checkout can make them.

Times are the thread's CPU time (``CLOCK_THREAD_CPUTIME_ID``, user and
system): on the shared 2-core machine a loop preempted by another process is
not charged for it, while page faults, which are system time, still are.

It uses only what every checkout since stop 28 has, so two checkouts can be
compared in the same minutes:

    PYTHONPATH=/work/main python bench/bench_audit_record.py main
    PYTHONPATH=$PWD python bench/bench_audit_record.py this

The label is only printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kmscore import LocalKMS, engine
from kmscore.audit.journal import JournalFile
from kmscore.audit.journal_format import describe_caller

try:
    from kmscore.engine.journal import prefault_writable  # type: ignore[attr-defined]
except ImportError:  # a checkout before stop 29
    prefault_writable = None


def _capture(kms: LocalKMS, fn: Any) -> tuple[Any, ...]:
    """The arguments the auditor receives for one call of ``fn``."""
    auditor = kms._service.auditor
    seen: list[tuple[Any, ...]] = []
    original = auditor.record

    def spy(*args: Any) -> None:
        seen.append(args)
        original(*args)

    auditor.record = spy
    try:
        fn()
    finally:
        del auditor.record
    return seen[-1]


def _ready(mapping: Any) -> None:
    if prefault_writable is not None:
        prefault_writable(mapping, 0, len(mapping))


def _writer_loop(directory: Path, args: tuple[Any, ...], records: int, ready: bool) -> float:
    call, request, response, error = args
    extra = call.additional_event_data
    journal = JournalFile(directory, 8 * 1024 * 1024)
    if ready:
        _ready(journal.map)
    writer = journal.writer(describe_caller)
    append = writer.append_service_call
    append(call, request, response, error, extra)  # the definitions, untimed
    clock = time.thread_time_ns
    start = clock()
    for _ in range(records):
        append(call, request, response, error, extra)
    took = clock() - start
    writer.release()
    journal.seal()
    journal.path.unlink()
    return took / records


def _auditor_loop(kms: LocalKMS, args: tuple[Any, ...], records: int) -> float:
    auditor = kms._service.auditor
    auditor._journal.roll()  # a fresh file for every loop
    record = auditor.record
    record(*args)
    current = auditor._journal._file
    if current is not None:
        _ready(current.map)
    clock = time.thread_time_ns
    start = clock()
    for _ in range(records):
        record(*args)
    return (clock() - start) / records


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("label", nargs="?", default="this checkout")
    ap.add_argument("--records", type=int, default=15_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"engine backend: {engine.BACKEND}")
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(Path(tmp) / "data", audit=True)
        trail = kms._service.auditor.trail
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        ctx = {"purpose": "bench", "tenant": "t-0042"}
        blob = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=ctx)[
            "CiphertextBlob"
        ]
        cases = {
            "GenerateDataKey": _capture(
                kms,
                lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=ctx),
            ),
            "Decrypt": _capture(
                kms, lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
            ),
        }
        # The pump drains nothing while we time (draining competes for the GIL).
        trail._stop.set()
        if trail._pump is not None:
            trail._pump.join()
        scratch = Path(tmp) / "scratch"
        scratch.mkdir(mode=0o700)
        results: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, captured in cases.items():
                results.setdefault(f"writer {name}, fresh", []).append(
                    _writer_loop(scratch, captured, args.records, False)
                )
                if prefault_writable is not None:
                    results.setdefault(f"writer {name}, ready", []).append(
                        _writer_loop(scratch, captured, args.records, True)
                    )
                results.setdefault(f"auditor {name}", []).append(
                    _auditor_loop(kms, captured, args.records)
                )
        kms.close()
    print(f"{args.label}: ns per record, best (median) of {args.repeats} loops of {args.records}")
    for name, values in results.items():
        ordered = sorted(values)
        print(f"  {name:30} {ordered[0]:7.0f} ({ordered[len(ordered) // 2]:7.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
