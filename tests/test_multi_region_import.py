"""Multi-Region keys with imported key material (bring your own key in several Regions).

A primary of Origin EXTERNAL and its replicas in other Regions of one
deployment: the material is never copied, the operator imports the same
material into each related key; other material is refused and changes
nothing; each related key's material expires and is deleted on its own;
ciphertext of one decrypts in the other. Material is wrapped by the
``cryptography`` library (tests/import_helpers.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from import_helpers import import_material
from service_helpers import Clock, expect, open_kms

from kmscore.client import LocalKMS

WEST = "us-west-2"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kms(tmp_path: Path, clock: Clock) -> Iterator[LocalKMS]:
    with open_kms(tmp_path / "kms", clock) as k:
        yield k


def state(kms: LocalKMS, key_id: str) -> str:
    return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])


def replicated(kms: LocalKMS, **create: Any) -> tuple[str, LocalKMS]:
    west = kms.in_region(WEST)  # adds the Region to the data dir
    md = kms.create_key(Origin="EXTERNAL", MultiRegion=True, **create)["KeyMetadata"]
    assert md["KeyState"] == "PendingImport" and md["MultiRegion"] is True
    key_id = str(md["KeyId"])
    out = kms.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    assert out["ReplicaKeyMetadata"]["Origin"] == "EXTERNAL"
    return key_id, west


def materials(kms: LocalKMS, key_id: str) -> list[dict[str, Any]]:
    got = kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    return list(got["Rotations"])


def test_the_replica_waits_for_the_same_material_and_then_decrypts_the_primarys_ciphertext(
    kms: LocalKMS,
) -> None:
    key_id, west = replicated(kms)
    # No material travels with ReplicateKey.
    assert state(west, key_id) == "PendingImport"
    assert materials(west, key_id) == []
    material = os.urandom(32)
    first = import_material(kms, key_id, material)
    assert state(kms, key_id) == "Enabled" and state(west, key_id) == "PendingImport"
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"east")["CiphertextBlob"]
    expect("KMSInvalidStateException", west.decrypt, CiphertextBlob=blob)
    second = import_material(west, key_id, material)
    assert second["KeyMaterialId"] == first["KeyMaterialId"]
    assert state(west, key_id) == "Enabled"
    assert west.decrypt(CiphertextBlob=blob)["Plaintext"] == b"east"
    back = west.encrypt(KeyId=key_id, Plaintext=b"west")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=back)["Plaintext"] == b"west"
    md = west.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert md["CurrentKeyMaterialId"] == first["KeyMaterialId"]


def test_other_material_is_refused_by_a_replica_and_changes_nothing(kms: LocalKMS) -> None:
    key_id, west = replicated(kms)
    # Before the primary has material there is nothing to match.
    expect("KMSInvalidStateException", import_material, west, key_id, os.urandom(32))
    import_material(kms, key_id, os.urandom(32))
    before = west.describe_key(KeyId=key_id)["KeyMetadata"]
    err = expect("IncorrectKeyMaterialException", import_material, west, key_id, os.urandom(32))
    assert "primary key" in err.message
    assert west.describe_key(KeyId=key_id)["KeyMetadata"] == before
    assert materials(west, key_id) == []


def test_related_keys_expire_and_lose_material_independently(kms: LocalKMS, clock: Clock) -> None:
    key_id, west = replicated(kms)
    material = os.urandom(32)
    valid_to = clock() + timedelta(days=2)
    import_material(kms, key_id, material)
    import_material(west, key_id, material, ValidTo=valid_to)
    west_md = west.describe_key(KeyId=key_id)["KeyMetadata"]
    assert west_md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["ExpirationModel"] == (
        "KEY_MATERIAL_DOES_NOT_EXPIRE"
    )
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    clock.advance(days=3)
    # The replica's material expired; the primary is unaffected.
    assert state(west, key_id) == "PendingImport"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    import_material(west, key_id, material)
    assert west.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    # Deleting the primary's material leaves the replica usable, and back.
    kms.delete_imported_key_material(KeyId=key_id)
    assert state(kms, key_id) == "PendingImport" and state(west, key_id) == "Enabled"
    assert west.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    import_material(kms, key_id, material)
    west.delete_imported_key_material(KeyId=key_id)
    assert state(west, key_id) == "PendingImport" and state(kms, key_id) == "Enabled"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_rotation_waits_for_every_replica_to_hold_the_new_material(kms: LocalKMS) -> None:
    key_id, west = replicated(kms)
    first, second = os.urandom(32), os.urandom(32)
    import_material(kms, key_id, first)
    import_material(west, key_id, first)
    old = kms.encrypt(KeyId=key_id, Plaintext=b"old")["CiphertextBlob"]
    expect("UnsupportedOperationException", kms.enable_key_rotation, KeyId=key_id)
    new = import_material(kms, key_id, second, ImportType="NEW_KEY_MATERIAL")
    listed = {m["KeyMaterialId"]: m["KeyMaterialState"] for m in materials(kms, key_id)}
    assert listed[new["KeyMaterialId"]] == "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
    # A replica takes new material only from its primary, and rotates with it.
    expect("UnsupportedOperationException", kms.in_region(WEST).rotate_key_on_demand, KeyId=key_id)
    expect("KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key_id)
    import_material(west, key_id, second, ImportType="EXISTING_KEY_MATERIAL")
    listed = {m["KeyMaterialId"]: m["KeyMaterialState"] for m in materials(kms, key_id)}
    assert listed[new["KeyMaterialId"]] == "PENDING_ROTATION"
    kms.rotate_key_on_demand(KeyId=key_id)
    assert (
        west.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
        == (new["KeyMaterialId"])
    )
    blob = west.encrypt(KeyId=key_id, Plaintext=b"new")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"new"
    assert west.decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    rotated = [m for m in materials(west, key_id) if m.get("RotationType")]
    assert [m["KeyMaterialId"] for m in rotated] == [new["KeyMaterialId"]]
