"""The daemon's own refusals are audited at a bounded rate; connection and idle limits.

Each test runs a real daemon subprocess (``python -m kmscore.frontends.rpc``).
"""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from test_rpc_support import running_daemon, wait_for

from kmscore import errors
from kmscore.audit.chainer import drain_journals
from kmscore.client.remote import RemoteConnectionError, RemoteKMS

#: Daemon memory per idle connection (kB), measured ~1.4 with uvloop (see
#: docs/performance.md); the bound leaves room for allocator noise.
RSS_KB_PER_CONNECTION_MAX = 5.0


def _records(data_dir: Path) -> list[dict[str, Any]]:
    drain_journals(data_dir)
    out = []
    for segment in sorted((data_dir / "audit").glob("segment-*.jsonl")):
        out += [json.loads(line) for line in segment.read_bytes().splitlines() if line.strip()]
    return out


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Blocking: a full listen backlog makes a non-blocking connect fail with
    # EAGAIN, a blocking one waits for the daemon to accept.
    sock.connect(str(path))
    sock.settimeout(20)
    return sock


def _read_answers(sock: socket.socket, count: int) -> list[Any]:
    unpacker = msgpack.Unpacker(raw=False)
    out: list[Any] = []
    while len(out) < count:
        data = sock.recv(1 << 20)
        assert data, f"closed after {len(out)} answers"
        unpacker.feed(data)
        out.extend(unpacker)
    return out


def test_a_flood_of_garbage_frames_is_summarized_exactly(tmp_path: Path) -> None:
    n, burst = 100_000, 5
    args = ["--refusal-burst", str(burst), "--refusal-window", "600"]
    with running_daemon(tmp_path, extra_args=args) as daemon:
        before = len(_records(tmp_path))
        sock = _connect(daemon.socket)
        # A method that is no name: answered UnknownOperationException, the
        # connection kept.
        frames = b"".join(msgpack.packb([0, i + 1, 123, {}]) for i in range(n))
        sender = threading.Thread(target=sock.sendall, args=(frames,))
        sender.start()
        answers = _read_answers(sock, n)
        sender.join()
        sock.close()
        assert {a[2]["Code"] for a in answers} == {"UnknownOperationException"}
        assert sorted(a[1] for a in answers) == list(range(1, n + 1))
    records = _records(tmp_path)
    grown = records[before:]
    refused = [r for r in grown if r.get("errorCode") == "UnknownOperationException"]
    # burst individual records, then one summary at shutdown (the window is long).
    assert len(refused) == burst + 1
    assert len(grown) < 20
    summary = refused[-1]
    assert summary["additionalEventData"]["suppressedCount"] == n - burst
    assert summary["errorMessage"].startswith(
        f"{n - burst} more UnknownOperationException from unix:"
    )
    for record in refused:
        assert record["eventName"] == "Unknown"
        assert record["sourceIPAddress"].startswith("unix:")
        assert record["userAgent"] == "kmscore-rpc"


def test_undecodable_frames_are_recorded_without_their_bytes(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as daemon:
        sock = _connect(daemon.socket)
        sock.sendall(b"\xc1TOP-SECRET-BYTES")  # 0xc1 is never used by msgpack
        assert sock.recv(100) == b""  # closed
        sock.close()
        sock = _connect(daemon.socket)
        sock.sendall(msgpack.packb([0, 1, "NoSuchOperation", {"Plaintext": b"TOP-SECRET-BYTES"}]))
        (answer,) = _read_answers(sock, 1)
        assert answer[2]["Code"] == "UnknownOperationException"
        sock.close()
    text = b"".join(p.read_bytes() for p in (tmp_path / "audit").glob("segment-*.jsonl"))
    assert b"TOP-SECRET" not in text
    records = _records(tmp_path)
    codes = {(r["eventName"], r.get("errorCode")) for r in records}
    assert ("Unknown", "SerializationException") in codes
    assert ("NoSuchOperation", "UnknownOperationException") in codes


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_ten_thousand_idle_connections_and_a_clear_refusal(tmp_path: Path) -> None:
    idle = 10_000
    _raise_fd_limit(idle + 512)
    started = time.monotonic()
    # The limit holds the first client and the idle ones; one more is refused.
    args = ["--max-connections", str(idle + 1)]
    with running_daemon(tmp_path, extra_args=args) as daemon:
        first = RemoteKMS(daemon.socket)
        key = first.create_key()["KeyMetadata"]["KeyId"]
        first.generate_data_key(KeyId=key, KeySpec="AES_256")
        rss_before = daemon.rss_kb()
        socks = [_connect(daemon.socket) for _ in range(idle)]
        try:
            # The daemon takes connections as it gets to them: past the last
            # one, a new client is refused clearly.
            refused: list[errors.KMSError] = []

            def newcomer_refused() -> bool:
                try:
                    late = RemoteKMS(daemon.socket)
                except RemoteConnectionError:
                    return False  # the listen backlog is still full
                with late:
                    try:
                        late.list_keys()
                    except errors.LimitExceededException as exc:
                        refused.append(exc)
                        return True
                return False

            wait_for(newcomer_refused, timeout=20)
            assert "at most 10001 clients" in refused[0].message
            rss_after = daemon.rss_kb()
            # The client connected before the flood is still served.
            for _ in range(20):
                first.generate_data_key(KeyId=key, KeySpec="AES_256")
            per_connection = (rss_after - rss_before) / idle
            print(f"daemon RSS {rss_before} -> {rss_after} kB: {per_connection:.2f} kB/conn")
            assert per_connection < RSS_KB_PER_CONNECTION_MAX
        finally:
            for sock in socks:
                sock.close()
        # Once the idle ones are gone, new clients are served again.
        wait_for(lambda: _served(daemon.socket), timeout=20)
        first.close()
    refusals = [r for r in _records(tmp_path) if r.get("errorCode") == "LimitExceededException"]
    assert refusals and refusals[0]["eventName"] == "Unknown"
    assert time.monotonic() - started < 60


def _served(path: Path) -> bool:
    try:
        kms = RemoteKMS(path)
    except RemoteConnectionError:
        return False
    with kms:
        try:
            kms.list_keys()
        except errors.LimitExceededException:
            return False
    return True


def test_idle_connections_are_closed_busy_ones_kept(tmp_path: Path) -> None:
    with running_daemon(tmp_path, extra_args=["--idle-timeout", "0.6"]) as daemon:
        quiet = _connect(daemon.socket)
        busy = RemoteKMS(daemon.socket)
        busy_started = time.monotonic()
        busy.list_keys()
        sock_of_busy = busy._connection().sock
        while time.monotonic() - busy_started < 2.0:
            busy.generate_random(NumberOfBytes=8)
            time.sleep(0.1)
        # The quiet one was closed by the daemon (EOF), the busy one never was.
        quiet.settimeout(5)
        assert quiet.recv(10) == b""
        assert busy._connection().sock is sock_of_busy
        quiet.close()
        busy.close()
