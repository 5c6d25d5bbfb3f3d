"""A fleet: several nodes (key services, each with its own data dir) on one PostgreSQL.

The nodes here run in this process, each a LocalKMS with its own store
connections, listener and caches, as separate machines would; the processes
and failover tests are in tests/test_fleet_processes.py. The database is real
(service_helpers.postgres).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from service_helpers import open_kms
from service_helpers.postgres import PgCluster, dbname_of, wait_until

from kmscore.client import LocalKMS
from kmscore.crypto.rootkey import ROOT_KEY_FILE, RootKeyError
from kmscore.errors import (
    DependencyTimeoutException,
    DisabledException,
    KMSError,
    LimitExceededException,
)
from kmscore.store.postgres import PostgresKeyStore


def join_fleet(first: Path, new: Path) -> Path:
    """A new node's data dir, given the fleet's root key file (as an operator would)."""
    new.mkdir(mode=0o700)
    shutil.copy2(first / ROOT_KEY_FILE, new / ROOT_KEY_FILE)
    os.chmod(new / ROOT_KEY_FILE, 0o600)
    return new


def nodes(tmp_path: Path, url: str, count: int, **options: Any) -> list[LocalKMS]:
    """``count`` nodes on one database; the first initializes it."""
    first = open_kms(tmp_path / "n0", store=url, **options)
    out = [first]
    for i in range(1, count):
        out.append(open_kms(join_fleet(tmp_path / "n0", tmp_path / f"n{i}"), store=url, **options))
    return out


def run_all(fns: list[Any]) -> list[Any]:
    """Run each function in its own thread at once; their results (or exceptions)."""
    results: list[Any] = [None] * len(fns)
    barrier = threading.Barrier(len(fns))

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fns[i]()
        except Exception as exc:  # handed back to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_node_with_another_root_key_refuses_to_start(tmp_path: Path, pg_url: str) -> None:
    open_kms(tmp_path / "n0", store=pg_url).close()
    other = tmp_path / "other"
    open_kms(other).close()  # a data dir of its own: another root key file
    (other / "kms.db").unlink()
    with pytest.raises(RootKeyError) as info:
        open_kms(other, store=pg_url)
    message = str(info.value)
    assert "Root key mismatch" in message and str(other / ROOT_KEY_FILE) in message
    assert "postgresql://" in message and "postgres@" not in message
    # With the fleet's key, the same node starts.
    shutil.copy2(tmp_path / "n0" / ROOT_KEY_FILE, other / ROOT_KEY_FILE)
    open_kms(other, store=pg_url).close()


def test_disable_on_one_node_refuses_encrypt_on_another(tmp_path: Path, pg_url: str) -> None:
    """The notification path: polling is set to a minute, so only NOTIFY can be this fast."""
    a = open_kms(tmp_path / "a", store=PostgresKeyStore(pg_url, poll_seconds=60))
    b = open_kms(
        join_fleet(tmp_path / "a", tmp_path / "b"), store=PostgresKeyStore(pg_url, poll_seconds=60)
    )
    key_id = a.create_key()["KeyMetadata"]["KeyId"]
    b.encrypt(KeyId=key_id, Plaintext=b"cached on b")
    a.disable_key(KeyId=key_id)
    start = time.monotonic()
    while True:
        try:
            b.encrypt(KeyId=key_id, Plaintext=b"x")
        except DisabledException:
            break
        assert time.monotonic() - start < 5, "node b still encrypts under a disabled key"
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    print(f"DisableKey on a -> refused on b after {elapsed * 1000:.1f} ms")
    # bench/bench_fleet.py measures the distribution; here, well under the poll.
    assert elapsed < 1.0
    a.close()
    b.close()


def test_polling_catches_a_change_without_a_notification(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str
) -> None:
    a = open_kms(tmp_path / "a", store=PostgresKeyStore(pg_url, poll_seconds=0.2))
    key_id = a.create_key()["KeyMetadata"]["KeyId"]
    a.encrypt(KeyId=key_id, Plaintext=b"cached")
    # Another writer that sends no NOTIFY (as if it were lost), counting its change.
    dbname = dbname_of(pg_url)
    pg_cluster.psql(
        f"UPDATE keys SET state = 'Disabled', revision = revision + 1 WHERE key_id = '{key_id}';"
        "INSERT INTO kms_changes (node, backend, n) VALUES ('psql', 0, 1)",
        dbname,
    )

    def refused() -> bool:
        try:
            a.encrypt(KeyId=key_id, Plaintext=b"x")
        except DisabledException:
            return True
        return False

    start = time.monotonic()
    assert wait_until(refused, timeout=5)
    assert time.monotonic() - start < 0.2 + 0.05 + 0.5
    a.close()


def test_concurrent_management_from_every_node(tmp_path: Path, pg_url: str) -> None:
    fleet = nodes(tmp_path, pg_url, 3, invocation_block=7)
    shared = fleet[0].create_key()["KeyMetadata"]["KeyId"]

    # CreateKey from all nodes at once: every key there, none twice.
    made = run_all([lambda n=n: [n.create_key()["KeyMetadata"]["KeyId"] for _ in range(8)]
                    for n in fleet])  # fmt: skip
    created = [k for batch in made for k in batch]
    assert len(set(created)) == 24
    listed = {k["KeyId"] for k in fleet[1].list_keys(Limit=1000)["Keys"]}
    assert set(created) | {shared} == listed

    # 30 on-demand rotations of one key from three nodes: exactly 25 succeed.
    results = run_all([lambda n=n: _try(n.rotate_key_on_demand, KeyId=shared)
                       for n in fleet for _ in range(10)])  # fmt: skip
    outcome = Counter(type(r).__name__ for r in results)
    assert outcome == {"dict": 25, LimitExceededException.__name__: 5}, outcome
    store = fleet[2].service.store
    materials = store.list_materials(shared)
    assert [m.version for m in materials] == list(range(1, 27))
    assert sum(m.rotation_type == "ON_DEMAND" for m in materials) == 25

    # The same named grant from every node at once: one grant, one id for all.
    grantee = fleet[0].caller.arn
    grants = run_all([lambda n=n: n.create_grant(
        KeyId=shared, GranteePrincipal=grantee, Operations=["Encrypt"], Name="same")
        for n in fleet for _ in range(3)])  # fmt: skip
    assert all(isinstance(g, dict) for g in grants), grants
    assert len({g["GrantId"] for g in grants}) == 1
    assert len(store.key_grants(shared)) == 1
    token = grants[0]["GrantToken"]
    for n in fleet:  # the token works on every node
        n.encrypt(KeyId=shared, Plaintext=b"t", GrantTokens=[token])

    # Tag updates from all nodes: no lost update.
    run_all([lambda n=n, i=i: n.tag_resource(
        KeyId=shared, Tags=[{"TagKey": f"n{i}-{j}", "TagValue": "v"} for j in range(5)])
        for i, n in enumerate(fleet)])  # fmt: skip
    assert len(store.list_tags(shared)) == 15

    # Encryptions from all nodes: the reservations in the store cover every one.
    counts = run_all([lambda n=n: [n.encrypt(KeyId=shared, Plaintext=b"p") for _ in range(40)]
                      for n in fleet])  # fmt: skip
    assert all(len(c) == 40 for c in counts)
    reserved = store.get_material(shared, 26).reserved  # type: ignore[union-attr]
    used = 3 * 40 + 3  # and one grant-token encryption per node
    # Every count handed out was reserved first, in whole blocks; a block
    # left part-used when a cache refill drops it is never handed out again
    # (tests/test_store_contract.py: reservations never repeat).
    assert reserved >= used and reserved % 7 == 0
    for n in fleet:
        n.close()


def _try(fn: Any, **request: Any) -> Any:
    try:
        return fn(**request)
    except KMSError as exc:
        return exc


def test_key_state_changes_are_linearizable(tmp_path: Path, pg_url: str) -> None:
    fleet = nodes(tmp_path, pg_url, 3)
    key_id = fleet[0].create_key()["KeyMetadata"]["KeyId"]
    run_all([lambda n=n, i=i: [n.update_key_description(KeyId=key_id, Description=f"{i}-{j}")
                               for j in range(10)] for i, n in enumerate(fleet)])  # fmt: skip
    record = fleet[0].service.store.get_key(key_id)
    assert record is not None
    assert record.revision == 1 + 30, "every update applied once, on the one before it"
    for n in fleet:
        n.close()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Any:
    """A PostgreSQL of this test's own, to stop and start."""
    from service_helpers.postgres import start_cluster

    cluster, root = start_cluster()
    yield cluster
    cluster.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


def test_while_postgres_is_down_cached_keys_serve_and_management_fails_cleanly(
    tmp_path: Path, own_cluster: PgCluster
) -> None:
    url = own_cluster.new_database()
    kms = open_kms(tmp_path / "n", store=PostgresKeyStore(url, timeout=1.0, poll_seconds=0.2))
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]
    own_cluster.stop("immediate")

    # The data plane: keys already cached keep working, even when periodic
    # maintenance comes due (it waits for the database instead of the call).
    assert wait_until(lambda: not kms.service.store.online, timeout=5)  # type: ignore[attr-defined]
    kms.service.maintenance_deadline = 0.0
    start = time.monotonic()
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
    again = kms.encrypt(KeyId=key_id, Plaintext=b"during")["CiphertextBlob"]
    assert time.monotonic() - start < 0.5
    # Management calls fail, naming the cause, and change nothing.
    for call in (
        lambda: kms.create_key(Description="lost"),
        lambda: kms.disable_key(KeyId=key_id),
        lambda: kms.create_alias(AliasName="alias/lost", TargetKeyId=key_id),
    ):
        with pytest.raises(DependencyTimeoutException) as info:
            call()
        assert "postgresql://" in info.value.message
    own_cluster.start()

    # Resumed without a restart; what failed did not happen.
    def works() -> bool:
        try:
            kms.create_key(Description="after")
        except DependencyTimeoutException:
            return False
        return True

    assert wait_until(works, timeout=30, step=0.2)
    keys = kms.service.store.list_keys(None, 100)
    assert sorted(k.description for k in keys) == ["", "after"]
    assert kms.service.store.get_alias("alias/lost") is None
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"] is True
    assert kms.decrypt(CiphertextBlob=again)["Plaintext"] == b"during"
    kms.disable_key(KeyId=key_id)
    with pytest.raises(DisabledException):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    kms.close()


def test_kms_init_takes_a_store_url_and_later_commands_use_it(tmp_path: Path, pg_url: str) -> None:
    from click.testing import CliRunner

    from kmscore.frontends.cli import admin, keys
    from kmscore.frontends.cli.main import cli

    admin.register(cli)
    keys.register(cli)
    main = cli
    runner = CliRunner()
    data = tmp_path / "d"
    out = runner.invoke(main, ["init", "--data-dir", str(data), "--store", pg_url, "--json"])
    assert out.exit_code == 0, out.output
    assert not (data / "kms.db").exists()
    assert (data / "store.url").stat().st_mode & 0o777 == 0o600
    made = runner.invoke(main, ["create-key", "--data-dir", str(data), "--json"])
    assert made.exit_code == 0, made.output
    direct = PostgresKeyStore(pg_url)
    try:
        assert len(direct.list_keys(None, 10)) == 1
    finally:
        direct.close()
    bad = runner.invoke(main, ["init", "--data-dir", str(tmp_path / "x"), "--store", "mysql://h"])
    assert bad.exit_code == 2 and "postgresql://" in bad.output


def test_each_node_keeps_its_own_trail_and_they_read_together(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from kmscore.audit import VerifyError
    from kmscore.audit.fleet import node_id, query_trails, verify_trails
    from kmscore.frontends.cli import audit as audit_cli
    from kmscore.frontends.cli.main import cli

    monkeypatch.setenv("KMS_NODE_ID", "node-a")
    a = open_kms(tmp_path / "a", store=pg_url)
    monkeypatch.setenv("KMS_NODE_ID", "node-b")
    b = open_kms(join_fleet(tmp_path / "a", tmp_path / "b"), store=pg_url)
    key_id = a.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(3):
        a.encrypt(KeyId=key_id, Plaintext=b"x")
        b.encrypt(KeyId=key_id, Plaintext=b"y")
    b.disable_key(KeyId=key_id)
    a.close()
    b.close()
    dirs = [tmp_path / "a", tmp_path / "b"]
    assert [node_id(d) for d in dirs] == ["node-a", "node-b"]

    records = list(query_trails(dirs, key_id=key_id))
    times = [r["eventTime"] for r in records]
    assert times == sorted(times)
    by_node = Counter((r["node"], r["eventName"]) for r in records)
    assert by_node[("node-a", "CreateKey")] == 1 and by_node[("node-a", "Encrypt")] == 3
    assert by_node[("node-b", "Encrypt")] == 3 and by_node[("node-b", "DisableKey")] == 1
    assert [n for n, _ in verify_trails(dirs)] == ["node-a", "node-b"]

    audit_cli.register(cli)
    runner = CliRunner()
    out = runner.invoke(
        cli, ["audit", "query", "--data-dir", str(dirs[0]), "--trail", str(dirs[1]), "--json"]
    )
    assert out.exit_code == 0, out.output
    assert {json.loads(line)["node"] for line in out.output.splitlines()} == {"node-a", "node-b"}
    verify_args = ["audit", "verify", "--data-dir", str(dirs[0]), "--trail", str(dirs[1])]
    ok = runner.invoke(cli, verify_args)
    assert ok.exit_code == 0 and "node node-b" in ok.output, ok.output

    # Tamper with node b's trail: verification names node b.
    segment = sorted((dirs[1] / "audit").glob("segment-*.jsonl"))[0]
    segment.write_bytes(segment.read_bytes().replace(b"DisableKey", b"EnableKey_", 1))
    with pytest.raises(VerifyError, match="node node-b"):
        verify_trails(dirs)
    bad = runner.invoke(cli, verify_args)
    assert bad.exit_code == 1 and "node node-b" in bad.output


def test_a_passphrase_fleet_needs_the_same_passphrase_on_every_node(
    tmp_path: Path, pg_url: str
) -> None:
    secret = "fleet secret"
    open_kms(tmp_path / "a", store=pg_url, passphrase=secret, argon2_interactive=True).close()
    # Another node: nothing but the URL and the passphrase (no root key file).
    b = open_kms(tmp_path / "b", store=pg_url, passphrase=secret)
    key_id = b.create_key()["KeyMetadata"]["KeyId"]
    b.close()
    with pytest.raises(RootKeyError, match="Root key mismatch: the passphrase"):
        open_kms(tmp_path / "c", store=pg_url, passphrase="another secret")
    with pytest.raises(RootKeyError, match="protected by a passphrase"):
        open_kms(tmp_path / "d", store=pg_url)
    a = open_kms(tmp_path / "a", store=pg_url, passphrase=secret)
    assert a.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id
    a.close()
