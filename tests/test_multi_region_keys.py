"""Multi-Region keys inside one deployment, through boto3 clients in each Region.

AWS's developer guide ("Multi-Region keys in AWS KMS"): a primary key, its
replicas in other Regions, shared material and rotation, independent policy,
aliases, tags, description and enabled state, UpdatePrimaryRegion, and the
deletion of a primary that still has replicas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_awsjson_support import ACCOUNT, REGION, Endpoint, running_endpoint

WEST = "us-west-2"
SOUTH = "ap-south-1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[Endpoint]:
    data_dir = tmp_path_factory.mktemp("mrk") / "data"
    with running_endpoint(data_dir, clock=clock) as ep:
        ep.service.deployment.add_region(WEST)
        ep.service.deployment.add_region(SOUTH)
        yield ep


@pytest.fixture(scope="module")
def kms(endpoint: Endpoint) -> dict[str, Any]:
    return {r: endpoint.client(region=r) for r in (REGION, WEST, SOUTH)}


def new_primary(kms: dict[str, Any], **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = kms[REGION].create_key(MultiRegion=True, **extra)["KeyMetadata"]
    return md


def test_replicate_key_makes_a_related_key_with_its_own_policy_tags_and_description(
    kms: dict[str, Any],
) -> None:
    primary = new_primary(kms, Description="primary", Tags=[{"TagKey": "p", "TagValue": "1"}])
    assert primary["KeyId"].startswith("mrk-") and primary["MultiRegion"] is True
    config = primary["MultiRegionConfiguration"]
    assert config == {
        "MultiRegionKeyType": "PRIMARY",
        "PrimaryKey": {"Arn": primary["Arn"], "Region": REGION},
        "ReplicaKeys": [],
    }
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        }
    )
    out = kms[REGION].replicate_key(
        KeyId=primary["Arn"],
        ReplicaRegion=WEST,
        Description="replica",
        Policy=policy,
        Tags=[{"TagKey": "r", "TagValue": "2"}],
        BypassPolicyLockoutSafetyCheck=False,
    )
    replica_arn = f"arn:aws:kms:{WEST}:{ACCOUNT}:key/{primary['KeyId']}"
    md = out["ReplicaKeyMetadata"]
    assert md["Arn"] == replica_arn and md["KeyId"] == primary["KeyId"]
    assert md["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert json.loads(out["ReplicaPolicy"]) == json.loads(policy)
    assert out["ReplicaTags"] == [{"TagKey": "r", "TagValue": "2"}]
    # Ready once the call returns; each side shows the whole configuration.
    there = kms[WEST].describe_key(KeyId=replica_arn)["KeyMetadata"]
    here = kms[REGION].describe_key(KeyId=primary["Arn"])["KeyMetadata"]
    assert there["KeyState"] == "Enabled" and there["Description"] == "replica"
    assert here["Description"] == "primary"
    expected_replicas = [{"Arn": replica_arn, "Region": WEST}]
    assert here["MultiRegionConfiguration"]["ReplicaKeys"] == expected_replicas
    assert there["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "REPLICA",
        "PrimaryKey": {"Arn": primary["Arn"], "Region": REGION},
        "ReplicaKeys": expected_replicas,
    }
    # Shared: the key material (and its id); independent: tags, policy.
    assert there["CurrentKeyMaterialId"] == here["CurrentKeyMaterialId"]
    assert kms[WEST].list_resource_tags(KeyId=replica_arn)["Tags"] == out["ReplicaTags"]
    assert kms[REGION].list_resource_tags(KeyId=primary["Arn"])["Tags"] == [
        {"TagKey": "p", "TagValue": "1"}
    ]


def test_ciphertext_of_any_related_key_decrypts_with_any_other(kms: dict[str, Any]) -> None:
    primary = new_primary(kms)
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=WEST)
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=SOUTH)
    context = {"order": "42"}
    for source in (REGION, WEST, SOUTH):
        blob = kms[source].encrypt(
            KeyId=primary["KeyId"], Plaintext=source.encode(), EncryptionContext=context
        )["CiphertextBlob"]
        for target in (REGION, WEST, SOUTH):
            out = kms[target].decrypt(CiphertextBlob=blob, EncryptionContext=context)
            assert out["Plaintext"] == source.encode()
            assert out["KeyId"] == f"arn:aws:kms:{target}:{ACCOUNT}:key/{primary['KeyId']}"
    dk = kms[WEST].generate_data_key(KeyId=primary["KeyId"], KeySpec="AES_256")
    assert kms[SOUTH].decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]


def test_aws_refusals(kms: dict[str, Any]) -> None:
    primary = new_primary(kms)
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=WEST)
    single = kms[REGION].create_key()["KeyMetadata"]
    cases = [
        # A replica of a replica.
        (kms[WEST], {"KeyId": primary["KeyId"], "ReplicaRegion": SOUTH}, "UnsupportedOperation"),
        # A Region that already holds a related key.
        (kms[REGION], {"KeyId": primary["KeyId"], "ReplicaRegion": WEST}, "AlreadyExists"),
        # A key that is not multi-Region.
        (kms[REGION], {"KeyId": single["KeyId"], "ReplicaRegion": WEST}, "UnsupportedOperation"),
        # Its own Region, and a Region the deployment does not serve.
        (kms[REGION], {"KeyId": primary["KeyId"], "ReplicaRegion": REGION}, "Validation"),
        (kms[REGION], {"KeyId": primary["KeyId"], "ReplicaRegion": "eu-north-1"}, "Validation"),
        (kms[REGION], {"KeyId": primary["KeyId"], "ReplicaRegion": "Mars"}, "Validation"),
    ]
    for client, request, expected in cases:
        with pytest.raises(ClientError) as err:
            client.replicate_key(**request)
        assert code(err) == f"{expected}Exception", request
    # Nothing changed.
    md = kms[REGION].describe_key(KeyId=primary["KeyId"])["KeyMetadata"]
    assert [r["Region"] for r in md["MultiRegionConfiguration"]["ReplicaKeys"]] == [WEST]
    with pytest.raises(ClientError) as err:
        kms[SOUTH].describe_key(KeyId=primary["KeyId"])
    assert code(err) == "NotFoundException"
    with pytest.raises(ClientError) as err:
        kms[REGION].update_primary_region(KeyId=single["KeyId"], PrimaryRegion=WEST)
    assert code(err) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as err:
        kms[REGION].update_primary_region(KeyId=primary["KeyId"], PrimaryRegion=SOUTH)
    assert code(err) == "NotFoundException"
    with pytest.raises(ClientError) as err:
        kms[WEST].enable_key_rotation(KeyId=primary["KeyId"])
    assert code(err) == "UnsupportedOperationException"
    with pytest.raises(ClientError) as err:
        kms[WEST].rotate_key_on_demand(KeyId=primary["KeyId"])
    assert code(err) == "UnsupportedOperationException"


def test_independent_properties_stay_apart(kms: dict[str, Any]) -> None:
    primary = new_primary(kms)
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=WEST)
    kms[WEST].disable_key(KeyId=primary["KeyId"])
    kms[WEST].update_key_description(KeyId=primary["KeyId"], Description="west only")
    kms[WEST].create_alias(AliasName="alias/west-only", TargetKeyId=primary["KeyId"])
    here = kms[REGION].describe_key(KeyId=primary["KeyId"])["KeyMetadata"]
    assert here["KeyState"] == "Enabled" and here["Description"] == ""
    with pytest.raises(ClientError) as err:
        kms[REGION].describe_key(KeyId="alias/west-only")
    assert code(err) == "NotFoundException"
    with pytest.raises(ClientError) as err:
        kms[WEST].encrypt(KeyId=primary["KeyId"], Plaintext=b"x")
    assert code(err) == "DisabledException"
    kms[REGION].encrypt(KeyId=primary["KeyId"], Plaintext=b"x")


def test_rotating_the_primary_rotates_every_replica(kms: dict[str, Any]) -> None:
    primary = new_primary(kms)
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=WEST)
    old = kms[WEST].encrypt(KeyId=primary["KeyId"], Plaintext=b"old")["CiphertextBlob"]
    kms[REGION].rotate_key_on_demand(KeyId=primary["KeyId"])
    kms[REGION].enable_key_rotation(KeyId=primary["KeyId"], RotationPeriodInDays=90)
    here = kms[REGION].describe_key(KeyId=primary["KeyId"])["KeyMetadata"]
    there = kms[WEST].describe_key(KeyId=primary["KeyId"])["KeyMetadata"]
    assert there["CurrentKeyMaterialId"] == here["CurrentKeyMaterialId"]
    status = kms[WEST].get_key_rotation_status(KeyId=primary["KeyId"])
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 90
    rotations = kms[WEST].list_key_rotations(KeyId=primary["KeyId"])["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]
    new = kms[WEST].encrypt(KeyId=primary["KeyId"], Plaintext=b"new")["CiphertextBlob"]
    assert new[22 - 4 : 22] == (2).to_bytes(4, "big")  # the blob names version 2
    assert kms[REGION].decrypt(CiphertextBlob=new)["Plaintext"] == b"new"
    assert kms[REGION].decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    # A replica made after the rotation gets every version.
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=SOUTH)
    assert kms[SOUTH].decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    assert kms[SOUTH].decrypt(CiphertextBlob=new)["Plaintext"] == b"new"


def test_update_primary_region_moves_the_primary(kms: dict[str, Any]) -> None:
    primary = new_primary(kms)
    key_id = primary["KeyId"]
    kms[REGION].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    kms[REGION].replicate_key(KeyId=key_id, ReplicaRegion=SOUTH)
    kms[REGION].update_primary_region(KeyId=key_id, PrimaryRegion=WEST)
    for region in (REGION, WEST, SOUTH):
        config = kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["MultiRegionConfiguration"]
        assert config["PrimaryKey"]["Region"] == WEST
        assert config["MultiRegionKeyType"] == ("PRIMARY" if region == WEST else "REPLICA")
        assert sorted(r["Region"] for r in config["ReplicaKeys"]) == sorted([REGION, SOUTH])
    # The old primary is a replica now: it neither replicates nor rotates.
    with pytest.raises(ClientError) as err:
        kms[REGION].rotate_key_on_demand(KeyId=key_id)
    assert code(err) == "UnsupportedOperationException"
    kms[WEST].rotate_key_on_demand(KeyId=key_id)
    blob = kms[WEST].encrypt(KeyId=key_id, Plaintext=b"moved")["CiphertextBlob"]
    assert kms[REGION].decrypt(CiphertextBlob=blob)["Plaintext"] == b"moved"
    assert kms[SOUTH].decrypt(CiphertextBlob=blob)["Plaintext"] == b"moved"


def test_a_primary_with_replicas_waits_for_them_to_be_deleted(
    kms: dict[str, Any], clock: Clock
) -> None:
    primary = new_primary(kms)
    key_id = primary["KeyId"]
    kms[REGION].replicate_key(KeyId=key_id, ReplicaRegion=WEST)
    out = kms[REGION].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in out
    md = kms[REGION].describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "PendingReplicaDeletion" and "DeletionDate" not in md
    with pytest.raises(ClientError) as err:
        kms[REGION].encrypt(KeyId=key_id, Plaintext=b"x")
    assert code(err) == "KMSInvalidStateException"
    # The replica still serves until its own deletion.
    kms[WEST].encrypt(KeyId=key_id, Plaintext=b"x")
    kms[WEST].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    clock.now += timedelta(days=8)
    with pytest.raises(ClientError) as err:
        kms[WEST].describe_key(KeyId=key_id)
    assert code(err) == "NotFoundException"
    md = kms[REGION].describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "PendingDeletion"
    assert md["MultiRegionConfiguration"]["ReplicaKeys"] == []
    assert md["DeletionDate"] > clock.now + timedelta(days=6)
    kms[REGION].cancel_key_deletion(KeyId=key_id)


def test_cancel_during_pending_replica_deletion(kms: dict[str, Any]) -> None:
    primary = new_primary(kms)
    kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=SOUTH)
    kms[REGION].schedule_key_deletion(KeyId=primary["KeyId"], PendingWindowInDays=7)
    kms[REGION].cancel_key_deletion(KeyId=primary["KeyId"])
    md = kms[REGION].describe_key(KeyId=primary["KeyId"])["KeyMetadata"]
    assert md["KeyState"] == "Disabled"


def _deny(action: str, condition: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": action,
                    "Resource": "*",
                    "Condition": condition,
                },
            ],
        }
    )


def test_condition_keys_of_multi_region_keys(kms: dict[str, Any]) -> None:
    primary = new_primary(
        kms, Policy=_deny("kms:ReplicateKey", {"StringEquals": {"kms:ReplicaRegion": SOUTH}})
    )
    with pytest.raises(ClientError) as err:
        kms[REGION].replicate_key(KeyId=primary["KeyId"], ReplicaRegion=SOUTH)
    assert code(err) == "AccessDeniedException"
    kms[REGION].replicate_key(
        KeyId=primary["KeyId"],
        ReplicaRegion=WEST,
        Policy=_deny("kms:Encrypt", {"StringEquals": {"kms:MultiRegionKeyType": "REPLICA"}}),
    )
    with pytest.raises(ClientError) as err:
        kms[WEST].encrypt(KeyId=primary["KeyId"], Plaintext=b"x")
    assert code(err) == "AccessDeniedException"
    kms[REGION].put_key_policy(
        KeyId=primary["KeyId"],
        PolicyName="default",
        Policy=_deny("kms:UpdatePrimaryRegion", {"StringEquals": {"kms:PrimaryRegion": WEST}}),
    )
    with pytest.raises(ClientError) as err:
        kms[REGION].update_primary_region(KeyId=primary["KeyId"], PrimaryRegion=WEST)
    assert code(err) == "AccessDeniedException"
    single = kms[REGION].create_key(
        Policy=_deny("kms:Encrypt", {"Bool": {"kms:MultiRegion": "false"}})
    )["KeyMetadata"]
    with pytest.raises(ClientError) as err:
        kms[REGION].encrypt(KeyId=single["KeyId"], Plaintext=b"x")
    assert code(err) == "AccessDeniedException"
