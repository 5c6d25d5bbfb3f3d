"""The chainer's CPU per record, by how many records one drain pass moves.

Audited GenerateDataKey calls through ``LocalKMS`` fill this process's journal
(the pump that would drain it is stopped); then one drain pass
(:meth:`kmscore.audit.chainer.Drainer.drain`, what the chainer process runs)
chains them into the trail. Each row repeats that with a pass every N records,
about 5,000 records per row, and prints the pass's CPU time per record. The
difference between rows is a pass's fixed cost, which is why the chainer
process waits :data:`~kmscore.audit.chainer.BUSY_PAUSE` between passes under
load (docs/performance.md, issue 13).

Run: ``python bench/bench_chainer.py [--records 5000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from kmscore import LocalKMS
from kmscore.audit.journaled import JournaledTrail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000, help="records per row")
    args = ap.parse_args()
    JournaledTrail._tick = lambda self: None  # type: ignore[method-assign]  # no pump
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(os.path.join(tmp, "data"), audit=True)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        context = {"purpose": "bench", "tenant": "t-0042"}
        trail = kms.service.auditor.trail
        trail.drain()
        print(f"{'records per pass':>16} {'CPU us per record':>18} {'pass overhead us':>17}")
        rows: list[tuple[int, float]] = []
        for per in (1, 5, 20, 100, 1000):
            cpu = moved = 0
            for _ in range(max(1, args.records // per)):
                for _ in range(per):
                    kms.generate_data_key(
                        KeyId=key_id, KeySpec="AES_256", EncryptionContext=context
                    )
                start = time.process_time_ns()
                moved += trail.drain()
                cpu += time.process_time_ns() - start
            rows.append((per, cpu / moved / 1e3))
        floor = rows[-1][1]
        for per, us in rows:
            print(f"{per:16d} {us:18.1f} {(us - floor) * per:17.0f}")
        print("(pass overhead: a row's excess over the 1000-per-pass row, times N)")
        print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
        kms.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
