"""The global and KMS condition keys a request carries, end to end.

ABAC as the AWS KMS developer guide describes it ("ABAC for AWS KMS", "Use tags
to control access", "Use aliases to control access"): ``aws:ResourceTag/*``,
``aws:RequestTag/*``, ``aws:TagKeys``, ``aws:PrincipalTag/*``,
``kms:RequestAlias`` and ``kms:ResourceAliases``; and the request's own keys:
``aws:SourceIp``, ``aws:CurrentTime``, ``aws:PrincipalType``, ``aws:userid``,
``aws:RequestedRegion``, ``kms:ViaService``. AWS may take five minutes for a
tag or alias change to reach authorization; here it counts at once (within
50 ms for another process on the data dir).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from service_helpers import expect
from service_helpers.access import ACCOUNT, settle, user
from test_awsjson_support import running_endpoint

from kmscore.client import LocalKMS

ALICE = user("alice")


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: str | list[str], condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def deny(actions: str | list[str], condition: dict[str, Any]) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": actions, "Resource": "*", "Condition": condition}


@pytest.fixture
def key(admin: LocalKMS) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


# --- aws:ResourceTag ---------------------------------------------------------------------


def test_resource_tag_allows_and_untagging_takes_it_back(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    alice = as_user(
        "alice",
        policy(allow("kms:Encrypt", {"StringEquals": {"aws:ResourceTag/Project": "alpha"}})),
    )
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "Project", "TagValue": "alpha"}])
    settle()
    alice.encrypt(KeyId=key, Plaintext=b"x")
    # The tag key in the condition is case-insensitive, its value is not.
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "Project", "TagValue": "Alpha"}])
    settle()
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")
    admin.untag_resource(KeyId=key, TagKeys=["Project"])
    settle()
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")


def test_resource_tag_deny_counts_at_once_in_the_same_process(admin: LocalKMS, key: str) -> None:
    admin.put_key_policy(
        KeyId=key,
        PolicyName="default",
        Policy=policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:resourcetag/frozen": "true"}},
            },
        ),
    )
    admin.encrypt(KeyId=key, Plaintext=b"x")  # a cached Allow...
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "Frozen", "TagValue": "true"}])
    expect("AccessDeniedException", admin.encrypt, KeyId=key, Plaintext=b"x")  # ...is gone
    admin.untag_resource(KeyId=key, TagKeys=["Frozen"])
    admin.encrypt(KeyId=key, Plaintext=b"x")


# --- aws:RequestTag and aws:TagKeys ------------------------------------------------------------


def test_request_tags_and_tag_keys(as_user: Callable[..., LocalKMS], key: str) -> None:
    alice = as_user(
        "alice",
        policy(
            allow(
                ["kms:TagResource", "kms:CreateKey"],
                {
                    "StringEquals": {"aws:RequestTag/Project": "alpha"},
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["Project", "Owner"]},
                },
            ),
            allow("kms:UntagResource", {"ForAllValues:StringEquals": {"aws:TagKeys": ["Owner"]}}),
        ),
    )
    alice.tag_resource(
        KeyId=key,
        Tags=[{"TagKey": "Project", "TagValue": "alpha"}, {"TagKey": "Owner", "TagValue": "a"}],
    )
    for tags in (
        [{"TagKey": "Project", "TagValue": "beta"}],
        [{"TagKey": "Project", "TagValue": "alpha"}, {"TagKey": "Cost", "TagValue": "1"}],
        [{"TagKey": "Owner", "TagValue": "a"}],  # aws:RequestTag/Project absent
    ):
        expect("AccessDeniedException", alice.tag_resource, KeyId=key, Tags=tags)
    # CreateKey sees its Tags the same way.
    expect("AccessDeniedException", alice.create_key)
    made = alice.create_key(Tags=[{"TagKey": "Project", "TagValue": "alpha"}])
    assert made["KeyMetadata"]["KeyId"]
    alice.untag_resource(KeyId=key, TagKeys=["Owner"])
    expect("AccessDeniedException", alice.untag_resource, KeyId=key, TagKeys=["Project"])


# --- aws:PrincipalTag -------------------------------------------------------------------------


def test_principal_tag_matches_resource_tag(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    # The ABAC pattern of the IAM guide: a team may use its team's keys.
    alice = as_user(
        "alice",
        policy(
            allow(
                "kms:Encrypt",
                {"StringEquals": {"aws:ResourceTag/team": "${aws:PrincipalTag/team}"}},
            )
        ),
    )
    admin.tag_resource(KeyId=key, Tags=[{"TagKey": "team", "TagValue": "red"}])
    settle()
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")  # no tag yet
    admin.service.principals.set_tags("alice", {"Team": "red"})
    settle()
    alice.encrypt(KeyId=key, Plaintext=b"x")
    admin.service.principals.set_tags("alice", {"Team": "blue"})
    settle()
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")


def test_principal_tags_are_checked(admin: LocalKMS) -> None:
    admin.service.principals.add("bob", tags={"dept": "x"})
    expect("TagException", admin.service.principals.set_tags, "bob", {"aws:x": "1"})
    expect("TagException", admin.service.principals.set_tags, "bob", {"a": "1", "A": "2"})
    expect("TagException", admin.service.principals.set_tags, "bob", {"k" * 129: "1"})
    expect("TagException", admin.service.principals.add, "carol", tags={"bad\n": "1"})
    assert admin.service.store.get_principal("bob").tags == {"dept": "x"}  # type: ignore[union-attr]
    assert admin.service.store.get_principal("carol") is None


# --- kms:RequestAlias and kms:ResourceAliases ---------------------------------------------------


def test_request_alias(admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str) -> None:
    alice = as_user(
        "alice", policy(allow("kms:Encrypt", {"StringEquals": {"kms:RequestAlias": "alias/app"}}))
    )
    admin.create_alias(AliasName="alias/app", TargetKeyId=key)
    admin.create_alias(AliasName="alias/other", TargetKeyId=key)
    settle()
    alice.encrypt(KeyId="alias/app", Plaintext=b"x")
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/app"
    alice.encrypt(KeyId=arn, Plaintext=b"x")  # the alias ARN names the same alias
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")
    expect("AccessDeniedException", alice.encrypt, KeyId="alias/other", Plaintext=b"x")


def test_resource_aliases(admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str) -> None:
    alice = as_user(
        "alice",
        policy(
            allow(
                ["kms:Encrypt", "kms:DescribeKey"],
                {"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/proj-*"}},
            )
        ),
    )
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")
    admin.create_alias(AliasName="alias/proj-1", TargetKeyId=key)
    settle()
    alice.encrypt(KeyId=key, Plaintext=b"x")  # by key id: the key's aliases still count
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.update_alias(AliasName="alias/proj-1", TargetKeyId=other)
    settle()
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")
    alice.describe_key(KeyId=other)
    admin.delete_alias(AliasName="alias/proj-1")
    settle()
    expect("AccessDeniedException", alice.describe_key, KeyId=other)


# --- the request's own keys ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "allowed"),
    [
        ({"StringEquals": {"aws:PrincipalType": "User"}}, True),
        ({"StringEquals": {"aws:PrincipalType": "Account"}}, False),
        ({"StringEquals": {"aws:RequestedRegion": "us-east-1"}}, True),
        ({"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}, False),
        ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, True),
        ({"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, False),
        ({"Bool": {"aws:ViaAWSService": "false"}}, True),
        ({"StringLike": {"kms:ViaService": "*"}}, False),  # no AWS service calls this KMS
        ({"Null": {"aws:SourceIp": "true"}}, True),  # an in-process caller has no address
        ({"StringEquals": {"aws:PrincipalArn": ALICE}}, True),
        ({"StringEquals": {"aws:PrincipalAccount": "999988887777"}}, False),
    ],
)
def test_request_keys(
    as_user: Callable[..., LocalKMS], key: str, condition: dict[str, Any], allowed: bool
) -> None:
    alice = as_user("alice", policy(allow("kms:Encrypt", condition)))
    if allowed:
        alice.encrypt(KeyId=key, Plaintext=b"x")
    else:
        expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")


def test_userid_is_the_principal_id(
    as_user: Callable[..., LocalKMS], admin: LocalKMS, key: str
) -> None:
    admin.service.principals.add("alice")
    principal_id = admin.service.store.get_principal("alice").principal_id  # type: ignore[union-attr]
    admin.service.principals.set_policy(
        "alice", policy(allow("kms:Encrypt", {"StringEquals": {"aws:userid": principal_id}}))
    )
    alice = as_user("alice", add=False)
    alice.encrypt(KeyId=key, Plaintext=b"x")


def test_deny_unless_via_service_denies_direct_calls(
    as_user: Callable[..., LocalKMS], key: str
) -> None:
    # AWS's pattern: deny use outside a service. A direct call has no
    # kms:ViaService, so the negated operator holds and the Deny applies.
    alice = as_user(
        "alice",
        policy(
            allow("kms:Encrypt"),
            deny(
                "kms:Encrypt", {"StringNotEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}
            ),
        ),
    )
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")


def test_source_ip_over_http(tmp_path: Path) -> None:
    with running_endpoint(tmp_path / "kms") as endpoint:
        svc = endpoint.service
        key = endpoint.client().create_key()["KeyMetadata"]["KeyId"]
        _, near_id, near_secret = svc.principals.add(
            "near",
            policy=policy(allow("kms:Encrypt", {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}})),
        )
        _, far_id, far_secret = svc.principals.add(
            "far",
            policy=policy(allow("kms:Encrypt", {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
        )
        endpoint.client(near_id, near_secret).encrypt(KeyId=key, Plaintext=b"x")
        with pytest.raises(ClientError) as info:
            endpoint.client(far_id, far_secret).encrypt(KeyId=key, Plaintext=b"x")
        assert info.value.response["Error"]["Code"] == "AccessDeniedException"


# --- the remaining operation keys ----------------------------------------------------------------


def test_re_encrypt_on_same_key(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    alice = as_user(
        "alice",
        policy(
            allow(
                ["kms:ReEncryptFrom", "kms:ReEncryptTo"],
                {"Bool": {"kms:ReEncryptOnSameKey": "false"}},
            )
        ),
    )
    blob = admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    moved = alice.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other)
    assert moved["KeyId"].endswith(other)
    expect("AccessDeniedException", alice.re_encrypt, CiphertextBlob=blob, DestinationKeyId=key)


def test_bypass_policy_lockout_safety_check(as_user: Callable[..., LocalKMS], key: str) -> None:
    alice = as_user(
        "alice",
        policy(
            allow(["kms:PutKeyPolicy", "kms:CreateKey"]),
            deny(
                ["kms:PutKeyPolicy", "kms:CreateKey"],
                {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "true"}},
            ),
        ),
    )
    text = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    )
    alice.put_key_policy(KeyId=key, PolicyName="default", Policy=text)
    expect(
        "AccessDeniedException",
        alice.put_key_policy,
        KeyId=key,
        PolicyName="default",
        Policy=text,
        BypassPolicyLockoutSafetyCheck=True,
    )
    expect("AccessDeniedException", alice.create_key, BypassPolicyLockoutSafetyCheck=True)


def test_multi_region_key_type(as_user: Callable[..., LocalKMS]) -> None:
    alice = as_user(
        "alice",
        policy(allow("kms:CreateKey", {"StringEquals": {"kms:MultiRegionKeyType": "PRIMARY"}})),
    )
    made = alice.create_key(MultiRegion=True)
    assert made["KeyMetadata"]["MultiRegion"] is True
    expect("AccessDeniedException", alice.create_key)
