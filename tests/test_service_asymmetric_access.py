"""Key policies and grants over the asymmetric and HMAC operations, with AWS's condition keys.

``kms:SigningAlgorithm``, ``kms:MessageType``, ``kms:MacAlgorithm``,
``kms:KeyAgreementAlgorithm``, ``kms:EncryptionAlgorithm`` (RSA) and
``kms:DataKeyPairSpec`` reach the key policy; grants allow the new operations.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import expect

from kmscore.client import LocalKMS

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"


def settle() -> None:
    """Wait until the other instance on the data dir sees the last change."""
    time.sleep(0.1)


def policy(*conditional: dict[str, Any]) -> str:
    """The root statement plus statements allowing bob, each with its condition."""
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}
    ]
    for entry in conditional:
        statements.append({"Effect": "Allow", "Principal": {"AWS": BOB}, "Resource": "*", **entry})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[tuple[LocalKMS, LocalKMS]]:
    data = tmp_path / "kms"
    with LocalKMS(data, audit=False) as admin:
        admin.service.principals.add("bob")  # no identity policy: only key policies and grants
        with LocalKMS(data, principal=BOB, audit=False) as bob:
            yield admin, bob


def test_signing_conditions(clients: tuple[LocalKMS, LocalKMS]) -> None:
    admin, bob = clients
    statement = {
        "Action": ["kms:Sign", "kms:Verify"],
        "Condition": {
            "StringEquals": {
                "kms:SigningAlgorithm": "RSASSA_PSS_SHA_256",
                "kms:MessageType": "RAW",
            }
        },
    }
    key = admin.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY", Policy=policy(statement))
    key_id = key["KeyMetadata"]["KeyId"]
    settle()
    sig = bob.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256")
    bob.verify(
        KeyId=key_id,
        Message=b"m",
        Signature=sig["Signature"],
        SigningAlgorithm="RSASSA_PSS_SHA_256",
    )
    expect("AccessDeniedException", bob.sign, KeyId=key_id, Message=b"m",
           SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")  # fmt: skip
    expect("AccessDeniedException", bob.sign, KeyId=key_id, Message=hashlib.sha256(b"m").digest(),
           MessageType="DIGEST", SigningAlgorithm="RSASSA_PSS_SHA_256")  # fmt: skip
    # Not allowed GetPublicKey by the policy.
    expect("AccessDeniedException", bob.get_public_key, KeyId=key_id)


def test_mac_agreement_and_rsa_encryption_conditions(clients: tuple[LocalKMS, LocalKMS]) -> None:
    admin, bob = clients
    mac_key = admin.create_key(
        KeySpec="HMAC_256",
        KeyUsage="GENERATE_VERIFY_MAC",
        Policy=policy(
            {
                "Action": "kms:GenerateMac",
                "Condition": {"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_256"}},
            },
            {
                "Action": "kms:VerifyMac",
                "Condition": {"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_512"}},
            },
        ),
    )["KeyMetadata"]["KeyId"]
    agree = admin.create_key(
        KeySpec="ECC_NIST_P256",
        KeyUsage="KEY_AGREEMENT",
        Policy=policy(
            {
                "Action": ["kms:DeriveSharedSecret", "kms:GetPublicKey"],
                "Condition": {"StringEquals": {"kms:KeyAgreementAlgorithm": "ECDH"}},
            }
        ),
    )["KeyMetadata"]["KeyId"]
    rsa_key = admin.create_key(
        KeySpec="RSA_2048",
        Policy=policy(
            {
                "Action": ["kms:Encrypt", "kms:Decrypt"],
                "Condition": {"StringEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
            }
        ),
    )["KeyMetadata"]["KeyId"]
    settle()
    mac = bob.generate_mac(KeyId=mac_key, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    expect("AccessDeniedException", bob.verify_mac, KeyId=mac_key, Message=b"m", Mac=mac,
           MacAlgorithm="HMAC_SHA_256")  # fmt: skip
    # GetPublicKey has no kms:KeyAgreementAlgorithm: a StringEquals on it does not match.
    expect("AccessDeniedException", bob.get_public_key, KeyId=agree)
    peer = admin.get_public_key(KeyId=agree)["PublicKey"]
    out = bob.derive_shared_secret(KeyId=agree, KeyAgreementAlgorithm="ECDH", PublicKey=peer)
    assert len(out["SharedSecret"]) == 32
    ct = bob.encrypt(KeyId=rsa_key, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert bob.decrypt(KeyId=rsa_key, CiphertextBlob=ct["CiphertextBlob"],
                       EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"p"  # fmt: skip
    expect("AccessDeniedException", bob.encrypt, KeyId=rsa_key, Plaintext=b"p",
           EncryptionAlgorithm="RSAES_OAEP_SHA_1")  # fmt: skip


def test_data_key_pair_conditions(clients: tuple[LocalKMS, LocalKMS]) -> None:
    admin, bob = clients
    key = admin.create_key(
        Policy=policy(
            {
                "Action": "kms:GenerateDataKeyPair",
                "Condition": {
                    "StringEquals": {
                        "kms:DataKeyPairSpec": "ECC_NIST_P256",
                        "kms:EncryptionContext:tenant": "t-1",
                    }
                },
            }
        )
    )["KeyMetadata"]["KeyId"]
    settle()
    ok = bob.generate_data_key_pair(
        KeyId=key, KeyPairSpec="ECC_NIST_P256", EncryptionContext={"tenant": "t-1"}
    )
    assert ok["KeyPairSpec"] == "ECC_NIST_P256"
    expect("AccessDeniedException", bob.generate_data_key_pair, KeyId=key,
           KeyPairSpec="ECC_NIST_P384", EncryptionContext={"tenant": "t-1"})  # fmt: skip
    expect("AccessDeniedException", bob.generate_data_key_pair, KeyId=key,
           KeyPairSpec="ECC_NIST_P256", EncryptionContext={"tenant": "t-2"})  # fmt: skip
    expect("AccessDeniedException", bob.generate_data_key_pair_without_plaintext, KeyId=key,
           KeyPairSpec="ECC_NIST_P256", EncryptionContext={"tenant": "t-1"})  # fmt: skip


def test_grants_allow_the_new_operations(clients: tuple[LocalKMS, LocalKMS]) -> None:
    admin, bob = clients
    signer = admin.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    mac_key = admin.create_key(KeySpec="HMAC_224", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    alg = "ECDSA_SHA_384"
    expect("AccessDeniedException", bob.sign, KeyId=signer["KeyId"], Message=b"m",
           SigningAlgorithm=alg)  # fmt: skip
    sign_grant = admin.create_grant(
        KeyId=signer["KeyId"], GranteePrincipal=BOB, Operations=["Sign", "GetPublicKey"]
    )
    mac_grant = admin.create_grant(
        KeyId=mac_key["KeyId"], GranteePrincipal=BOB, Operations=["GenerateMac"]
    )
    tokens = [sign_grant["GrantToken"], mac_grant["GrantToken"]]
    sig = bob.sign(KeyId=signer["Arn"], Message=b"m", SigningAlgorithm=alg, GrantTokens=tokens)
    assert bob.get_public_key(KeyId=signer["Arn"], GrantTokens=tokens)["KeySpec"] == "ECC_NIST_P384"
    expect("AccessDeniedException", bob.verify, KeyId=signer["Arn"], Message=b"m",
           Signature=sig["Signature"], SigningAlgorithm=alg, GrantTokens=tokens)  # fmt: skip
    mac = bob.generate_mac(KeyId=mac_key["Arn"], Message=b"m", MacAlgorithm="HMAC_SHA_224",
                           GrantTokens=tokens)  # fmt: skip
    assert len(mac["Mac"]) == 28
    expect("AccessDeniedException", bob.verify_mac, KeyId=mac_key["Arn"], Message=b"m",
           Mac=mac["Mac"], MacAlgorithm="HMAC_SHA_224", GrantTokens=tokens)  # fmt: skip
