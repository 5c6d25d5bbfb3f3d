"""Peered deployments as separate processes: kill -9 during ReplicateKey, and a
peer stopped and restarted (a partition) whose changes converge afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_awsjson_support import NO_RETRY, admin_credentials

from kmscore.service import open_service
from kmscore.service.peering import peering_of
from kmscore.service.regions import Deployment

EAST, WEST = "us-east-1", "us-west-2"

# Serves one data dir over HTTP, after running PATCH (a kill switch for one step).
_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    PATCH = sys.argv[3]
    if PATCH == "die-on-sync":
        from kmscore.service import peering
        peering.Peering._receive_sync = die
    elif PATCH == "die-before-listing":
        from kmscore.operations import multi_region
        multi_region._remote_replica = die
    from kmscore.frontends.awsjson.__main__ import main
    sys.exit(main(["--data-dir", sys.argv[1], "--listen", sys.argv[2], "--loop", "asyncio"]))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    """One deployment: a data dir, its own root key, its port, its process."""

    def __init__(self, base: Path, region: str) -> None:
        self.region = region
        self.data_dir = base / region
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        open_service(self.data_dir, region=region, audit=False).close()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, patch: str = "") -> None:
        # The installed kmscore (under nox a wheel, never the source tree).
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(self.data_dir), f"127.0.0.1:{self.port}", patch],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "AWS_ENDPOINT_URL_KMS" in line, line

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def client(self) -> Any:
        import boto3

        key_id, secret = admin_credentials(self.data_dir)
        return boto3.client(
            "kms",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            config=NO_RETRY,
        )

    @contextlib.contextmanager
    def opened(self) -> Iterator[Deployment]:
        home = open_service(self.data_dir, audit=False)
        deployment = Deployment(home)
        try:
            yield deployment
        finally:
            deployment.close()
            home.close()

    def state(self, key_id: str) -> str:
        """A key's state as stored, read without a call (no maintenance runs)."""
        with self.opened() as d:
            key = d.home.store.get_key(key_id)
            return key.state.value if key is not None else "absent"

    def fingerprint(self) -> str:
        with self.opened() as d:
            return peering_of(d).identity.public.fingerprint

    def sync(self) -> list[dict[str, Any]]:
        """``kms region sync --json``, in a process of its own."""
        out = subprocess.run(
            [
                sys.executable, "-c", "from kmscore.frontends.cli.main import main; main()",
                "region", "sync", "--data-dir", str(self.data_dir), "--json",
            ],
            capture_output=True, text=True, timeout=60, env=dict(os.environ),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        keys: list[dict[str, Any]] = json.loads(out.stdout)["Keys"]
        return keys


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    found = {EAST: Node(tmp_path, EAST), WEST: Node(tmp_path, WEST)}
    fingerprints = {r: n.fingerprint() for r, n in found.items()}
    try:
        for node in found.values():
            node.start()
        for region, node in found.items():
            other = WEST if region == EAST else EAST
            with node.opened() as d:
                peering_of(d).add_peer(other, found[other].url, fingerprints[other])
        yield found
    finally:
        for node in found.values():
            node.kill()


def code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_kill_9_of_the_replica_side_during_replicate_key(nodes: dict[str, Node]) -> None:
    east, west = nodes[EAST], nodes[WEST]
    west.stop()
    west.start("die-on-sync")  # dies once it made the replica, at the primary's next message
    key_id = east.client().create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    out = east.client().replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    assert out["ReplicaKeyMetadata"]["KeyState"] == "Creating"
    assert west.proc is not None and west.proc.wait(20) == -signal.SIGKILL
    # Made but not usable: the primary has not told it so.
    assert west.state(key_id) == "Creating"
    west.start()
    # Restarted, it asks the primary (its first maintenance), which lists it: done.
    kms = west.client()
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    with pytest.raises(ClientError) as err:
        east.client().replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    assert code(err) == "AlreadyExistsException"
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    assert east.client().decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_kill_9_of_the_primary_side_during_replicate_key(nodes: dict[str, Node]) -> None:
    east, west = nodes[EAST], nodes[WEST]
    east.stop()
    east.start("die-before-listing")  # dies after the peer made the replica, before listing it
    key_id = east.client().create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    with pytest.raises(Exception):  # noqa: B017 - the connection dies with the server
        east.client().replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    assert east.proc is not None and east.proc.wait(20) == -signal.SIGKILL
    east.start()
    kms = west.client()
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Creating"
    with pytest.raises(ClientError) as err:
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    assert code(err) == "KMSInvalidStateException"
    md = east.client().describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["MultiRegionConfiguration"]["ReplicaKeys"] == []
    east.client().replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_a_stopped_peer_converges_after_restart(nodes: dict[str, Node]) -> None:
    east, west = nodes[EAST], nodes[WEST]
    key_id = east.client().create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    east.client().replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    old = east.client().encrypt(KeyId=key_id, Plaintext=b"v1")["CiphertextBlob"]
    own = west.client().create_key()["KeyMetadata"]["KeyId"]
    west.kill()  # the partition
    # The primary keeps serving, and rotates meanwhile.
    east.client().rotate_key_on_demand(KeyId=key_id)
    east.client().enable_key_rotation(KeyId=key_id, RotationPeriodInDays=100)
    new = east.client().encrypt(KeyId=key_id, Plaintext=b"v2")["CiphertextBlob"]
    assert east.client().decrypt(CiphertextBlob=old)["Plaintext"] == b"v1"
    unreached = east.sync()
    assert any(WEST in r["Unreached"] for r in unreached)
    west.start()
    # Healing: each side says what it applied (the peer in its answer and its trail).
    results = east.sync()
    lines = [line for r in results if r["KeyId"] == key_id for line in r["Applied"]]
    assert any(
        line.startswith(f"peer {WEST} applied") and "key material version 2" in line
        for line in lines
    ), lines
    assert any("current version 2" in line for line in lines), lines
    # The restarted side serves its own keys, and now the new version too.
    kms = west.client()
    kms.encrypt(KeyId=own, Plaintext=b"own")
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"v1"
    assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"v2"
    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 100
    assert json.dumps(results)  # reportable as it is


def test_primary_change_and_rotation_during_a_partition_converge(tmp_path: Path) -> None:
    south = "ap-south-1"
    found = {r: Node(tmp_path, r) for r in (EAST, WEST, south)}
    fingerprints = {r: n.fingerprint() for r, n in found.items()}
    try:
        for node in found.values():
            node.start()
        for region, node in found.items():
            with node.opened() as d:
                for other, peer in found.items():
                    if other != region:
                        peering_of(d).add_peer(other, peer.url, fingerprints[other])
        east, west, far = found[EAST], found[WEST], found[south]
        key_id = east.client().create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        east.client().replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        east.client().replicate_key(KeyId=key_id, ReplicaRegion=south)
        far.kill()  # partitioned from both
        east.client().update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
        west.client().rotate_key_on_demand(KeyId=key_id)
        blob = west.client().encrypt(KeyId=key_id, Plaintext=b"moved")["CiphertextBlob"]
        # Meanwhile the far side still thinks east is the primary, and serves.
        assert far.state(key_id) == "Enabled"
        far.start()
        lines = [line for r in west.sync() if r["KeyId"] == key_id for line in r["Applied"]]
        assert any(
            f"peer {south} applied" in line and f"replica of {WEST}" in line for line in lines
        ), lines
        kms = far.client()
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"moved"
        config = kms.describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        assert config["PrimaryKey"]["Region"] == WEST
        assert sorted(r["Region"] for r in config["ReplicaKeys"]) == sorted([EAST, south])
    finally:
        for node in found.values():
            node.kill()
