"""What a witness costs the audit trail: appends and one checkpoint, local key vs witness.

Each round opens a fresh trail signed by the data dir's own key and one signed
through a fresh ``kms witness serve`` process, appends the same events with a
checkpoint every 10,000 records (signed in the background with the witness),
times each append (the 99.9th percentile and the worst show a writer waiting),
and times an explicit checkpoint of 9,999 records.
Rounds interleave the two, because the machine is shared and noisy.

Run: ``python bench/bench_witness.py [--rounds N] [--appends N]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from kmscore.audit import AuditTrail
from kmscore.audit.witness import CheckpointSigner, Witness, WitnessClient
from kmscore.bench.timing import Latency, elapsed_ns, timed_calls

_CLI = "import sys; from kmscore.frontends.cli.main import main; sys.argv[0] = 'kms'; main()"
_EVENT = {
    "eventVersion": "1.08",
    "eventTime": "2026-12-06T00:00:00Z",
    "eventName": "Encrypt",
    "userAgent": "x" * 250,
}


def _round(tmp: Path, name: str, appends: int) -> tuple[float, float, float, float]:
    proc = None
    signer: CheckpointSigner | None = None
    if name == "witness":
        Witness.init(tmp / "w")
        proc = subprocess.Popen(
            [sys.executable, "-c", _CLI, "witness", "serve", "--dir", str(tmp / "w"),
             "--socket", str(tmp / "w.sock")],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        proc.stdout.readline()
        signer = WitnessClient(tmp / "w.sock")
    try:
        trail = AuditTrail.open(tmp / "d", signer=signer, checkpoint_interval=None)
        elapsed, waits = timed_calls(lambda: trail.append(_EVENT), appends)
        per_append = elapsed / appends / 1e3
        histogram = Latency()
        histogram.record(waits)
        p999, worst = histogram.percentile(99.9) / 1e3, max(waits) / 1e6
        trail.checkpoint()
        for _ in range(9_999):  # one short of the automatic checkpoint
            trail.append(_EVENT)
        checkpoint_ms = elapsed_ns(trail.checkpoint) / 1e6
        trail.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
    return per_append, checkpoint_ms, p999, worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--appends", type=int, default=50_000)
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float, float, float]]] = {"local key": [], "witness": []}
    for number in range(args.rounds):
        for name in results:
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(_round(Path(tmp), name, args.appends))
        print(f"round {number + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{args.rounds} interleaved rounds, {args.appends} appends each, checkpoint every 10,000")
    print(
        f"{'signer':<12}{'us/append med':>15}{'min':>7}{'checkpoint ms med':>19}{'min':>7}"
        f"{'p99.9 append us med':>21}{'max append ms med':>19}"
    )
    for name, rows in results.items():
        appends, ckpts, p999s, worsts = (list(column) for column in zip(*rows, strict=True))
        print(
            f"{name:<12}{statistics.median(appends):>15.2f}{min(appends):>7.2f}"
            f"{statistics.median(ckpts):>19.1f}{min(ckpts):>7.1f}"
            f"{statistics.median(p999s):>21.1f}{statistics.median(worsts):>19.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
