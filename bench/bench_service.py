"""Benchmark of the key service's hot paths, as ratios in one run.

Targets (issue 3):

- GenerateDataKeys with Count=4096 through LocalKMS (resolve, state guard,
  authorization hook, audit hook, engine) costs at most 1.5x the engine's raw
  batch per key.
- One generate_data_key and one decrypt through LocalKMS are at least 2x
  faster than the same call on moto's KMS backend object, called directly.
- With the audit trail on (a durable record per call, issue 4), a single call
  costs at most 1.15x the same call with auditing off (issue 13), and is at
  least 1.5x faster than moto's backend.

Every LocalKMS here has key policies and grants deciding each call. The rows
without "audited" run with ``audit=False``.

The machine is shared and noisy, so contenders run interleaved in short rounds
and the ratios come from the medians (and minimums) of the same rounds.

Run: ``python bench/bench_service.py [--rounds N] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable

from kmscore import LocalKMS, engine
from kmscore.bench.targets import moto_backend
from kmscore.bench.timing import per_op_ns


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--quick", action="store_true", help="5 rounds, fewer calls")
    args = ap.parse_args()
    rounds = 5 if args.quick else args.rounds
    single_calls = 500 if args.quick else 2000
    batch_calls = 3 if args.quick else 10

    print(f"engine backend: {engine.BACKEND}; OpenSSL {engine.openssl_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(os.path.join(tmp, "data"), audit=False)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        audited = LocalKMS(os.path.join(tmp, "audited"), audit=True)
        audited_key = audited.create_key()["KeyMetadata"]["KeyId"]
        ctx = {"purpose": "bench", "tenant": "t-0042"}
        # The engine's own batch, with the same AAD size as the service uses.
        raw = engine.AesGcmKey(os.urandom(32))
        aad = b"\xc5\x01" + bytes(20) + b"\x00\x02" + b"x" * 30

        contenders: dict[str, Callable[[], float]] = {
            "engine generate_data_keys(4096)": lambda: per_op_ns(
                lambda: raw.generate_data_keys(4096, 32, aad), batch_calls, 4096
            ),
            "LocalKMS GenerateDataKeys(4096)": lambda: per_op_ns(
                lambda: kms.generate_data_keys(
                    KeyId=key_id, Count=4096, KeySpec="AES_256", EncryptionContext=ctx
                ),
                batch_calls,
                4096,
            ),
            "LocalKMS generate_data_key": lambda: per_op_ns(
                lambda: kms.generate_data_key(
                    KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx
                ),
                single_calls,
            ),
        }
        blob = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)[
            "CiphertextBlob"
        ]
        contenders["LocalKMS decrypt"] = lambda: per_op_ns(
            lambda: kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx), single_calls
        )
        audited_blob = audited.generate_data_key(
            KeyId=audited_key, KeySpec="AES_256", EncryptionContext=ctx
        )["CiphertextBlob"]
        contenders["audited generate_data_key"] = lambda: per_op_ns(
            lambda: audited.generate_data_key(
                KeyId=audited_key, KeySpec="AES_256", EncryptionContext=ctx
            ),
            single_calls,
        )
        contenders["audited decrypt"] = lambda: per_op_ns(
            lambda: audited.decrypt(CiphertextBlob=audited_blob, EncryptionContext=ctx),
            single_calls,
        )

        found = moto_backend()
        if found is None:
            print("moto is not installed (pip install 'moto[kms]'); skipping the moto baseline")
        else:
            backend, mkey = found
            mblob = backend.generate_data_key(mkey, ctx, None, "AES_256")[1]
            contenders["moto generate_data_key"] = lambda: per_op_ns(
                lambda: backend.generate_data_key(mkey, ctx, None, "AES_256"), single_calls
            )
            contenders["moto decrypt"] = lambda: per_op_ns(
                lambda: backend.decrypt(mblob, ctx), single_calls
            )

        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, run in contenders.items():
                samples[name].append(run())
        kms.close()
        audited.close()

    med = {n: statistics.median(v) for n, v in samples.items()}
    low = {n: min(v) for n, v in samples.items()}
    print(f"\n{rounds} interleaved rounds; ns per data key / per call")
    print(f"{'contender':36} {'median':>10} {'min':>10}")
    for n in samples:
        print(f"{n:36} {med[n]:10.0f} {low[n]:10.0f}")

    def ratio(a: str, b: str) -> tuple[float, float]:
        return med[a] / med[b], low[a] / low[b]

    checks = [
        ("GenerateDataKeys(4096) / engine batch", "LocalKMS GenerateDataKeys(4096)",
         "engine generate_data_keys(4096)", "<=", 1.5),
        ("audited / unaudited generate_data_key", "audited generate_data_key",
         "LocalKMS generate_data_key", "<=", 1.15),
        ("audited / unaudited decrypt", "audited decrypt", "LocalKMS decrypt", "<=", 1.15),
    ]  # fmt: skip
    if "moto decrypt" in med:
        checks += [
            ("moto / LocalKMS generate_data_key", "moto generate_data_key",
             "LocalKMS generate_data_key", ">=", 2.0),
            ("moto / LocalKMS decrypt", "moto decrypt", "LocalKMS decrypt", ">=", 2.0),
            ("moto / audited generate_data_key", "moto generate_data_key",
             "audited generate_data_key", ">=", 1.5),
            ("moto / audited decrypt", "moto decrypt", "audited decrypt", ">=", 1.5),
        ]  # fmt: skip
    print("\nratios (median, min) vs target")
    for label, a, b, op, target in checks:
        r_med, r_min = ratio(a, b)
        ok = r_med <= target if op == "<=" else r_med >= target
        print(f"  {label:40} {r_med:5.2f}x ({r_min:5.2f}x)  target {op} {target:.3g}x  "
              f"{'PASS' if ok else 'MISS'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
