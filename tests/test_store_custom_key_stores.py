"""The key store contract for custom key stores, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
import test_store_contract as contract
from test_store_contract import T0, Opener, key

from kmscore.errors import (
    ConflictException,
    CustomKeyStoreNameInUseException,
    CustomKeyStoreNotFoundException,
)
from kmscore.model.custom_key_store import ConnectionState, CustomKeyStoreRecord
from kmscore.model.key import KeyMaterialRecord
from kmscore.store import KeyStore

# The contract's fixtures: both stores, SQLite and PostgreSQL.
opener = contract.opener
store = contract.store


def record(store_id: str = "cks-1", name: str = "one", **changes: object) -> CustomKeyStoreRecord:
    return CustomKeyStoreRecord(
        custom_key_store_id=store_id,
        name=name,
        store_type="AWS_CLOUDHSM",
        connection_state=ConnectionState.DISCONNECTED,
        creation_date=T0,
        cluster_id="cluster-abcdefghijk",
        trust_anchor="cert",
        wrapped_password=b"\x00wrapped\xff",
    ).replace(**changes)


def test_round_trip_and_update(store: KeyStore) -> None:
    store.create_custom_key_store(record())
    got = store.get_custom_key_store("cks-1")
    assert got == record(revision=1)
    changed = store.update_custom_key_store(
        got.replace(connection_state=ConnectionState.FAILED, connection_error_code="X")
    )
    assert changed.revision == 2
    assert store.get_custom_key_store("cks-1") == changed
    with pytest.raises(ConflictException):
        store.update_custom_key_store(got)  # an old revision
    assert store.get_custom_key_store("cks-1") == changed
    assert store.get_custom_key_store("cks-2") is None
    with pytest.raises(CustomKeyStoreNotFoundException):
        store.update_custom_key_store(record("cks-2", "two"))


def test_names_are_unique(store: KeyStore) -> None:
    store.create_custom_key_store(record())
    with pytest.raises(CustomKeyStoreNameInUseException):
        store.create_custom_key_store(record("cks-2", "one"))
    store.create_custom_key_store(record("cks-2", "two"))
    second = store.get_custom_key_store("cks-2")
    assert second is not None
    with pytest.raises(CustomKeyStoreNameInUseException):
        store.update_custom_key_store(second.replace(name="one"))
    assert [r.custom_key_store_id for r in store.list_custom_key_stores()] == ["cks-1", "cks-2"]
    store.delete_custom_key_store("cks-1")
    assert [r.name for r in store.list_custom_key_stores()] == ["two"]


def test_keys_in_a_store(store: KeyStore) -> None:
    store.create_custom_key_store(record())
    k = key("k1").replace(
        origin="AWS_CLOUDHSM", custom_key_store_id="cks-1", cloud_hsm_cluster_id="cluster-x"
    )
    material = KeyMaterialRecord("k1", 1, b"kmscore:k1:1", T0, "m1")
    store.create_key(k, material, {})
    assert store.get_key("k1") == k.replace(revision=1)
    assert store.count_custom_key_store_keys("cks-1") == 1
    assert store.count_custom_key_store_keys("cks-2") == 0
    x = key("k2").replace(custom_key_store_id="cks-1", xks_key_id="ext-1")
    store.create_key(x, None, {})
    assert store.find_xks_key("cks-1", "ext-1") == "k2"
    assert store.find_xks_key("cks-1", "ext-2") is None
    assert store.get_key("k2") == x.replace(revision=1)


def test_another_writer_moves_the_change_token(opener: Opener) -> None:
    a, b = opener(), opener()
    before = b.change_token()
    a.create_custom_key_store(record())
    from service_helpers.postgres import wait_until

    wait_until(lambda: b.change_token() != before)
    assert b.get_custom_key_store("cks-1") is not None
