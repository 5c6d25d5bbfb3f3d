"""Regions and accounts as namespaces of one deployment (kmscore.service.regions).

Real boto3 clients, one per Region, against one HTTP endpoint: the SigV4
credential scope picks the Region, the access key the account.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_awsjson_support import ACCOUNT, REGION, Endpoint, running_endpoint

from kmscore.service.regions import Deployment

OTHER_ACCOUNT = "777788889999"


def code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    data_dir = tmp_path_factory.mktemp("regions") / "data"
    with running_endpoint(data_dir) as ep:
        deployment = ep.service.deployment
        assert isinstance(deployment, Deployment)
        deployment.add_region("us-west-2")
        deployment.add_region("ap-south-1")
        yield ep


def test_three_regions_keep_their_own_keys_aliases_and_arns(endpoint: Endpoint) -> None:
    regions = [REGION, "us-west-2", "ap-south-1"]
    clients = {r: endpoint.client(region=r) for r in regions}
    keys: dict[str, str] = {}
    for region, kms in clients.items():
        md = kms.create_key(Description=f"in {region}")["KeyMetadata"]
        assert md["Arn"] == f"arn:aws:kms:{region}:{ACCOUNT}:key/{md['KeyId']}"
        keys[region] = md["Arn"]
        # The same alias name in each Region names that Region's key.
        kms.create_alias(AliasName="alias/app", TargetKeyId=md["KeyId"])
    for region, kms in clients.items():
        listed = {k["KeyArn"] for k in kms.list_keys()["Keys"]}
        assert keys[region] in listed
        assert not listed & {arn for r, arn in keys.items() if r != region}
        assert kms.describe_key(KeyId="alias/app")["KeyMetadata"]["Arn"] == keys[region]
        blob = kms.encrypt(KeyId="alias/app", Plaintext=b"x")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
        aliases = kms.list_aliases()["Aliases"]
        assert {a["AliasArn"] for a in aliases if a["AliasName"] == "alias/app"} == {
            f"arn:aws:kms:{region}:{ACCOUNT}:alias/app"
        }
        for other, arn in keys.items():
            if other != region:
                # Another Region's key ARN is not found here, as AWS answers.
                with pytest.raises(ClientError) as err:
                    kms.describe_key(KeyId=arn)
                assert code(err) == "NotFoundException"
                # Nor is its bare key id.
                with pytest.raises(ClientError) as err:
                    kms.describe_key(KeyId=arn.rsplit("/", 1)[1])
                assert code(err) == "NotFoundException"
    # A ciphertext of one Region does not decrypt in another.
    blob = clients[REGION].encrypt(KeyId=keys[REGION], Plaintext=b"y")["CiphertextBlob"]
    with pytest.raises(ClientError) as err:
        clients["us-west-2"].decrypt(CiphertextBlob=blob)
    assert code(err) in {"NotFoundException", "InvalidCiphertextException"}


def test_a_region_not_served_is_refused_in_aws_words(endpoint: Endpoint) -> None:
    with pytest.raises(ClientError) as err:
        endpoint.client(region="eu-north-1").list_keys()
    assert code(err) == "InvalidSignatureException"
    assert "Credential should be scoped to a valid region" in str(err.value)


def test_region_added_by_another_process_is_served(endpoint: Endpoint) -> None:
    from kmscore.service import open_service

    # As `kms region add` would, from another open of the data dir.
    home = open_service(endpoint.data_dir, audit=False)
    try:
        Deployment(home).add_region("ca-central-1")
    finally:
        home.deployment.close()
        home.close()
    kms = endpoint.client(region="ca-central-1")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    assert arn.startswith(f"arn:aws:kms:ca-central-1:{ACCOUNT}:key/")


def test_adding_a_region_twice_or_a_bad_name_is_refused(endpoint: Endpoint) -> None:
    from kmscore.errors import AlreadyExistsException, NotFoundException

    deployment = endpoint.service.deployment
    with pytest.raises(AlreadyExistsException):
        deployment.add_region("us-west-2")
    with pytest.raises(ValueError, match="not a valid Region"):
        deployment.add_region("Mars-1")
    with pytest.raises(NotFoundException):
        deployment.add_region("us-west-2", "123412341234")


def test_any_region_makes_regions_and_accounts_on_first_use(tmp_path: Path) -> None:
    with running_endpoint(tmp_path / "data", any_region=True) as ep:
        arns = [
            ep.client(region=r).create_key()["KeyMetadata"]["Arn"]
            for r in ("us-east-1", "eu-central-1", "sa-east-1")
        ]
        assert [a.split(":")[3] for a in arns] == ["us-east-1", "eu-central-1", "sa-east-1"]
        assert ep.service.deployment.regions() == sorted(
            {REGION, "us-east-1", "eu-central-1", "sa-east-1"}
        )
        # Not a Region's name: still refused.
        with pytest.raises(ClientError) as err:
            ep.client(region="nowhere").list_keys()
        assert code(err) == "InvalidSignatureException"


def _cross_account_policy(key_account: str, other: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{key_account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "Allow use of the key by the other account",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{other}:root"},
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
                    "Resource": "*",
                },
            ],
        }
    )


def _identity(actions: list[str]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
    )


def test_cross_account_access_needs_key_policy_and_identity_policy(endpoint: Endpoint) -> None:
    deployment = endpoint.service.deployment
    if OTHER_ACCOUNT not in deployment.accounts():
        deployment.add_account(OTHER_ACCOUNT)
    others = deployment.principals_of(OTHER_ACCOUNT)
    assert others is not None
    user, ak, secret = others.add(
        "partner", policy=_identity(["kms:Encrypt", "kms:Decrypt", "kms:ListKeys"])
    )
    bare, ak2, secret2 = others.add("bare")
    assert user.arn == f"arn:aws:iam::{OTHER_ACCOUNT}:user/partner"
    owner = endpoint.client()
    shared = owner.create_key(Policy=_cross_account_policy(ACCOUNT, OTHER_ACCOUNT))["KeyMetadata"]
    private = owner.create_key()["KeyMetadata"]
    partner = endpoint.client(ak, secret)
    # Its own account's keys: its own namespace (none yet), not the owner's.
    assert partner.list_keys()["Keys"] == []
    blob = partner.encrypt(KeyId=shared["Arn"], Plaintext=b"shared")["CiphertextBlob"]
    assert owner.decrypt(CiphertextBlob=blob)["Plaintext"] == b"shared"
    assert partner.decrypt(CiphertextBlob=blob, KeyId=shared["Arn"])["Plaintext"] == b"shared"
    # The key policy allows DescribeKey, the identity policy does not.
    with pytest.raises(ClientError) as err:
        partner.describe_key(KeyId=shared["Arn"])
    assert code(err) == "AccessDeniedException"
    # No identity policy: denied although the key policy names the account.
    with pytest.raises(ClientError) as err:
        endpoint.client(ak2, secret2).encrypt(KeyId=shared["Arn"], Plaintext=b"x")
    assert code(err) == "AccessDeniedException"
    # A key whose policy does not name the other account: denied.
    with pytest.raises(ClientError) as err:
        partner.encrypt(KeyId=private["Arn"], Plaintext=b"x")
    assert code(err) == "AccessDeniedException"
    assert bare.arn.endswith(":user/bare")


def test_accounts_have_their_own_users_and_regions(endpoint: Endpoint) -> None:
    deployment = endpoint.service.deployment
    if OTHER_ACCOUNT not in deployment.accounts():
        deployment.add_account(OTHER_ACCOUNT)
    from kmscore.errors import AlreadyExistsException

    with pytest.raises(AlreadyExistsException):
        deployment.add_account(OTHER_ACCOUNT)
    with pytest.raises(ValueError, match="12 digits"):
        deployment.add_account("12")
    deployment.add_region("us-west-2", OTHER_ACCOUNT)
    assert deployment.regions(OTHER_ACCOUNT) == sorted([REGION, "us-west-2"])
    others = deployment.principals_of(OTHER_ACCOUNT)
    assert others is not None
    _, ak, secret = others.add("west", policy=_identity(["kms:*"]))
    kms: Any = endpoint.client(ak, secret, region="us-west-2")
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    assert arn.startswith(f"arn:aws:kms:us-west-2:{OTHER_ACCOUNT}:key/")
    # The home account's admin is not a user of the other account.
    home_users = deployment.principals_of(ACCOUNT)
    assert home_users.by_arn(f"arn:aws:iam::{OTHER_ACCOUNT}:user/west") is None


def test_regions_of_a_postgresql_deployment_are_schemas_of_its_database(
    tmp_path: Path, pg_url: str
) -> None:
    from kmscore.service import open_service

    home = open_service(tmp_path / "node1", store=pg_url, audit=False)
    try:
        deployment = Deployment(home)
        west = deployment.add_region("us-west-2")
        from kmscore.model.caller import Caller
        from kmscore.operations import dispatch

        root = Caller(arn=f"arn:aws:iam::{home.account}:root", account=home.account,
                      principal_id=home.account)  # fmt: skip
        arn = dispatch(west, "CreateKey", {}, root)["KeyMetadata"]["Arn"]
        assert arn.split(":")[3] == "us-west-2"
        assert home.store.get_key(arn.rsplit("/", 1)[1]) is None  # not in the home's schema
        deployment.close()
    finally:
        home.close()
    # Another node of the fleet (its own data dir, the same database) sees the Region.
    import shutil

    node2 = tmp_path / "node2"
    node2.mkdir(mode=0o700)
    for name in ("root.key", "store.url"):
        if (tmp_path / "node1" / name).exists():
            shutil.copy2(tmp_path / "node1" / name, node2 / name)
    other = open_service(node2, audit=False)
    try:
        found = Deployment(other).service(other.account, "us-west-2")
        assert found is not None
        assert found.store.get_key(arn.rsplit("/", 1)[1]) is not None
    finally:
        if other.deployment is not None:
            other.deployment.close()
        other.close()
