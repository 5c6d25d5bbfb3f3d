"""A fleet of ``kms serve`` processes on one PostgreSQL, under load from boto3 clients.

- three nodes; one is killed with SIGKILL: the others carry on, and nothing any
  node acknowledged is lost;
- a primary with a synchronous streaming standby: the primary crashes, the
  standby is promoted, and the nodes find it through their multi-host URL.
"""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from service_helpers.postgres import PgCluster, dbname_of, start_cluster, wait_until

from kmscore.crypto.rootkey import ROOT_KEY_FILE

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402

KMS = shutil.which("kms")
pytestmark = pytest.mark.skipif(KMS is None, reason="the kms console script is not installed")
NO_RETRY = Config(
    retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30
)


@dataclass
class Node:
    """One ``kms serve`` process and its endpoint."""

    data_dir: Path
    proc: subprocess.Popen[bytes]
    url: str


@dataclass
class Acked:
    """What the clients were told succeeded."""

    keys: list[str] = field(default_factory=list)
    sealed: list[tuple[bytes, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _ready(proc: subprocess.Popen[bytes], seconds: float = 60.0) -> str:
    """The endpoint URL the node prints once it serves."""
    import select

    assert proc.stdout is not None
    fd, seen = proc.stdout.fileno(), b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and b"listening on" not in seen:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    if b"listening on" not in seen:
        proc.kill()
        pytest.fail(f"kms serve did not start: {seen!r} {proc.communicate(timeout=5)[1]!r}")
    line = next(x for x in seen.decode().splitlines() if x.startswith("AWS_ENDPOINT_URL_KMS="))
    return line.split("=", 1)[1]


def start_node(data_dir: Path, url: str) -> Node:
    proc = subprocess.Popen(
        [str(KMS), "serve", "--data-dir", str(data_dir), "--store", url,
         "--http", "127.0.0.1:0", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return Node(data_dir, proc, _ready(proc))


def fleet(tmp_path: Path, url: str, count: int) -> list[Node]:
    first = tmp_path / "n0"
    init = subprocess.run(
        [str(KMS), "init", "--data-dir", str(first), "--store", url],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    for i in range(1, count):
        d = tmp_path / f"n{i}"
        d.mkdir(mode=0o700)
        shutil.copy2(first / ROOT_KEY_FILE, d / ROOT_KEY_FILE)
    return [start_node(tmp_path / f"n{i}", url) for i in range(count)]


def client(node: Node, tmp_path: Path) -> Any:
    creds = configparser.ConfigParser()
    creds.read(tmp_path / "n0" / "credentials")
    return boto3.client(
        "kms",
        endpoint_url=node.url,
        region_name="us-east-1",
        aws_access_key_id=creds["default"]["aws_access_key_id"],
        aws_secret_access_key=creds["default"]["aws_secret_access_key"],
        config=NO_RETRY,
    )


def load(kms: Any, acked: Acked, stop: threading.Event, errors: list[str]) -> None:
    """CreateKey and Encrypt in a loop, recording what was acknowledged."""
    i = 0
    while not stop.is_set():
        i += 1
        try:
            key_id = kms.create_key(Description=f"load {i}")["KeyMetadata"]["KeyId"]
            with acked.lock:
                acked.keys.append(key_id)
            plain = f"plaintext {key_id}".encode()
            blob = kms.encrypt(KeyId=key_id, Plaintext=plain)["CiphertextBlob"]
            with acked.lock:
                acked.sealed.append((blob, plain))
        except Exception as exc:  # an unacknowledged call: fine, if the node died
            errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)


def start_load(
    nodes: list[Node], tmp_path: Path
) -> tuple[Acked, threading.Event, list[list[str]], list[threading.Thread]]:
    """A loading client thread per node, started; set the event to stop them."""
    acked, stop = Acked(), threading.Event()
    errors: list[list[str]] = [[] for _ in nodes]
    threads = [
        threading.Thread(target=load, args=(client(n, tmp_path), acked, stop, errors[i]))
        for i, n in enumerate(nodes)
    ]
    for t in threads:
        t.start()
    return acked, stop, errors, threads


def check_everything_acked_is_there(kms: Any, acked: Acked) -> None:
    for key_id in acked.keys:
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id
    for blob, plain in acked.sealed:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plain


def stop_all(nodes: list[Node]) -> None:
    for n in nodes:
        if n.proc.poll() is None:
            n.proc.send_signal(signal.SIGTERM)
    for n in nodes:
        try:
            n.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.communicate()


def test_kill_9_of_one_node_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    nodes = fleet(tmp_path, pg_url, 3)
    try:
        acked, stop, errors, threads = start_load(nodes, tmp_path)
        time.sleep(1.5)
        nodes[1].proc.kill()  # SIGKILL, mid-load
        before = len(acked.keys)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join()
        assert nodes[1].proc.wait() == -signal.SIGKILL
        # The survivors carried on, without an error.
        assert not errors[0] and not errors[2], (errors[0][:3], errors[2][:3])
        assert len(acked.keys) > before
        survivor = client(nodes[2], tmp_path)
        check_everything_acked_is_there(survivor, acked)
        listed = set()
        marker = None
        while True:
            page = survivor.list_keys(**({"Marker": marker} if marker else {}))
            listed |= {k["KeyId"] for k in page["Keys"]}
            if not page.get("Truncated"):
                break
            marker = page["NextMarker"]
        assert set(acked.keys) <= listed
        # The killed node's data dir restarts into the fleet.
        nodes[1] = start_node(nodes[1].data_dir, pg_url)
        check_everything_acked_is_there(client(nodes[1], tmp_path), acked)
    finally:
        stop_all(nodes)


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[PgCluster, PgCluster]]:
    """A primary and its synchronous streaming standby."""
    primary, root = start_cluster()
    standby = primary.standby()
    try:
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")
        primary.psql("SELECT pg_reload_conf()")
        assert wait_until(
            lambda: primary.psql("SELECT sync_state FROM pg_stat_replication") == "sync", 30
        )
        yield primary, standby
    finally:
        standby.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_failover_to_a_promoted_standby(
    tmp_path: Path, replicated: tuple[PgCluster, PgCluster]
) -> None:
    primary, standby = replicated
    name = dbname_of(primary.new_database())
    url = (
        f"postgresql://postgres@/{name}?host={primary.sockdir},{standby.sockdir}"
        f"&port={primary.port},{standby.port}&target_session_attrs=read-write"
    )
    nodes = fleet(tmp_path, url, 2)
    try:
        acked, stop, errors, threads = start_load(nodes, tmp_path)
        time.sleep(1.0)
        primary.stop("immediate")  # a crash: no shutdown checkpoint
        standby.promote()
        at_failover = len(acked.keys)

        def resumed() -> bool:
            with acked.lock:
                return len(acked.keys) >= at_failover + 10

        assert wait_until(resumed, timeout=60, step=0.1), errors
        stop.set()
        for t in threads:
            t.join()
        assert all(n.proc.poll() is None for n in nodes), "a node died in the failover"
        for n in nodes:
            check_everything_acked_is_there(client(n, tmp_path), acked)
    finally:
        stop.set()
        stop_all(nodes)


def test_concurrent_management_from_every_kms_serve_node(tmp_path: Path, pg_url: str) -> None:
    """Rotation, CreateGrant and reservations from three processes, checked in the store."""
    from kmscore.store.postgres import PostgresKeyStore

    nodes = fleet(tmp_path, pg_url, 3)
    try:
        clients = [client(n, tmp_path) for n in nodes]
        key_id = clients[0].create_key()["KeyMetadata"]["KeyId"]
        outcomes: list[str] = []
        grant_ids: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(3)

        def work(kms: Any) -> None:
            barrier.wait()
            for _ in range(10):
                try:
                    kms.rotate_key_on_demand(KeyId=key_id)
                    result = "rotated"
                except kms.exceptions.LimitExceededException:
                    result = "limit"
                with lock:
                    outcomes.append(result)
            made = kms.create_grant(
                KeyId=key_id,
                GranteePrincipal="arn:aws:iam::111122223333:user/someone",
                Operations=["Decrypt"],
                Name="one-grant",
            )
            with lock:
                grant_ids.append(made["GrantId"])

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes).count("rotated") == 25 and outcomes.count("limit") == 5
        assert len(set(grant_ids)) == 1 and len(grant_ids) == 3

        store = PostgresKeyStore(pg_url)
        try:
            materials = store.list_materials(key_id)
            assert [m.version for m in materials] == list(range(1, 27))
            assert sum(m.rotation_type == "ON_DEMAND" for m in materials) == 25
            assert len(store.key_grants(key_id)) == 1
            # Encryptions from every node: each reserves a block of its own
            # (2**20 by default), so the count grows by three whole blocks.
            time.sleep(1.5)  # the nodes' caches have followed the changes above
            before = store.get_material(key_id, 26).reserved  # type: ignore[union-attr]

            def encrypt_some(kms: Any) -> None:
                for _ in range(20):
                    kms.encrypt(KeyId=key_id, Plaintext=b"p")

            run = [threading.Thread(target=encrypt_some, args=(c,)) for c in clients]
            for t in run:
                t.start()
            for t in run:
                t.join()
            after = store.get_material(key_id, 26).reserved  # type: ignore[union-attr]
            assert after - before == 3 * (1 << 20)
        finally:
            store.close()
    finally:
        stop_all(nodes)


def test_kms_serve_with_another_root_key_refuses_to_start(tmp_path: Path, pg_url: str) -> None:
    stop_all(fleet(tmp_path, pg_url, 1))
    stranger = tmp_path / "stranger"
    init = subprocess.run(
        [str(KMS), "init", "--data-dir", str(stranger)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert init.returncode == 0
    (stranger / "kms.db").unlink()
    out = subprocess.run(
        [str(KMS), "serve", "--data-dir", str(stranger), "--store", pg_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "Root key mismatch" in out.stderr and str(stranger / ROOT_KEY_FILE) in out.stderr
