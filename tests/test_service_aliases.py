"""Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from service_helpers import (
    OTHER_ACCOUNT,
    OTHER_REGION,
    Clock,
    alias_arn,
    all_pages,
    db_rows,
    expect,
    inject_key,
    key_arn,
    new_key,
    open_kms,
)

from kmscore.client import LocalKMS


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kms(tmp_path: Path, clock: Clock) -> LocalKMS:
    with open_kms(tmp_path / "kms", clock) as k:
        yield k


def _names(kms: LocalKMS, **request: object) -> list[str]:
    return [a["AliasName"] for a in all_pages(kms.list_aliases, "Aliases", 1000, **request)[0]]


def test_create_alias_and_use_it(kms: LocalKMS, clock: Clock) -> None:
    key_id = new_key(kms)
    assert kms.create_alias(AliasName="alias/app-1_x/y", TargetKeyId=key_id) == {}
    (entry,) = kms.list_aliases()["Aliases"]
    assert entry == {
        "AliasName": "alias/app-1_x/y",
        "AliasArn": alias_arn("alias/app-1_x/y"),
        "TargetKeyId": key_id,
        "CreationDate": clock.now,
        "LastUpdatedDate": clock.now,
    }
    assert entry["CreationDate"].tzinfo is not None
    md = kms.describe_key(KeyId="alias/app-1_x/y")["KeyMetadata"]
    assert md["KeyId"] == key_id


@pytest.mark.parametrize("target", ["id", "arn"])
def test_create_alias_targets_by_id_or_arn(kms: LocalKMS, target: str) -> None:
    key_id = new_key(kms)
    ref = key_id if target == "id" else key_arn(key_id)
    kms.create_alias(AliasName="alias/t", TargetKeyId=ref)
    assert kms.describe_key(KeyId="alias/t")["KeyMetadata"]["KeyId"] == key_id


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("app", "ValidationException"),  # no alias/ prefix: AWS's message, tested below
        ("aliases/app", "ValidationException"),
        ("alias/", "InvalidAliasNameException"),  # empty name after the prefix
        ("alias/a:b", "InvalidAliasNameException"),  # ':' passes the model pattern only
        ("alias/aws/app", "NotAuthorizedException"),  # reserved for AWS managed keys
        ("alias/AWS/app", "NotAuthorizedException"),
        ("alias/aws/", "NotAuthorizedException"),
        # Characters outside the API model's pattern fail request validation
        # first, as they do at AWS.
        ("alias/a b", "ValidationException"),
        ("alias/é", "ValidationException"),
        ("alias/a.b", "ValidationException"),
        ("", "ValidationException"),
        ("alias/" + "a" * 251, "ValidationException"),  # 257 characters
    ],
)
def test_bad_alias_names(kms: LocalKMS, name: str, code: str) -> None:
    key_id = new_key(kms)
    expect(code, kms.create_alias, AliasName=name, TargetKeyId=key_id)
    assert kms.list_aliases()["Aliases"] == []


def test_alias_messages_are_aws_words(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    err = expect("ValidationException", kms.create_alias, AliasName="app", TargetKeyId=key_id)
    assert err.message == (
        'Alias must start with the prefix "alias/". Please see '
        "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
    )
    err = expect("ValidationException", kms.create_alias, AliasName="alias/a b", TargetKeyId=key_id)
    assert err.message == (
        "1 validation error detected: Value 'alias/a b' at 'aliasName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
    )
    expect("ValidationException", kms.delete_alias, AliasName="app")
    expect("NotAuthorizedException", kms.update_alias, AliasName="alias/aws/x", TargetKeyId=key_id)


def test_longest_alias_name(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    name = "alias/" + "a" * 250
    kms.create_alias(AliasName=name, TargetKeyId=key_id)
    assert _names(kms) == [name]


def test_alias_names_aws_prefix_only_reserved_as_a_path(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/awsome", TargetKeyId=key_id)
    assert _names(kms) == ["alias/awsome"]


def test_create_alias_errors(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    other = new_key(kms)
    kms.create_alias(AliasName="alias/taken", TargetKeyId=key_id)
    expect("AlreadyExistsException", kms.create_alias, AliasName="alias/taken", TargetKeyId=other)
    assert kms.describe_key(KeyId="alias/taken")["KeyMetadata"]["KeyId"] == key_id
    expect(
        "NotFoundException", kms.create_alias, AliasName="alias/x", TargetKeyId=str(uuid.uuid4())
    )
    expect(
        "NotFoundException",
        kms.create_alias,
        AliasName="alias/x",
        TargetKeyId=key_arn(key_id, region=OTHER_REGION),
    )
    # An alias cannot point at an alias: TargetKeyId takes a key id or ARN only.
    expect("NotFoundException", kms.create_alias, AliasName="alias/x", TargetKeyId="alias/taken")
    expect(
        "NotFoundException",
        kms.create_alias,
        AliasName="alias/x",
        TargetKeyId=alias_arn("alias/taken"),
    )
    expect("ValidationException", kms.create_alias, AliasName="alias/x")
    expect("ValidationException", kms.create_alias, TargetKeyId=key_id)
    expect("ValidationException", kms.create_alias, AliasName="alias/x", TargetKeyId=key_id, X=1)
    assert _names(kms) == ["alias/taken"]


def test_create_alias_key_states(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.disable_key(KeyId=key_id)
    kms.create_alias(AliasName="alias/disabled", TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id)
    expect(
        "KMSInvalidStateException", kms.create_alias, AliasName="alias/pending", TargetKeyId=key_id
    )
    assert _names(kms) == ["alias/disabled"]


def test_fifty_aliases_per_key(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    for i in range(50):
        kms.create_alias(AliasName=f"alias/a{i:02}", TargetKeyId=key_id)
    expect("LimitExceededException", kms.create_alias, AliasName="alias/b", TargetKeyId=key_id)
    assert len(_names(kms)) == 50
    kms.create_alias(AliasName="alias/b", TargetKeyId=new_key(kms))


def test_update_alias(kms: LocalKMS, clock: Clock) -> None:
    first, second = new_key(kms), new_key(kms)
    created = clock.now
    kms.create_alias(AliasName="alias/moving", TargetKeyId=first)
    blob = kms.encrypt(KeyId="alias/moving", Plaintext=b"p")["CiphertextBlob"]
    clock.advance(hours=1)
    assert kms.update_alias(AliasName="alias/moving", TargetKeyId=key_arn(second)) == {}
    assert kms.describe_key(KeyId="alias/moving")["KeyMetadata"]["KeyId"] == second
    (entry,) = kms.list_aliases()["Aliases"]
    assert entry["TargetKeyId"] == second
    assert entry["CreationDate"] == created and entry["LastUpdatedDate"] == clock.now
    # Old ciphertext still names its own key.
    assert kms.decrypt(CiphertextBlob=blob)["KeyId"] == key_arn(first)
    assert kms.encrypt(KeyId="alias/moving", Plaintext=b"p")["KeyId"] == key_arn(second)


def test_update_alias_errors(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/a", TargetKeyId=key_id)
    expect("NotFoundException", kms.update_alias, AliasName="alias/none", TargetKeyId=key_id)
    expect(
        "NotFoundException", kms.update_alias, AliasName="alias/a", TargetKeyId=str(uuid.uuid4())
    )
    expect(
        "NotFoundException",
        kms.update_alias,
        AliasName="alias/a",
        TargetKeyId=key_arn(key_id, account=OTHER_ACCOUNT),
    )
    expect("NotFoundException", kms.update_alias, AliasName="alias/a", TargetKeyId="alias/a")
    # An alias keeps pointing at keys of the same key spec and usage.
    mac = inject_key(kms, key_id, key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC")
    expect("ValidationException", kms.update_alias, AliasName="alias/a", TargetKeyId=mac)
    expect("ValidationException", kms.update_alias, AliasName="a", TargetKeyId=key_id)
    expect("NotAuthorizedException", kms.update_alias, AliasName="alias/aws/x", TargetKeyId=key_id)
    pending = new_key(kms)
    kms.schedule_key_deletion(KeyId=pending)
    expect("KMSInvalidStateException", kms.update_alias, AliasName="alias/a", TargetKeyId=pending)
    assert kms.describe_key(KeyId="alias/a")["KeyMetadata"]["KeyId"] == key_id


def test_delete_alias(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/a", TargetKeyId=key_id)
    kms.create_alias(AliasName="alias/b", TargetKeyId=key_id)
    assert kms.delete_alias(AliasName="alias/a") == {}
    assert _names(kms) == ["alias/b"]
    expect("NotFoundException", kms.describe_key, KeyId="alias/a")
    expect("NotFoundException", kms.delete_alias, AliasName="alias/a")
    expect("ValidationException", kms.delete_alias, AliasName="b")
    expect("ValidationException", kms.delete_alias)
    # The name is free again, and the key is untouched.
    kms.create_alias(AliasName="alias/a", TargetKeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_delete_alias_of_pending_deletion_key(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/a", TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id)
    kms.delete_alias(AliasName="alias/a")
    assert _names(kms) == []


def test_list_aliases_pages_and_filter(kms: LocalKMS) -> None:
    k1, k2 = new_key(kms), new_key(kms)
    names1 = [f"alias/one-{i}" for i in range(5)]
    names2 = [f"alias/two-{i}" for i in range(3)]
    for n in names1:
        kms.create_alias(AliasName=n, TargetKeyId=k1)
    for n in names2:
        kms.create_alias(AliasName=n, TargetKeyId=k2)
    for limit in (1, 2, 3, 8, 1000):
        everything, pages = all_pages(kms.list_aliases, "Aliases", limit)
        assert [a["AliasName"] for a in everything] == sorted(names1 + names2)
        assert pages == max(1, -(-8 // limit))
        mine, _ = all_pages(kms.list_aliases, "Aliases", limit, KeyId=k1)
        assert [a["AliasName"] for a in mine] == sorted(names1)
        assert {a["TargetKeyId"] for a in mine} == {k1}
    assert _names(kms, KeyId=key_arn(k2)) == sorted(names2)
    assert _names(kms, KeyId=new_key(kms)) == []


def test_list_aliases_errors(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/a", TargetKeyId=key_id)
    expect("NotFoundException", kms.list_aliases, KeyId=str(uuid.uuid4()))
    expect("NotFoundException", kms.list_aliases, KeyId="alias/a")
    expect("ValidationException", kms.list_aliases, Limit=0)
    expect("ValidationException", kms.list_aliases, Limit=1001)
    expect("InvalidMarkerException", kms.list_aliases, Marker="garbage!")
    expect("ValidationException", kms.list_aliases, Marker="")


def test_alias_rows_are_in_the_store(kms: LocalKMS, tmp_path: Path) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/stored", TargetKeyId=key_id)
    rows = db_rows(tmp_path / "kms", "SELECT alias_name, key_id FROM aliases")
    assert rows == [("alias/stored", key_id)]


def test_alias_of_expired_key_is_not_listed(kms: LocalKMS, clock: Clock) -> None:
    key_id = new_key(kms)
    kms.create_alias(AliasName="alias/doomed", TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    clock.advance(days=8)
    assert _names(kms) == []


def test_alias_cache_sees_delete_and_recreate(kms: LocalKMS) -> None:
    k1, k2 = new_key(kms), new_key(kms)
    kms.create_alias(AliasName="alias/c", TargetKeyId=k1)
    assert kms.describe_key(KeyId="alias/c")["KeyMetadata"]["KeyId"] == k1
    kms.delete_alias(AliasName="alias/c")
    kms.create_alias(AliasName="alias/c", TargetKeyId=k2)
    assert kms.describe_key(KeyId="alias/c")["KeyMetadata"]["KeyId"] == k2
    assert kms.encrypt(KeyId="alias/c", Plaintext=b"x")["KeyId"] == key_arn(k2)
