"""Upgrades: a data dir made by the previous release opens, migrates and serves.

The fixture ``tests/data/upgrade-prev/`` is committed: it is the data dir that
``tools/make_upgrade_fixture.py`` made with the code of commit 172c715 (the
last commit before bring-your-own-key's store migration 4, the previous
release's data dir format; its commit id is in ``expected.json``). The
repository has no release tags, so that commit stands for the previous
release. The test copies it and opens the copy with today's code.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from kmscore.audit import query, verify
from kmscore.client import LocalKMS
from kmscore.service import open_service
from kmscore.service.data_format import DATA_DIR_FORMAT, FORMAT_FILE, read_format
from kmscore.store.migrations import MIGRATIONS

FIXTURE = Path(__file__).parent / "data" / "upgrade-prev"
PREVIOUS = "172c7157be465217e9f16837ba874175da9d43b6"


@pytest.fixture
def old_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", copy)
    # git keeps no modes but the executable bit: what the old release left was 0600 in 0700.
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    return copy


def _schema(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "kms.db") as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_the_fixture_is_the_previous_release(old_dir: Path) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    assert expected["made_by"] == PREVIOUS
    assert _schema(old_dir) == 3 < MIGRATIONS[-1][0]
    assert not (old_dir / FORMAT_FILE).exists()
    assert read_format(old_dir) == 1


def test_a_previous_data_dir_opens_migrates_and_serves(old_dir: Path) -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    verify(old_dir)  # as the old release left it
    records_before = len(list(query(old_dir)))
    with LocalKMS(old_dir, audit=True) as kms:
        for item in expected["ciphertexts"]:
            answer = kms.decrypt(
                CiphertextBlob=base64.b64decode(item["blob"]), EncryptionContext=item["context"]
            )
            assert answer["Plaintext"] == item["plaintext"].encode()
        for item in expected["macs"]:
            assert kms.verify_mac(
                KeyId=item["key"], Message=item["message"].encode(),
                Mac=base64.b64decode(item["mac"]), MacAlgorithm="HMAC_SHA_256",
            )["MacValid"]  # fmt: skip
        keys = expected["keys"]
        meta = kms.describe_key(KeyId="alias/invoices")["KeyMetadata"]
        assert meta["KeyId"] == keys["invoices"] and meta["Origin"] == "AWS_KMS"
        assert kms.list_resource_tags(KeyId=keys["invoices"])["Tags"] == [
            {"TagKey": "team", "TagValue": "billing"}
        ]
        assert [g["Name"] for g in kms.list_grants(KeyId=keys["invoices"])["Grants"]] == [
            "app-decrypt"
        ]
        assert kms.get_key_rotation_status(KeyId=keys["invoices"])["KeyRotationEnabled"]
        # What only the new schema holds works on the old keys: GetKeyLastUsage
        # and an imported-material key beside them.
        kms.get_key_last_usage(KeyId=keys["rotated"])
        new = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]
        assert new["KeyState"] == "PendingImport"
        blob = kms.encrypt(KeyId=keys["invoices"], Plaintext=b"new")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"new"
    assert _schema(old_dir) == MIGRATIONS[-1][0]
    assert read_format(old_dir) == DATA_DIR_FORMAT
    # The old trail goes on: its records and the new ones verify as one chain.
    report = verify(old_dir)
    assert report.records > records_before


def test_a_newer_format_is_refused(old_dir: Path) -> None:
    open_service(old_dir, audit=False).close()
    (old_dir / FORMAT_FILE).write_text(f"kmscore data dir format {DATA_DIR_FORMAT + 1}\n")
    with pytest.raises(ValueError, match="made by a newer kmscore"):
        open_service(old_dir, audit=False)
    (old_dir / FORMAT_FILE).write_text("something else\n")
    with pytest.raises(ValueError, match="does not name a data dir format"):
        open_service(old_dir, audit=False)


def test_a_new_data_dir_records_the_format(tmp_path: Path) -> None:
    assert read_format(tmp_path / "new") is None
    open_service(tmp_path / "new", audit=False).close()
    assert read_format(tmp_path / "new") == DATA_DIR_FORMAT
