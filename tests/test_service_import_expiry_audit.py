"""Imported material that passes its ValidTo leaves a ``DeleteExpiredKeyMaterial``
record in the audit trail, as AWS writes one to CloudTrail: an ``AwsServiceEvent``
invoked by kms.amazonaws.com, naming the key and the material.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from import_helpers import import_material
from service_helpers import Clock, open_kms

from kmscore.audit import query, verify
from kmscore.client import LocalKMS


def _expiring(kms: LocalKMS, clock: Clock) -> tuple[str, str]:
    key = str(kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"])
    mid = import_material(
        kms,
        key,
        os.urandom(32),
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=clock.now + timedelta(hours=1),
    )["KeyMaterialId"]
    return key, str(mid)


def _expiry_records(data_dir: Path) -> list[dict[str, Any]]:
    return list(query(data_dir, event_name="DeleteExpiredKeyMaterial"))


def test_expiry_on_read_and_by_maintenance_is_recorded_once(tmp_path: Path) -> None:
    clock = Clock()
    data_dir = tmp_path / "kms"
    with open_kms(data_dir, clock) as kms:
        read_key, read_mid = _expiring(kms, clock)
        kept_key, kept_mid = _expiring(kms, clock)
        assert _expiry_records(data_dir) == []
        clock.advance(hours=2)
        arn = kms.describe_key(KeyId=read_key)["KeyMetadata"]["Arn"]
        assert kms.describe_key(KeyId=read_key)["KeyMetadata"]["KeyState"] == "PendingImport"
        (first,) = _expiry_records(data_dir)
        assert first["eventType"] == "AwsServiceEvent"
        assert first["eventSource"] == "kms.amazonaws.com"
        assert first["userIdentity"] == {
            "accountId": kms.service.account,
            "invokedBy": "kms.amazonaws.com",
        }
        assert first["sourceIPAddress"] == "kms.amazonaws.com"
        assert first["requestParameters"] is None
        assert first["additionalEventData"] == {"keyMaterialId": read_mid}
        assert [r["ARN"] for r in first["resources"]] == [arn]
        assert first["readOnly"] is False
        kms.run_maintenance()
        kms.describe_key(KeyId=read_key)
        found = _expiry_records(data_dir)
        assert len(found) == 2
        assert [r["additionalEventData"]["keyMaterialId"] for r in found] == [read_mid, kept_mid]
        assert found[1]["resources"][0]["ARN"].endswith(kept_key)
    verify(data_dir)
