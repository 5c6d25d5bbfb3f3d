"""GetKeyLastUsage, derived from the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from service_helpers import expect, key_arn, open_kms

from kmscore.client import LocalKMS


@pytest.fixture
def kms(tmp_path: Path) -> Iterator[LocalKMS]:
    with open_kms(tmp_path / "kms") as k:
        yield k


def test_a_new_key_has_no_last_usage(kms: LocalKMS) -> None:
    md = kms.create_key()["KeyMetadata"]
    out = kms.get_key_last_usage(KeyId=md["KeyId"])
    assert out["KeyId"] == md["Arn"]
    assert out["KeyLastUsage"] == {}
    assert out["KeyCreationDate"] == md["CreationDate"] == out["TrackingStartDate"]
    # Management calls are not cryptographic use.
    kms.describe_key(KeyId=md["KeyId"])
    kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "a", "TagValue": "b"}])
    assert kms.get_key_last_usage(KeyId=md["KeyId"])["KeyLastUsage"] == {}


def test_last_successful_crypto_call_counts(kms: LocalKMS) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"a": "b"})["CiphertextBlob"]
    first = kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]
    assert first["Operation"] == "Encrypt"
    assert len(first["CloudTrailEventId"]) == 36 and first["KmsRequestId"]
    # A failed call does not count.
    expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob)
    assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"] == first
    kms.generate_data_keys(KeyId=key, Count=3, KeySpec="AES_256")
    assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]["Operation"] == "GenerateDataKey"
    # ReEncrypt counts for both keys.
    kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"a": "b"}, DestinationKeyId=other)
    for k in (key, other):
        assert kms.get_key_last_usage(KeyId=k)["KeyLastUsage"]["Operation"] == "ReEncrypt"
    assert kms.get_key_last_usage(KeyId=key_arn(key))["KeyId"] == key_arn(key)


def test_alias_names_are_refused_and_missing_keys_not_found(kms: LocalKMS) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/used", TargetKeyId=key)
    expect("NotFoundException", kms.get_key_last_usage, KeyId="alias/used")
    expect(
        "NotFoundException", kms.get_key_last_usage, KeyId="00000000-0000-0000-0000-000000000000"
    )


def test_a_key_pending_deletion_answers_too(kms: LocalKMS) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key, Plaintext=b"p")
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert kms.get_key_last_usage(KeyId=key)["KeyLastUsage"]["Operation"] == "Encrypt"
