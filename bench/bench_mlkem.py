"""Encapsulate and Decapsulate through LocalKMS for each ML-KEM key spec.

Prints microseconds per call (median of 5 loops) and each spec's ratio to
ML_KEM_768 in the same run: ML_KEM_512 runs on kyber-py (pure Python),
ML_KEM_768 and ML_KEM_1024 on ``cryptography``. Unaudited, in process:

    python bench/bench_mlkem.py
"""

from __future__ import annotations

import statistics
import tempfile

from kmscore import LocalKMS
from kmscore.bench.timing import per_op_ns

SPECS = ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")


def main() -> int:
    """Measure and print one line per key spec and operation."""
    with tempfile.TemporaryDirectory() as tmp, LocalKMS(tmp, audit=False) as kms:
        results: dict[tuple[str, str], float] = {}
        for spec in SPECS:
            md = kms.create_key(KeySpec=spec, KeyUsage="ENCAPSULATE_DECAPSULATE")["KeyMetadata"]
            key = md["KeyId"]
            blob = kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM")[
                "SharedSecretCiphertextBlob"
            ]
            calls = 100 if spec == "ML_KEM_512" else 2000

            def enc(key: str = key) -> object:
                return kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM")

            def dec(key: str = key, blob: bytes = blob) -> object:
                return kms.decapsulate(
                    KeyId=key, SharedSecretCiphertextBlob=blob, EncapsulationAlgorithm="ML_KEM"
                )

            for name, fn in (("Encapsulate", enc), ("Decapsulate", dec)):
                runs = [per_op_ns(fn, calls) for _ in range(5)]
                results[(spec, name)] = statistics.median(runs) / 1000
        for (spec, name), us in results.items():
            ratio = us / results[("ML_KEM_768", name)]
            print(f"{spec:12} {name:12} {us:9.1f} us/call  {ratio:6.1f}x ML_KEM_768")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
