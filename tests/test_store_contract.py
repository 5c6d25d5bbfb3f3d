"""The written contract of a KeyStore (kmscore/store/__init__.py), on every backend.

Each test runs on SQLite and on PostgreSQL (a real server, started once per
session by service_helpers.postgres): same calls, same answers, same errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from service_helpers.postgres import PgCluster, wait_until

from kmscore.errors import (
    AlreadyExistsException,
    ConflictException,
    LimitExceededException,
    NotFoundException,
)
from kmscore.model.grant import Grant
from kmscore.model.key import AliasRecord, KeyMaterialRecord, KeyRecord
from kmscore.model.keystate import KeyState
from kmscore.model.principal import AccessKey, Principal
from kmscore.store import KeyStore
from kmscore.store.sqlite import SQLiteKeyStore

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
Opener = Callable[[], KeyStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores on one backing database; every store opened is closed after."""
    opened: list[KeyStore] = []
    if request.param == "sqlite":

        def make() -> KeyStore:
            opened.append(SQLiteKeyStore(tmp_path / "data"))
            return opened[-1]
    else:
        from kmscore.store.postgres import PostgresKeyStore

        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.new_database()

        def make() -> KeyStore:
            opened.append(PostgresKeyStore(url, poll_seconds=0.2))
            return opened[-1]

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(opener: Opener) -> KeyStore:
    return opener()


def key(key_id: str = "k1", **changes: object) -> KeyRecord:
    rec = KeyRecord(
        key_id=key_id,
        arn=f"arn:aws:kms:us-east-1:111122223333:key/{key_id}",
        account="111122223333",
        creation_date=T0,
        description="d",
        key_usage="ENCRYPT_DECRYPT",
        key_spec="SYMMETRIC_DEFAULT",
        origin="AWS_KMS",
        state=KeyState.ENABLED,
        current_version=1,
    )
    return rec.replace(**changes)


def material(key_id: str = "k1", version: int = 1, **changes: object) -> KeyMaterialRecord:
    m = KeyMaterialRecord(key_id, version, b"\x00wrapped\xff" * 4, T0, f"m{version}", None, 0)
    return KeyMaterialRecord(**{**{f: getattr(m, f) for f in m.__slots__}, **changes})  # type: ignore[arg-type]


def grant(grant_id: str, key_id: str = "k1", retiring: str | None = "arn:r") -> Grant:
    return Grant(
        grant_id=grant_id,
        key_id=key_id,
        name=None,
        grantee_principal="arn:g",
        retiring_principal=retiring,
        issuing_account="111122223333",
        operations=("Encrypt", "Decrypt"),
        constraints={"EncryptionContextSubset": {"a": "b"}},
        token=f"token-{grant_id}",
        creation_date=T0,
    )


def principal(name: str, uid: int | None = None) -> Principal:
    return Principal(name, f"arn:aws:iam::111122223333:user/{name}", f"AIDA{name}", uid, None, T0)


# --- keys ---------------------------------------------------------------------------


def test_key_round_trips_every_field(store: KeyStore) -> None:
    full = key(
        multi_region=True,
        deletion_date=T0 + timedelta(days=7),
        pending_window_days=7,
        rotation_enabled=True,
        rotation_period_days=90,
        next_rotation_date=T0 + timedelta(days=90),
        on_demand_rotation_start=T0,
        policy='{"Version": "2012-10-17"}',
        description="ünïcode ✓",
    )
    store.create_key(full, material(), {"b": "2", "a": "1"})
    assert store.get_key("k1") == full.replace(revision=1)
    assert store.get_material("k1", 1) == material()
    assert store.list_tags("k1") == [("a", "1"), ("b", "2")]
    assert store.get_key("nope") is None
    assert store.get_material("k1", 2) is None


def test_multi_region_configuration_round_trips_and_updates(store: KeyStore) -> None:
    mrk = "mrk-" + "ab" * 16
    primary = key(mrk, multi_region=True, primary_region="us-east-1")
    store.create_key(primary, material(mrk), {})
    assert store.get_key(mrk) == primary.replace(revision=1)
    with_replicas = store.update_key(
        primary.replace(
            revision=1, replica_regions=("eu-west-1", "ap-south-1"), multi_region_epoch=3
        )
    )
    assert store.get_key(mrk) == with_replicas
    assert with_replicas.replica_regions == ("eu-west-1", "ap-south-1")
    # A key that is not multi-Region keeps none.
    store.create_key(key("k2"), None, {})
    assert store.get_key("k2").primary_region is None  # type: ignore[union-attr]
    assert store.get_key("k2").replica_regions == ()  # type: ignore[union-attr]


def test_create_key_twice_is_refused_and_changes_nothing(store: KeyStore) -> None:
    store.create_key(key(description="first"), None, {})
    with pytest.raises(AlreadyExistsException):
        store.create_key(key(description="second"), material(), {"t": "v"})
    assert store.get_key("k1").description == "first"  # type: ignore[union-attr]
    assert store.list_materials("k1") == []
    assert store.list_tags("k1") == []


def test_list_keys_pages_in_byte_order(store: KeyStore) -> None:
    ids = ["b", "A", "a", "B", "_x", "é", "0"]
    for i in ids:
        store.create_key(key(i), None, {})
    expected = sorted(ids, key=lambda s: s.encode())
    assert [k.key_id for k in store.list_keys(None, 100)] == expected
    page1 = store.list_keys(None, 3)
    page2 = store.list_keys(page1[-1].key_id, 3)
    page3 = store.list_keys(page2[-1].key_id, 3)
    assert [k.key_id for k in page1 + page2 + page3] == expected


def test_update_key_is_optimistic(store: KeyStore) -> None:
    store.create_key(key(), None, {})
    stored = store.get_key("k1")
    assert stored is not None and stored.revision == 1
    updated = store.update_key(stored.replace(state=KeyState.DISABLED))
    assert updated.revision == 2
    assert store.get_key("k1") == updated
    with pytest.raises(ConflictException):
        store.update_key(stored.replace(description="stale"))
    assert store.get_key("k1") == updated
    with pytest.raises(NotFoundException):
        store.update_key(key("missing", revision=1))


def test_concurrent_updates_from_two_stores_lose_nothing(opener: Opener) -> None:
    a, b = opener(), opener()
    a.create_key(key(), None, {})
    counts = {"a": 0, "b": 0}

    def bump(s: KeyStore, who: str) -> None:
        for _ in range(15):
            while True:
                current = s.get_key("k1")
                assert current is not None
                try:
                    s.update_key(current.replace(current_version=current.current_version + 1))
                    counts[who] += 1
                    break
                except ConflictException:
                    continue

    threads = [threading.Thread(target=bump, args=(s, w)) for s, w in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = a.get_key("k1")
    assert final is not None
    assert final.current_version == 1 + 30 and final.revision == 1 + 30


def test_delete_key_cascades(store: KeyStore) -> None:
    store.create_key(key(), material(), {"t": "v"})
    store.create_key(key("k2"), None, {})
    store.create_alias(AliasRecord("alias/one", "k1", T0, T0))
    store.create_grant(grant("g1"))
    store.delete_key("k1")
    assert store.get_key("k1") is None
    assert store.list_materials("k1") == []
    assert store.get_alias("alias/one") is None
    assert store.list_tags("k1") == []
    assert store.get_grant("g1") is None and store.get_grant_by_token("token-g1") is None
    assert store.get_key("k2") is not None


# --- material ---------------------------------------------------------------------


def test_add_material_rotates_atomically(store: KeyStore) -> None:
    store.create_key(key(), material(), {})
    k = store.get_key("k1")
    assert k is not None
    rotated = store.add_material(k.replace(current_version=2), material(version=2))
    assert rotated.revision == 2 and rotated.current_version == 2
    assert [m.version for m in store.list_materials("k1")] == [1, 2]
    # A stale revision: neither the key nor the material changes.
    with pytest.raises(ConflictException):
        store.add_material(k.replace(current_version=3), material(version=3))
    assert store.get_material("k1", 3) is None
    assert store.get_key("k1") == rotated
    # An existing version: the key update is rolled back too.
    with pytest.raises(ConflictException):
        store.add_material(rotated, material(version=2, material_id="other"))
    assert store.get_key("k1") == rotated
    assert store.get_material("k1", 2) == material(version=2)


def test_reservations_only_grow_and_never_repeat(opener: Opener) -> None:
    a, b = opener(), opener()
    a.create_key(key(), material(), {})
    totals: list[int] = []
    lock = threading.Lock()

    def reserve(s: KeyStore) -> None:
        for _ in range(25):
            t = s.reserve_invocations("k1", 1, 10)
            with lock:
                totals.append(t)

    threads = [threading.Thread(target=reserve, args=(s,)) for s in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(totals) == list(range(10, 1001, 10))
    assert a.get_material("k1", 1).reserved == 1000  # type: ignore[union-attr]
    with pytest.raises(NotFoundException):
        a.reserve_invocations("k1", 9, 1)


# --- aliases ----------------------------------------------------------------------


def test_aliases(store: KeyStore) -> None:
    store.create_key(key(), None, {})
    store.create_key(key("k2"), None, {})
    store.create_alias(AliasRecord("alias/b", "k1", T0, T0))
    store.create_alias(AliasRecord("alias/a", "k2", T0, T0))
    store.create_alias(AliasRecord("alias/c", "k1", T0, T0))
    with pytest.raises(AlreadyExistsException):
        store.create_alias(AliasRecord("alias/a", "k1", T0, T0))
    assert store.get_alias("alias/a") == AliasRecord("alias/a", "k2", T0, T0)
    later = T0 + timedelta(hours=1)
    store.update_alias(AliasRecord("alias/a", "k1", T0, later))
    assert store.get_alias("alias/a") == AliasRecord("alias/a", "k1", T0, later)
    assert [a.alias_name for a in store.list_aliases(None, None, 10)] == [
        "alias/a", "alias/b", "alias/c",
    ]  # fmt: skip
    assert [a.alias_name for a in store.list_aliases("k1", "alias/a", 10)] == ["alias/b", "alias/c"]
    assert [a.alias_name for a in store.list_aliases(None, None, 2)] == ["alias/a", "alias/b"]
    store.delete_alias("alias/b")
    for missing in (
        lambda: store.delete_alias("alias/b"),
        lambda: store.update_alias(AliasRecord("alias/zz", "k1", T0, T0)),
    ):
        with pytest.raises(NotFoundException):
            missing()
    assert store.get_alias("alias/b") is None


# --- tags -------------------------------------------------------------------------


def test_tags_limit_changes_nothing(store: KeyStore) -> None:
    store.create_key(key(), None, {"a": "1"})
    store.put_tags("k1", {"a": "2", "b": "3"}, max_tags=2)
    assert store.list_tags("k1") == [("a", "2"), ("b", "3")]
    with pytest.raises(LimitExceededException):
        store.put_tags("k1", {"a": "9", "c": "4"}, max_tags=2)
    assert store.list_tags("k1") == [("a", "2"), ("b", "3")]
    store.remove_tags("k1", ["a", "absent"])
    assert store.list_tags("k1") == [("b", "3")]


# --- principals and access keys ----------------------------------------------------------


def test_principals_and_access_keys(store: KeyStore) -> None:
    alice = principal("alice", uid=1000)
    ak = AccessKey("AKIAALICE", "alice", b"\x01secret\x00", T0)
    store.create_principal(alice, ak)
    store.create_principal(principal("bob"), None)
    for dup in (principal("alice"), principal("carol", uid=1000)):
        with pytest.raises(AlreadyExistsException):
            store.create_principal(dup, None)
    assert store.get_principal("carol") is None
    assert store.get_principal("alice") == alice
    assert store.get_principal_by_uid(1000) == alice
    assert store.get_principal_by_arn(alice.arn) == alice
    assert [p.name for p in store.list_principals()] == ["alice", "bob"]
    store.set_principal_tags("alice", {"team": "x"})
    store.set_identity_policy("alice", '{"Statement": []}')
    got = store.get_principal("alice")
    assert got is not None and dict(got.tags) == {"team": "x"}
    assert got.identity_policy == '{"Statement": []}'
    store.add_access_key(AccessKey("AKIAALICE2", "alice", b"s2", T0))
    assert store.get_access_key("AKIAALICE") == ak
    assert store.list_access_key_ids("alice") == ["AKIAALICE", "AKIAALICE2"]
    store.delete_principal("alice")
    assert store.get_access_key("AKIAALICE") is None
    for missing in (
        lambda: store.delete_principal("alice"),
        lambda: store.set_principal_tags("alice", {}),
        lambda: store.set_identity_policy("alice", None),
    ):
        with pytest.raises(NotFoundException):
            missing()


# --- grants -------------------------------------------------------------------------


def test_grants(store: KeyStore) -> None:
    store.create_key(key(), None, {})
    for g in ("g3", "g1", "g2"):
        store.create_grant(grant(g))
    store.create_grant(grant("g0", retiring=None))
    assert store.get_grant("g1") == grant("g1")
    assert store.get_grant_by_token("token-g2") == grant("g2")
    assert store.get_grant_by_token("nope") is None
    assert [g.grant_id for g in store.key_grants("k1")] == ["g0", "g1", "g2", "g3"]
    assert [g.grant_id for g in store.list_retirable_grants("arn:r", "g1", 10)] == ["g2", "g3"]
    store.delete_grant("g1")
    with pytest.raises(NotFoundException):
        store.delete_grant("g1")
    assert store.get_grant("g1") is None


# --- transactions, settings, change detection, durability ------------------------------------


def test_transaction_is_all_or_nothing(store: KeyStore) -> None:
    store.create_key(key(), None, {})
    with pytest.raises(RuntimeError), store.transaction():
        store.create_alias(AliasRecord("alias/x", "k1", T0, T0))
        with store.transaction():  # nested: joins
            store.put_tags("k1", {"t": "v"}, 50)
        assert store.get_alias("alias/x") is not None  # seen inside
        raise RuntimeError("abort")
    assert store.get_alias("alias/x") is None
    assert store.list_tags("k1") == []
    with store.transaction():
        store.create_alias(AliasRecord("alias/x", "k1", T0, T0))
        store.put_tags("k1", {"t": "v"}, 50)
    assert store.get_alias("alias/x") is not None and store.list_tags("k1") == [("t", "v")]


def test_a_kms_error_inside_a_transaction_leaves_it_usable(store: KeyStore) -> None:
    store.create_key(key(), None, {})
    with store.transaction():
        with pytest.raises(AlreadyExistsException):
            store.create_key(key(), None, {})
        store.put_tags("k1", {"after": "error"}, 50)
    assert store.list_tags("k1") == [("after", "error")]


def test_settings_keep_the_first_value(store: KeyStore) -> None:
    store.init_settings({"region": b"us-east-1", "bin": b"\x00\xff"})
    store.init_settings({"region": b"eu-west-1", "other": b"x"})
    assert store.get_setting("region") == b"us-east-1"
    assert store.get_setting("bin") == b"\x00\xff"
    assert store.get_setting("other") == b"x"
    assert store.get_setting("absent") is None


def test_change_token_moves_on_another_writers_commit(opener: Opener) -> None:
    a, b = opener(), opener()
    before = a.change_token()
    a.create_key(key(), None, {})
    assert a.change_token() == before, "own changes do not move it"
    b.create_key(key("k2"), None, {})
    assert wait_until(lambda: a.change_token() != before, timeout=5)
    assert a.get_key("k2") is not None


def test_change_token_ignores_another_writers_reservations(opener: Opener) -> None:
    a, b = opener(), opener()
    a.create_key(key(), material(), {})
    time.sleep(0.5)  # past any notification of b's opening (PostgreSQL polls every 0.2 s)
    before = a.change_token()
    for _ in range(5):
        b.reserve_invocations("k1", 1, 10)
    time.sleep(0.5)
    assert a.change_token() == before, "a reservation changes nothing a cache holds"
    # Another writer's change, then one of a's own before a looks: still seen.
    b.create_key(key("k2"), None, {})
    a.create_key(key("k3"), None, {})
    assert wait_until(lambda: a.change_token() != before, timeout=5)
    after = a.change_token()
    a.reserve_invocations("k1", 1, 10)
    assert a.change_token() == after, "own reservations do not move it either"


def test_committed_changes_survive_reopening(opener: Opener) -> None:
    a = opener()
    a.create_key(key(), material(), {"t": "v"})
    a.reserve_invocations("k1", 1, 7)
    a.close()
    b = opener()
    assert b.get_key("k1") == key(revision=1)
    assert b.get_material("k1", 1).reserved == 7  # type: ignore[union-attr]
    assert b.list_tags("k1") == [("t", "v")]


# --- imported key material (issue 17) -------------------------------------------------


def test_imported_material_fields_round_trip_and_put_keeps_the_count(store: KeyStore) -> None:
    pending = key(origin="EXTERNAL", state=KeyState.PENDING_IMPORT)
    store.create_key(pending, None, {})
    k = store.get_key("k1")
    assert k is not None and k.origin == "EXTERNAL" and k.expiration_model is None
    until = T0 + timedelta(days=30)
    imported = material(
        import_state="IMPORTED",
        expiration_model="KEY_MATERIAL_EXPIRES",
        valid_to=until,
        description="batch 7",
    )
    stored = store.put_material(
        k.replace(state=KeyState.ENABLED, expiration_model="KEY_MATERIAL_EXPIRES", valid_to=until),
        imported,
    )
    assert stored.revision == 2 and stored.valid_to == until
    assert store.get_key("k1") == stored
    assert store.get_material("k1", 1) == imported
    first = store.reserve_invocations("k1", 1, 10)
    # Re-importing the same version changes it in place and keeps its count.
    again = store.put_material(
        stored,
        material(
            import_state="IMPORTED",
            expiration_model="KEY_MATERIAL_EXPIRES",
            valid_to=until,
            description="re-imported",
        ),
    )
    assert store.get_material("k1", 1).description == "re-imported"  # type: ignore[union-attr]
    assert store.reserve_invocations("k1", 1, 10) > first
    # A stale revision changes nothing.
    with pytest.raises(ConflictException):
        store.put_material(stored, material(import_state="IMPORTED", description="stale"))
    assert store.get_key("k1") == again
    assert store.get_material("k1", 1).description == "re-imported"  # type: ignore[union-attr]


def test_an_import_token_is_used_once_and_forgotten_once_expired(store: KeyStore) -> None:
    store.create_key(key(origin="EXTERNAL", state=KeyState.PENDING_IMPORT), None, {})
    token = b"\x01token-id\xff"
    assert store.use_import_token("k1", token, valid_to=200.0, now=100.0)
    assert not store.use_import_token("k1", token, valid_to=200.0, now=150.0)
    # Past its expiry it is forgotten (the token itself is refused as expired).
    assert store.use_import_token("k1", token, valid_to=400.0, now=300.0)
