"""Symmetric cryptography: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
GenerateDataKeyWithoutPlaintext, GenerateRandom; key states, DryRun and
encryption contexts.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_helpers import Clock, alias_arn, expect, inject_key, key_arn, new_key, open_kms

from kmscore import engine
from kmscore.client import LocalKMS
from kmscore.errors import KMSError
from kmscore.model import blob as blobfmt


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> LocalKMS:
    """One data dir for the property tests, which only encrypt and decrypt."""
    with open_kms(tmp_path_factory.mktemp("shared"), Clock()) as k:
        yield k


@pytest.fixture
def kms(tmp_path: Path) -> LocalKMS:
    with open_kms(tmp_path / "kms", Clock()) as k:
        yield k


@pytest.fixture
def key(kms: LocalKMS) -> str:
    return new_key(kms)


def test_native_engine_is_under_test() -> None:
    import os

    if os.environ.get("KMSCORE_PUREPYTHON") == "1":
        pytest.skip("KMSCORE_PUREPYTHON=1 runs the service on the twin on purpose")
    assert engine.BACKEND == "native"
    assert engine.AesGcmKey.__module__ == "kmscore.engine._engine"


# --- Encrypt / Decrypt ---------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 31, 32, 33, 4095, 4096])
def test_encrypt_decrypt_sizes(kms: LocalKMS, key: str, size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    out = kms.encrypt(KeyId=key, Plaintext=plaintext)
    assert set(out) == {"CiphertextBlob", "KeyId", "EncryptionAlgorithm"}
    assert out["KeyId"] == key_arn(key)
    assert out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = out["CiphertextBlob"]
    assert isinstance(blob, bytes)
    assert len(blob) == blobfmt.HEADER_LENGTH + 12 + size + 16
    parsed = blobfmt.parse(blob)
    assert parsed.key_id == key and parsed.material_version == 1
    if size >= 16:
        assert plaintext not in blob
    back = kms.decrypt(CiphertextBlob=blob)
    current = kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert back == {
        "KeyId": key_arn(key),
        "Plaintext": plaintext,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "KeyMaterialId": current,
    }


@pytest.mark.parametrize("size", [0, 4097, 8192])
def test_encrypt_plaintext_limits(kms: LocalKMS, key: str, size: int) -> None:
    err = expect("ValidationException", kms.encrypt, KeyId=key, Plaintext=b"Q" * size)
    assert "'plaintext'" in err.message
    assert "QQ" not in err.message  # the value is never echoed


def test_encrypt_accepts_buffers(kms: LocalKMS, key: str) -> None:
    for value in (bytearray(b"buf"), memoryview(b"buf")):
        blob = kms.encrypt(KeyId=key, Plaintext=value)["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=bytearray(blob))["Plaintext"] == b"buf"


def test_encrypt_is_randomized(kms: LocalKMS, key: str) -> None:
    blobs = {kms.encrypt(KeyId=key, Plaintext=b"same")["CiphertextBlob"] for _ in range(50)}
    assert len(blobs) == 50
    ivs = {b[blobfmt.HEADER_LENGTH : blobfmt.HEADER_LENGTH + 12] for b in blobs}
    assert len(ivs) == 50


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"Plaintext": "text"}, "ValidationException"),
        ({"Plaintext": None}, "ValidationException"),
        ({"Plaintext": [1, 2]}, "ValidationException"),
        ({"Plaintext": b"p", "EncryptionAlgorithm": "AES"}, "ValidationException"),
        (
            {"Plaintext": b"p", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"},
            "InvalidKeyUsageException",
        ),
        ({"Plaintext": b"p", "EncryptionAlgorithm": "SM2PKE"}, "InvalidKeyUsageException"),
        ({"Plaintext": b"p", "GrantTokens": ["t"] * 11}, "ValidationException"),
        ({"Plaintext": b"p", "GrantTokens": "t"}, "ValidationException"),
        ({"Plaintext": b"p", "EncryptionContext": {"k": 1}}, "ValidationException"),
        ({"Plaintext": b"p", "EncryptionContext": [("k", "v")]}, "ValidationException"),
        ({"Plaintext": b"p", "EncryptionContext": {"": "v"}}, "ValidationException"),
        ({"Plaintext": b"p", "EncryptionContext": {"k": "\ud800"}}, "ValidationException"),
        ({"Plaintext": b"p", "EncryptionContext": {"k": "v" * 8200}}, "ValidationException"),
        ({"Plaintext": b"p", "DryRun": "true"}, "ValidationException"),
        ({"Plaintext": b"p", "Recipient": {}}, "ValidationException"),
        ({"Plaintext": b"p", "DryRun": True}, "DryRunOperationException"),
    ],
)
def test_encrypt_refusals(kms: LocalKMS, key: str, request_: dict[str, Any], code: str) -> None:
    expect(code, kms.encrypt, KeyId=key, **request_)


def test_encrypt_without_required_members(kms: LocalKMS, key: str) -> None:
    err = expect("ValidationException", kms.encrypt, KeyId=key)
    assert "'plaintext'" in err.message
    err = expect("ValidationException", kms.encrypt, Plaintext=b"p")
    assert "'keyId'" in err.message


def test_dry_run_false_is_a_real_call(kms: LocalKMS, key: str) -> None:
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", DryRun=False)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, DryRun=False)["Plaintext"] == b"p"


def test_decrypt_with_key_id(kms: LocalKMS, key: str) -> None:
    other = new_key(kms)
    kms.create_alias(AliasName="alias/mine", TargetKeyId=key)
    kms.create_alias(AliasName="alias/other", TargetKeyId=other)
    blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    for ref in (key, key_arn(key), "alias/mine", alias_arn("alias/mine")):
        assert kms.decrypt(CiphertextBlob=blob, KeyId=ref)["Plaintext"] == b"p"
    for ref in (other, key_arn(other), "alias/other", alias_arn("alias/other")):
        expect("IncorrectKeyException", kms.decrypt, CiphertextBlob=blob, KeyId=ref)
    expect("NotFoundException", kms.decrypt, CiphertextBlob=blob, KeyId=str(uuid.uuid4()))
    expect("NotFoundException", kms.decrypt, CiphertextBlob=blob, KeyId="alias/none")


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({}, "ValidationException"),
        ({"CiphertextBlob": b""}, "ValidationException"),
        ({"CiphertextBlob": b"x" * 6145}, "ValidationException"),
        ({"CiphertextBlob": "base64text"}, "ValidationException"),
        ({"CiphertextBlob": b"x" * 6144}, "InvalidCiphertextException"),
        ({"CiphertextBlob": b"x"}, "InvalidCiphertextException"),
        (
            {"CiphertextBlob": b"B", "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"},
            "InvalidKeyUsageException",
        ),
        (
            {"CiphertextBlob": b"B", "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
            "UnsupportedOperationException",
        ),
        ({"CiphertextBlob": b"B", "Recipient": {"Other": 1}}, "ValidationException"),
        ({"CiphertextBlob": b"B", "DryRunModifiers": ["SKIP"]}, "ValidationException"),
        ({"CiphertextBlob": b"B", "EncryptionContext": {"a": "b"}}, "InvalidCiphertextException"),
        ({"CiphertextBlob": b"B", "DryRun": True}, "DryRunOperationException"),
        ({"CiphertextBlob": b"B", "Plaintext": b"p"}, "ValidationException"),
    ],
)
def test_decrypt_refusals(kms: LocalKMS, key: str, request_: dict[str, Any], code: str) -> None:
    good = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    request = {k: (good if v == b"B" else v) for k, v in request_.items()}
    expect(code, kms.decrypt, **request)


def test_decrypt_dry_run_checks_the_ciphertext(kms: LocalKMS, key: str) -> None:
    good = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    bad = good[:-1] + bytes([good[-1] ^ 1])
    expect("DryRunOperationException", kms.decrypt, CiphertextBlob=good, DryRun=True)
    expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=bad, DryRun=True)
    # IGNORE_CIPHERTEXT skips only the authentication of the ciphertext.
    expect(
        "DryRunOperationException",
        kms.decrypt,
        CiphertextBlob=bad,
        DryRun=True,
        DryRunModifiers=["IGNORE_CIPHERTEXT"],
    )
    kms.disable_key(KeyId=key)
    expect(
        "DisabledException",
        kms.decrypt,
        CiphertextBlob=good,
        DryRun=True,
        DryRunModifiers=["IGNORE_CIPHERTEXT"],
    )


def test_blob_from_another_data_dir_does_not_decrypt(tmp_path: Path) -> None:
    with open_kms(tmp_path / "a") as a, open_kms(tmp_path / "b") as b:
        blob = a.encrypt(KeyId=new_key(a), Plaintext=b"p")["CiphertextBlob"]
        expect("NotFoundException", b.decrypt, CiphertextBlob=blob)


# --- ReEncrypt -----------------------------------------------------------------------


def test_re_encrypt(kms: LocalKMS, key: str) -> None:
    dest = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"move me", EncryptionContext={"a": "1"})[
        "CiphertextBlob"
    ]
    out = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"a": "1"},
        DestinationKeyId=dest,
        DestinationEncryptionContext={"b": "2"},
    )
    src_md = kms.describe_key(KeyId=key)["KeyMetadata"]
    dst_md = kms.describe_key(KeyId=dest)["KeyMetadata"]
    assert out["SourceKeyId"] == key_arn(key) and out["KeyId"] == key_arn(dest)
    assert out["SourceEncryptionAlgorithm"] == out["DestinationEncryptionAlgorithm"]
    assert out["SourceEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert out["SourceKeyMaterialId"] == src_md["CurrentKeyMaterialId"]
    assert out["DestinationKeyMaterialId"] == dst_md["CurrentKeyMaterialId"]
    new_blob = out["CiphertextBlob"]
    assert blobfmt.parse(new_blob).key_id == dest
    assert kms.decrypt(CiphertextBlob=new_blob, EncryptionContext={"b": "2"})["Plaintext"] == (
        b"move me"
    )
    expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=new_blob)
    # Same key, new context.
    again = kms.re_encrypt(
        CiphertextBlob=new_blob,
        SourceEncryptionContext={"b": "2"},
        SourceKeyId=f"{dest}",
        DestinationKeyId=key_arn(key),
    )["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=again)["Plaintext"] == b"move me"


def test_re_encrypt_errors(kms: LocalKMS, key: str) -> None:
    dest = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"a": "1"})["CiphertextBlob"]
    ctx = {"SourceEncryptionContext": {"a": "1"}}
    expect("InvalidCiphertextException", kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=dest)
    expect(
        "IncorrectKeyException",
        kms.re_encrypt,
        CiphertextBlob=blob,
        SourceKeyId=dest,
        DestinationKeyId=dest,
        **ctx,
    )
    expect(
        "NotFoundException",
        kms.re_encrypt,
        CiphertextBlob=blob,
        DestinationKeyId=str(uuid.uuid4()),
        **ctx,
    )
    expect("ValidationException", kms.re_encrypt, CiphertextBlob=blob, **ctx)
    expect(
        "InvalidKeyUsageException",
        kms.re_encrypt,
        CiphertextBlob=blob,
        DestinationKeyId=dest,
        DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256",
        **ctx,
    )
    expect(
        "DryRunOperationException",
        kms.re_encrypt,
        CiphertextBlob=blob,
        DestinationKeyId=dest,
        DryRun=True,
        **ctx,
    )
    kms.disable_key(KeyId=dest)
    expect("DisabledException", kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=dest, **ctx)
    kms.enable_key(KeyId=dest)
    kms.disable_key(KeyId=key)
    expect("DisabledException", kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=dest, **ctx)


# --- GenerateDataKey / GenerateDataKeyWithoutPlaintext ---------------------------------


@pytest.mark.parametrize(
    ("request_", "length"),
    [
        ({"KeySpec": "AES_256"}, 32),
        ({"KeySpec": "AES_128"}, 16),
        ({"NumberOfBytes": 1}, 1),
        ({"NumberOfBytes": 64}, 64),
        ({"NumberOfBytes": 1024}, 1024),
    ],
)
def test_generate_data_key(kms: LocalKMS, key: str, request_: dict[str, Any], length: int) -> None:
    ctx = {"purpose": "test"}
    out = kms.generate_data_key(KeyId=key, EncryptionContext=ctx, **request_)
    assert set(out) == {"CiphertextBlob", "Plaintext", "KeyId", "KeyMaterialId"}
    assert out["KeyId"] == key_arn(key)
    assert len(out["Plaintext"]) == length
    assert (
        out["KeyMaterialId"] == kms.describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"]
    )
    back = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=ctx)
    assert back["Plaintext"] == out["Plaintext"]
    expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=out["CiphertextBlob"])
    bare = kms.generate_data_key_without_plaintext(KeyId=key, EncryptionContext=ctx, **request_)
    assert set(bare) == {"CiphertextBlob", "KeyId", "KeyMaterialId"}
    back = kms.decrypt(CiphertextBlob=bare["CiphertextBlob"], EncryptionContext=ctx)
    assert len(back["Plaintext"]) == length


def test_data_keys_are_random(kms: LocalKMS, key: str) -> None:
    keys = {kms.generate_data_key(KeyId=key, KeySpec="AES_256")["Plaintext"] for _ in range(50)}
    assert len(keys) == 50


@pytest.mark.parametrize("op", ["generate_data_key", "generate_data_key_without_plaintext"])
@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({}, "ValidationException"),  # neither KeySpec nor NumberOfBytes
        ({"KeySpec": "AES_256", "NumberOfBytes": 32}, "ValidationException"),  # both
        ({"NumberOfBytes": 0}, "ValidationException"),
        ({"NumberOfBytes": 1025}, "ValidationException"),
        ({"NumberOfBytes": -1}, "ValidationException"),
        ({"NumberOfBytes": "32"}, "ValidationException"),
        ({"NumberOfBytes": 32.0}, "ValidationException"),
        ({"KeySpec": "AES_512"}, "ValidationException"),
        ({"KeySpec": "SYMMETRIC_DEFAULT"}, "ValidationException"),
        ({"KeySpec": "AES_256", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, "ValidationException"),
        ({"KeySpec": "AES_256", "DryRun": True}, "DryRunOperationException"),
    ],
)
def test_generate_data_key_refusals(
    kms: LocalKMS, key: str, op: str, request_: dict[str, Any], code: str
) -> None:
    expect(code, getattr(kms, op), KeyId=key, **request_)


def test_generate_data_key_recipient(kms: LocalKMS, key: str) -> None:
    expect(
        "UnsupportedOperationException",
        kms.generate_data_key,
        KeyId=key,
        KeySpec="AES_256",
        Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b"d"},
    )
    # GenerateDataKeyWithoutPlaintext has no Recipient member at all.
    expect(
        "ValidationException",
        kms.generate_data_key_without_plaintext,
        KeyId=key,
        KeySpec="AES_256",
        Recipient={},
    )


# --- GenerateRandom ------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 16, 1024])
def test_generate_random(kms: LocalKMS, n: int) -> None:
    out = kms.generate_random(NumberOfBytes=n)
    assert set(out) == {"Plaintext"} and len(out["Plaintext"]) == n
    if n >= 16:
        assert out["Plaintext"] != kms.generate_random(NumberOfBytes=n)["Plaintext"]


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({}, "ValidationException"),
        ({"NumberOfBytes": 0}, "ValidationException"),
        ({"NumberOfBytes": 1025}, "ValidationException"),
        ({"NumberOfBytes": "8"}, "ValidationException"),
        ({"NumberOfBytes": 8, "KeyId": "k"}, "ValidationException"),
        ({"NumberOfBytes": 8, "CustomKeyStoreId": "cks-1"}, "CustomKeyStoreNotFoundException"),
        ({"NumberOfBytes": 8, "CustomKeyStoreId": ""}, "ValidationException"),
        (
            {"NumberOfBytes": 8, "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
            "UnsupportedOperationException",
        ),
    ],
)
def test_generate_random_refusals(kms: LocalKMS, request_: dict[str, Any], code: str) -> None:
    expect(code, kms.generate_random, **request_)


# --- key states ----------------------------------------------------------------------


def _crypto_calls(kms: LocalKMS, key: str, other: str, blob: bytes) -> dict[str, Any]:
    """Every symmetric operation that uses ``key``'s material, as a thunk."""
    return {
        "Encrypt": lambda: kms.encrypt(KeyId=key, Plaintext=b"p"),
        "Decrypt": lambda: kms.decrypt(CiphertextBlob=blob),
        "Decrypt+KeyId": lambda: kms.decrypt(CiphertextBlob=blob, KeyId=key),
        "ReEncrypt(source)": lambda: kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=other),
        "ReEncrypt(destination)": lambda: kms.re_encrypt(
            CiphertextBlob=kms.encrypt(KeyId=other, Plaintext=b"p")["CiphertextBlob"],
            DestinationKeyId=key,
        ),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256"),
        "GenerateDataKeyWithoutPlaintext": lambda: kms.generate_data_key_without_plaintext(
            KeyId=key, NumberOfBytes=8
        ),
        "GenerateDataKeys": lambda: kms.generate_data_keys(KeyId=key, KeySpec="AES_256", Count=3),
        "Encrypt DryRun": lambda: kms.encrypt(KeyId=key, Plaintext=b"p", DryRun=True),
        "GenerateDataKey DryRun": lambda: kms.generate_data_key(
            KeyId=key, KeySpec="AES_256", DryRun=True
        ),
    }


def _decrypt_many_codes(kms: LocalKMS, blob: bytes) -> list[str]:
    results = kms.decrypt_many(CiphertextBlobs=[blob, blob])["Results"]
    return [r["Error"]["Code"] for r in results if "Error" in r]


def test_disabled_key_refuses_crypto(kms: LocalKMS, key: str) -> None:
    other = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    kms.disable_key(KeyId=key)
    for name, call in _crypto_calls(kms, key, other, blob).items():
        with pytest.raises(KMSError) as info:
            call()
        assert info.value.code == "DisabledException", name
    assert _decrypt_many_codes(kms, blob) == ["DisabledException"] * 2
    kms.enable_key(KeyId=key)
    for name, call in _crypto_calls(kms, key, other, blob).items():
        if "DryRun" in name:
            expect("DryRunOperationException", call)
        else:
            call()
    assert _decrypt_many_codes(kms, blob) == []


def test_pending_deletion_key_refuses_crypto(kms: LocalKMS, key: str) -> None:
    other = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    for name, call in _crypto_calls(kms, key, other, blob).items():
        with pytest.raises(KMSError) as info:
            call()
        assert info.value.code == "KMSInvalidStateException", name
    assert _decrypt_many_codes(kms, blob) == ["KMSInvalidStateException"] * 2
    kms.cancel_key_deletion(KeyId=key)
    # Back to Disabled, not Enabled.
    expect("DisabledException", kms.decrypt, CiphertextBlob=blob)
    kms.enable_key(KeyId=key)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


def test_wrong_key_usage_is_refused(kms: LocalKMS, key: str) -> None:
    """A key of another usage (put in the store directly) never does symmetric crypto."""
    mac_id = inject_key(kms, key, key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC")
    blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    expect("InvalidKeyUsageException", kms.encrypt, KeyId=mac_id, Plaintext=b"p")
    expect("InvalidKeyUsageException", kms.generate_data_key, KeyId=mac_id, KeySpec="AES_256")
    expect(
        "InvalidKeyUsageException", kms.generate_data_keys, KeyId=mac_id, KeySpec="AES_256", Count=2
    )
    expect("InvalidKeyUsageException", kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=mac_id)
    expect("UnsupportedOperationException", kms.rotate_key_on_demand, KeyId=mac_id)
    expect("UnsupportedOperationException", kms.enable_key_rotation, KeyId=mac_id)
    # A blob whose header names the HMAC key is refused for its usage.
    forged = blobfmt.header(mac_id, 1) + blob[blobfmt.HEADER_LENGTH :]
    expect("InvalidKeyUsageException", kms.decrypt, CiphertextBlob=forged)


# --- encryption context --------------------------------------------------------------


def test_context_is_not_a_concatenation(kms: LocalKMS, key: str) -> None:
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"ab": "c"})["CiphertextBlob"]
    for wrong in ({"a": "bc"}, {"abc": ""}, {"a": "b", "": "c"}, {"ab": "c", "": ""}, {}):
        if "" in wrong:
            expect("ValidationException", kms.decrypt, CiphertextBlob=blob, EncryptionContext=wrong)
        else:
            expect(
                "InvalidCiphertextException",
                kms.decrypt,
                CiphertextBlob=blob,
                EncryptionContext=wrong,
            )
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"ab": "c"})["Plaintext"] == b"p"
    # The same holds for data keys, ReEncrypt and DecryptMany.
    dk = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"a": "bc"})
    expect(
        "InvalidCiphertextException",
        kms.decrypt,
        CiphertextBlob=dk["CiphertextBlob"],
        EncryptionContext={"ab": "c"},
    )
    expect(
        "InvalidCiphertextException",
        kms.re_encrypt,
        CiphertextBlob=blob,
        SourceEncryptionContext={"a": "bc"},
        DestinationKeyId=key,
    )
    (result,) = kms.decrypt_many(CiphertextBlobs=[blob], EncryptionContext={"a": "bc"})["Results"]
    assert result["Error"]["Code"] == "InvalidCiphertextException"
    # Pairs that would run together under a key=value;... join.
    blob2 = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"a": "b;c=d"})[
        "CiphertextBlob"
    ]
    expect(
        "InvalidCiphertextException",
        kms.decrypt,
        CiphertextBlob=blob2,
        EncryptionContext={"a": "b", "c": "d"},
    )


def test_context_order_does_not_matter(kms: LocalKMS, key: str) -> None:
    forward = {f"k{i}": f"v{i}" for i in range(10)}
    backward = dict(reversed(list(forward.items())))
    assert list(forward) != list(backward)
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=forward)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=backward)["Plaintext"] == b"p"


def test_empty_and_missing_context_are_the_same(kms: LocalKMS, key: str) -> None:
    with_empty = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={})["CiphertextBlob"]
    without = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=with_empty)["Plaintext"] == b"p"
    assert kms.decrypt(CiphertextBlob=without, EncryptionContext={})["Plaintext"] == b"p"
    assert kms.decrypt(CiphertextBlob=without, EncryptionContext=None)["Plaintext"] == b"p"


def test_context_keys_and_values_are_bound(kms: LocalKMS, key: str) -> None:
    ctx = {"tenant": "acme", "table": "users"}
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=ctx)["CiphertextBlob"]
    for wrong in (
        {"tenant": "acme"},
        {**ctx, "extra": "x"},
        {"tenant": "users", "table": "acme"},
        {"Tenant": "acme", "table": "users"},
        {"tenant": "acme ", "table": "users"},
    ):
        expect(
            "InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob, EncryptionContext=wrong
        )


def test_unicode_context(kms: LocalKMS, key: str) -> None:
    ctx = {"ключ": "значение", "🔑": "🔒", "e\u0301": "combining", "é": "precomposed", "": "x"}
    del ctx[""]
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"p"
    # Canonically equivalent Unicode is still a different context (no normalization).
    swapped = {k: v for k, v in ctx.items() if k not in ("e\u0301", "é")}
    swapped["é"], swapped["e\u0301"] = "combining", "precomposed"
    expect(
        "InvalidCiphertextException", kms.decrypt, CiphertextBlob=blob, EncryptionContext=swapped
    )


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_contexts = st.dictionaries(_text.filter(bool), _text, max_size=5)


@settings(max_examples=60)
@given(ctx=_contexts, other=_contexts, plaintext=st.binary(min_size=1, max_size=64))
def test_contexts_round_trip_and_differ(
    shared: LocalKMS, ctx: dict[str, str], other: dict[str, str], plaintext: bytes
) -> None:
    key = _shared_key(shared)
    blob = shared.encrypt(KeyId=key, Plaintext=plaintext, EncryptionContext=ctx)["CiphertextBlob"]
    reordered = dict(reversed(list(ctx.items())))
    assert shared.decrypt(CiphertextBlob=blob, EncryptionContext=reordered)["Plaintext"] == (
        plaintext
    )
    if other != ctx:
        with pytest.raises(KMSError) as info:
            shared.decrypt(CiphertextBlob=blob, EncryptionContext=other)
        assert info.value.code == "InvalidCiphertextException"


_SHARED_KEYS: dict[int, str] = {}


def _shared_key(kms: LocalKMS) -> str:
    if id(kms) not in _SHARED_KEYS:
        _SHARED_KEYS[id(kms)] = new_key(kms)
    return _SHARED_KEYS[id(kms)]


# --- DryRun: every check first, then DryRunOperationException, and no effect ---------


def test_dry_run_comes_after_every_check(kms: LocalKMS, key: str, tmp_path: Path) -> None:
    blob = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionContext={"a": "b"})["CiphertextBlob"]
    dry = {"DryRun": True}
    ghost = str(uuid.uuid4())
    cases = [
        ("NotFoundException", kms.encrypt, {"KeyId": ghost, "Plaintext": b"p"}),
        ("ValidationException", kms.encrypt, {"KeyId": key, "Plaintext": b""}),
        (
            "InvalidKeyUsageException",
            kms.encrypt,
            {"KeyId": key, "Plaintext": b"p", "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"},
        ),
        ("ValidationException", kms.generate_data_key, {"KeyId": key}),
        (
            "NotFoundException",
            kms.generate_data_key_without_plaintext,
            {"KeyId": ghost, "KeySpec": "AES_256"},
        ),
        (
            "ValidationException",
            kms.generate_data_keys,
            {"KeyId": key, "Count": 0, "KeySpec": "AES_256"},
        ),
        ("InvalidCiphertextException", kms.decrypt, {"CiphertextBlob": blob}),
        (
            "IncorrectKeyException",
            kms.decrypt,
            {"CiphertextBlob": blob, "EncryptionContext": {"a": "b"}, "KeyId": new_key(kms)},
        ),
        (
            "NotFoundException",
            kms.re_encrypt,
            {
                "CiphertextBlob": blob,
                "SourceEncryptionContext": {"a": "b"},
                "DestinationKeyId": ghost,
            },
        ),
        (
            "InvalidCiphertextException",
            kms.re_encrypt,
            {"CiphertextBlob": blob, "DestinationKeyId": key},
        ),
    ]
    for code, op, request in cases:
        expect(code, op, **request, **dry)
    # Authorization is one of the checks: a caller the key policy does not
    # allow is denied, not told that the call would have succeeded.
    with open_kms(tmp_path / "kms", principal="arn:aws:iam::777788889999:root") as outsider:
        expect("AccessDeniedException", outsider.encrypt, KeyId=key, Plaintext=b"p", **dry)
        expect(
            "AccessDeniedException",
            outsider.decrypt,
            CiphertextBlob=blob,
            EncryptionContext={"a": "b"},
            **dry,
        )


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    # A block of one: every counted invocation is a write the store shows.
    kms = open_kms(tmp_path, invocation_block=1)
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    store = kms.service.store
    before = [(m.version, m.reserved) for m in store.list_materials(key)]
    for op, request in (
        (kms.encrypt, {"KeyId": key, "Plaintext": b"p"}),
        (kms.generate_data_key, {"KeyId": key, "KeySpec": "AES_256"}),
        (kms.generate_data_key_without_plaintext, {"KeyId": key, "NumberOfBytes": 8}),
        (kms.generate_data_keys, {"KeyId": key, "KeySpec": "AES_256", "Count": 5000}),
        (kms.re_encrypt, {"CiphertextBlob": blob, "DestinationKeyId": key}),
        (kms.decrypt, {"CiphertextBlob": blob}),
        (kms.decrypt_many, {"CiphertextBlobs": [blob]}),
    ):
        expect("DryRunOperationException", op, **request, DryRun=True)
    assert before == [(1, 1)]
    assert [(m.version, m.reserved) for m in store.list_materials(key)] == before
    kms.encrypt(KeyId=key, Plaintext=b"p")  # the count does move for a real call
    assert [(m.version, m.reserved) for m in store.list_materials(key)] == [(1, 2)]
    kms.close()
