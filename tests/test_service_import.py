"""Imported key material (bring your own key) through the in-process client.

The flow of AWS's developer guide: CreateKey with Origin=EXTERNAL,
GetParametersForImport, wrap the material, ImportKeyMaterial; then reimport,
deletion, expiry by ValidTo (with an injected clock), on-demand rotation to
new imported material, HMAC and asymmetric imports, condition keys, and every
refusal leaving the key as it was. The material is wrapped by the
``cryptography`` library (tests/import_helpers.py), never by kmscore's code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from import_helpers import import_material, wrap
from service_helpers import Clock, expect, key_arn, open_kms

from kmscore.client import LocalKMS
from kmscore.crypto.importing import (
    ImportParameters,
    new_import_parameters,
    open_import_token,
    unwrap_key_material,
)
from kmscore.crypto.rootkey import RootKey
from kmscore.errors import InvalidCiphertextException, InvalidImportTokenException
from kmscore.model import blob as blobfmt

NEVER = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def kms(tmp_path: Path, clock: Clock) -> LocalKMS:
    with open_kms(tmp_path / "kms", clock) as k:
        yield k


def external(kms: LocalKMS, **request: Any) -> str:
    return str(kms.create_key(Origin="EXTERNAL", **request)["KeyMetadata"]["KeyId"])


def metadata(kms: LocalKMS, key: str) -> dict[str, Any]:
    return dict(kms.describe_key(KeyId=key)["KeyMetadata"])


def rotations(kms: LocalKMS, key: str) -> list[dict[str, Any]]:
    return list(
        kms.list_key_rotations(KeyId=key, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
    )


def params(kms: LocalKMS, key: str, algorithm: str = "RSAES_OAEP_SHA_256") -> dict[str, Any]:
    return dict(
        kms.get_parameters_for_import(
            KeyId=key, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048"
        )
    )


# --- the symmetric flow ----------------------------------------------------------------


def test_external_key_waits_for_material(kms: LocalKMS) -> None:
    key = external(kms, Description="byok")
    md = metadata(kms, key)
    assert md["Origin"] == "EXTERNAL"
    assert md["KeyState"] == "PendingImport"
    assert md["Enabled"] is False
    assert "CurrentKeyMaterialId" not in md and "ValidTo" not in md
    assert "ExpirationModel" not in md
    expect("KMSInvalidStateException", kms.encrypt, KeyId=key, Plaintext=b"x")
    expect("KMSInvalidStateException", kms.enable_key, KeyId=key)
    # What the key-state table allows while PendingImport.
    kms.update_key_description(KeyId=key, Description="still byok")
    kms.tag_resource(KeyId=key, Tags=[{"TagKey": "t", "TagValue": "v"}])
    kms.create_alias(AliasName="alias/byok", TargetKeyId=key)
    assert kms.list_key_rotations(KeyId=key)["Rotations"] == []


@pytest.mark.parametrize(
    "algorithm",
    [
        "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_256",
        "RSA_AES_KEY_WRAP_SHA_1",
        "RSA_AES_KEY_WRAP_SHA_256",
    ],
)
def test_import_with_each_wrapping_algorithm(kms: LocalKMS, algorithm: str) -> None:
    key = external(kms)
    material = os.urandom(32)
    out = import_material(kms, key, material, algorithm=algorithm)
    assert out["KeyId"] == key_arn(key)
    assert len(out["KeyMaterialId"]) == 64
    md = metadata(kms, key)
    assert md["KeyState"] == "Enabled" and md["Enabled"] is True
    assert md["CurrentKeyMaterialId"] == out["KeyMaterialId"]
    assert md["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE"
    assert "ValidTo" not in md
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"a": "b"})
    out2 = kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"a": "b"})
    assert out2["Plaintext"] == b"secret"


@pytest.mark.parametrize("spec", ["RSA_3072", "RSA_4096"])
def test_longer_wrapping_keys(kms: LocalKMS, spec: str) -> None:
    key = external(kms)
    p = kms.get_parameters_for_import(
        KeyId=key, WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256", WrappingKeySpec=spec
    )
    public = serialization.load_der_public_key(p["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == int(spec[4:])
    kms.import_key_material(
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", os.urandom(32)),
        **NEVER,
    )
    assert metadata(kms, key)["KeyState"] == "Enabled"


def test_parameters_are_valid_24_hours_and_fresh_each_time(kms: LocalKMS, clock: Clock) -> None:
    key = external(kms)
    a, b = params(kms, key), params(kms, key)
    assert a["KeyId"] == key_arn(key)
    assert a["ParametersValidTo"] == clock.now + timedelta(hours=24)
    assert a["PublicKey"] != b["PublicKey"] and a["ImportToken"] != b["ImportToken"]


def test_material_is_the_customers(kms: LocalKMS) -> None:
    """A blob made under imported material decrypts under the same material only."""
    material = os.urandom(32)
    first, second = external(kms), external(kms)
    import_material(kms, first, material)
    import_material(kms, second, os.urandom(32))
    blob = kms.encrypt(KeyId=first, Plaintext=b"p")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, KeyId=first)["Plaintext"] == b"p"
    expect("IncorrectKeyException", kms.decrypt, CiphertextBlob=blob, KeyId=second)


def test_same_material_gets_the_same_id_per_key_but_not_across_keys(kms: LocalKMS) -> None:
    material = os.urandom(32)
    a, b = external(kms), external(kms)
    id_a = import_material(kms, a, material)["KeyMaterialId"]
    id_b = import_material(kms, b, material)["KeyMaterialId"]
    assert id_a != id_b
    kms.delete_imported_key_material(KeyId=a)
    assert import_material(kms, a, material)["KeyMaterialId"] == id_a


# --- refusals leave the key unchanged ---------------------------------------------------


def _unchanged(kms: LocalKMS, key: str, before: dict[str, Any]) -> None:
    assert metadata(kms, key) == before["md"]
    assert rotations(kms, key) == before["rotations"]


def _snapshot(kms: LocalKMS, key: str) -> dict[str, Any]:
    return {"md": metadata(kms, key), "rotations": rotations(kms, key)}


def test_wrong_token(kms: LocalKMS) -> None:
    key = external(kms)
    p = params(kms, key)
    before = _snapshot(kms, key)
    enc = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    tampered = bytearray(p["ImportToken"])
    tampered[len(tampered) // 2] ^= 1
    for token in (bytes(tampered), os.urandom(len(tampered)), b"x"):
        expect(
            "InvalidImportTokenException",
            kms.import_key_material,
            KeyId=key,
            ImportToken=token,
            EncryptedKeyMaterial=enc,
            **NEVER,
        )
    _unchanged(kms, key, before)
    # The right token still works afterwards.
    kms.import_key_material(
        KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=enc, **NEVER
    )


def test_expired_token(kms: LocalKMS, clock: Clock) -> None:
    key = external(kms)
    p = params(kms, key)
    enc = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    before = _snapshot(kms, key)
    clock.advance(hours=24)
    expect(
        "ExpiredImportTokenException",
        kms.import_key_material,
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=enc,
        **NEVER,
    )
    _unchanged(kms, key, before)


def test_token_for_another_key(kms: LocalKMS) -> None:
    key, other = external(kms), external(kms)
    p = params(kms, other)
    enc = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    before = _snapshot(kms, key)
    expect(
        "InvalidImportTokenException",
        kms.import_key_material,
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=enc,
        **NEVER,
    )
    _unchanged(kms, key, before)
    assert metadata(kms, other)["KeyState"] == "PendingImport"


def test_token_from_another_data_dir(tmp_path: Path, kms: LocalKMS, clock: Clock) -> None:
    key = external(kms)
    with open_kms(tmp_path / "other", clock) as elsewhere:
        # The same key id cannot exist there; a token for any key of another
        # data dir is sealed under another root key.
        p = params(elsewhere, external(elsewhere))
    expect(
        "InvalidImportTokenException",
        kms.import_key_material,
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
        **NEVER,
    )


def test_reused_token(kms: LocalKMS) -> None:
    key = external(kms)
    p = params(kms, key)
    material = os.urandom(32)
    enc = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", material)
    kms.import_key_material(
        KeyId=key, ImportToken=p["ImportToken"], EncryptedKeyMaterial=enc, **NEVER
    )
    kms.delete_imported_key_material(KeyId=key)
    before = _snapshot(kms, key)
    err = expect(
        "InvalidImportTokenException",
        kms.import_key_material,
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=enc,
        **NEVER,
    )
    assert "used" in str(err)
    _unchanged(kms, key, before)


def test_token_survives_a_refused_import(kms: LocalKMS) -> None:
    """A refusal rolls back, so the token is not spent by it."""
    key = external(kms)
    p = params(kms, key)
    expect(
        "IncorrectKeyMaterialException",
        kms.import_key_material,
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(31)),
        **NEVER,
    )
    kms.import_key_material(
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
        **NEVER,
    )


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_material_of_the_wrong_size(kms: LocalKMS, size: int) -> None:
    key = external(kms)
    before = _snapshot(kms, key)
    algorithm = "RSA_AES_KEY_WRAP_SHA_256" if size == 0 else "RSAES_OAEP_SHA_256"
    p = params(kms, key, algorithm)
    if size == 0:
        # AES key wrap cannot wrap nothing: send just the wrapped AES key.
        enc = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
        code = "InvalidCiphertextException"
    else:
        enc = wrap(p["PublicKey"], algorithm, os.urandom(size))
        code = "IncorrectKeyMaterialException"
    expect(
        code,
        kms.import_key_material,
        KeyId=key,
        ImportToken=p["ImportToken"],
        EncryptedKeyMaterial=enc,
        **NEVER,
    )
    _unchanged(kms, key, before)


def test_material_wrapped_wrongly(kms: LocalKMS) -> None:
    key = external(kms)
    before = _snapshot(kms, key)
    p = params(kms, key, "RSAES_OAEP_SHA_256")
    material = os.urandom(32)
    for enc in (
        wrap(p["PublicKey"], "RSAES_OAEP_SHA_1", material),  # the other hash
        wrap(params(kms, key)["PublicKey"], "RSAES_OAEP_SHA_256", material),  # another key pair
        os.urandom(256),
        os.urandom(100),
    ):
        expect(
            "InvalidCiphertextException",
            kms.import_key_material,
            KeyId=key,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=enc,
            **NEVER,
        )
    _unchanged(kms, key, before)


def test_only_the_same_material_can_be_reimported(kms: LocalKMS) -> None:
    key = external(kms)
    material = os.urandom(32)
    mid = import_material(kms, key, material)["KeyMaterialId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"kept")["CiphertextBlob"]
    kms.delete_imported_key_material(KeyId=key)
    md = metadata(kms, key)
    assert md["KeyState"] == "PendingImport" and "ExpirationModel" not in md
    assert rotations(kms, key)[0]["ImportState"] == "PENDING_IMPORT"
    expect("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)
    before = _snapshot(kms, key)
    expect("IncorrectKeyMaterialException", import_material, kms, key, os.urandom(32))
    expect(
        "IncorrectKeyMaterialException",
        import_material,
        kms,
        key,
        os.urandom(32),
        ImportType="EXISTING_KEY_MATERIAL",
    )
    _unchanged(kms, key, before)
    expect(
        "IncorrectKeyMaterialException", import_material, kms, key, material, KeyMaterialId="0" * 64
    )
    out = import_material(kms, key, material, KeyMaterialId=mid)
    assert out["KeyMaterialId"] == mid
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"kept"
    assert rotations(kms, key)[0]["ImportState"] == "IMPORTED"


def test_reimport_keeps_a_disabled_key_disabled_and_changes_expiry(
    kms: LocalKMS, clock: Clock
) -> None:
    key = external(kms)
    material = os.urandom(32)
    import_material(kms, key, material)
    kms.disable_key(KeyId=key)
    valid_to = clock.now + timedelta(days=30)
    import_material(kms, key, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    md = metadata(kms, key)
    assert md["KeyState"] == "Disabled"
    assert md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES" and md["ValidTo"] == valid_to


def test_expiration_arguments(kms: LocalKMS, clock: Clock) -> None:
    key = external(kms)
    p = params(kms, key)
    enc = wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    base = {"KeyId": key, "ImportToken": p["ImportToken"], "EncryptedKeyMaterial": enc}
    # The default model is KEY_MATERIAL_EXPIRES, which needs ValidTo.
    expect("ValidationException", kms.import_key_material, **base)
    expect(
        "ValidationException",
        kms.import_key_material,
        **base,
        **NEVER,
        ValidTo=clock.now + timedelta(days=1),
    )
    expect("ValidationException", kms.import_key_material, **base, ValidTo=clock.now)
    expect(
        "ValidationException",
        kms.import_key_material,
        **base,
        ValidTo=clock.now + timedelta(days=366),
    )
    assert metadata(kms, key)["KeyState"] == "PendingImport"
    kms.import_key_material(**base, ValidTo=clock.now + timedelta(days=365))


def test_not_an_external_key(kms: LocalKMS) -> None:
    key = str(kms.create_key()["KeyMetadata"]["KeyId"])
    expect("UnsupportedOperationException", params, kms, key)
    expect("UnsupportedOperationException", kms.delete_imported_key_material, KeyId=key)


@pytest.mark.parametrize(
    ("algorithm", "spec"),
    [
        ("RSAES_PKCS1_V1_5", "RSA_2048"),
        ("SM2PKE", "RSA_2048"),
        ("RSAES_OAEP_SHA_256", "SM2"),
    ],
)
def test_unsupported_wrapping(kms: LocalKMS, algorithm: str, spec: str) -> None:
    key = external(kms)
    expect(
        "UnsupportedOperationException",
        kms.get_parameters_for_import,
        KeyId=key,
        WrappingAlgorithm=algorithm,
        WrappingKeySpec=spec,
    )


def test_key_states(kms: LocalKMS) -> None:
    key = external(kms)
    material = os.urandom(32)
    import_material(kms, key, material)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    expect("KMSInvalidStateException", params, kms, key)
    # Deleting material of a key pending deletion leaves it pending deletion.
    kms.delete_imported_key_material(KeyId=key)
    assert metadata(kms, key)["KeyState"] == "PendingDeletion"
    kms.cancel_key_deletion(KeyId=key)
    assert metadata(kms, key)["KeyState"] == "PendingImport"
    # ... with no material now: a reimport makes it usable again.
    import_material(kms, key, material)
    assert metadata(kms, key)["KeyState"] == "Enabled"


def test_imported_material_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    material = os.urandom(32)
    with open_kms(tmp_path / "kms", clock) as kms:
        key = external(kms)
        import_material(kms, key, material)
        blob = kms.encrypt(KeyId=key, Plaintext=b"durable")["CiphertextBlob"]
    with open_kms(tmp_path / "kms", clock) as kms:
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"durable"
        assert metadata(kms, key)["Origin"] == "EXTERNAL"


def test_material_is_stored_wrapped(tmp_path: Path, clock: Clock) -> None:
    material = os.urandom(32)
    with open_kms(tmp_path / "kms", clock) as kms:
        key = external(kms)
        p = params(kms, key)
        import_material(kms, key, material)
    for path in (tmp_path / "kms").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert material not in data, path
            assert p["ImportToken"] not in data, path


# --- expiry -----------------------------------------------------------------------------


def test_expiry_returns_the_key_to_pending_import(kms: LocalKMS, clock: Clock) -> None:
    key = external(kms)
    material = os.urandom(32)
    valid_to = clock.now + timedelta(days=2)
    mid = import_material(
        kms, key, material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to
    )["KeyMaterialId"]
    md = metadata(kms, key)
    assert md["ValidTo"] == valid_to and md["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert rotations(kms, key)[0]["ValidTo"] == valid_to
    blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    clock.advance(days=1)
    assert metadata(kms, key)["KeyState"] == "Enabled"
    clock.advance(days=1)
    md = metadata(kms, key)
    assert md["KeyState"] == "PendingImport"
    assert "ValidTo" not in md
    assert rotations(kms, key)[0]["ImportState"] == "PENDING_IMPORT"
    expect("KMSInvalidStateException", kms.decrypt, CiphertextBlob=blob)
    assert import_material(kms, key, material)["KeyMaterialId"] == mid
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


def test_expiry_by_maintenance(kms: LocalKMS, clock: Clock, tmp_path: Path) -> None:
    key = external(kms)
    import_material(
        kms,
        key,
        os.urandom(32),
        ExpirationModel="KEY_MATERIAL_EXPIRES",
        ValidTo=clock.now + timedelta(hours=1),
    )
    clock.advance(hours=2)
    kms.run_maintenance()
    state = kms.service.store.get_key(key)
    assert state is not None and state.state.value == "PendingImport"
    assert kms.service.store.get_material(key, 1).wrapped == b""


# --- rotation of imported material ------------------------------------------------------


def test_on_demand_rotation_needs_new_material_first(kms: LocalKMS, clock: Clock) -> None:
    key = external(kms)
    first = import_material(kms, key, os.urandom(32))["KeyMaterialId"]
    old = kms.encrypt(KeyId=key, Plaintext=b"old")["CiphertextBlob"]
    expect("KMSInvalidStateException", kms.rotate_key_on_demand, KeyId=key)
    expect("UnsupportedOperationException", kms.enable_key_rotation, KeyId=key)
    new_material = os.urandom(32)
    second = import_material(
        kms, key, new_material, ImportType="NEW_KEY_MATERIAL", KeyMaterialDescription="second one"
    )["KeyMaterialId"]
    listed = rotations(kms, key)
    assert [(r["KeyMaterialId"], r["KeyMaterialState"]) for r in listed] == [
        (first, "CURRENT"),
        (second, "PENDING_ROTATION"),
    ]
    assert listed[1]["KeyMaterialDescription"] == "second one"
    assert "RotationDate" not in listed[1]
    # Only one material may wait for rotation at a time.
    expect(
        "KMSInvalidStateException",
        import_material,
        kms,
        key,
        os.urandom(32),
        ImportType="NEW_KEY_MATERIAL",
    )
    assert metadata(kms, key)["CurrentKeyMaterialId"] == first
    clock.advance(days=1)
    assert kms.rotate_key_on_demand(KeyId=key) == {"KeyId": key_arn(key)}
    assert metadata(kms, key)["CurrentKeyMaterialId"] == second
    new = kms.encrypt(KeyId=key, Plaintext=b"new")["CiphertextBlob"]
    assert blobfmt.parse(new).material_version == 2
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"old"
    done = kms.list_key_rotations(KeyId=key)["Rotations"]
    assert len(done) == 1
    assert done[0]["KeyMaterialId"] == second
    assert done[0]["RotationType"] == "ON_DEMAND"
    assert done[0]["RotationDate"] == clock.now
    assert done[0]["ImportState"] == "IMPORTED"
    # Deleting the old material makes the key wait for it: every material is needed.
    kms.delete_imported_key_material(KeyId=key, KeyMaterialId=first)
    assert metadata(kms, key)["KeyState"] == "PendingImport"
    expect("NotFoundException", kms.delete_imported_key_material, KeyId=key, KeyMaterialId="a" * 64)


# --- HMAC and asymmetric keys -----------------------------------------------------------


@pytest.mark.parametrize(("spec", "size"), [("HMAC_224", 28), ("HMAC_256", 64), ("HMAC_512", 100)])
def test_hmac_import(kms: LocalKMS, spec: str, size: int) -> None:
    key = external(kms, KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")
    material = os.urandom(size)
    import_material(kms, key, material)
    digest = {"HMAC_224": hashlib.sha224, "HMAC_256": hashlib.sha256, "HMAC_512": hashlib.sha512}
    algorithm = spec.replace("HMAC_", "HMAC_SHA_")
    mac = kms.generate_mac(KeyId=key, Message=b"m", MacAlgorithm=algorithm)["Mac"]
    assert mac == hmac.new(material, b"m", digest[spec]).digest()
    other = external(kms, KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")
    low, high = {"HMAC_224": (28, 64), "HMAC_256": (32, 64), "HMAC_512": (64, 128)}[spec]
    for wrong in (low - 1, high + 1):
        expect(
            "IncorrectKeyMaterialException",
            import_material,
            kms,
            other,
            os.urandom(wrong),
            algorithm="RSA_AES_KEY_WRAP_SHA_256",
        )
    assert metadata(kms, other)["KeyState"] == "PendingImport"
    # An HMAC key's material cannot be replaced, nor described.
    expect(
        "UnsupportedOperationException",
        import_material,
        kms,
        key,
        os.urandom(size),
        ImportType="NEW_KEY_MATERIAL",
    )
    expect("ValidationException", import_material, kms, key, material, KeyMaterialDescription="d")


def _pkcs8(private: Any) -> bytes:
    return bytes(
        private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_ecc_signing_key_import(kms: LocalKMS) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key = external(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    import_material(kms, key, _pkcs8(private), algorithm="RSAES_OAEP_SHA_256", spec="RSA_3072")
    public = kms.get_public_key(KeyId=key)["PublicKey"]
    assert public == private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sig = kms.sign(KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    private.public_key().verify(sig, b"m", ec.ECDSA(hashes.SHA256()))
    # Another key's material, or the wrong curve, is not this key's.
    expect(
        "IncorrectKeyMaterialException",
        import_material,
        kms,
        key,
        _pkcs8(ec.generate_private_key(ec.SECP256R1())),
    )
    fresh = external(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    expect(
        "IncorrectKeyMaterialException",
        import_material,
        kms,
        fresh,
        _pkcs8(ec.generate_private_key(ec.SECP384R1())),
    )


def test_rsa_encryption_key_import_needs_aes_key_wrap(kms: LocalKMS) -> None:
    private = rsa.generate_private_key(65537, 2048)
    key = external(kms, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    # Too long for RSA-OAEP under any wrapping key: the wrapper itself refuses.
    with pytest.raises(ValueError):
        import_material(kms, key, _pkcs8(private), algorithm="RSAES_OAEP_SHA_256", spec="RSA_4096")
    import_material(kms, key, _pkcs8(private), algorithm="RSA_AES_KEY_WRAP_SHA_256")
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    ct = private.public_key().encrypt(b"to kms", oaep)
    out = kms.decrypt(KeyId=key, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert out["Plaintext"] == b"to kms"


def test_specs_without_import(kms: LocalKMS) -> None:
    expect(
        "UnsupportedOperationException",
        kms.create_key,
        Origin="EXTERNAL",
        KeySpec="ML_DSA_44",
        KeyUsage="SIGN_VERIFY",
    )


# --- condition keys ---------------------------------------------------------------------


def test_condition_keys(as_user: Callable[..., LocalKMS], admin: LocalKMS) -> None:
    key = external(admin)
    now = admin.service.clock()
    limit = (now + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    alice = as_user(
        "alice",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
                    {
                        "Effect": "Deny",
                        "Action": "kms:GetParametersForImport",
                        "Resource": "*",
                        "Condition": {
                            "StringNotEquals": {"kms:WrappingAlgorithm": "RSA_AES_KEY_WRAP_SHA_256"}
                        },
                    },
                    {
                        "Effect": "Deny",
                        "Action": "kms:GetParametersForImport",
                        "Resource": "*",
                        "Condition": {"StringNotEquals": {"kms:WrappingKeySpec": "RSA_4096"}},
                    },
                    {
                        "Effect": "Deny",
                        "Action": "kms:ImportKeyMaterial",
                        "Resource": "*",
                        "Condition": {
                            "StringEquals": {"kms:ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
                        },
                    },
                    {
                        "Effect": "Deny",
                        "Action": "kms:ImportKeyMaterial",
                        "Resource": "*",
                        "Condition": {"DateGreaterThan": {"kms:ValidTo": limit}},
                    },
                ],
            }
        ),
    )
    expect("AccessDeniedException", params, alice, key, "RSA_AES_KEY_WRAP_SHA_256")
    expect(
        "AccessDeniedException",
        alice.get_parameters_for_import,
        KeyId=key,
        WrappingAlgorithm="RSAES_OAEP_SHA_256",
        WrappingKeySpec="RSA_4096",
    )
    material = os.urandom(32)

    def attempt(**request: Any) -> Any:
        return import_material(
            alice, key, material, algorithm="RSA_AES_KEY_WRAP_SHA_256", spec="RSA_4096", **request
        )

    expect("AccessDeniedException", attempt, **NEVER)
    expect("AccessDeniedException", attempt, ValidTo=now + timedelta(days=200))
    attempt(ValidTo=now + timedelta(days=30))


# --- the parsers, fuzzed ----------------------------------------------------------------

_ROOT = RootKey(bytes(range(32)))
_ARN = "arn:aws:kms:eu-west-3:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=7000))
def test_import_token_parser_refuses_anything_not_made_here(token: bytes) -> None:
    with pytest.raises(InvalidImportTokenException):
        open_import_token(_ROOT, _ARN, token)


_PUBLIC, _TOKEN = new_import_parameters(_ROOT, _ARN, "RSA_2048", "RSA_AES_KEY_WRAP_SHA_256", 2**40)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(_TOKEN) - 1), st.integers(min_value=1, max_value=255))
def test_import_token_parser_refuses_any_flipped_byte(where: int, flip: int) -> None:
    token = bytearray(_TOKEN)
    token[where] ^= flip
    with pytest.raises(InvalidImportTokenException):
        open_import_token(_ROOT, _ARN, bytes(token))


def test_import_token_round_trip_and_binding() -> None:
    opened = open_import_token(_ROOT, _ARN, _TOKEN)
    assert isinstance(opened, ImportParameters)
    assert (opened.wrapping_key_spec, opened.wrapping_algorithm) == (
        "RSA_2048",
        "RSA_AES_KEY_WRAP_SHA_256",
    )
    assert opened.valid_to == 2**40
    assert "private" not in repr(opened).lower() or "PRIVATE KEY" not in repr(opened)
    assert opened.private_key.hex() not in repr(opened)
    with pytest.raises(InvalidImportTokenException):
        open_import_token(_ROOT, _ARN.replace("1234abcd", "9234abcd"), _TOKEN)
    with pytest.raises(InvalidImportTokenException):
        open_import_token(RootKey(bytes(32)), _ARN, _TOKEN)


_OPENED = open_import_token(_ROOT, _ARN, _TOKEN)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=700))
def test_wrapped_blob_parser_refuses_garbage(blob: bytes) -> None:
    with pytest.raises(InvalidCiphertextException):
        unwrap_key_material(_OPENED, blob)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=1, max_size=600), st.integers(min_value=0), st.integers(1, 255))
def test_wrapped_blob_round_trip_and_tamper(material: bytes, where: int, flip: int) -> None:
    blob = wrap(_PUBLIC, "RSA_AES_KEY_WRAP_SHA_256", material)
    assert unwrap_key_material(_OPENED, blob) == material
    tampered = bytearray(blob)
    tampered[where % len(tampered)] ^= flip
    with pytest.raises(InvalidCiphertextException):
        unwrap_key_material(_OPENED, bytes(tampered))
