#!/usr/bin/env python3
"""Nanoseconds per 32-byte data key: the engine against a C loop and a naive Python loop.

Run from the repository root with the engine built (``pip install -e .``)::

    python bench/bench_engine.py            # 21 rounds of 32768 keys, ~10 s
    python bench/bench_engine.py --quick    # 7 rounds of 8192 keys, ~2 s
    python bench/bench_engine.py --repeat 15 --keys 65536 --json out.json

Contenders, all with the same 64-byte AAD (a version-1 blob header followed by
a canonical two-pair encryption context) and one wrapping key whose schedule
is set once:

wrap (make a random 32-byte data key and seal it: IV || ciphertext || tag)
  * ``bench/ceiling.c``, compiled here with gcc and run as a subprocess, in
    two variants: one ``RAND_bytes`` call per key (key and IV together), and
    one call per batch of 4096 keys (the engine's own algorithm);
  * ``AesGcmKey.generate_data_keys`` at N = 1, 16, 256, 4096 keys per call;
  * a Python loop over ``cryptography``'s AESGCM with ``os.urandom`` for each
    key and each IV (the naive baseline).

unwrap (authenticate and decrypt a sealed data key)
  * the C loop, ``open_many`` at the same N, ``open`` in a Python loop, and a
    Python loop over ``cryptography``'s AESGCM.

The machine is shared and noisy, so each round runs every contender once in a
shuffled order, and the report gives the median and min over rounds; ratios
compare medians of the same round set and also show the spread of per-round
ratios. Every sample is ns per data key = elapsed time / keys processed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

from cryptography.hazmat.backends.openssl.backend import backend as _crypto_backend
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmscore import engine
from kmscore.bench.results import cpu_model
from kmscore.bench.timing import elapsed_ns

HERE = Path(__file__).resolve().parent
CEILING_SRC = HERE / "ceiling.c"
DATA_KEY_LEN = 32
SEALED_LEN = engine.IV_LENGTH + DATA_KEY_LEN + engine.TAG_LENGTH
BATCH_SIZES = (1, 16, 256, 4096)
C_BATCH = 4096  # batch size of the C loop that draws randomness per batch
BIG_N = 4096

# Targets from issue 2 (ns per key, same run, medians).
TARGET_VS_C = 1.3  # engine batch@4096 at most 1.3x the C loop
TARGET_CRYPTO_WRAP = 5.0  # cryptography loop at least 5x slower than the engine batch
TARGET_CRYPTO_UNWRAP = 3.0

# Contender ids, in report order.
C_WRAP_PER_KEY = "c.wrap.rand_per_key"
C_WRAP_BATCHED = "c.wrap.rand_per_batch"
C_UNWRAP = "c.unwrap"
CRYPTO_WRAP = "cryptography.wrap.loop"
CRYPTO_UNWRAP = "cryptography.unwrap.loop"
ENGINE_OPEN_LOOP = "engine.unwrap.open_loop"


def engine_wrap_id(n: int) -> str:
    return f"engine.wrap.generate_data_keys@{n}"


def engine_unwrap_id(n: int) -> str:
    return f"engine.unwrap.open_many@{n}"


LABELS = {
    C_WRAP_PER_KEY: "C loop, RAND_bytes per key",
    C_WRAP_BATCHED: f"C loop, RAND_bytes per batch of {C_BATCH}",
    C_UNWRAP: "C loop",
    CRYPTO_WRAP: "cryptography AESGCM loop + os.urandom",
    CRYPTO_UNWRAP: "cryptography AESGCM loop",
    ENGINE_OPEN_LOOP: "engine open() in a Python loop",
    **{engine_wrap_id(n): f"engine generate_data_keys N={n}" for n in BATCH_SIZES},
    **{engine_unwrap_id(n): f"engine open_many N={n}" for n in BATCH_SIZES},
}
WRAP_ORDER = [
    C_WRAP_BATCHED,
    C_WRAP_PER_KEY,
    *(engine_wrap_id(n) for n in reversed(BATCH_SIZES)),
    CRYPTO_WRAP,
]
UNWRAP_ORDER = [
    C_UNWRAP,
    *(engine_unwrap_id(n) for n in reversed(BATCH_SIZES)),
    ENGINE_OPEN_LOOP,
    CRYPTO_UNWRAP,
]


def blob_aad() -> bytes:
    """A realistic AAD: a version-1 blob header plus a canonical encryption context.

    Header: magic/version (2) | key id (16, raw UUID) | material version (4).
    Context: u16 pair count, then each pair's key and value u16-length-prefixed,
    sorted by the key's UTF-8 bytes. Only the length matters for speed.
    """
    header = b"\x4b\x01" + uuid.UUID("1f0e6a52-3c9b-4c27-9d7e-5a8f1b2c3d4e").bytes
    header += struct.pack(">I", 3)
    context = {"tenant": "acme-corp", "department": "payroll"}
    pairs = sorted((k.encode(), v.encode()) for k, v in context.items())
    canon = struct.pack(">H", len(pairs))
    for k, v in pairs:
        canon += struct.pack(">H", len(k)) + k + struct.pack(">H", len(v)) + v
    return header + canon


# --------------------------------------------------------------------------- C


class Ceiling:
    """bench/ceiling.c compiled into a temporary directory and kept running.

    One line on its stdin runs one round of its three loops, so it takes its
    turn among the Python contenders like any other.
    """

    def __init__(self, workdir: Path, keys: int, aad: bytes, cc: str) -> None:
        exe = workdir / "ceiling"
        cmd = [
            cc, "-O2", "-Wall", "-Wextra", "-DOPENSSL_API_COMPAT=30000",
            "-DOPENSSL_NO_DEPRECATED", "-o", str(exe), str(CEILING_SRC), "-lcrypto",
        ]  # fmt: skip
        build = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if build.returncode != 0:
            raise SystemExit(f"compiling {CEILING_SRC} failed:\n{build.stderr}")
        self.build_cmd = " ".join([*cmd[:6], "-o", "ceiling", "ceiling.c", "-lcrypto"])
        self.proc = subprocess.Popen(
            [str(exe), str(keys), str(C_BATCH), aad.hex()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._line()
        if not ready.startswith("ready "):
            raise SystemExit(f"ceiling did not start: {ready!r}")
        self.openssl = ready.removeprefix("ready ").strip()

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"ceiling exited with status {self.proc.wait()}")
        return line

    def round(self) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("r\n")
        self.proc.stdin.flush()
        fields = self._line().split()
        if fields[0] != "round" or len(fields) != 4:
            raise SystemExit(f"ceiling said {fields!r}")
        per_key, batched, unwrap = (float(x) for x in fields[1:])
        return {C_WRAP_PER_KEY: per_key, C_WRAP_BATCHED: batched, C_UNWRAP: unwrap}

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        if self.proc.wait(timeout=30) != 0:
            raise SystemExit(f"ceiling failed with status {self.proc.returncode}")


# ---------------------------------------------------------------------- Python


@dataclass
class Contender:
    """One timed Python loop: ``run()`` returns ns per data key."""

    name: str
    run: Callable[[], float]


def wrap_engine(key: engine.AesGcmKey, n: int, keys: int, aad: bytes) -> Contender:
    calls = max(1, keys // n)
    generate = key.generate_data_keys

    def loop() -> None:
        for _ in repeat(None, calls):
            generate(n, DATA_KEY_LEN, aad)

    def run() -> float:
        return elapsed_ns(loop) / (calls * n)

    return Contender(engine_wrap_id(n), run)


def wrap_crypto(aesgcm: AESGCM, keys: int, aad: bytes) -> Contender:
    # The lightest naive loop: results are dropped, nothing is concatenated,
    # so the baseline is as fast as such a loop can be.
    encrypt = aesgcm.encrypt
    urandom = os.urandom

    def loop() -> None:
        for _ in repeat(None, keys):
            data_key = urandom(DATA_KEY_LEN)
            iv = urandom(12)
            encrypt(iv, data_key, aad)

    def run() -> float:
        return elapsed_ns(loop) / keys

    return Contender(CRYPTO_WRAP, run)


def unwrap_engine(key: engine.AesGcmKey, n: int, items: list[bytes], aad: bytes) -> Contender:
    # Distinct items per call, as a service unwraps distinct blobs.
    calls = max(1, len(items) // n)
    batches = [items[i * n : (i + 1) * n] for i in range(calls)]
    aads = [aad] * n
    open_many = key.open_many

    def loop() -> None:
        for batch in batches:
            open_many(batch, aads)

    def run() -> float:
        return elapsed_ns(loop) / (calls * n)

    return Contender(engine_unwrap_id(n), run)


def unwrap_open_loop(
    key: engine.AesGcmKey, pairs: list[tuple[bytes, bytes]], aad: bytes
) -> Contender:
    open_ = key.open

    def loop() -> None:
        for iv, ct in pairs:
            open_(iv, ct, aad)

    def run() -> float:
        return elapsed_ns(loop) / len(pairs)

    return Contender(ENGINE_OPEN_LOOP, run)


def unwrap_crypto(aesgcm: AESGCM, pairs: list[tuple[bytes, bytes]], aad: bytes) -> Contender:
    decrypt = aesgcm.decrypt

    def loop() -> None:
        for iv, ct in pairs:
            decrypt(iv, ct, aad)

    def run() -> float:
        return elapsed_ns(loop) / len(pairs)

    return Contender(CRYPTO_UNWRAP, run)


def make_items(key: engine.AesGcmKey, aesgcm: AESGCM, keys: int, aad: bytes) -> list[bytes]:
    """Sealed data keys for the unwrap contenders, checked by both libraries."""
    items: list[bytes] = []
    plains: list[bytes] = []
    while len(items) < keys:
        n = min(BIG_N, keys - len(items))
        plain, sealed = key.generate_data_keys(n, DATA_KEY_LEN, aad)
        for i in range(n):
            items.append(sealed[i * SEALED_LEN : (i + 1) * SEALED_LEN])
            plains.append(plain[i * DATA_KEY_LEN : (i + 1) * DATA_KEY_LEN])
    # The engine's output must be standard AES-GCM, or the comparison is moot.
    for item, dk in zip(items[:64], plains[:64], strict=True):
        if aesgcm.decrypt(item[:12], item[12:], aad) != dk:
            raise SystemExit("cryptography does not open what the engine sealed")
    opened = key.open_many(items[:BIG_N], [aad] * min(BIG_N, keys))
    if opened != plains[:BIG_N]:
        raise SystemExit("open_many did not return the data keys")
    return items


# ---------------------------------------------------------------------- report


def machine() -> dict[str, object]:
    model = cpu_model()
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "engine_backend": engine.BACKEND,
        "engine_openssl": engine.openssl_version(),
        "engine_module": str(Path(sys.modules[engine.AesGcmKey.__module__].__file__ or "?")),
        "cryptography_openssl": _crypto_backend.openssl_version_text(),
    }


def summarize(samples: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


def ratio(rounds: list[dict[str, float]], num: str, den: str) -> tuple[float, float, float]:
    """Median(num)/median(den) over the same rounds, and the range of per-round ratios."""
    med = statistics.median(r[num] for r in rounds) / statistics.median(r[den] for r in rounds)
    per_round = [r[num] / r[den] for r in rounds]
    return med, min(per_round), max(per_round)


def print_group(
    title: str,
    order: list[str],
    stats: dict[str, dict[str, float]],
    faults: dict[str, float],
    ref: str,
) -> None:
    print(f"\n{title} (ns per data key; x = median / median of '{LABELS[ref]}')")
    print(f"  {'contender':<44} {'median':>8} {'min':>8} {'max':>8} {'x':>6} {'faults/1k':>9}")
    for name in order:
        s = stats[name]
        rel = s["median"] / stats[ref]["median"]
        flt = f"{faults[name]:9.1f}" if name in faults else f"{'-':>9}"
        print(
            f"  {LABELS[name]:<44} {s['median']:8.0f} {s['min']:8.0f} {s['max']:8.0f} {rel:6.2f}"
            f" {flt}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="7 rounds of 8192 keys (~2 s)")
    parser.add_argument("--repeat", type=int, help="rounds (default 21, --quick 7)")
    parser.add_argument("--keys", type=int, help="data keys per sample (default 32768)")
    parser.add_argument("--seed", type=int, default=2, help="seed of the round shuffles")
    parser.add_argument("--cc", default=os.environ.get("CC", "gcc"), help="C compiler")
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    args = parser.parse_args(argv)

    rounds_n = args.repeat or (7 if args.quick else 21)
    keys = args.keys or (8192 if args.quick else 32768)
    if rounds_n < 1 or keys < BIG_N:
        parser.error(f"--repeat must be >= 1 and --keys >= {BIG_N}")
    if engine.BACKEND != "native":
        raise SystemExit("KMSCORE_PUREPYTHON=1 is set: this benchmark measures the native engine")
    if shutil.which(args.cc) is None:
        raise SystemExit(f"no C compiler {args.cc!r}; the C loop is part of every run")

    aad = blob_aad()
    wrapping_key = os.urandom(32)
    key = engine.AesGcmKey(wrapping_key)
    aesgcm = AESGCM(wrapping_key)
    items = make_items(key, aesgcm, keys, aad)
    pairs = [(item[:12], item[12:]) for item in items]

    contenders = [wrap_engine(key, n, keys, aad) for n in BATCH_SIZES]
    contenders += [unwrap_engine(key, n, items, aad) for n in BATCH_SIZES]
    contenders += [
        wrap_crypto(aesgcm, keys, aad),
        unwrap_open_loop(key, pairs, aad),
        unwrap_crypto(aesgcm, pairs, aad),
    ]

    info = machine()
    command = "python bench/bench_engine.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"kmscore engine benchmark  {info['date_utc']} UTC   command: {command.strip()}")
    print(
        f"machine: {info['nproc']} CPUs ({info['cpus_usable']} usable), {info['cpu_model']}; "
        f"Python {info['python']}; load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"engine: {info['engine_backend']} over {info['engine_openssl']} ({info['engine_module']})"
    )
    print(f"cryptography: over its own {info['cryptography_openssl']}")
    print(
        f"data key {DATA_KEY_LEN} B, AAD {len(aad)} B, {rounds_n} rounds x {keys} keys per "
        f"contender, shuffled order per round, GC off while timing"
    )

    rng = random.Random(args.seed)
    rounds: list[dict[str, float]] = []
    # Minor page faults per 1000 keys: fresh heap pages touched (glibc gives
    # memory back and takes it again), a cost the C loop does not pay.
    faults: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kms-bench-") as tmp:
        ceiling = Ceiling(Path(tmp), keys, aad, args.cc)
        print(f"C loop: {ceiling.build_cmd}; over {ceiling.openssl}")
        gc.collect()
        gc.disable()
        try:
            for r in range(rounds_n + 1):  # round 0 warms up and is dropped
                order: list[Contender | None] = [*contenders, None]  # None: the C loop
                rng.shuffle(order)
                sample: dict[str, float] = {}
                for c in order:
                    if c is None:
                        sample.update(ceiling.round())
                    else:
                        flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                        sample[c.name] = c.run()
                        flt1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                        faults.setdefault(c.name, []).append((flt1 - flt0) * 1000 / keys)
                if r > 0:
                    rounds.append(sample)
                gc.collect()
        finally:
            gc.enable()
            ceiling.close()
    load_after = os.getloadavg()[0]

    stats = {name: summarize([r[name] for r in rounds]) for name in LABELS}
    fault_med = {name: statistics.median(f[1:]) for name, f in faults.items()}
    print_group("WRAP: generate + seal", WRAP_ORDER, stats, fault_med, C_WRAP_BATCHED)
    print_group("UNWRAP: open", UNWRAP_ORDER, stats, fault_med, C_UNWRAP)

    big_wrap, big_unwrap = engine_wrap_id(BIG_N), engine_unwrap_id(BIG_N)
    # (what, numerator, denominator, target, sense); sense "ctx" rows have no
    # target of their own: they show what the C loop itself would score.
    checks = [
        ("wrap   engine@4096 / C loop RAND-per-batch [ref]",
         big_wrap, C_WRAP_BATCHED, TARGET_VS_C, "le"),
        ("wrap   engine@4096 / C loop RAND-per-key",
         big_wrap, C_WRAP_PER_KEY, TARGET_VS_C, "le"),
        ("unwrap engine@4096 / C loop",
         big_unwrap, C_UNWRAP, TARGET_VS_C, "le"),
        ("wrap   cryptography loop / engine@4096",
         CRYPTO_WRAP, big_wrap, TARGET_CRYPTO_WRAP, "ge"),
        ("unwrap cryptography loop / engine@4096",
         CRYPTO_UNWRAP, big_unwrap, TARGET_CRYPTO_UNWRAP, "ge"),
        ("wrap   cryptography loop / C loop RAND-per-batch",
         CRYPTO_WRAP, C_WRAP_BATCHED, TARGET_CRYPTO_WRAP, "ctx"),
        ("unwrap cryptography loop / C loop",
         CRYPTO_UNWRAP, C_UNWRAP, TARGET_CRYPTO_UNWRAP, "ctx"),
    ]  # fmt: skip
    print(f"\nRATIOS (median/median over the same {rounds_n} rounds; [per-round min .. max])")
    results = []
    for what, num, den, target, sense in checks:
        med, lo, hi = ratio(rounds, num, den)
        if sense == "le":
            want, verdict = f"<= {target:g}x", "PASS" if med <= target else "MISS"
        else:
            want, verdict = f">= {target:g}x", "PASS" if med >= target else "MISS"
            if sense == "ctx":
                # What the same target would give if the engine were the C loop.
                verdict = f"(the C loop itself would {verdict})"
        print(f"  {what:<49} {med:5.2f}x [{lo:5.2f} .. {hi:5.2f}]  target {want:>7}  {verdict}")
        results.append({"check": what, "ratio": med, "per_round_min": lo,
                        "per_round_max": hi, "target": want, "verdict": verdict})  # fmt: skip
    print(f"\nload average 1 min: {load_after:.2f} after the run")

    if args.json:
        info["command"] = command.strip()
        info["c_loop_openssl"] = ceiling.openssl
        info["load_after"] = load_after
        payload = {
            "machine": info,
            "aad_len": len(aad),
            "keys_per_sample": keys,
            "stats": stats,
            "faults_per_1k_keys": fault_med,
            "checks": results,
            "rounds": rounds,
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
