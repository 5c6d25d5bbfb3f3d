"""Where one GenerateDataKey's time goes: each step of the call, timed alone.

Each row runs one step of ``LocalKMS.generate_data_key`` (audit off) in a loop,
best of 5 loops of 50,000 calls, with the same key, context and caller as the
whole call in the first row; the whole call minus the sum of the steps is the
dispatcher's glue. The second row gives every call an encryption context of its
own, as an application that puts an object's id in the context does. The
numbers explain the moto ratio of ``bench_service.py`` (docs/performance.md,
issue 13).

Run: ``python bench/bench_call_parts.py [--calls 50000]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from collections.abc import Callable

from kmscore import LocalKMS
from kmscore.bench import timing
from kmscore.model import context as ec
from kmscore.operations.crypto import conditions, encryption_key
from kmscore.operations.registry import OPERATIONS, dispatch
from kmscore.service import Call, new_request_id, symmetric


def best_ns(fn: Callable[[], object], calls: int) -> float:
    return timing.best_ns(fn, calls, repeats=5, warmup=2000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kms = LocalKMS(os.path.join(tmp, "data"), audit=False)
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        service = kms.service
        ctx = {"purpose": "bench", "tenant": "t-0042"}
        request = {"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": ctx}
        op = OPERATIONS["GenerateDataKey"]

        def new_call() -> Call:
            return Call(service, "GenerateDataKey", kms.caller, new_request_id(), [])

        call = new_call()
        call.states = op.states
        key = encryption_key(call, key_id, None)
        context, aad = ec.prepare(ctx)
        fresh = ({"purpose": "bench", "object": f"o-{i:08d}"} for i in itertools.count())
        rows: list[tuple[str, Callable[[], object]]] = [
            (
                "LocalKMS.generate_data_key (the whole call)",
                lambda: kms.generate_data_key(
                    KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx
                ),
            ),
            (
                "the whole call, a new context each time",
                lambda: kms.generate_data_key(
                    KeyId=key_id, KeySpec="AES_256", EncryptionContext=next(fresh)
                ),
            ),
            (
                "dispatch() directly",
                lambda: dispatch(service, "GenerateDataKey", request, kms.caller),
            ),
            ("validate the request against its shape", lambda: op.validator(request)),
            ("the Call and its request id", new_call),
            ("resolve the key, check its state", lambda: encryption_key(call, key_id, None)),
            ("the encryption context's canonical AAD", lambda: ec.prepare(ctx)),
            (
                "authorize (the cached policy decision)",
                lambda: call.authorize(key, conditions=conditions(context), context_key=aad),
            ),
            (
                "the engine's data key and ciphertext blob",
                lambda: symmetric.generate_data_key(service, key, 32, aad),
            ),
        ]
        times = {label: best_ns(fn, args.calls) for label, fn in rows}
        kms.close()
    for label, ns in times.items():
        print(f"{label:46} {ns:7.0f} ns")
    steps = sum(list(times.values())[3:])
    glue = times["dispatch() directly"] - steps
    print(f"{'dispatcher glue (dispatch() minus the steps)':46} {glue:7.0f} ns")
    print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
