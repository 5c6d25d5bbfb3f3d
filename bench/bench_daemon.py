"""Benchmark of the socket daemon, as ratios in one run (issue 5).

Targets:

- One client sending single GenerateDataKey calls in sequence reaches at least
  70% of the round-trip rate of a bare msgpack echo server over the same kind
  of socket (the echo server is in this script, on the same event loop).
- 8 clients with pipelining stay above the single-client rate.
- GenerateDataKeys with Count=1000 per request moves data keys at no less than
  40% of the engine's own in-process batch rate, measured in the same run.

p50 and p99 latency are printed for each. The machine is shared and noisy, so
the contenders run interleaved in short rounds, in a shuffled order, and the
ratios come from the medians of the same rounds.

Rows:

- ``echo, raw client``: the baseline; a client that only packs, sends,
  receives and unpacks. ``echo, RemoteKMS client`` and ``echo, 8 clients
  pipelined`` are kmscore's clients against the same echo server: what the
  client library itself costs, and the most the pipelined client can drive.
- ``daemon: ...``: a real ``python -m kmscore.frontends.rpc`` process with its
  audit trail on, as shipped. ``--no-audit-daemon`` adds a second daemon
  without the trail, to show what the trail costs.
- ``in-process ...``: the dispatcher on an event loop in this process, run on
  the loop or awaited from a worker thread: the hand-off cost that decides
  which operations the daemon runs inline (docs/daemon.md).
- ``engine generate_data_keys(1000)``: the engine's raw batch, the batch target's
  reference.

``--malloc`` instead compares the daemon's batch rate and page faults under
glibc's default malloc settings and with a raised trim threshold (docs/performance.md).

Run: ``python bench/bench_daemon.py [--rounds N] [--quick] [--no-audit-daemon]
[--seed N] [--json PATH] [--malloc]``; ``KMSCORE_EVENT_LOOP=asyncio`` runs the daemon, the
echo server and the pipelined clients on asyncio's own loop instead of uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack

from kmscore import LocalKMS, engine
from kmscore.bench.timing import Latency, elapsed_ns_async, timed_awaits, timed_calls
from kmscore.client.aio import AsyncRemoteKMS
from kmscore.client.remote import RemoteKMS

try:
    import uvloop
except ImportError:
    uvloop = None

CTX = {"purpose": "bench", "tenant": "t-0042"}
LOOP_NAME = os.environ.get("KMSCORE_EVENT_LOOP") or ("uvloop" if uvloop else "asyncio")


def run_loop(coro: Any) -> Any:
    if LOOP_NAME == "uvloop":
        return uvloop.run(coro)
    return asyncio.run(coro)


# --- the echo server (a subprocess running this file with --echo-server) -----------


def echo_server(path: str) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.unpacker = msgpack.Unpacker(raw=False, timestamp=3)
            self.packer = msgpack.Packer(use_bin_type=True, datetime=True)

        def data_received(self, data: bytes) -> None:
            self.unpacker.feed(data)
            for message in self.unpacker:
                self.transport.write(self.packer.pack([1, message[1], None, message[3]]))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        server = await loop.create_unix_server(Echo, path)
        print(json.dumps({"socket": path, "event_loop": LOOP_NAME}), flush=True)
        await stop
        server.close()

    run_loop(main())


class Process:
    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, env=dict(os.environ, **(env or {}))
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{args} failed to start")
        self.info = json.loads(line)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


# --- contenders -------------------------------------------------------------------


class Sample:
    """One contender's run: a rate and per-request latencies."""

    def __init__(self, rate: float, latencies_ns: list[int]) -> None:
        self.rate = rate
        self.latencies = latencies_ns


def sequential(call: Callable[[], Any], n: int, per_call: int = 1) -> Sample:
    elapsed, lat = timed_calls(call, n)
    return Sample(n * per_call / (elapsed / 1e9), lat)


class RawClient:
    """The least a client can do: pack, send, receive, unpack."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.packer = msgpack.Packer(use_bin_type=True, datetime=True)
        self.unpacker = msgpack.Unpacker(raw=False, timestamp=3)
        self.buffer = bytearray(1 << 18)
        self.msgid = 0

    def call(self, method: str, params: dict[str, Any]) -> Any:
        self.msgid += 1
        self.sock.sendall(self.packer.pack([0, self.msgid, method, params]))
        view = memoryview(self.buffer)
        while True:
            for message in self.unpacker:
                return message
            n = self.sock.recv_into(self.buffer)
            self.unpacker.feed(view[:n])


def pipelined(
    path: str,
    clients: int,
    window: int,
    total: int,
    request: dict[str, Any],
    method: str = "GenerateDataKey",
    per_call: int = 1,
) -> Sample:
    """``clients`` connections, each with ``window`` calls in flight all the time."""

    async def main() -> Sample:
        conns = [await AsyncRemoteKMS(path).connect() for _ in range(clients)]
        lat: list[int] = []
        per_slot = total // (clients * window)

        def slot(kms: AsyncRemoteKMS) -> Any:
            return timed_awaits(lambda: kms.call(method, **request), lat, calls=per_slot)

        elapsed = await elapsed_ns_async(
            asyncio.gather(*(slot(kms) for kms in conns for _ in range(window)))
        )
        for kms in conns:
            await kms.close()
        return Sample(per_slot * clients * window * per_call / (elapsed / 1e9), lat)

    result: Sample = run_loop(main())
    return result


def in_loop(kms: Any, pool: ThreadPoolExecutor, name: str, req: dict[str, Any], n: int,
            worker: bool, per_call: int = 1) -> Sample:  # fmt: skip
    """``n`` dispatches on an event loop: inline, or each awaited from a worker thread."""
    from kmscore.operations import dispatch

    service, caller = kms.service, kms.caller

    async def main() -> Sample:
        loop = asyncio.get_running_loop()
        lat: list[int] = []

        async def step() -> None:
            if worker:
                await loop.run_in_executor(pool, dispatch, service, name, req, caller)
            else:
                dispatch(service, name, req, caller)

        elapsed = await elapsed_ns_async(timed_awaits(step, lat, calls=n))
        return Sample(n * per_call / (elapsed / 1e9), lat)

    result: Sample = run_loop(main())
    return result


def pct(values: list[int], q: float) -> float:
    histogram = Latency()
    histogram.record(values)
    return histogram.percentile(q * 100) / 1000.0


# How the daemon's glibc malloc is set for --malloc: code run before the daemon.
MALLOC_VARIANTS = {
    "glibc defaults (as shipped)": "",
    "M_TRIM_THRESHOLD 128 MiB": "libc.mallopt(-1, 128 << 20)",
    "M_TRIM_THRESHOLD 128 MiB + M_MMAP_THRESHOLD 32 MiB": (
        "libc.mallopt(-1, 128 << 20); libc.mallopt(-3, 32 << 20)"
    ),
}


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def malloc_comparison(rounds: int, calls: int) -> int:
    """GenerateDataKeys through daemons whose malloc is tuned in different ways."""
    print(f"event loop: {LOOP_NAME}; {rounds} interleaved rounds of {calls} calls")
    with tempfile.TemporaryDirectory(prefix="kms-bench-") as tmp:
        daemons = {}
        for i, (name, setup) in enumerate(MALLOC_VARIANTS.items()):
            code = (
                f"import ctypes, sys; libc = ctypes.CDLL('libc.so.6'); {setup or 'pass'}\n"
                "from kmscore.frontends.rpc.__main__ import main; sys.exit(main(sys.argv[1:]))"
            )
            proc = Process([sys.executable, "-c", code, "--data-dir", f"{tmp}/{i}"])
            kms = RemoteKMS(proc.info["socket"])
            key_id = kms.create_key()["KeyMetadata"]["KeyId"]
            daemons[name] = (proc, kms, key_id)
        try:
            for count in (1000, 4096):
                rates: dict[str, list[float]] = {name: [] for name in daemons}
                faults: dict[str, list[float]] = {name: [] for name in daemons}
                for _ in range(rounds):
                    for name, (proc, kms, key_id) in daemons.items():
                        before = minor_faults(proc.proc.pid)
                        sample = sequential(
                            lambda kms=kms, key_id=key_id, count=count: kms.generate_data_keys(
                                KeyId=key_id, Count=count, KeySpec="AES_256"
                            ),
                            calls,
                            per_call=count,
                        )
                        rates[name].append(sample.rate)
                        faults[name].append((minor_faults(proc.proc.pid) - before) / calls)
                print(
                    f"\nGenerateDataKeys Count={count}: data keys/s, daemon minor faults per call"
                )
                for name in daemons:
                    print(
                        f"  {name:52} {statistics.median(rates[name]):11,.0f} "
                        f"(max {max(rates[name]):11,.0f})  {statistics.median(faults[name]):6.1f}"
                    )
        finally:
            for proc, kms, _ in daemons.values():
                kms.close()
                proc.stop()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--echo-server", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 rounds, fewer calls")
    ap.add_argument("--no-audit-daemon", action="store_true", help="also a daemon without audit")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--malloc", action="store_true", help="compare malloc settings of the daemon on batches"
    )
    ap.add_argument("--json", metavar="PATH", help="write every sample and the summary")
    args = ap.parse_args()
    if args.echo_server:
        echo_server(args.echo_server)
        return 0
    if args.malloc:
        return malloc_comparison(3 if args.quick else args.rounds, 10 if args.quick else 40)
    rounds = 3 if args.quick else args.rounds
    single = 1000 if args.quick else 3000
    batches = 20 if args.quick else 60
    piped_total = 4000 if args.quick else 12000
    rng = random.Random(args.seed)

    print(f"event loop: {LOOP_NAME}; engine {engine.BACKEND}, OpenSSL {engine.openssl_version()}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    procs: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="kms-bench-") as tmp:
        env = {"KMSCORE_EVENT_LOOP": LOOP_NAME}
        echo = Process([sys.executable, __file__, "--echo-server", f"{tmp}/echo.sock"], env)
        procs.append(echo)
        daemons = {"daemon": [f"{tmp}/audit"]}
        if args.no_audit_daemon:
            daemons["daemon, no audit"] = [f"{tmp}/noaudit", "--no-audit"]
        sockets = {}
        for name, (data_dir, *flags) in daemons.items():
            cmd = [sys.executable, "-m", "kmscore.frontends.rpc", "--data-dir", data_dir, *flags]
            procs.append(Process(cmd, env))
            sockets[name] = procs[-1].info["socket"]
        try:
            contenders: dict[str, Callable[[], Sample]] = {}
            raw_echo = RawClient(echo.info["socket"])
            echo_kms = RemoteKMS(echo.info["socket"])
            gdk = {"KeyId": "alias/bench", "KeySpec": "AES_256", "EncryptionContext": CTX}
            contenders["echo, raw client"] = lambda: sequential(
                lambda: raw_echo.call("GenerateDataKey", gdk), single
            )
            contenders["echo, RemoteKMS client"] = lambda: sequential(
                lambda: echo_kms.call("GenerateDataKey", **gdk), single
            )
            contenders["echo, 8 clients pipelined"] = lambda: pipelined(
                echo.info["socket"], 8, 16, piped_total, gdk
            )
            for name, path in sockets.items():
                kms = RemoteKMS(path)
                key_id = kms.create_key()["KeyMetadata"]["KeyId"]
                kms.create_alias(AliasName="alias/bench", TargetKeyId=key_id)
                req = {"KeyId": key_id, "KeySpec": "AES_256", "EncryptionContext": CTX}

                def one(kms: RemoteKMS = kms, req: dict[str, Any] = req) -> Sample:
                    return sequential(lambda: kms.generate_data_key(**req), single)

                def eight(path: str = path, req: dict[str, Any] = req) -> Sample:
                    return pipelined(path, 8, 16, piped_total, req)

                def batch(kms: RemoteKMS = kms, key_id: str = key_id) -> Sample:
                    return sequential(
                        lambda: kms.generate_data_keys(
                            KeyId=key_id, Count=1000, KeySpec="AES_256", EncryptionContext=CTX
                        ),
                        batches,
                        per_call=1000,
                    )

                contenders[f"{name}: GenerateDataKey, 1 client"] = one
                contenders[f"{name}: GenerateDataKey, 8 clients pipelined"] = eight
                contenders[f"{name}: GenerateDataKeys x1000, 1 client"] = batch

            # Where the daemon runs an operation: what handing one to a worker
            # thread costs, in this process, on the same kind of loop.
            local = LocalKMS(f"{tmp}/local", audit=False)
            pool = ThreadPoolExecutor(8)
            lkey = local.create_key()["KeyMetadata"]["KeyId"]
            lgdk = {"KeyId": lkey, "KeySpec": "AES_256", "EncryptionContext": CTX}
            lbatch = {**lgdk, "Count": 1000}
            audited = LocalKMS(f"{tmp}/local-audit")
            akey = audited.create_key()["KeyMetadata"]["KeyId"]
            agdk = {"KeyId": akey, "KeySpec": "AES_256", "EncryptionContext": CTX}
            contenders["in-process GenerateDataKey, on the loop, audited"] = lambda: in_loop(
                audited, pool, "GenerateDataKey", agdk, single, False
            )
            for where in ("on the loop", "via a worker thread"):
                worker = where != "on the loop"
                contenders[f"in-process GenerateDataKey, {where}"] = lambda worker=worker: in_loop(
                    local, pool, "GenerateDataKey", lgdk, single, worker
                )
                contenders[f"in-process GenerateDataKeys x1000, {where}"] = lambda worker=worker: (
                    in_loop(local, pool, "GenerateDataKeys", lbatch, batches, worker, per_call=1000)
                )

            raw_key = engine.AesGcmKey(os.urandom(32))
            aad = b"\xc5\x01" + bytes(20) + b"\x00\x02" + b"x" * 42
            contenders["engine generate_data_keys(1000), in-process"] = lambda: sequential(
                lambda: raw_key.generate_data_keys(1000, 32, aad), batches * 5, per_call=1000
            )

            for run in contenders.values():  # warm up
                run()
            samples: dict[str, list[Sample]] = {name: [] for name in contenders}
            for _ in range(rounds):
                order = list(contenders)
                rng.shuffle(order)
                for name in order:
                    samples[name].append(contenders[name]())
        finally:
            for proc in procs:
                proc.stop()
            local.close()
            audited.close()

    med = {n: statistics.median(s.rate for s in v) for n, v in samples.items()}
    print(f"\n{rounds} interleaved rounds; rate per second (calls, or data keys for batches)")
    print(f"{'contender':55} {'median':>11} {'min':>11} {'max':>11} {'p50 us':>8} {'p99 us':>8}")
    lat = {n: [x for s in runs for x in s.latencies] for n, runs in samples.items()}
    for name, runs in samples.items():
        rates = [s.rate for s in runs]
        print(
            f"{name:55} {med[name]:11,.0f} {min(rates):11,.0f} {max(rates):11,.0f} "
            f"{pct(lat[name], 0.5):8.1f} {pct(lat[name], 0.99):8.1f}"
        )

    def per_round(a: str, b: str) -> list[float]:
        return [x.rate / y.rate for x, y in zip(samples[a], samples[b], strict=True)]

    checks = []
    for name in sockets:
        checks += [
            (f"{name}: 1 client GDK / echo raw", f"{name}: GenerateDataKey, 1 client",
             "echo, raw client", 0.70),
            (f"{name}: 1 client GDK / echo RemoteKMS", f"{name}: GenerateDataKey, 1 client",
             "echo, RemoteKMS client", 0.70),
            (f"{name}: 8 clients / 1 client", f"{name}: GenerateDataKey, 8 clients pipelined",
             f"{name}: GenerateDataKey, 1 client", 1.0),
            (f"{name}: batch keys/s / engine", f"{name}: GenerateDataKeys x1000, 1 client",
             "engine generate_data_keys(1000), in-process", 0.40),

        ]  # fmt: skip
    for what in ("GenerateDataKey", "GenerateDataKeys x1000"):
        on_loop = med[f"in-process {what}, on the loop"]
        in_worker = med[f"in-process {what}, via a worker thread"]
        unit = 1000 if "x1000" in what else 1
        cost = (unit / in_worker - unit / on_loop) * 1e6
        print(f"handing {what} to a worker thread costs {cost:.1f} us per call "
              f"({on_loop / in_worker:.2f}x the time on the loop)")  # fmt: skip
    # Rates of short rounds swing with the scheduler on a shared machine; the
    # median latency of sequential calls is steadier, so both are shown.
    print("\nratios vs target: rates (median / median; per-round range), and by p50 latency")
    summary = {}
    for label, a, b, target in checks:
        ratio = med[a] / med[b]
        rr = per_round(a, b)
        by_p50 = None if "pipelined" in a + b else pct(lat[b], 0.5) / pct(lat[a], 0.5)
        verdict = "PASS" if ratio >= target else "MISS"
        summary[label] = {
            "ratio": ratio, "range": [min(rr), max(rr)], "by_p50": by_p50, "target": target,
        }  # fmt: skip
        shown = "    -" if by_p50 is None else f"{by_p50:5.2f}"
        print(f"  {label:45} {ratio:5.2f} ({min(rr):.2f}-{max(rr):.2f})  p50 {shown}  "
              f"target >= {target}  {verdict}")  # fmt: skip
    if args.json:
        out = {
            "event_loop": LOOP_NAME,
            "rates": {n: [s.rate for s in v] for n, v in samples.items()},
            "p50_us": {n: pct(lat[n], 0.5) for n in samples},
            "p99_us": {n: pct(lat[n], 0.99) for n in samples},
            "summary": summary,
        }
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
