"""Unaudited GenerateDataKey and Decrypt through LocalKMS, to compare two checkouts.

Prints the median and minimum nanoseconds per call over several 20,000-call
loops. Run it alternately on each checkout in the same minutes, so the shared
machine's noise falls on both:

    git worktree add /tmp/before <commit>
    cp kmscore/engine/_engine*.so /tmp/before/kmscore/engine/   # same native engine
    PYTHONPATH=/tmp/before python bench/bench_checkouts.py before
    python bench/bench_checkouts.py after

The label is only printed. ``PYTHONPATH`` decides which tree is measured.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Callable

from kmscore import LocalKMS
from kmscore.bench.timing import per_op_ns


def _per_call_ns(fn: Callable[[], object], calls: int = 20_000) -> float:
    return per_op_ns(fn, calls)


def main() -> int:
    """Measure and print one line."""
    label = sys.argv[1] if len(sys.argv) > 1 else "this checkout"
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(tmp, audit=False)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"x" * 32)["CiphertextBlob"]
        runs = [
            (
                _per_call_ns(lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256")),
                _per_call_ns(lambda: kms.decrypt(CiphertextBlob=blob)),
            )
            for _ in range(7)
        ]
        kms.close()
    gdk = [r[0] for r in runs]
    dec = [r[1] for r in runs]
    print(
        f"{label}: generate_data_key median {statistics.median(gdk):,.0f} ns "
        f"(min {min(gdk):,.0f}); decrypt median {statistics.median(dec):,.0f} ns "
        f"(min {min(dec):,.0f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
