"""Crash tests of the journal: SIGKILL at random moments under load, ten times.

Through the three ways a call reaches the service: in-process (``LocalKMS`` in
a child process, four kills), the socket daemon (three) and two HTTP workers
(three). Every call carries a unique tag in its encryption context, and a tag
counts as acknowledged once the call returned to its caller. After each kill,
and sometimes a kill of the chainer process as well (so a drainer dies in the
middle of a batch), every acknowledged tag must be in the trail exactly once,
and the trail must verify.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from test_awsjson_support import NO_RETRY, admin_credentials
from test_rpc_support import DaemonProcess

from kmscore.audit import query, verify
from kmscore.audit.journal_format import SUFFIX, journal_dir
from kmscore.client import LocalKMS, RemoteKMS

LOCAL_CHILD = r"""
import os, sys, threading
from kmscore import LocalKMS

data_dir, round_, key = sys.argv[1], sys.argv[2], sys.argv[3]
kms = LocalKMS(data_dir)
os.write(1, b"ready\n")

def work(t):
    i = 0
    while True:
        tag = f"{round_}-{t}-{i}"
        if i % 3:
            kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"tag": tag})
        else:
            kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tag": tag})
        os.write(1, (tag + "\n").encode())
        i += 1

for t in range(3):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def chainers(data_dir: Path) -> list[int]:
    """The chainer processes draining ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kmscore.audit.chainer" in argv and str(data_dir).encode() in argv:
            found.append(int(entry.name))
    return found


def kill_chainers(data_dir: Path) -> int:
    killed = 0
    for pid in chainers(data_dir):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def tags_in_trail(data_dir: Path) -> Counter[str]:
    tags: Counter[str] = Counter()
    for record in query(data_dir):
        context = (record.get("requestParameters") or {}).get("encryptionContext") or {}
        if "tag" in context:
            tags[context["tag"]] += 1
    return tags


def check_after_kill(
    data_dir: Path, acknowledged: set[str], rng: random.Random, seed: int, where: str
) -> None:
    if rng.random() < 0.5:
        kill_chainers(data_dir)  # a drainer may die mid-batch too
    assert acknowledged, f"seed {seed}, {where}: nothing was acknowledged"
    present = tags_in_trail(data_dir)
    missing = acknowledged - set(present)
    assert not missing, f"seed {seed}, {where}: lost {sorted(missing)[:5]}"
    twice = [tag for tag, n in present.items() if n > 1]
    assert not twice, f"seed {seed}, {where}: recorded twice {twice[:5]}"
    verify(data_dir)


def finish(data_dir: Path) -> None:
    """Open once more (replaying what is left), close, and check the whole trail."""
    kill_chainers(data_dir)
    with LocalKMS(data_dir):
        pass
    report = verify(data_dir)
    assert report.unsealed == 0 and report.torn_tail is None
    seqs = [r["seq"] for r in query(data_dir)]
    assert seqs == list(range(len(seqs)))
    left = [p for p in journal_dir(data_dir).glob(f"*{SUFFIX}")]
    assert left == [], "journals of dead writers stay after their records were chained"


def start(tmp_path: Path) -> tuple[int, random.Random, Path, str]:
    """A seeded random source (the seed is in every failure) and a data dir with a key."""
    seed = int.from_bytes(os.urandom(4), "big")
    data_dir = tmp_path / "kms"
    with LocalKMS(data_dir) as kms:
        key = str(kms.create_key()["KeyMetadata"]["KeyId"])
    return seed, random.Random(seed), data_dir, key


def test_local_kms_killed_four_times(tmp_path: Path) -> None:
    seed, rng, data_dir, key = start(tmp_path)
    acknowledged: set[str] = set()
    for round_ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", LOCAL_CHILD, str(data_dir), str(round_), key],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.1, 0.5))
        child.send_signal(signal.SIGKILL)
        output = child.stdout.read()
        child.wait()
        # The last line may be cut mid-print; its tag was acknowledged but not told.
        acknowledged |= {line.decode() for line in output.split(b"\n")[:-1] if line}
        check_after_kill(data_dir, acknowledged, rng, seed, f"LocalKMS round {round_}")
    finish(data_dir)


def _load(call: Any, prefix: str, stop: threading.Event, acknowledged: list[str]) -> None:
    i = 0
    while not stop.is_set():
        tag = f"{prefix}-{i}"
        try:
            call(tag)
        except Exception:
            return
        acknowledged.append(tag)
        i += 1


def run_and_kill(
    kill: Any, calls: list[Any], prefix: str, delay: float, acknowledged: set[str]
) -> None:
    stop = threading.Event()
    told: list[str] = []
    threads = [
        threading.Thread(target=_load, args=(call, f"{prefix}-{n}", stop, told))
        for n, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    time.sleep(delay)
    kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    acknowledged |= set(told)


def test_socket_daemon_killed_three_times(tmp_path: Path) -> None:
    seed, rng, data_dir, key = start(tmp_path)
    acknowledged: set[str] = set()
    for round_ in range(3):
        daemon = DaemonProcess(data_dir).wait_ready()
        clients = [RemoteKMS(daemon.socket, reconnect_wait=0.0) for _ in range(3)]

        def call_with(client: RemoteKMS) -> Any:
            return lambda tag: client.generate_data_key(
                KeyId=key, KeySpec="AES_256", EncryptionContext={"tag": tag}
            )

        run_and_kill(
            daemon.kill,
            [call_with(c) for c in clients],
            f"daemon{round_}",
            rng.uniform(0.2, 0.6),
            acknowledged,
        )
        for client in clients:
            client.close()
        check_after_kill(data_dir, acknowledged, rng, seed, f"daemon round {round_}")
    finish(data_dir)


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def test_http_workers_killed_three_times(tmp_path: Path) -> None:
    seed, rng, data_dir, key = start(tmp_path)
    key_id, secret = admin_credentials(data_dir)
    acknowledged: set[str] = set()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KMS_"))}
    for round_ in range(3):
        argv = [sys.executable, "-m", "kmscore.frontends.awsjson", "--data-dir", str(data_dir)]
        argv += ["--listen", "127.0.0.1:0", "--workers", "2"]
        server = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("AWS_ENDPOINT_URL_KMS="), line
        url = line.split("=", 1)[1]
        workers = _children(server.pid) | {server.pid}

        def kill_all(workers: set[int] = workers) -> None:
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        def call_with(n: int, url: str = url) -> Any:
            client = boto3.client(
                "kms",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                config=NO_RETRY,
            )
            return lambda tag: client.generate_data_key(
                KeyId=key, KeySpec="AES_256", EncryptionContext={"tag": tag}
            )

        run_and_kill(
            kill_all,
            [call_with(n) for n in range(3)],
            f"http{round_}",
            rng.uniform(0.3, 0.8),
            acknowledged,
        )
        server.wait(10)
        for pid in workers:
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        check_after_kill(data_dir, acknowledged, rng, seed, f"HTTP round {round_}")
    finish(data_dir)
