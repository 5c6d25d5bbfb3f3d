"""Benchmark of a PostgreSQL-backed node against a SQLite-backed one, in one run (issue 16).

Targets:

- Data-plane calls (Encrypt, Decrypt, GenerateDataKey) on a PostgreSQL node at
  least 0.9x as fast as on a SQLite node: the hot path never touches the store.
- CreateKey latency on each (a durable commit each; reported, no target).
- ListKeys per page (Limit=100) flat from 1,000 to 100,000 keys.
- DisableKey on node A refuses Encrypt on node B within 100 ms, while B (a
  process of its own, as a node on another machine) is busy encrypting, so
  its cache is as warm as it gets. Timed from A's call to B's first refusal.

The PostgreSQL server is started here, as the tests start theirs
(tests/service_helpers/postgres.py: initdb on a temporary dir, a Unix socket,
fsync off). Contenders run interleaved in short rounds; ratios are of medians.

Run: ``python bench/bench_fleet.py [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from service_helpers.postgres import start_cluster

from kmscore import LocalKMS
from kmscore.crypto.rootkey import ROOT_KEY_FILE
from kmscore.errors import DisabledException
from kmscore.model.key import KeyRecord, utcnow
from kmscore.model.keystate import KeyState


def per_op_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def data_plane(kms: LocalKMS, key_id: str) -> dict[str, Callable[[], object]]:
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"p" * 64)["CiphertextBlob"]
    return {
        "Encrypt": lambda: kms.encrypt(KeyId=key_id, Plaintext=b"p" * 64),
        "Decrypt": lambda: kms.decrypt(CiphertextBlob=blob),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
    }


def bulk_keys(kms: LocalKMS, count: int) -> None:
    """Add ``count`` key records straight to the store, in one transaction."""
    svc = kms.service
    now = utcnow()
    with svc.store.transaction():
        for _ in range(count):
            key_id = str(uuid.uuid4())
            svc.store.create_key(
                KeyRecord(
                    key_id, svc.key_arn(key_id), svc.account, now, "", "ENCRYPT_DECRYPT",
                    "SYMMETRIC_DEFAULT", "AWS_KMS", KeyState.ENABLED, 1,
                ),
                None,
                {},
            )  # fmt: skip


def count_keys(kms: LocalKMS) -> int:
    n, after = 0, None
    while page := kms.service.store.list_keys(after, 1000):
        n += len(page)
        after = page[-1].key_id
    return n


def list_page_us(kms: LocalKMS, calls: int) -> float:
    """One ListKeys page of 100, from the start and from a marker mid-way."""
    first = kms.list_keys(Limit=100)
    marker = first["NextMarker"]
    return min(
        per_op_us(lambda: kms.list_keys(Limit=100), calls),
        per_op_us(lambda: kms.list_keys(Limit=100, Marker=marker), calls),
    )


def node_b(data_dir: str, url: str) -> int:
    """Node B, in a process of its own: for each key id read, encrypt until refused.

    Prints ``ready`` once the key is cached, then the ``time.monotonic()`` of
    the first refusal (the clock is the machine's, shared by processes).
    """
    kms = LocalKMS(data_dir, audit=False, store=url)
    for line in sys.stdin:
        key_id = line.strip()
        ready = False
        while True:
            try:
                kms.encrypt(KeyId=key_id, Plaintext=b"x")
            except DisabledException:
                print(time.monotonic(), flush=True)
                break
            if not ready:
                print("ready", flush=True)
                ready = True
    kms.close()
    return 0


def invalidation_ms(a: LocalKMS, b_dir: Path, url: str, trials: int) -> list[float]:
    """DisableKey on A (this process) until node B (another process) refuses."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--node-b", str(b_dir), url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    out = []
    try:
        for _ in range(trials):
            key_id = a.create_key()["KeyMetadata"]["KeyId"]
            proc.stdin.write(key_id + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(0.12)
            t0 = time.monotonic()
            a.disable_key(KeyId=key_id)  # returns once committed
            out.append((float(proc.stdout.readline()) - t0) * 1000)
    finally:
        proc.stdin.close()
        proc.wait(30)
    return out


def main() -> int:
    if sys.argv[1:2] == ["--node-b"]:
        return node_b(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="3 rounds, fewer calls, 10,000 keys")
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    calls = 300 if args.quick else 1500
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]

    cluster, root = start_cluster()
    tmp = Path(tempfile.mkdtemp(prefix="kmsbench"))
    try:
        url = cluster.new_database()
        pg = LocalKMS(tmp / "pg", audit=False, store=url)
        lite = LocalKMS(tmp / "lite", audit=False)
        pg_key = pg.create_key()["KeyMetadata"]["KeyId"]
        lite_key = lite.create_key()["KeyMetadata"]["KeyId"]

        print("== data plane, us per call (median of rounds); ratio = SQLite / PostgreSQL")
        ops_pg, ops_lite = data_plane(pg, pg_key), data_plane(lite, lite_key)
        for name in ops_pg:
            a, b = [], []
            for _ in range(rounds):
                a.append(per_op_us(ops_pg[name], calls))
                b.append(per_op_us(ops_lite[name], calls))
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{name:16} postgresql {ma:7.1f}  sqlite {mb:7.1f}  speed ratio {mb / ma:5.2f}")

        print("== CreateKey latency, ms (each a durable commit)")
        for label, kms in (("postgresql", pg), ("sqlite", lite)):
            lat = []
            for _ in range(50 if args.quick else 200):
                t0 = time.perf_counter()
                kms.create_key()
                lat.append((time.perf_counter() - t0) * 1000)
            lat.sort()
            p99 = lat[int(len(lat) * 0.99) - 1]
            print(f"{label:10} p50 {statistics.median(lat):6.2f}  p99 {p99:6.2f}")

        print("== ListKeys page of 100, us (best of first page / mid marker)")
        have = {"postgresql": count_keys(pg), "sqlite": count_keys(lite)}
        for size in sizes:
            row = []
            for label, kms in (("postgresql", pg), ("sqlite", lite)):
                bulk_keys(kms, size - have[label])
                have[label] = size
                best = min(list_page_us(kms, 20 if args.quick else 50) for _ in range(rounds))
                row.append(f"{label} {best:8.0f}")
            print(f"{size:>7} keys: " + "  ".join(row))

        print("== DisableKey on A -> Encrypt refused on B, ms")
        b_dir = tmp / "pg-b"
        b_dir.mkdir(mode=0o700)
        shutil.copy2(tmp / "pg" / ROOT_KEY_FILE, b_dir / ROOT_KEY_FILE)
        times = sorted(invalidation_ms(pg, b_dir, url, 10 if args.quick else 30))
        print(
            f"trials {len(times)}  median {statistics.median(times):.1f}  "
            f"max {times[-1]:.1f}  within 100 ms: {sum(t <= 100 for t in times)}/{len(times)}"
        )
        pg.close()
        lite.close()
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
