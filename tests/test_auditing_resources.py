"""A refused call's audit record names the key it was refused on, as CloudTrail does."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmscore import LocalKMS
from kmscore.audit import query
from kmscore.errors import DisabledException, KMSInvalidStateException


def _records(data_dir: Path, name: str) -> list[dict]:
    return [e for e in query(data_dir, event_name=name)]


def test_state_refusals_name_the_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "kms"
    with LocalKMS(data_dir, audit=True) as kms:
        key = kms.create_key()["KeyMetadata"]
        kms.create_alias(AliasName="alias/r", TargetKeyId=key["KeyId"])
        blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
        kms.disable_key(KeyId=key["KeyId"])
        with pytest.raises(DisabledException):
            kms.encrypt(KeyId="alias/r", Plaintext=b"x")
        with pytest.raises(DisabledException):
            kms.decrypt(CiphertextBlob=blob)
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
        with pytest.raises(KMSInvalidStateException):
            kms.enable_key(KeyId=key["KeyId"])
    for name, code in (
        ("Encrypt", "DisabledException"),
        ("Decrypt", "DisabledException"),
        ("EnableKey", "KMSInvalidStateException"),
    ):
        failed = [e for e in _records(data_dir, name) if e.get("errorCode") == code]
        assert len(failed) == 1, name
        assert [r["ARN"] for r in failed[0]["resources"]] == [key["Arn"]], name
    # And a query by key finds the refusals too.
    by_key = [e for e in query(data_dir, key_id=key["KeyId"]) if e.get("errorCode")]
    assert {e["eventName"] for e in by_key} == {"Encrypt", "Decrypt", "EnableKey"}
