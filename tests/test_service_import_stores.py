"""Bring-your-own-key end to end on both key stores, SQLite and PostgreSQL.

The store contract (test_store_contract.py) checks ``put_material`` and
``use_import_token`` one by one; this runs the whole flow through the service
on each store: import with an expiry, use, a reused token, delete and re-import
the same material, refuse other material, expiry by the clock (with its
``DeleteExpiredKeyMaterial`` record), and, on PostgreSQL, a second node that
sees all of it.
"""

from __future__ import annotations

import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from import_helpers import wrap
from service_helpers import Clock, expect, open_kms

from kmscore.audit import query
from kmscore.client import LocalKMS
from kmscore.crypto.rootkey import ROOT_KEY_FILE


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


def _open(data_dir: Path, store: str | None, clock: Clock) -> LocalKMS:
    return open_kms(data_dir, clock, **({"store": store} if store else {}))


def _params(kms: LocalKMS, key: str) -> dict[str, Any]:
    return dict(
        kms.get_parameters_for_import(
            KeyId=key, WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec="RSA_3072"
        )
    )


def _import(kms: LocalKMS, key: str, material: bytes, **request: Any) -> dict[str, Any]:
    p = _params(kms, key)
    return dict(
        kms.import_key_material(
            KeyId=key,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=wrap(p["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", material),
            **request,
        )
    )


def test_bring_your_own_key_on_each_store(tmp_path: Path, store: str | None) -> None:
    clock = Clock()
    data_dir = tmp_path / "n0"
    material = os.urandom(32)
    with _open(data_dir, store, clock) as kms:
        key = kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
        p = _params(kms, key)
        sealed = wrap(p["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", material)
        mid = kms.import_key_material(
            KeyId=key,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=sealed,
            ExpirationModel="KEY_MATERIAL_EXPIRES",
            ValidTo=clock.now + timedelta(days=1),
        )["KeyMaterialId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"tenant data")["CiphertextBlob"]
        # The token works once, on this store too; the key is unchanged by the refusal.
        before = kms.describe_key(KeyId=key)["KeyMetadata"]
        expect(
            "InvalidImportTokenException",
            kms.import_key_material,
            KeyId=key,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=sealed,
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )
        assert kms.describe_key(KeyId=key)["KeyMetadata"] == before
        kms.delete_imported_key_material(KeyId=key)
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
        expect(
            "IncorrectKeyMaterialException",
            _import,
            kms,
            key,
            os.urandom(32),
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )
        again = _import(
            kms,
            key,
            material,
            ExpirationModel="KEY_MATERIAL_EXPIRES",
            ValidTo=clock.now + timedelta(days=1),
        )
        assert again["KeyMaterialId"] == mid
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"tenant data"
    if store is not None:
        # A second node on the same database sees the imported material.
        other = tmp_path / "n1"
        other.mkdir(mode=0o700)
        shutil.copy2(data_dir / ROOT_KEY_FILE, other / ROOT_KEY_FILE)
        os.chmod(other / ROOT_KEY_FILE, 0o600)
        with _open(other, store, clock) as node:
            assert node.decrypt(CiphertextBlob=blob)["Plaintext"] == b"tenant data"
    with _open(data_dir, store, clock) as kms:
        clock.advance(days=2)
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingImport"
        expect("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)
        (record,) = query(data_dir, event_name="DeleteExpiredKeyMaterial")
        assert record["additionalEventData"] == {"keyMaterialId": mid}
    # Nothing of the material is in clear in the data dir.
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert material not in path.read_bytes(), path
