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


def test_deleting_the_primarys_material_pending_rotation_deletes_it_from_the_replicas(
    kms: LocalKMS,
) -> None:
    key_id, west = replicated(kms)
    first, second = os.urandom(32), os.urandom(32)
    import_material(kms, key_id, first)
    import_material(west, key_id, first)
    new = import_material(kms, key_id, second, ImportType="NEW_KEY_MATERIAL")
    import_material(west, key_id, second, ImportType="EXISTING_KEY_MATERIAL")
    kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=new["KeyMaterialId"])
    for client in (kms, west):
        listed = {m["KeyMaterialId"]: m["ImportState"] for m in materials(client, key_id)}
        assert listed[new["KeyMaterialId"]] == "PENDING_IMPORT"
        assert state(client, key_id) == "Enabled"  # the current material is still there
    # A replica deleting its own material leaves the primary's alone.
    import_material(kms, key_id, second, ImportType="EXISTING_KEY_MATERIAL")
    import_material(west, key_id, second, ImportType="EXISTING_KEY_MATERIAL")
    west.delete_imported_key_material(KeyId=key_id, KeyMaterialId=new["KeyMaterialId"])
    listed = {m["KeyMaterialId"]: m["ImportState"] for m in materials(kms, key_id)}
    assert listed[new["KeyMaterialId"]] == "IMPORTED"


def test_the_new_primary_after_update_primary_region_takes_new_material(kms: LocalKMS) -> None:
    key_id, west = replicated(kms)
    first, second = os.urandom(32), os.urandom(32)
    import_material(kms, key_id, first)
    import_material(west, key_id, first)
    kms.update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
    # Now the old primary is the replica: new material starts in the West.
    err = expect("IncorrectKeyMaterialException", import_material, kms, key_id, second)
    assert WEST in err.message
    import_material(west, key_id, second, ImportType="NEW_KEY_MATERIAL")
    import_material(kms, key_id, second, ImportType="EXISTING_KEY_MATERIAL")
    west.rotate_key_on_demand(KeyId=key_id)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"after")["CiphertextBlob"]
    assert west.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after"


def test_an_imported_hmac_key_replicates_and_verifies_across_regions(kms: LocalKMS) -> None:
    key_id, west = replicated(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    material = os.urandom(32)
    import_material(kms, key_id, material)
    expect("IncorrectKeyMaterialException", import_material, west, key_id, os.urandom(32))
    import_material(west, key_id, material)
    mac = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    out = west.verify_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac)
    assert out["MacValid"] is True


def test_the_flow_through_boto3_over_http(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError
    from test_awsjson_support import REGION, running_endpoint

    with running_endpoint(tmp_path / "data") as ep:
        ep.service.deployment.add_region(WEST)
        east, west = ep.client(region=REGION), ep.client(region=WEST)
        md = east.create_key(Origin="EXTERNAL", MultiRegion=True)["KeyMetadata"]
        key_id = md["KeyId"]
        out = east.replicate_key(KeyId=key_id, ReplicaRegion=WEST)
        assert out["ReplicaKeyMetadata"]["Arn"].split(":")[3] == WEST
        assert west.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
        material = os.urandom(32)
        import_material(east, key_id, material, algorithm="RSA_AES_KEY_WRAP_SHA_256")
        with pytest.raises(ClientError) as err:
            import_material(west, key_id, os.urandom(32))
        assert err.value.response["Error"]["Code"] == "IncorrectKeyMaterialException"
        import_material(west, key_id, material)
        blob = west.encrypt(KeyId=key_id, Plaintext=b"http")["CiphertextBlob"]
        assert east.decrypt(CiphertextBlob=blob)["Plaintext"] == b"http"


def test_material_imported_under_the_old_arn_id_still_reimports(
    kms: LocalKMS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before related keys shared ids, a multi-Region key's id came from its ARN.
    from kmscore.operations import importing

    key_id, _ = replicated(kms)
    material = os.urandom(32)
    with monkeypatch.context() as patch:
        patch.setattr(importing, "material_id", importing._arn_material_id)
        old_id = import_material(kms, key_id, material)["KeyMaterialId"]
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    digest = kms.service.root_key.digest(b"KeyMaterialId", arn.encode() + b"\x00" + material)
    assert old_id == digest.hex()
    kms.delete_imported_key_material(KeyId=key_id)
    out = import_material(kms, key_id, material, KeyMaterialId=old_id)
    assert out["KeyMaterialId"] == old_id and state(kms, key_id) == "Enabled"
    expect("IncorrectKeyMaterialException", import_material, kms, key_id, os.urandom(32))
