"""User administration through the dispatcher: authorized, audited, validated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import expect
from service_helpers.access import ROOT, identity, user

from kmscore.audit import verify
from kmscore.audit.chainer import drain_journals
from kmscore.client import LocalKMS


@pytest.fixture
def root(tmp_path: Path) -> Iterator[LocalKMS]:
    with LocalKMS(tmp_path / "kms", principal=ROOT) as kms:
        yield kms


def records(data_dir: Path) -> list[dict[str, Any]]:
    drain_journals(data_dir)
    lines = []
    for segment in sorted((data_dir / "audit").glob("segment-*.jsonl")):
        lines += [json.loads(line) for line in segment.read_text().splitlines()]
    return lines


def trail_text(data_dir: Path) -> str:
    drain_journals(data_dir)
    return "".join(p.read_text() for p in (data_dir / "audit").glob("segment-*.jsonl"))


def test_the_root_manages_users_and_every_change_is_recorded(root: LocalKMS) -> None:
    data_dir = root.service.data_dir
    created = root.create_user(
        UserName="alice",
        Uid=4242,
        PolicyDocument=identity("kms:Encrypt"),
        Tags=[{"Key": "team", "Value": "payments"}],
    )
    secret = created["AccessKey"]["SecretAccessKey"]
    assert created["User"]["Arn"] == user("alice")
    assert created["User"]["Uid"] == 4242
    assert created["User"]["AccessKeyIds"] == [created["AccessKey"]["AccessKeyId"]]
    found = root.service.principals.by_access_key(created["AccessKey"]["AccessKeyId"])
    assert found is not None and found[1] == secret.encode()
    root.tag_user(
        UserName="alice", Tags=[{"Key": "TEAM", "Value": "risk"}, {"Key": "x", "Value": "1"}]
    )
    root.untag_user(UserName="alice", TagKeys=["X", "absent"])
    (listed,) = [u for u in root.list_users()["Users"] if u["UserName"] == "alice"]
    assert listed["Tags"] == [{"Key": "TEAM", "Value": "risk"}]
    assert listed["HasIdentityPolicy"] is True
    root.delete_user(UserName="alice")
    assert "alice" not in {u["UserName"] for u in root.list_users()["Users"]}
    assert root.service.principals.by_access_key(created["AccessKey"]["AccessKeyId"]) is None
    root.close()
    events = [r for r in records(data_dir) if r["eventSource"] == "iam.amazonaws.com"]
    assert [e["eventName"] for e in events] == [
        "CreateUser", "TagUser", "UntagUser", "ListUsers", "DeleteUser", "ListUsers",
    ]  # fmt: skip
    assert all(e["userIdentity"]["type"] == "Root" for e in events)
    assert events[0]["requestParameters"]["userName"] == "alice"
    assert events[0]["responseElements"]["accessKey"]["accessKeyId"]
    assert "secretAccessKey" not in events[0]["responseElements"]["accessKey"]
    assert secret not in trail_text(data_dir)
    report = verify(data_dir)  # raises if the chain or a checkpoint is broken
    assert report.records == len(records(data_dir)) and report.unsealed == 0


def test_an_admin_with_kms_star_may_not_manage_users(tmp_path: Path) -> None:
    with LocalKMS(tmp_path / "kms") as admin:  # the admin init made: kms:* only
        admin.create_key()
        expect("AccessDeniedException", admin.create_user, UserName="mallory")
        expect("AccessDeniedException", admin.list_users)
        assert admin.service.store.get_principal("mallory") is None
    denied = [r for r in records(tmp_path / "kms") if r.get("errorCode")]
    assert [r["eventName"] for r in denied] == ["CreateUser", "ListUsers"]
    assert "iam:CreateUser" in denied[0]["errorMessage"]


def test_a_user_allowed_iam_create_user_may(root: LocalKMS, tmp_path: Path) -> None:
    root.create_user(UserName="ops", PolicyDocument=identity("iam:CreateUser", "iam:ListUsers"))
    with LocalKMS(tmp_path / "kms", principal=user("ops")) as ops:
        ops.create_user(UserName="bob")
        assert {"ops", "bob"} <= {u["UserName"] for u in ops.list_users()["Users"]}
        expect("AccessDeniedException", ops.delete_user, UserName="bob")
    assert root.service.store.get_principal("bob") is not None


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"UserName": ""}, "ValidationException"),
        ({"UserName": "a" * 65}, "ValidationException"),
        ({"UserName": "bad name"}, "ValidationException"),
        ({"UserName": "u", "Uid": -1}, "ValidationException"),
        ({"UserName": "u", "PolicyDocument": "{not json"}, "MalformedPolicyDocumentException"),
        ({"UserName": "u", "Tags": [{"Key": "aws:x", "Value": "1"}]}, "TagException"),
        (
            {"UserName": "u", "Tags": [{"Key": "k", "Value": "1"}, {"Key": "K", "Value": "2"}]},
            "TagException",
        ),
        ({"UserName": "taken"}, "AlreadyExistsException"),
    ],
)
def test_bad_create_user_changes_nothing(
    root: LocalKMS, request_: dict[str, Any], code: str
) -> None:
    root.create_user(UserName="taken")
    before = root.list_users()["Users"]
    err = expect(code, root.create_user, **request_)
    assert err.message
    assert root.list_users()["Users"] == before


def test_missing_users(root: LocalKMS) -> None:
    expect("NotFoundException", root.delete_user, UserName="ghost")
    expect("NotFoundException", root.tag_user, UserName="ghost", Tags=[{"Key": "a", "Value": "b"}])
    expect("NotFoundException", root.untag_user, UserName="ghost", TagKeys=["a"])
