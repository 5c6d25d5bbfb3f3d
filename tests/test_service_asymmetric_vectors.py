"""Wycheproof vectors through the service's VerifyMac, Decrypt and Verify (issue 8).

The vector keys get in by a test-only import path: a key record and its material,
wrapped under the root key, written straight to the store, as an import
operation would. HMAC and RSA-OAEP vectors give the secret key, so the service
runs exactly as for its own keys. ECDSA and Ed25519 vectors give only a public
key, so the key is made with generated material and its cached loaded version is
replaced by the vector's public key: Verify then runs the whole service path
(shape, state, usage, algorithm, authorization, error mapping) over it.

Valid vectors succeed; invalid ones answer KMSInvalidSignatureException,
KMSInvalidMacException or InvalidCiphertextException (or ValidationException
for an empty message or signature, which the request shape refuses). AWS rules
narrow "valid" as in ``test_asymmetric_vectors.py``: full-length MACs only, OAEP
with an empty label only.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import vectors
from service_helpers import Clock, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.crypto.asymmetric import LoadedKey, generate_private_key
from kmscore.errors import KMSError
from kmscore.model.key import KeyMaterialRecord
from kmscore.service.versions import AsymmetricVersion

HMAC_FILES = {
    "wycheproof/hmac_sha256_test.json": ("HMAC_256", "HMAC_SHA_256", 256),
    "wycheproof/hmac_sha384_test.json": ("HMAC_384", "HMAC_SHA_384", 384),
    "wycheproof/hmac_sha512_test.json": ("HMAC_512", "HMAC_SHA_512", 512),
}


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with open_kms(tmp_path_factory.mktemp("vectors"), Clock(), audit=False) as k:
        yield k


def import_key(kms: LocalKMS, spec: str, usage: str, material: bytes) -> str:
    """Test-only import: a key of ``spec`` and ``usage`` whose material is ``material``."""
    svc = kms.service
    template = svc.store.get_key(new_key(kms))
    assert template is not None
    key_id = str(uuid.uuid4())
    arn = svc.key_arn(key_id)
    record = template.replace(key_id=key_id, arn=arn, key_spec=spec, key_usage=usage)
    wrapped = svc.root_key.wrap(material, arn, 1)
    version = KeyMaterialRecord(key_id, 1, wrapped, template.creation_date, os.urandom(32).hex())
    svc.store.create_key(record, version, {})
    return key_id


def public_only_key(kms: LocalKMS, spec: str, public_der: bytes) -> str:
    """A SIGN_VERIFY key whose loaded version holds only ``public_der`` (Verify only)."""
    key_id = import_key(kms, spec, "SIGN_VERIFY", generate_private_key(spec))
    record = kms.service.store.get_key(key_id)
    assert record is not None
    loaded = kms.service.keyring.asymmetric(record, 1)
    public = LoadedKey.load_public(spec, public_der)
    kms.service.keyring._asymmetric[(key_id, 1)] = AsymmetricVersion(
        key_id, 1, public, loaded.material_id
    )
    return key_id


def outcome(fn: Any, **request: Any) -> str:
    """``"ok"`` or the AWS error code of one call."""
    try:
        fn(**request)
    except KMSError as exc:
        return exc.code
    return "ok"


def groups(relative: str) -> list[dict[str, Any]]:
    doc = vectors.load_json(relative)
    assert sum(len(g["tests"]) for g in doc["testGroups"]) == doc["numberOfTests"]
    return list(doc["testGroups"])


@pytest.mark.parametrize("relative", sorted(HMAC_FILES))
def test_hmac_vectors_through_verify_mac(kms: LocalKMS, relative: str) -> None:
    spec, algorithm, full_bits = HMAC_FILES[relative]
    counts = {"valid": 0, "invalid": 0}
    for group in groups(relative):
        for test in group["tests"]:
            key = import_key(kms, spec, "GENERATE_VERIFY_MAC", bytes.fromhex(test["key"]))
            msg, tag = bytes.fromhex(test["msg"]), bytes.fromhex(test["tag"])
            got = outcome(kms.verify_mac, KeyId=key, Message=msg, Mac=tag, MacAlgorithm=algorithm)
            if not msg:
                assert got == "ValidationException", test["tcId"]
                continue
            if test["result"] == "valid" and group["tagSize"] == full_bits:
                assert got == "ok", test["tcId"]
                mac = kms.generate_mac(KeyId=key, Message=msg, MacAlgorithm=algorithm)["Mac"]
                assert mac == tag
                counts["valid"] += 1
            else:
                # Invalid, or a truncated tag (AWS never truncates): refused.
                assert got in ("KMSInvalidMacException", "ValidationException"), test["tcId"]
                counts["invalid"] += 1
    assert counts["valid"] > 10 and counts["invalid"] > 10


def test_rsa_oaep_vectors_through_decrypt(kms: LocalKMS) -> None:
    relative = "wycheproof/rsa_oaep_2048_sha256_mgf1sha256_test.json"
    counts = {"ok": 0, "refused": 0}
    for group in groups(relative):
        key = import_key(
            kms, "RSA_2048", "ENCRYPT_DECRYPT", bytes.fromhex(group["privateKeyPkcs8"])
        )
        for test in group["tests"]:
            ct = bytes.fromhex(test["ct"])
            request = {
                "KeyId": key,
                "CiphertextBlob": ct,
                "EncryptionAlgorithm": "RSAES_OAEP_SHA_256",
            }
            if test["result"] == "valid" and not test["label"]:
                assert kms.decrypt(**request)["Plaintext"] == bytes.fromhex(test["msg"])
                counts["ok"] += 1
                continue
            got = outcome(kms.decrypt, **request)
            if test["result"] == "acceptable":
                continue
            assert got in ("InvalidCiphertextException", "ValidationException"), test["tcId"]
            counts["refused"] += 1
    assert counts["ok"] > 5 and counts["refused"] > 5


@pytest.mark.parametrize(
    ("relative", "spec", "algorithm"),
    [
        ("wycheproof/ecdsa_secp256r1_sha256_test.json", "ECC_NIST_P256", "ECDSA_SHA_256"),
        ("wycheproof/ed25519_test.json", "ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
    ],
)
def test_signature_vectors_through_verify(
    kms: LocalKMS, relative: str, spec: str, algorithm: str
) -> None:
    counts = {"valid": 0, "invalid": 0}
    for group in groups(relative):
        key = public_only_key(kms, spec, bytes.fromhex(group["publicKeyDer"]))
        for test in group["tests"]:
            msg, sig = bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"])
            request = {
                "KeyId": key,
                "Message": msg,
                "Signature": sig,
                "SigningAlgorithm": algorithm,
            }
            got = outcome(kms.verify, **request)
            if not msg or not sig:
                assert got == "ValidationException", test["tcId"]
                continue
            if test["result"] == "valid":
                assert got == "ok", test["tcId"]
                counts["valid"] += 1
                if algorithm.startswith("ECDSA"):
                    digest = hashlib.sha256(msg).digest()
                    assert outcome(kms.verify, **{**request, "Message": digest,
                                                  "MessageType": "DIGEST"}) == "ok"  # fmt: skip
            elif test["result"] == "invalid":
                assert got == "KMSInvalidSignatureException", test["tcId"]
                counts["invalid"] += 1
    assert counts["valid"] > 50 and counts["invalid"] > 50
