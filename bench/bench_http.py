"""Benchmark of the HTTP endpoint: GenerateDataKey and Decrypt over keep-alive, SigV4 each time.

Targets (issue 6), measured in one run on the same machine:

- at least 10,000 requests/s (the AWS KMS default per-Region quota for
  symmetric operations);
- at least 25x the rate of moto's server mode (``moto_server``) for the same
  calls (issue 13; issue 6 asked for 10x).

Both servers run as separate processes on a fresh data dir; kmscore's with its
audit trail on (one durable record per call). The load is real HTTP/1.1 with
keep-alive: requests signed beforehand by botocore's SigV4 signer, each with
its own body (one distinct encryption context and, for Decrypt, ciphertext per
request), replayed in turn within the 15-minute window. The server verifies
every signature from scratch; nothing about a request is cached except the
signing key of the day. The load generator is ``wrk`` (Debian: ``apt-get
install -y wrk``) with a small Lua script; without wrk, a Python asyncio
client (much slower, so it understates the servers) is used.

Run: ``python bench/bench_http.py [--seconds 10] [--connections 32] [--workers 1,2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from kmscore.bench.timing import (
    Latency,
    cpu_ticks,
    elapsed_ns_async,
    process_tree,
    timed_awaits,
)

TARGET_RATE = 10_000
TARGET_RATIO = 25.0  # issue 13 (issue 6 asked for 10x)
OPERATIONS = ("GenerateDataKey", "Decrypt")

LUA = r"""
local requests = {}
local index = 0
init = function(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  for r in string.gmatch(data, "([^%z]+)%z") do requests[#requests + 1] = r end
  index = math.random(#requests)
end
request = function()
  index = index % #requests + 1
  return requests[index]
end
"""


@dataclass
class Result:
    server: str
    operation: str
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us: float | None  # server CPU time per request (all its processes)


# --- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A diagnostic only (--diagnose): the same endpoint on a key service that
# records nothing, to show what the audit trail costs per request. Never a
# deployment: every call of a real server is audited.
_UNAUDITED = """
import asyncio, sys
from kmscore.frontends.awsjson import start_http_server
from kmscore.service import KeyService, open_service
async def main():
    service = open_service(sys.argv[1], audit=False)
    server = await start_http_server(service, "127.0.0.1", 0)
    print(server.env_line, flush=True)
    await asyncio.Event().wait()
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def start_kmscore(
    data_dir: Path, workers: int, audit: bool = True
) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "kmscore.frontends.awsjson", "--data-dir", str(data_dir)]
    argv += ["--listen", "127.0.0.1:0", "--workers", str(workers)]
    if not audit:
        argv = [sys.executable, "-c", _UNAUDITED, str(data_dir)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("AWS_ENDPOINT_URL_KMS="):
        raise SystemExit(f"kmscore's endpoint did not start: {line!r}")
    return process, line.split("=", 1)[1]


def start_moto() -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("moto_server did not start (pip install 'moto[server]')")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def reserved_blocks(data_dir: Path) -> int:
    """Blocks of 2**20 AES-GCM invocations the server reserved, over all key versions.

    A server that reserves more than one per worker per key version under load
    spends the version's 2**32 budget on cache misses (CHANGELOG, "Fixed").
    """
    db = sqlite3.connect(f"file:{data_dir / 'kms.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT reserved FROM key_materials").fetchall()
    finally:
        db.close()
    return sum(-(-int(r) // (1 << 20)) for (r,) in rows)


def wait_for_chainer(data_dir: Path, timeout: float = 60.0) -> None:
    """Let the audit chainer a server started finish before its data dir goes."""
    from kmscore.audit.chainer import chainer_running

    deadline = time.monotonic() + timeout
    while chainer_running(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)


# --- pre-signed requests --------------------------------------------------------------


def presign(
    url: str, region: str, key_id: str, secret: str, operation: str, bodies: list[bytes]
) -> list[bytes]:
    host = url.split("//", 1)[1]
    credentials = Credentials(key_id, secret)
    out = []
    for body in bodies:
        request = AWSRequest(
            method="POST",
            url=url + "/",
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"TrentService.{operation}",
            },
        )
        SigV4Auth(credentials, "kms", region).add_auth(request)
        lines = ["POST / HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in request.headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        out.append(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return out


def make_requests(
    url: str, region: str, key_id: str, secret: str, count: int
) -> dict[str, list[bytes]]:
    """Signed GenerateDataKey and Decrypt requests, each with its own context."""
    kms = boto3.client(
        "kms",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )
    kms_key = kms.create_key(Description="bench")["KeyMetadata"]["KeyId"]
    contexts = [{"purpose": "bench", "request": f"r-{i:05d}"} for i in range(count)]
    generate = [
        json.dumps({"KeyId": kms_key, "KeySpec": "AES_256", "EncryptionContext": c}).encode()
        for c in contexts
    ]
    decrypt = []
    for c in contexts:
        blob = kms.generate_data_key(KeyId=kms_key, KeySpec="AES_256", EncryptionContext=c)[
            "CiphertextBlob"
        ]
        decrypt.append(
            json.dumps(
                {"CiphertextBlob": base64.b64encode(blob).decode(), "EncryptionContext": c}
            ).encode()
        )
    return {
        "GenerateDataKey": presign(url, region, key_id, secret, "GenerateDataKey", generate),
        "Decrypt": presign(url, region, key_id, secret, "Decrypt", decrypt),
    }


# --- load generators ------------------------------------------------------------------


def _ms(text: str) -> float:
    value = float(re.sub(r"[a-z]+$", "", text))
    unit = re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(
    url: str, requests: list[bytes], seconds: float, connections: int, workdir: Path
) -> tuple[float, float, float, int, int]:
    script = workdir / "replay.lua"
    script.write_text(LUA)
    data = workdir / "requests.bin"
    data.write_bytes(b"\0".join(requests) + b"\0")
    duration = f"-d{max(1, round(seconds))}s"
    argv = ["wrk", "-t1", f"-c{connections}", duration, "--latency", "-s", str(script)]
    argv += [url, "--", str(data)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"\s50%\s+([0-9.]+[a-z]+)", out)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"\s99%\s+([0-9.]+[a-z]+)", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad[1]) if bad else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if socket_errors:
        print(f"    wrk: socket errors {socket_errors[1]}")
    return rate, p50, p99, total, errors


async def _python_load(
    url: str, requests: list[bytes], seconds: float, connections: int
) -> tuple[float, float, float, int, int]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    latencies: list[int] = []
    errors = 0

    async def one(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        i = offset

        async def request() -> None:
            nonlocal errors, i
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1

        await timed_awaits(request, latencies, seconds=seconds)
        writer.close()

    elapsed = (
        await elapsed_ns_async(asyncio.gather(*(one(i * 7919) for i in range(connections)))) / 1e9
    )
    histogram = Latency()
    histogram.record(latencies)
    p50, p99 = histogram.percentile(50) / 1e6, histogram.percentile(99) / 1e6
    return len(latencies) / elapsed, p50, p99, len(latencies), errors


def run_load(
    client: str, url: str, requests: list[bytes], seconds: float, connections: int, work: Path
) -> tuple[float, float, float, int, int]:
    if client == "wrk":
        return run_wrk(url, requests, seconds, connections, work)
    return asyncio.run(_python_load(url, requests, seconds, connections))


def measure(
    name: str,
    process: subprocess.Popen[str],
    url: str,
    requests: dict[str, list[bytes]],
    args: argparse.Namespace,
    work: Path,
    seconds: float,
) -> list[Result]:
    results = []
    for operation in OPERATIONS:
        # A short warm-up on the same connections' path, not counted.
        run_load(args.client, url, requests[operation], 1, args.connections, work)
        pids = process_tree(process.pid)
        before = cpu_ticks(pids)
        rate, p50, p99, total, errors = run_load(
            args.client, url, requests[operation], seconds, args.connections, work
        )
        ticks = cpu_ticks(pids) - before
        cpu = ticks / os.sysconf("SC_CLK_TCK") / total * 1e6 if total else None
        results.append(Result(name, operation, rate, p50, p99, total, errors, cpu))
        print(
            f"  {name:<22} {operation:<16} {rate:>9,.0f} req/s  p50 {p50:7.2f} ms  "
            f"p99 {p99:7.2f} ms  non-2xx {errors}"
            + (f"  server CPU {cpu:6.1f} us/req" if cpu is not None else "")
            + f"  (load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per kmscore measurement")
    ap.add_argument("--moto-seconds", type=float, default=5.0, help="per moto measurement")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--requests", type=int, default=1000, help="distinct signed requests per op")
    ap.add_argument("--workers", default="1,2", help="kmscore worker processes to measure")
    ap.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--no-moto", action="store_true")
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="also measure one worker with auditing off (what the trail costs; not a target)",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    print(
        f"servers on {loop}; load: {args.client}, {args.connections} keep-alive connections, "
        f"{args.requests} distinct signed requests per operation; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        work = Path(tmp)
        configs = [(int(w), True) for w in args.workers.split(",")]
        if args.diagnose:
            configs.append((1, False))
        for workers, audit in configs:
            data_dir = work / f"kms-{workers}-{audit}"
            process, url = start_kmscore(data_dir, workers, audit)
            try:
                from configparser import ConfigParser

                creds = ConfigParser()
                creds.read(data_dir / "credentials")
                key_id = creds["default"]["aws_access_key_id"]
                secret = creds["default"]["aws_secret_access_key"]
                requests = make_requests(url, "us-east-1", key_id, secret, args.requests)
                name = f"kmscore ({workers} worker{'s' if workers > 1 else ''})"
                if not audit:
                    name = "diagnostic: no audit"
                results += measure(name, process, url, requests, args, work, args.seconds)
                print(
                    f"  {name:<22} AES-GCM invocation blocks reserved: {reserved_blocks(data_dir)}"
                )
            finally:
                stop(process)
                wait_for_chainer(data_dir)
        if not args.no_moto:
            process, url = start_moto()
            try:
                requests = make_requests(url, "us-east-1", "testing", "testing", args.requests)
                results += measure(
                    "moto_server", process, url, requests, args, work, args.moto_seconds
                )
            finally:
                stop(process)

    print()
    print("| server | operation | req/s | p50 ms | p99 ms | non-2xx | server CPU us/req |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        cpu = f"{r.cpu_us:.0f}" if r.cpu_us is not None else "-"
        print(
            f"| {r.server} | {r.operation} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.errors} | {cpu} |"
        )
    print()
    ok = True
    for operation in OPERATIONS:
        ours = [r for r in results if r.operation == operation and r.server.startswith("kmscore")]
        best = max(ours, key=lambda r: r.rate)
        verdict = "PASS" if best.rate >= TARGET_RATE else "MISS"
        ok &= verdict == "PASS"
        print(
            f"{operation}: best {best.rate:,.0f} req/s ({best.server}) vs target "
            f"{TARGET_RATE:,}: {verdict}"
        )
        moto = [r for r in results if r.operation == operation and r.server == "moto_server"]
        if moto:
            ratio = best.rate / moto[0].rate
            verdict = "PASS" if ratio >= TARGET_RATIO else "MISS"
            ok &= verdict == "PASS"
            print(
                f"{operation}: {ratio:.1f}x moto_server ({moto[0].rate:,.0f} req/s) vs target "
                f"{TARGET_RATIO:.0f}x: {verdict}"
            )
    if any(r.errors for r in results):
        print("some answers were not 200: the numbers above are not valid")
        ok = False
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
