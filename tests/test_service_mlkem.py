"""ML-KEM keys through the service: CreateKey, Encapsulate, Decapsulate, GetPublicKey,
GenerateDataKeyPair, grants, key states, refusals and storage.

The NIST vectors are in test_mlkem_vectors.py; this file checks the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mlkem as crypto_mlkem
from kyber_py.ml_kem import ML_KEM_512
from service_helpers import Clock, expect, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.crypto.asymmetric import mlkem
from kmscore.model.keyspecs import KeySpec

SPECS = ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")
CIPHERTEXT = {"ML_KEM_512": 768, "ML_KEM_768": 1088, "ML_KEM_1024": 1568}
KEM = "ENCAPSULATE_DECAPSULATE"


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with open_kms(tmp_path_factory.mktemp("mlkem"), Clock()) as k:
        yield k


@pytest.fixture(scope="module")
def keys(kms: LocalKMS) -> dict[str, str]:
    return {
        spec: str(kms.create_key(KeySpec=spec, KeyUsage=KEM)["KeyMetadata"]["KeyId"])
        for spec in SPECS
    }


def _encapsulate(kms: LocalKMS, key: str, **extra: Any) -> dict[str, Any]:
    return kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM", **extra)


def _decapsulate(kms: LocalKMS, key: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    return kms.decapsulate(
        KeyId=key, SharedSecretCiphertextBlob=blob, EncapsulationAlgorithm="ML_KEM", **extra
    )


@pytest.mark.parametrize("spec", SPECS)
def test_describe_key(kms: LocalKMS, keys: dict[str, str], spec: str) -> None:
    md = kms.describe_key(KeyId=keys[spec])["KeyMetadata"]
    assert (md["KeySpec"], md["KeyUsage"]) == (spec, KEM)
    assert md["EncapsulationAlgorithms"] == ["ML_KEM"]
    for member in ("EncryptionAlgorithms", "SigningAlgorithms", "CustomerMasterKeySpec"):
        assert member not in md


@pytest.mark.parametrize("spec", SPECS)
def test_round_trip(kms: LocalKMS, keys: dict[str, str], spec: str) -> None:
    key = keys[spec]
    out = _encapsulate(kms, key)
    assert out["KeyId"].endswith(key) and out["EncapsulationAlgorithm"] == "ML_KEM"
    assert len(out["SharedSecret"]) == 32
    assert len(out["SharedSecretCiphertextBlob"]) == CIPHERTEXT[spec]
    back = _decapsulate(kms, key, out["SharedSecretCiphertextBlob"])
    assert back["SharedSecret"] == out["SharedSecret"]
    assert back["KeyId"] == out["KeyId"] and back["EncapsulationAlgorithm"] == "ML_KEM"
    assert _encapsulate(kms, key)["SharedSecret"] != out["SharedSecret"]


@pytest.mark.parametrize("spec", SPECS)
def test_a_peer_encapsulates_to_the_public_key(
    kms: LocalKMS, keys: dict[str, str], spec: str
) -> None:
    """GetPublicKey's SPKI is all another party needs; KMS decapsulates what it sends."""
    pub = kms.get_public_key(KeyId=keys[spec])
    assert (pub["KeySpec"], pub["KeyUsage"]) == (spec, KEM)
    assert pub["EncapsulationAlgorithms"] == ["ML_KEM"]
    assert "CustomerMasterKeySpec" not in pub
    der = pub["PublicKey"]
    if spec == "ML_KEM_512":
        peer = mlkem.load_public_der(KeySpec.ML_KEM_512, der)
        assert peer is not None
        secret, ciphertext = ML_KEM_512.encaps(peer.public_bytes_raw())
    else:
        loaded = serialization.load_der_public_key(der)
        assert isinstance(loaded, crypto_mlkem.MLKEM768PublicKey | crypto_mlkem.MLKEM1024PublicKey)
        secret, ciphertext = loaded.encapsulate()
    assert _decapsulate(kms, keys[spec], ciphertext)["SharedSecret"] == secret


@pytest.mark.parametrize("spec", SPECS)
def test_altered_ciphertext_is_implicitly_rejected(
    kms: LocalKMS, keys: dict[str, str], spec: str
) -> None:
    out = _encapsulate(kms, keys[spec])
    blob = bytearray(out["SharedSecretCiphertextBlob"])
    blob[7] ^= 0x40
    other = _decapsulate(kms, keys[spec], bytes(blob))["SharedSecret"]
    assert len(other) == 32 and other != out["SharedSecret"]


@pytest.mark.parametrize("spec", SPECS)
def test_wrong_length_is_invalid_ciphertext(kms: LocalKMS, keys: dict[str, str], spec: str) -> None:
    blob = _encapsulate(kms, keys[spec])["SharedSecretCiphertextBlob"]
    for bad in (blob[:-1], blob + b"\x00", b"\x01"):
        err = expect("InvalidCiphertextException", _decapsulate, kms, keys[spec], bad)
        assert str(CIPHERTEXT[spec]) in err.message


def test_another_keys_ciphertext_gives_another_secret(kms: LocalKMS, keys: dict[str, str]) -> None:
    other = kms.create_key(KeySpec="ML_KEM_768", KeyUsage=KEM)["KeyMetadata"]["KeyId"]
    out = _encapsulate(kms, keys["ML_KEM_768"])
    got = _decapsulate(kms, other, out["SharedSecretCiphertextBlob"])["SharedSecret"]
    assert got != out["SharedSecret"]


def test_refusals(kms: LocalKMS, keys: dict[str, str]) -> None:
    symmetric = new_key(kms)
    signer = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    err = expect("InvalidKeyUsageException", _encapsulate, kms, symmetric)
    assert "ENCAPSULATE_DECAPSULATE" in err.message
    expect("InvalidKeyUsageException", _decapsulate, kms, signer["KeyId"], b"x" * 1088)
    err = expect(
        "ValidationException",
        kms.encapsulate,
        KeyId=keys["ML_KEM_768"],
        EncapsulationAlgorithm="ECDH",
    )
    assert "ML_KEM" in err.message
    # An ML-KEM key cannot be made for another usage, or without saying the usage.
    expect("ValidationException", kms.create_key, KeySpec="ML_KEM_768")
    expect("ValidationException", kms.create_key, KeySpec="ML_KEM_768", KeyUsage="SIGN_VERIFY")
    expect(
        "UnsupportedOperationException",
        kms.create_key,
        KeySpec="ML_KEM_768",
        KeyUsage=KEM,
        Origin="EXTERNAL",
    )
    # ML-KEM keys do not encrypt, sign or agree.
    expect("InvalidKeyUsageException", kms.encrypt, KeyId=keys["ML_KEM_768"], Plaintext=b"p")
    expect(
        "InvalidKeyUsageException",
        kms.sign,
        KeyId=keys["ML_KEM_768"],
        Message=b"m",
        SigningAlgorithm="ML_DSA_SHAKE_256",
    )


def test_key_states(kms: LocalKMS) -> None:
    key = kms.create_key(KeySpec="ML_KEM_768", KeyUsage=KEM)["KeyMetadata"]["KeyId"]
    blob = _encapsulate(kms, key)["SharedSecretCiphertextBlob"]
    kms.disable_key(KeyId=key)
    expect("DisabledException", _encapsulate, kms, key)
    expect("DisabledException", _decapsulate, kms, key, blob)
    kms.enable_key(KeyId=key)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    expect("KMSInvalidStateException", _encapsulate, kms, key)
    expect("KMSInvalidStateException", _decapsulate, kms, key, blob)
    expect("KMSInvalidStateException", kms.get_public_key, KeyId=key)
    kms.cancel_key_deletion(KeyId=key)
    kms.enable_key(KeyId=key)
    assert len(_decapsulate(kms, key, blob)["SharedSecret"]) == 32


def test_dry_run(kms: LocalKMS, keys: dict[str, str]) -> None:
    expect("DryRunOperationException", _encapsulate, kms, keys["ML_KEM_512"], DryRun=True)
    blob = b"\x00" * 768
    expect("DryRunOperationException", _decapsulate, kms, keys["ML_KEM_512"], blob, DryRun=True)


def test_grants_for_encapsulation(kms: LocalKMS, keys: dict[str, str]) -> None:
    key = keys["ML_KEM_1024"]
    kms.create_grant(
        KeyId=key,
        GranteePrincipal="arn:aws:iam::444455556666:role/peer",
        Operations=["Encapsulate", "Decapsulate", "GetPublicKey"],
    )
    expect(
        "ValidationException",
        kms.create_grant,
        KeyId=key,
        GranteePrincipal="arn:aws:iam::444455556666:role/peer",
        Operations=["Encrypt"],
    )


@pytest.mark.parametrize("spec", SPECS)
def test_data_key_pair(kms: LocalKMS, spec: str) -> None:
    wrapping = new_key(kms)
    out = kms.generate_data_key_pair(KeyId=wrapping, KeyPairSpec=spec)
    assert out["KeyPairSpec"] == spec
    key = mlkem.load_private_der(KeySpec(spec), out["PrivateKeyPlaintext"])
    assert key is not None
    assert mlkem.spki_der(KeySpec(spec), key.public_key().public_bytes_raw()) == out["PublicKey"]
    plain = kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"])["Plaintext"]
    assert plain == out["PrivateKeyPlaintext"]
    without = kms.generate_data_key_pair_without_plaintext(KeyId=wrapping, KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in without


def test_private_keys_are_stored_only_under_the_root_key(tmp_path: Path) -> None:
    seeds = []
    with open_kms(tmp_path / "kms", Clock()) as kms:
        for spec in SPECS:
            key = kms.create_key(KeySpec=spec, KeyUsage=KEM)["KeyMetadata"]["KeyId"]
            blob = _encapsulate(kms, key)["SharedSecretCiphertextBlob"]
            record = kms.service.get_key(key)
            assert record is not None
            loaded = kms.service.keyring.asymmetric(record, record.current_version).key
            private = loaded.private_key()
            der = private.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            seeds.append((key, blob, der[-64:]))
    with open_kms(tmp_path / "kms", Clock()) as kms:
        for key, blob, _ in seeds:
            assert len(_decapsulate(kms, key, blob)["SharedSecret"]) == 32
    for path in (tmp_path / "kms").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for _, _, seed in seeds:
                assert seed not in data, path
