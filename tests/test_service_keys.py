"""Key lifecycle operations: CreateKey, DescribeKey, ListKeys, EnableKey,
DisableKey, UpdateKeyDescription, ScheduleKeyDeletion, CancelKeyDeletion, and
the deletion of a key (material and all) when its window ends.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from service_helpers import (
    ACCOUNT,
    REGION,
    Clock,
    all_pages,
    db_rows,
    expect,
    key_arn,
    new_key,
    open_kms,
    raw_files,
)

from kmscore.client import LocalKMS
from kmscore.service import CACHE_RECHECK_SECONDS


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kms(tmp_path: Path, clock: Clock) -> LocalKMS:
    with open_kms(tmp_path / "kms", clock) as k:
        yield k


def _key_count(kms: LocalKMS) -> int:
    return len(all_pages(kms.list_keys, "Keys", 1000)[0])


# --- CreateKey / DescribeKey ---------------------------------------------------------


def test_create_key_metadata(kms: LocalKMS, clock: Clock) -> None:
    md = kms.create_key(Description="payroll")["KeyMetadata"]
    key_id = md["KeyId"]
    assert uuid.UUID(key_id).version == 4 and str(uuid.UUID(key_id)) == key_id
    assert md["Arn"] == key_arn(key_id)
    assert md["AWSAccountId"] == ACCOUNT
    assert md["CreationDate"] == clock.now
    assert md["CreationDate"].tzinfo is not None
    assert md["Enabled"] is True
    assert md["KeyState"] == "Enabled"
    assert md["Description"] == "payroll"
    assert md["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert md["KeySpec"] == md["CustomerMasterKeySpec"] == "SYMMETRIC_DEFAULT"
    assert md["Origin"] == "AWS_KMS"
    assert md["KeyManager"] == "CUSTOMER"
    assert md["MultiRegion"] is False
    assert md["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert "DeletionDate" not in md and "PendingDeletionWindowInDays" not in md
    assert re.fullmatch(r"[0-9a-f]{64}", md["CurrentKeyMaterialId"])


def test_describe_key_matches_create_key(kms: LocalKMS) -> None:
    created = kms.create_key(Description="d")["KeyMetadata"]
    described = kms.describe_key(KeyId=created["KeyId"])["KeyMetadata"]
    assert described == created


def test_create_key_defaults(kms: LocalKMS) -> None:
    md = kms.create_key()["KeyMetadata"]
    assert md["Description"] == ""
    assert kms.list_resource_tags(KeyId=md["KeyId"])["Tags"] == []


def test_create_key_ids_are_unique(kms: LocalKMS) -> None:
    ids = {new_key(kms) for _ in range(20)}
    assert len(ids) == 20


def test_create_multi_region_key(kms: LocalKMS) -> None:
    md = kms.create_key(MultiRegion=True)["KeyMetadata"]
    assert re.fullmatch(r"mrk-[0-9a-f]{32}", md["KeyId"])
    assert md["MultiRegion"] is True
    assert md["Arn"] == key_arn(md["KeyId"])
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=b"multi")["CiphertextBlob"]
    out = kms.decrypt(CiphertextBlob=blob)
    assert out["Plaintext"] == b"multi" and out["KeyId"] == md["Arn"]


def test_create_key_with_tags(kms: LocalKMS) -> None:
    tags = [{"TagKey": "team", "TagValue": "payments"}, {"TagKey": "env", "TagValue": ""}]
    key_id = new_key(kms, Tags=tags)
    listed = kms.list_resource_tags(KeyId=key_id)["Tags"]
    assert sorted(listed, key=lambda t: t["TagKey"]) == sorted(tags, key=lambda t: t["TagKey"])


def test_create_key_symmetric_spellings(kms: LocalKMS) -> None:
    for request in (
        {"KeySpec": "SYMMETRIC_DEFAULT"},
        {"CustomerMasterKeySpec": "SYMMETRIC_DEFAULT"},
        {"KeyUsage": "ENCRYPT_DECRYPT"},
        {"Origin": "AWS_KMS"},
    ):
        md = kms.create_key(**request)["KeyMetadata"]
        assert md["KeySpec"] == "SYMMETRIC_DEFAULT"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        # SM2 exists in AWS (China Regions) but kmscore never serves it.
        ({"KeySpec": "SM2"}, "UnsupportedOperationException"),
        ({"CustomerMasterKeySpec": "SM2"}, "UnsupportedOperationException"),
        ({"Origin": "AWS_CLOUDHSM"}, "UnsupportedOperationException"),
        ({"Origin": "EXTERNAL_KEY_STORE"}, "UnsupportedOperationException"),
        ({"XksKeyId": "abc"}, "UnsupportedOperationException"),
        ({"CustomKeyStoreId": "cks-1234567890abcdef0"}, "CustomKeyStoreNotFoundException"),
        (
            {"KeySpec": "SYMMETRIC_DEFAULT", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT"},
            "ValidationException",
        ),
        ({"KeyUsage": "SIGN_VERIFY"}, "ValidationException"),
        ({"KeySpec": "AES_256"}, "ValidationException"),
        ({"KeyUsage": "ENCRYPT"}, "ValidationException"),
        ({"Origin": "ELSEWHERE"}, "ValidationException"),
        ({"Description": "x" * 8193}, "ValidationException"),
        ({"Policy": ""}, "ValidationException"),
        ({"MultiRegion": "yes"}, "ValidationException"),
        ({"Tags": [{"TagKey": "aws:owner", "TagValue": "x"}]}, "TagException"),
        ({"Tags": [{"TagKey": "AWS:owner", "TagValue": "x"}]}, "TagException"),
        (
            {"Tags": [{"TagKey": "k", "TagValue": "1"}, {"TagKey": "k", "TagValue": "2"}]},
            "TagException",
        ),
        ({"Tags": [{"TagKey": f"k{i}", "TagValue": ""} for i in range(51)]}, "TagException"),
        ({"Tags": [{"TagKey": "", "TagValue": "x"}]}, "ValidationException"),
        ({"Tags": [{"TagKey": "k" * 129, "TagValue": "x"}]}, "ValidationException"),
        ({"Tags": [{"TagKey": "k", "TagValue": "v" * 257}]}, "ValidationException"),
        ({"Tags": [{"TagKey": "k"}]}, "ValidationException"),
        ({"Tags": [{"TagKey": "k", "TagValue": "v", "Extra": "x"}]}, "ValidationException"),
        ({"Tags": {"TagKey": "k", "TagValue": "v"}}, "ValidationException"),
        ({"Colour": "blue"}, "ValidationException"),
    ],
)
def test_create_key_refusals_create_nothing(
    kms: LocalKMS, tmp_path: Path, request_: dict[str, object], code: str
) -> None:
    before = _key_count(kms)
    expect(code, kms.create_key, **request_)
    assert _key_count(kms) == before
    assert db_rows(tmp_path / "kms", "SELECT COUNT(*) FROM keys")[0][0] == before
    assert db_rows(tmp_path / "kms", "SELECT COUNT(*) FROM tags")[0][0] == 0


def test_create_key_fifty_tags_is_the_limit(kms: LocalKMS) -> None:
    tags = [{"TagKey": f"k{i:02}", "TagValue": str(i)} for i in range(50)]
    key_id = new_key(kms, Tags=tags)
    assert len(kms.list_resource_tags(KeyId=key_id)["Tags"]) == 50


def test_describe_key_errors(kms: LocalKMS) -> None:
    expect("NotFoundException", kms.describe_key, KeyId=str(uuid.uuid4()))
    expect("NotFoundException", kms.describe_key, KeyId="not-a-key-id")
    expect("ValidationException", kms.describe_key)
    expect("ValidationException", kms.describe_key, KeyId="")
    expect("ValidationException", kms.describe_key, KeyId=123)
    expect("ValidationException", kms.describe_key, KeyId="x" * 2049)
    key_id = new_key(kms)
    expect("ValidationException", kms.describe_key, KeyId=key_id, GrantTokens=["t"] * 11)
    expect("ValidationException", kms.describe_key, KeyId=key_id, GrantTokens=[""])
    # Ten tokens pass the shape; these are then checked as grant tokens.
    expect("InvalidGrantTokenException", kms.describe_key, KeyId=key_id, GrantTokens=["t"] * 10)


# --- ListKeys ------------------------------------------------------------------------


def test_list_keys_pages(kms: LocalKMS) -> None:
    ids = {new_key(kms) for _ in range(7)}
    for limit in (1, 2, 3, 7, 100, 1000):
        keys, pages = all_pages(kms.list_keys, "Keys", limit)
        assert [k["KeyId"] for k in keys] == sorted(ids)
        assert all(k["KeyArn"] == key_arn(k["KeyId"]) for k in keys)
        assert pages == max(1, -(-7 // limit))
    first = kms.list_keys(Limit=3)
    assert first["Truncated"] is True and len(first["Keys"]) == 3
    exact = kms.list_keys(Limit=7)
    assert exact["Truncated"] is False and "NextMarker" not in exact


def test_list_keys_default_limit_is_100(kms: LocalKMS) -> None:
    for _ in range(101):
        new_key(kms)
    page = kms.list_keys()
    assert len(page["Keys"]) == 100 and page["Truncated"] is True
    rest = kms.list_keys(Marker=page["NextMarker"])
    assert len(rest["Keys"]) == 1 and rest["Truncated"] is False


def test_list_keys_empty(kms: LocalKMS) -> None:
    assert kms.list_keys() == {"Keys": [], "Truncated": False}


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"Limit": 0}, "ValidationException"),
        ({"Limit": 1001}, "ValidationException"),
        ({"Limit": "10"}, "ValidationException"),
        ({"Limit": True}, "ValidationException"),
        ({"Marker": ""}, "ValidationException"),
        ({"Marker": "x" * 1025}, "ValidationException"),
        ({"Marker": "not a marker"}, "InvalidMarkerException"),
        ({"Marker": "bTE"}, "InvalidMarkerException"),  # bad padding
        ({"Marker": "Zm9vYmFy"}, "InvalidMarkerException"),  # base64 of "foobar"
        ({"Marker": "//79"}, "InvalidMarkerException"),  # not UTF-8
    ],
)
def test_list_keys_refusals(kms: LocalKMS, request_: dict[str, object], code: str) -> None:
    expect(code, kms.list_keys, **request_)


def test_list_keys_marker_is_opaque_but_stable(kms: LocalKMS) -> None:
    for _ in range(4):
        new_key(kms)
    page = kms.list_keys(Limit=2)
    again = kms.list_keys(Limit=2, Marker=page["NextMarker"])
    twice = kms.list_keys(Limit=2, Marker=page["NextMarker"])
    assert again == twice
    assert {k["KeyId"] for k in again["Keys"]}.isdisjoint(k["KeyId"] for k in page["Keys"])


# --- EnableKey / DisableKey / UpdateKeyDescription ------------------------------------


def test_disable_and_enable(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    assert kms.disable_key(KeyId=key_id) == {}
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "Disabled" and md["Enabled"] is False
    assert kms.disable_key(KeyId=key_id) == {}  # idempotent
    assert kms.enable_key(KeyId=key_id) == {}
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "Enabled" and md["Enabled"] is True
    assert kms.enable_key(KeyId=key_id) == {}


def test_state_changes_are_durable(tmp_path: Path, clock: Clock) -> None:
    with open_kms(tmp_path, clock) as kms:
        key_id = new_key(kms)
        kms.disable_key(KeyId=key_id)
    with open_kms(tmp_path, clock) as kms:
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"


def test_enable_disable_errors(kms: LocalKMS) -> None:
    for op in (kms.enable_key, kms.disable_key):
        expect("NotFoundException", op, KeyId=str(uuid.uuid4()))
        expect("ValidationException", op)
        expect("ValidationException", op, KeyId="k", Extra=1)
    key_id = new_key(kms)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    expect("KMSInvalidStateException", kms.enable_key, KeyId=key_id)
    expect("KMSInvalidStateException", kms.disable_key, KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_update_key_description(kms: LocalKMS) -> None:
    key_id = new_key(kms, Description="old")
    assert kms.update_key_description(KeyId=key_id, Description="new") == {}
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "new"
    kms.update_key_description(KeyId=key_id, Description="")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == ""
    kms.disable_key(KeyId=key_id)
    kms.update_key_description(KeyId=key_id, Description="while disabled")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "while disabled"


def test_update_key_description_errors(kms: LocalKMS) -> None:
    key_id = new_key(kms, Description="keep")
    expect("ValidationException", kms.update_key_description, KeyId=key_id)
    expect("ValidationException", kms.update_key_description, KeyId=key_id, Description=5)
    expect("ValidationException", kms.update_key_description, KeyId=key_id, Description="x" * 8193)
    expect(
        "NotFoundException", kms.update_key_description, KeyId=str(uuid.uuid4()), Description="x"
    )
    kms.schedule_key_deletion(KeyId=key_id)
    expect("KMSInvalidStateException", kms.update_key_description, KeyId=key_id, Description="x")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "keep"


# --- ScheduleKeyDeletion / CancelKeyDeletion ------------------------------------------


def test_schedule_key_deletion_default_window(kms: LocalKMS, clock: Clock) -> None:
    key_id = new_key(kms)
    out = kms.schedule_key_deletion(KeyId=key_id)
    assert out == {
        "KeyId": key_arn(key_id),
        "DeletionDate": clock.now + timedelta(days=30),
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": 30,
    }
    assert out["DeletionDate"].tzinfo is not None
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "PendingDeletion" and md["Enabled"] is False
    assert md["DeletionDate"] == clock.now + timedelta(days=30)
    assert md["PendingDeletionWindowInDays"] == 30


@pytest.mark.parametrize("days", [7, 8, 29, 30])
def test_schedule_key_deletion_windows(kms: LocalKMS, clock: Clock, days: int) -> None:
    key_id = new_key(kms)
    out = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=days)
    assert out["PendingWindowInDays"] == days
    assert out["DeletionDate"] == clock.now + timedelta(days=days)


@pytest.mark.parametrize("days", [-1, 0, 1, 6, 31, 365, 366, "7", 7.0, True])
def test_schedule_key_deletion_bad_windows(kms: LocalKMS, days: object) -> None:
    key_id = new_key(kms)
    err = expect(
        "ValidationException", kms.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=days
    )
    assert "pendingWindowInDays" in err.message
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_schedule_key_deletion_from_disabled_and_twice(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.disable_key(KeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=10)
    expect("KMSInvalidStateException", kms.schedule_key_deletion, KeyId=key_id)
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["PendingDeletionWindowInDays"] == 10


def test_cancel_key_deletion_returns_to_disabled(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert kms.cancel_key_deletion(KeyId=key_id) == {"KeyId": key_arn(key_id)}
    md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert md["KeyState"] == "Disabled" and md["Enabled"] is False
    assert "DeletionDate" not in md and "PendingDeletionWindowInDays" not in md
    expect("KMSInvalidStateException", kms.cancel_key_deletion, KeyId=key_id)
    kms.enable_key(KeyId=key_id)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"alive")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"alive"


def test_cancel_key_deletion_errors(kms: LocalKMS) -> None:
    expect("NotFoundException", kms.cancel_key_deletion, KeyId=str(uuid.uuid4()))
    key_id = new_key(kms)
    expect("KMSInvalidStateException", kms.cancel_key_deletion, KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_cancel_just_before_the_window_ends(kms: LocalKMS, clock: Clock) -> None:
    key_id = new_key(kms)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    clock.advance(days=7, seconds=-1)
    kms.run_maintenance()
    kms.cancel_key_deletion(KeyId=key_id)
    clock.advance(days=30)
    kms.run_maintenance()
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"


def _material_and_rows(kms: LocalKMS, data_dir: Path, key_id: str) -> list[bytes]:
    wrapped = [m.wrapped for m in kms.service.store.list_materials(key_id)]
    assert wrapped
    return wrapped


def _assert_gone(data_dir: Path, key_id: str, wrapped: list[bytes]) -> None:
    for table in ("keys", "key_materials", "aliases", "tags"):
        rows = db_rows(data_dir, f"SELECT COUNT(*) FROM {table} WHERE key_id = ?", (key_id,))
        assert rows[0][0] == 0, f"{table} still holds rows of the deleted key"
    files = raw_files(data_dir)
    assert "kms.db" in files
    for name, data in files.items():
        for w in wrapped:
            # Any 16-byte window of the wrapped material would betray a copy.
            assert w[12:28] not in data, f"wrapped material left in {name}"


@pytest.mark.parametrize("how", ["describe", "maintenance", "reopen", "listkeys", "peer"])
def test_key_is_deleted_after_the_window(tmp_path: Path, clock: Clock, how: str) -> None:
    data_dir = tmp_path / "kms"
    kms = open_kms(data_dir, clock)
    # Another service (its own SQLite connection) has the store open and
    # has read the key; deletion must still leave no copy in the WAL.
    peer = open_kms(data_dir, clock)
    keep = new_key(kms)
    key_id = new_key(kms, Tags=[{"TagKey": "t", "TagValue": "v"}], Description="doomed")
    kms.create_alias(AliasName="alias/doomed", TargetKeyId=key_id)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"gone soon")["CiphertextBlob"]
    kms.rotate_key_on_demand(KeyId=key_id)
    kms.encrypt(KeyId=key_id, Plaintext=b"v2")
    wrapped = _material_and_rows(kms, data_dir, key_id)
    assert len(wrapped) == 2
    assert peer.decrypt(CiphertextBlob=blob)["Plaintext"] == b"gone soon"
    deletion = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["DeletionDate"]
    clock.now = deletion - timedelta(microseconds=1)
    kms.run_maintenance()
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    expect("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)
    clock.now = deletion
    if how == "describe":
        expect("NotFoundException", kms.describe_key, KeyId=key_id)
    elif how == "maintenance":
        kms.run_maintenance()
    elif how == "listkeys":
        assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [keep]
    elif how == "peer":
        # The peer learns of the state change within the cache recheck time.
        time.sleep(2 * CACHE_RECHECK_SECONDS)
        expect("NotFoundException", peer.decrypt, CiphertextBlob=blob)
    else:
        kms.close()
        kms = open_kms(data_dir, clock)  # opening runs maintenance
    _assert_gone(data_dir, key_id, wrapped)
    expect("NotFoundException", kms.describe_key, KeyId=key_id)
    expect("NotFoundException", kms.describe_key, KeyId="alias/doomed")
    expect("NotFoundException", kms.decrypt, CiphertextBlob=blob)
    expect("NotFoundException", kms.cancel_key_deletion, KeyId=key_id)
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [keep]
    assert kms.list_aliases()["Aliases"] == []
    time.sleep(2 * CACHE_RECHECK_SECONDS)
    expect("NotFoundException", peer.decrypt, CiphertextBlob=blob)
    peer.close()
    kms.close()
    with open_kms(data_dir, clock) as again:
        expect("NotFoundException", again.describe_key, KeyId=key_id)
        assert again.describe_key(KeyId=keep)["KeyMetadata"]["KeyState"] == "Enabled"


def test_expired_key_is_not_listed(kms: LocalKMS, clock: Clock) -> None:
    keep = new_key(kms)
    doomed = new_key(kms)
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    clock.advance(days=8)
    # No maintenance has run yet: ListKeys must still not show a key that
    # DescribeKey says does not exist.
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [keep]
    expect("NotFoundException", kms.describe_key, KeyId=doomed)


def test_datetimes_are_aware_and_round_trip(tmp_path: Path) -> None:
    clock = Clock(datetime.fromisoformat("2024-02-29T23:59:59.123456+00:00"))
    with open_kms(tmp_path, clock) as kms:
        key_id = new_key(kms)
    with open_kms(tmp_path, clock) as kms:
        md = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert md["CreationDate"].tzinfo is not None
        assert abs(md["CreationDate"] - clock.now) < timedelta(microseconds=2)


def test_region_and_account_are_fixed_at_init(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        key_id = new_key(kms)
    with LocalKMS(tmp_path) as kms:  # region and account come from the data dir
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"] == key_arn(key_id)
    with pytest.raises(ValueError, match="region"):
        LocalKMS(tmp_path, region="ap-south-1")
    with pytest.raises(ValueError, match="account"):
        LocalKMS(tmp_path, account="000000000000")
    with pytest.raises(ValueError):
        LocalKMS(tmp_path / "new", region="nowhere")
    assert REGION in key_arn(key_id)
