"""Batch extensions: GenerateDataKeys and DecryptMany.

They must mean exactly what the single calls mean: every blob of a batch is an
ordinary ciphertext blob that Decrypt opens, and every DecryptMany item
succeeds or fails as Decrypt would for that blob alone.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from service_helpers import Clock, expect, key_arn, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.errors import KMSError
from kmscore.model import blob as blobfmt


@pytest.fixture
def kms(tmp_path: Path) -> LocalKMS:
    with open_kms(tmp_path / "kms", Clock()) as k:
        yield k


@pytest.fixture
def key(kms: LocalKMS) -> str:
    return new_key(kms)


# --- GenerateDataKeys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "length"),
    [
        ({"KeySpec": "AES_256"}, 32),
        ({"KeySpec": "AES_128"}, 16),
        ({"NumberOfBytes": 1}, 1),
        ({"NumberOfBytes": 1024}, 1024),
    ],
)
def test_generate_data_keys_decrypt_one_by_one(
    kms: LocalKMS, key: str, request_: dict[str, Any], length: int
) -> None:
    ctx = {"batch": "yes", "n": "1"}
    out = kms.generate_data_keys(KeyId=key, Count=40, EncryptionContext=ctx, **request_)
    assert set(out) == {"KeyId", "KeyMaterialId", "CiphertextBlobs", "Plaintexts"}
    assert out["KeyId"] == key_arn(key)
    current = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert out["KeyMaterialId"] == current
    assert len(out["CiphertextBlobs"]) == len(out["Plaintexts"]) == 40
    for blob, plaintext in zip(out["CiphertextBlobs"], out["Plaintexts"], strict=True):
        assert isinstance(blob, bytes) and isinstance(plaintext, bytes)
        assert len(plaintext) == length
        assert len(blob) == blobfmt.HEADER_LENGTH + 12 + length + 16
        parsed = blobfmt.parse(blob)
        assert parsed.key_id == key and parsed.material_version == 1
        single = kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=key)
        assert single["Plaintext"] == plaintext
        assert single["KeyMaterialId"] == current
        expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob)
    if length >= 16:
        assert len(set(out["Plaintexts"])) == 40
    ivs = {b[blobfmt.HEADER_LENGTH : blobfmt.HEADER_LENGTH + 12] for b in out["CiphertextBlobs"]}
    assert len(ivs) == 40


def test_generate_data_keys_ten_thousand(kms: LocalKMS, key: str) -> None:
    out = kms.generate_data_keys(KeyId=key, Count=10_000, KeySpec="AES_256")
    blobs, keys = out["CiphertextBlobs"], out["Plaintexts"]
    assert len(blobs) == len(keys) == 10_000
    assert len(set(keys)) == 10_000
    results = kms.decrypt_many(CiphertextBlobs=blobs)["Results"]
    assert [r["Plaintext"] for r in results] == keys
    assert {r["KeyId"] for r in results} == {key_arn(key)}
    for i in range(0, 10_000, 997):  # and the single call agrees on a sample
        assert kms.decrypt(CiphertextBlob=blobs[i])["Plaintext"] == keys[i]


def test_generate_data_keys_without_plaintext(kms: LocalKMS, key: str) -> None:
    out = kms.generate_data_keys(KeyId=key, Count=5, NumberOfBytes=24, WithoutPlaintext=True)
    assert "Plaintexts" not in out and len(out["CiphertextBlobs"]) == 5
    for blob in out["CiphertextBlobs"]:
        assert len(kms.decrypt(CiphertextBlob=blob)["Plaintext"]) == 24
    with_plaintext = kms.generate_data_keys(
        KeyId=key, Count=1, KeySpec="AES_256", WithoutPlaintext=False
    )
    assert len(with_plaintext["Plaintexts"]) == 1


def test_generate_data_keys_counts_invocations(kms: LocalKMS, key: str) -> None:
    kms.generate_data_keys(KeyId=key, Count=3000, KeySpec="AES_256")
    (material,) = kms.service.store.list_materials(key)
    assert material.reserved >= 3000


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"Count": 0, "KeySpec": "AES_256"}, "ValidationException"),
        ({"Count": 10_001, "KeySpec": "AES_256"}, "ValidationException"),
        ({"Count": -1, "KeySpec": "AES_256"}, "ValidationException"),
        ({"Count": "5", "KeySpec": "AES_256"}, "ValidationException"),
        ({"KeySpec": "AES_256"}, "ValidationException"),  # Count is required
        ({"Count": 5}, "ValidationException"),  # neither KeySpec nor NumberOfBytes
        ({"Count": 5, "KeySpec": "AES_256", "NumberOfBytes": 32}, "ValidationException"),
        ({"Count": 5, "NumberOfBytes": 0}, "ValidationException"),
        ({"Count": 5, "NumberOfBytes": 1025}, "ValidationException"),
        ({"Count": 5, "KeySpec": "AES_192"}, "ValidationException"),
        ({"Count": 5, "KeySpec": "AES_256", "WithoutPlaintext": 1}, "ValidationException"),
        ({"Count": 5, "KeySpec": "AES_256", "Recipient": {}}, "ValidationException"),
        ({"Count": 5, "KeySpec": "AES_256", "DryRun": True}, "DryRunOperationException"),
    ],
)
def test_generate_data_keys_refusals(
    kms: LocalKMS, key: str, request_: dict[str, Any], code: str
) -> None:
    expect(code, kms.generate_data_keys, KeyId=key, **request_)
    assert kms.service.store.list_materials(key)[0].reserved == 0


def test_generate_data_keys_unknown_key(kms: LocalKMS) -> None:
    expect(
        "NotFoundException",
        kms.generate_data_keys,
        KeyId=str(uuid.uuid4()),
        Count=2,
        KeySpec="AES_256",
    )


# --- DecryptMany -------------------------------------------------------------------------


def test_decrypt_many_mixes_good_and_bad(kms: LocalKMS, key: str) -> None:
    other = new_key(kms)
    disabled = new_key(kms)
    good = kms.encrypt(KeyId=key, Plaintext=b"good")["CiphertextBlob"]
    kms.rotate_key_on_demand(KeyId=key)
    good_v2 = kms.encrypt(KeyId=key, Plaintext=b"good v2")["CiphertextBlob"]
    good_other = kms.encrypt(KeyId=other, Plaintext=b"other")["CiphertextBlob"]
    off = kms.encrypt(KeyId=disabled, Plaintext=b"off")["CiphertextBlob"]
    kms.disable_key(KeyId=disabled)
    tampered = good[:-1] + bytes([good[-1] ^ 1])
    unknown = blobfmt.header(str(uuid.uuid4()), 1) + good[blobfmt.HEADER_LENGTH :]
    bad_version = blobfmt.header(key, 7) + good[blobfmt.HEADER_LENGTH :]
    items = [
        (good, {"KeyId": key_arn(key), "Plaintext": b"good"}),
        (tampered, "InvalidCiphertextException"),
        (good_v2, {"KeyId": key_arn(key), "Plaintext": b"good v2"}),
        (b"short", "InvalidCiphertextException"),
        (unknown, "NotFoundException"),
        (good_other, {"KeyId": key_arn(other), "Plaintext": b"other"}),
        (off, "DisabledException"),
        (bad_version, "InvalidCiphertextException"),
        (good, {"KeyId": key_arn(key), "Plaintext": b"good"}),
    ]
    results = kms.decrypt_many(CiphertextBlobs=[b for b, _ in items])["Results"]
    assert len(results) == len(items)
    for (blob, want), got in zip(items, results, strict=True):
        if isinstance(want, dict):
            assert got == want
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == want["Plaintext"]
        else:
            assert set(got) == {"Error"}
            assert got["Error"]["Code"] == want
            assert isinstance(got["Error"]["Message"], str)
            with pytest.raises(KMSError) as info:
                kms.decrypt(CiphertextBlob=blob)
            assert info.value.code == want  # the single call agrees


def test_decrypt_many_with_key_id(kms: LocalKMS, key: str) -> None:
    other = new_key(kms)
    mine = kms.encrypt(KeyId=key, Plaintext=b"mine")["CiphertextBlob"]
    theirs = kms.encrypt(KeyId=other, Plaintext=b"theirs")["CiphertextBlob"]
    kms.create_alias(AliasName="alias/mine", TargetKeyId=key)
    for ref in (key, key_arn(key), "alias/mine"):
        results = kms.decrypt_many(CiphertextBlobs=[mine, theirs], KeyId=ref)["Results"]
        assert results[0] == {"KeyId": key_arn(key), "Plaintext": b"mine"}
        assert results[1]["Error"]["Code"] == "IncorrectKeyException"


def test_decrypt_many_contexts(kms: LocalKMS, key: str) -> None:
    contexts = [{"i": str(i)} for i in range(5)]
    blobs = [
        kms.encrypt(KeyId=key, Plaintext=bytes([i]) * 3, EncryptionContext=c)["CiphertextBlob"]
        for i, c in enumerate(contexts)
    ]
    results = kms.decrypt_many(CiphertextBlobs=blobs, EncryptionContexts=contexts)["Results"]
    assert [r["Plaintext"] for r in results] == [bytes([i]) * 3 for i in range(5)]
    shifted = contexts[1:] + contexts[:1]
    results = kms.decrypt_many(CiphertextBlobs=blobs, EncryptionContexts=shifted)["Results"]
    assert [r["Error"]["Code"] for r in results] == ["InvalidCiphertextException"] * 5
    # One shared context for all.
    same = [
        kms.encrypt(KeyId=key, Plaintext=b"s", EncryptionContext={"ab": "c"})["CiphertextBlob"]
        for _ in range(3)
    ]
    results = kms.decrypt_many(CiphertextBlobs=same, EncryptionContext={"ab": "c"})["Results"]
    assert [r["Plaintext"] for r in results] == [b"s"] * 3
    results = kms.decrypt_many(CiphertextBlobs=same, EncryptionContext={"a": "bc"})["Results"]
    assert [r["Error"]["Code"] for r in results] == ["InvalidCiphertextException"] * 3
    # Empty and missing contexts are the same, item by item too.
    plain = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    results = kms.decrypt_many(CiphertextBlobs=[plain, plain], EncryptionContexts=[{}, {}])
    assert [r["Plaintext"] for r in results["Results"]] == [b"p", b"p"]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"CiphertextBlobs": []}, "ValidationException"),
        ({}, "ValidationException"),
        ({"CiphertextBlobs": [b"B"] * 10_001}, "ValidationException"),
        ({"CiphertextBlobs": [b""]}, "ValidationException"),
        ({"CiphertextBlobs": [b"x" * 6145]}, "ValidationException"),
        ({"CiphertextBlobs": ["text"]}, "ValidationException"),
        ({"CiphertextBlobs": b"B"}, "ValidationException"),
        (
            {"CiphertextBlobs": [b"B"], "EncryptionContext": {}, "EncryptionContexts": [{}]},
            "ValidationException",
        ),
        ({"CiphertextBlobs": [b"B", b"B"], "EncryptionContexts": [{}]}, "ValidationException"),
        ({"CiphertextBlobs": [b"B"], "EncryptionContexts": [{"k": 1}]}, "ValidationException"),
        ({"CiphertextBlobs": [b"B"], "EncryptionContexts": [{"": "v"}]}, "ValidationException"),
        ({"CiphertextBlobs": [b"B"], "KeyId": str(uuid.uuid4())}, "NotFoundException"),
        ({"CiphertextBlobs": [b"B"], "DryRun": True}, "DryRunOperationException"),
        ({"CiphertextBlobs": [b"B"], "Plaintext": b"x"}, "ValidationException"),
    ],
)
def test_decrypt_many_refusals(
    kms: LocalKMS, key: str, request_: dict[str, Any], code: str
) -> None:
    good = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]

    def fill(value: Any) -> Any:
        if value == b"B":
            return good
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    request = {k: fill(v) for k, v in request_.items()}
    if code == "NotFoundException":
        # An unknown expected key: every item fails, or the call does; either
        # way nothing decrypts. This service answers per item.
        results = kms.decrypt_many(**request)["Results"]
        assert [r["Error"]["Code"] for r in results] == [code]
        return
    expect(code, kms.decrypt_many, **request)


def test_decrypt_many_ten_thousand_mixed(kms: LocalKMS, key: str) -> None:
    out = kms.generate_data_keys(KeyId=key, Count=10_000, NumberOfBytes=16)
    blobs = list(out["CiphertextBlobs"])
    for i in range(0, 10_000, 7):
        blobs[i] = blobs[i][:-1] + bytes([blobs[i][-1] ^ 0x80])
    results = kms.decrypt_many(CiphertextBlobs=blobs)["Results"]
    for i, (result, plaintext) in enumerate(zip(results, out["Plaintexts"], strict=True)):
        if i % 7 == 0:
            assert result["Error"]["Code"] == "InvalidCiphertextException"
        else:
            assert result["Plaintext"] == plaintext
