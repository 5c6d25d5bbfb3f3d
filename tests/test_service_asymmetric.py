"""Asymmetric and HMAC keys through the service (issue 8): every key spec, usage and algorithm.

Each key spec and key usage pair is created once per module (RSA_4096 takes a
second). Signatures, RSA ciphertexts and shared secrets are checked with plain
``cryptography`` and only the public key from GetPublicKey, never with kmscore's
own crypto core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from service_helpers import Clock, expect, new_key, open_kms

from kmscore.client import LocalKMS
from kmscore.model.keyspecs import KEY_SPECS, KeyUsage, SigningAlgorithm

SUPPORTED = {spec: info for spec, info in KEY_SPECS.items() if info.supported}
PAIRS = [
    (str(spec), str(usage))
    for spec, info in SUPPORTED.items()
    if spec != "SYMMETRIC_DEFAULT"
    for usage in info.key_usages
]
FORBIDDEN_PAIRS = [
    (str(spec), str(usage))
    for spec, info in SUPPORTED.items()
    for usage in KeyUsage
    if usage not in info.key_usages
]
ALL_SIGNING = [str(a) for a in SigningAlgorithm]

HASHES: dict[str, hashes.HashAlgorithm] = {"256": hashes.SHA256(), "384": hashes.SHA384()}
HASHES["512"] = hashes.SHA512()

CURVES = {
    "ECC_NIST_P256": ec.SECP256R1(),
    "ECC_NIST_P384": ec.SECP384R1(),
    "ECC_NIST_P521": ec.SECP521R1(),
}


@pytest.fixture(scope="module")
def kms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKMS]:
    with open_kms(tmp_path_factory.mktemp("asymmetric"), Clock()) as k:
        yield k


@pytest.fixture(scope="module")
def keys(kms: LocalKMS) -> dict[tuple[str, str], str]:
    """One key per supported (KeySpec, KeyUsage) pair, by the pair."""
    out = {}
    for spec, usage in PAIRS:
        md = kms.create_key(KeySpec=spec, KeyUsage=usage, Description=f"{spec} {usage}")
        out[(spec, usage)] = str(md["KeyMetadata"]["KeyId"])
    return out


@pytest.fixture(scope="module")
def symmetric(kms: LocalKMS) -> str:
    return new_key(kms)


def _of_usage(keys: dict[tuple[str, str], str], usage: str) -> list[tuple[str, str]]:
    return [(spec, key) for (spec, u), key in keys.items() if u == usage]


def public_key(kms: LocalKMS, key: str) -> Any:
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])


def independent_verify(public: Any, algorithm: str, message: bytes, signature: bytes) -> None:
    """Verify a signature of RAW ``message`` with cryptography alone (raises if invalid)."""
    if algorithm.startswith("RSASSA_PSS_"):
        digest = HASHES[algorithm[-3:]]
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        public.verify(signature, message, pss, digest)
    elif algorithm.startswith("RSASSA_PKCS1_V1_5_"):
        public.verify(signature, message, padding.PKCS1v15(), HASHES[algorithm[-3:]])
    elif algorithm.startswith("ECDSA_"):
        public.verify(signature, message, ec.ECDSA(HASHES[algorithm[-3:]]))
    elif algorithm == "ED25519_SHA_512":
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, message)
    elif algorithm == "ML_DSA_SHAKE_256":
        public.verify(signature, message)
    else:  # pragma: no cover
        raise AssertionError(algorithm)


# --- CreateKey and DescribeKey ---------------------------------------------------------


def test_every_pair_is_created_and_described(
    kms: LocalKMS, keys: dict[tuple[str, str], str]
) -> None:
    assert len(keys) == len(PAIRS) == 24
    lists = (
        "EncryptionAlgorithms",
        "SigningAlgorithms",
        "MacAlgorithms",
        "KeyAgreementAlgorithms",
        "EncapsulationAlgorithms",
    )
    for (spec, usage), key in keys.items():
        md = kms.describe_key(KeyId=key)["KeyMetadata"]
        assert (md["KeySpec"], md["KeyUsage"], md["KeyState"]) == (spec, usage, "Enabled")
        expected = SUPPORTED[spec].algorithms[KeyUsage(usage)].describe_key_fields()
        assert {name: md[name] for name in lists if name in md} == expected
        assert len(md["CurrentKeyMaterialId"]) == 64
        if spec.startswith(("ML_DSA", "ML_KEM")) or spec == "ECC_NIST_EDWARDS25519":
            assert "CustomerMasterKeySpec" not in md
        else:
            assert md["CustomerMasterKeySpec"] == spec


def test_describe_key_lists_match_aws(kms: LocalKMS, keys: dict[tuple[str, str], str]) -> None:
    """Spot checks against AWS's documented DescribeKey answers, independent of keyspecs."""

    def md(spec: str, usage: str) -> dict[str, Any]:
        return kms.describe_key(KeyId=keys[(spec, usage)])["KeyMetadata"]

    assert md("RSA_2048", "ENCRYPT_DECRYPT")["EncryptionAlgorithms"] == [
        "RSAES_OAEP_SHA_1",
        "RSAES_OAEP_SHA_256",
    ]
    assert md("RSA_3072", "SIGN_VERIFY")["SigningAlgorithms"] == [
        "RSASSA_PKCS1_V1_5_SHA_256",
        "RSASSA_PKCS1_V1_5_SHA_384",
        "RSASSA_PKCS1_V1_5_SHA_512",
        "RSASSA_PSS_SHA_256",
        "RSASSA_PSS_SHA_384",
        "RSASSA_PSS_SHA_512",
    ]
    assert md("ECC_NIST_P384", "SIGN_VERIFY")["SigningAlgorithms"] == ["ECDSA_SHA_384"]
    assert md("ECC_SECG_P256K1", "SIGN_VERIFY")["SigningAlgorithms"] == ["ECDSA_SHA_256"]
    assert md("ECC_NIST_P521", "KEY_AGREEMENT")["KeyAgreementAlgorithms"] == ["ECDH"]
    assert md("HMAC_224", "GENERATE_VERIFY_MAC")["MacAlgorithms"] == ["HMAC_SHA_224"]
    assert md("ML_DSA_65", "SIGN_VERIFY")["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"]
    assert md("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")["SigningAlgorithms"] == [
        "ED25519_SHA_512",
        "ED25519_PH_SHA_512",
    ]
    assert "EncryptionAlgorithms" not in md("HMAC_512", "GENERATE_VERIFY_MAC")


@pytest.mark.parametrize(("spec", "usage"), FORBIDDEN_PAIRS)
def test_create_key_refuses_a_usage_the_spec_does_not_allow(
    kms: LocalKMS, spec: str, usage: str
) -> None:
    expect("ValidationException", kms.create_key, KeySpec=spec, KeyUsage=usage)


def test_create_key_needs_the_usage_of_an_hmac_or_signing_only_spec(kms: LocalKMS) -> None:
    # KeyUsage defaults to ENCRYPT_DECRYPT, which these key specs do not allow.
    for spec in ("HMAC_256", "ECC_NIST_P256", "ML_DSA_44", "ECC_NIST_EDWARDS25519"):
        expect("ValidationException", kms.create_key, KeySpec=spec)
    for usage in KeyUsage:
        expect("UnsupportedOperationException", kms.create_key, KeySpec="SM2", KeyUsage=usage)


def test_default_usage_of_rsa_is_encryption(kms: LocalKMS) -> None:
    md = kms.create_key(CustomerMasterKeySpec="RSA_2048")["KeyMetadata"]
    assert (md["KeySpec"], md["KeyUsage"]) == ("RSA_2048", "ENCRYPT_DECRYPT")


# --- GetPublicKey ----------------------------------------------------------------------


def test_get_public_key(kms: LocalKMS, keys: dict[tuple[str, str], str]) -> None:
    for (spec, usage), key in keys.items():
        if usage == "GENERATE_VERIFY_MAC":
            expect("UnsupportedOperationException", kms.get_public_key, KeyId=key)
            continue
        out = kms.get_public_key(KeyId=key)
        if spec == "ML_KEM_512":
            # cryptography has no ML-KEM-512; test_service_mlkem.py checks its SPKI.
            continue
        public = serialization.load_der_public_key(out["PublicKey"])
        assert out["KeyId"] == kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
        assert (out["KeySpec"], out["KeyUsage"]) == (spec, usage)
        expected = SUPPORTED[spec].algorithms[KeyUsage(usage)].describe_key_fields()
        got = {k: out[k] for k in ("EncryptionAlgorithms", "SigningAlgorithms") if k in out}
        got.update(
            {k: out[k] for k in ("KeyAgreementAlgorithms", "EncapsulationAlgorithms") if k in out}
        )
        assert got == expected
        if spec.startswith("RSA"):
            assert isinstance(public, rsa.RSAPublicKey)
            assert public.key_size == int(spec[4:])
        elif spec in CURVES or spec == "ECC_SECG_P256K1":
            assert isinstance(public, ec.EllipticCurvePublicKey)
        # The same key every time (material is stored, not regenerated).
        assert kms.get_public_key(KeyId=key)["PublicKey"] == out["PublicKey"]


def test_get_public_key_of_a_symmetric_key(kms: LocalKMS, symmetric: str) -> None:
    expect("UnsupportedOperationException", kms.get_public_key, KeyId=symmetric)


# --- Sign and Verify -------------------------------------------------------------------


def test_sign_and_verify_every_algorithm(kms: LocalKMS, keys: dict[tuple[str, str], str]) -> None:
    message = b"pay 100 to alice"
    checked = 0
    for spec, key in _of_usage(keys, "SIGN_VERIFY"):
        public = public_key(kms, key)
        for algorithm in SUPPORTED[spec].signing_algorithms:
            if algorithm == "ED25519_PH_SHA_512":
                continue
            out = kms.sign(KeyId=key, Message=message, SigningAlgorithm=algorithm)
            assert out["SigningAlgorithm"] == algorithm
            sig = out["Signature"]
            independent_verify(public, algorithm, message, sig)
            ok = kms.verify(KeyId=key, Message=message, Signature=sig, SigningAlgorithm=algorithm)
            assert ok["SignatureValid"] is True
            assert ok["SigningAlgorithm"] == algorithm
            # A bad signature and a changed message are both refused.
            bad = bytes([sig[0] ^ 1]) + sig[1:]
            for msg, signature in ((message, bad), (message + b"0", sig)):
                expect(
                    "KMSInvalidSignatureException",
                    kms.verify,
                    KeyId=key,
                    Message=msg,
                    Signature=signature,
                    SigningAlgorithm=algorithm,
                )
            checked += 1
    assert checked == 3 * 6 + 4 + 1 + 3


def test_sign_digest(kms: LocalKMS, keys: dict[tuple[str, str], str]) -> None:
    """A DIGEST signature is the signature of the message it is the digest of."""
    message = b"a message too long to send, hashed by the caller"
    for spec, key in _of_usage(keys, "SIGN_VERIFY"):
        public = public_key(kms, key)
        for algorithm in SUPPORTED[spec].signing_algorithms:
            if not algorithm.startswith(("RSASSA", "ECDSA")):
                continue
            digest = hashlib.new(f"sha{algorithm[-3:]}", message).digest()
            sig = kms.sign(
                KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm=algorithm
            )["Signature"]
            independent_verify(public, algorithm, message, sig)
            # The prehashed form, as a verifier holding only the digest would check it.
            if algorithm.startswith("ECDSA"):
                public.verify(sig, digest, ec.ECDSA(utils.Prehashed(HASHES[algorithm[-3:]])))
            kms.verify(
                KeyId=key,
                Message=digest,
                MessageType="DIGEST",
                Signature=sig,
                SigningAlgorithm=algorithm,
            )
            raw = kms.sign(KeyId=key, Message=message, SigningAlgorithm=algorithm)["Signature"]
            kms.verify(
                KeyId=key,
                Message=digest,
                MessageType="DIGEST",
                Signature=raw,
                SigningAlgorithm=algorithm,
            )
            expect(
                "ValidationException",
                kms.sign,
                KeyId=key,
                Message=digest + b"x",
                MessageType="DIGEST",
                SigningAlgorithm=algorithm,
            )


def test_message_types_the_algorithm_refuses(
    kms: LocalKMS, keys: dict[tuple[str, str], str]
) -> None:
    ed = keys[("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")]
    ml = keys[("ML_DSA_44", "SIGN_VERIFY")]
    digest = hashlib.sha512(b"m").digest()
    for key, alg in ((ed, "ED25519_SHA_512"), (ml, "ML_DSA_SHAKE_256")):
        expect(
            "ValidationException",
            kms.sign,
            KeyId=key,
            Message=digest,
            MessageType="DIGEST",
            SigningAlgorithm=alg,
        )
    # ED25519_PH_SHA_512 takes DIGEST only, as AWS does.
    expect(
        "ValidationException",
        kms.sign,
        KeyId=ed,
        Message=digest,
        MessageType="RAW",
        SigningAlgorithm="ED25519_PH_SHA_512",
    )
    # Unsupported by the crypto library (cryptography 48), not silently wrong.
    expect(
        "UnsupportedOperationException",
        kms.sign,
        KeyId=ml,
        Message=b"m" * 64,
        MessageType="EXTERNAL_MU",
        SigningAlgorithm="ML_DSA_SHAKE_256",
    )
    expect("ValidationException", kms.sign, KeyId=ed, Message=b"m" * 4097,
           SigningAlgorithm="ED25519_SHA_512")  # fmt: skip


def test_signing_algorithms_the_spec_does_not_allow(
    kms: LocalKMS, keys: dict[tuple[str, str], str]
) -> None:
    for spec, key in _of_usage(keys, "SIGN_VERIFY"):
        allowed = SUPPORTED[spec].signing_algorithms
        for algorithm in ALL_SIGNING:
            if algorithm in allowed:
                continue
            expect(
                "InvalidKeyUsageException",
                kms.sign,
                KeyId=key,
                Message=b"m",
                SigningAlgorithm=algorithm,
            )
            expect(
                "InvalidKeyUsageException",
                kms.verify,
                KeyId=key,
                Message=b"m",
                Signature=b"s",
                SigningAlgorithm=algorithm,
            )
    expect("ValidationException", kms.sign, KeyId=key, Message=b"m", SigningAlgorithm="RSA")


# --- GenerateMac and VerifyMac ---------------------------------------------------------


def test_generate_and_verify_mac(kms: LocalKMS, keys: dict[tuple[str, str], str]) -> None:
    for spec, key in _of_usage(keys, "GENERATE_VERIFY_MAC"):
        (algorithm,) = SUPPORTED[spec].mac_algorithms
        out = kms.generate_mac(KeyId=key, Message=b"webhook body", MacAlgorithm=algorithm)
        mac = out["Mac"]
        assert out["MacAlgorithm"] == algorithm
        assert len(mac) * 8 == int(spec[5:])
        again = kms.generate_mac(KeyId=key, Message=b"webhook body", MacAlgorithm=algorithm)
        assert again["Mac"] == mac
        ok = kms.verify_mac(KeyId=key, Message=b"webhook body", Mac=mac, MacAlgorithm=algorithm)
        assert ok["MacValid"] is True
        for message, tag in (
            (b"webhook body", bytes([mac[0] ^ 1]) + mac[1:]),
            (b"webhook body", mac[:-1]),
            (b"webhook bodY", mac),
        ):
            expect(
                "KMSInvalidMacException",
                kms.verify_mac,
                KeyId=key,
                Message=message,
                Mac=tag,
                MacAlgorithm=algorithm,
            )
        for other in ("HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_384", "HMAC_SHA_512"):
            if other != algorithm:
                expect(
                    "InvalidKeyUsageException",
                    kms.generate_mac,
                    KeyId=key,
                    Message=b"m",
                    MacAlgorithm=other,
                )
    macs = {
        kms.generate_mac(KeyId=key, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
        for key in (keys[("HMAC_256", "GENERATE_VERIFY_MAC")], kms.create_key(
            KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"])
    }  # fmt: skip
    assert len(macs) == 2, "two HMAC keys have different material"


# --- DeriveSharedSecret ----------------------------------------------------------------


def test_derive_shared_secret_matches_offline_ecdh(
    kms: LocalKMS, keys: dict[tuple[str, str], str]
) -> None:
    for spec, key in _of_usage(keys, "KEY_AGREEMENT"):
        peer = ec.generate_private_key(CURVES[spec])
        peer_der = peer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        out = kms.derive_shared_secret(KeyId=key, KeyAgreementAlgorithm="ECDH", PublicKey=peer_der)
        assert out["KeyAgreementAlgorithm"] == "ECDH"
        assert out["KeyOrigin"] == "AWS_KMS"
        kms_public = public_key(kms, key)
        assert out["SharedSecret"] == peer.exchange(ec.ECDH(), kms_public)
        other = next(c for s, c in CURVES.items() if s != spec)
        wrong_curve = (
            ec.generate_private_key(other)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        for bad in (wrong_curve, b"not a key"):
            expect(
                "ValidationException",
                kms.derive_shared_secret,
                KeyId=key,
                KeyAgreementAlgorithm="ECDH",
                PublicKey=bad,
            )
    assert len(_of_usage(keys, "KEY_AGREEMENT")) == 3


# --- Wrong key usage -------------------------------------------------------------------


def test_wrong_usage_is_invalid_key_usage(
    kms: LocalKMS, keys: dict[tuple[str, str], str], symmetric: str
) -> None:
    rsa_enc = keys[("RSA_2048", "ENCRYPT_DECRYPT")]
    rsa_sign = keys[("RSA_2048", "SIGN_VERIFY")]
    hmac_key = keys[("HMAC_256", "GENERATE_VERIFY_MAC")]
    agree = keys[("ECC_NIST_P256", "KEY_AGREEMENT")]
    ecc_sign = keys[("ECC_NIST_P256", "SIGN_VERIFY")]
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()
    peer_der = peer.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    calls: list[tuple[Any, dict[str, Any]]] = []
    for key in (rsa_enc, hmac_key, agree, symmetric):
        calls.append((kms.sign, {"KeyId": key, "Message": b"m",
                                 "SigningAlgorithm": "RSASSA_PSS_SHA_256"}))  # fmt: skip
        calls.append((kms.verify, {"KeyId": key, "Message": b"m", "Signature": b"s",
                                   "SigningAlgorithm": "ECDSA_SHA_256"}))  # fmt: skip
    for key in (rsa_enc, rsa_sign, agree, ecc_sign, symmetric):
        calls.append((kms.generate_mac, {"KeyId": key, "Message": b"m",
                                         "MacAlgorithm": "HMAC_SHA_256"}))  # fmt: skip
        calls.append((kms.verify_mac, {"KeyId": key, "Message": b"m", "Mac": b"x",
                                       "MacAlgorithm": "HMAC_SHA_256"}))  # fmt: skip
    for key in (rsa_enc, ecc_sign, hmac_key, symmetric):
        calls.append((kms.derive_shared_secret, {"KeyId": key, "KeyAgreementAlgorithm": "ECDH",
                                                 "PublicKey": peer_der}))  # fmt: skip
    for key in (hmac_key, ecc_sign, rsa_sign, agree):
        calls.append((kms.encrypt, {"KeyId": key, "Plaintext": b"p"}))
        calls.append((kms.encrypt, {"KeyId": key, "Plaintext": b"p",
                                    "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}))  # fmt: skip
    for key in (rsa_enc, hmac_key, ecc_sign):
        calls.append((kms.generate_data_key, {"KeyId": key, "KeySpec": "AES_256"}))
        calls.append((kms.generate_data_key_pair, {"KeyId": key, "KeyPairSpec": "RSA_2048"}))
        calls.append((kms.generate_data_key_pair_without_plaintext,
                      {"KeyId": key, "KeyPairSpec": "ECC_NIST_P256"}))  # fmt: skip
        blob = kms.encrypt(KeyId=symmetric, Plaintext=b"p")["CiphertextBlob"]
        calls.append((kms.re_encrypt, {"CiphertextBlob": blob, "DestinationKeyId": key}))
    # DeriveSharedSecret with secp256k1: a signing-only curve.
    k1 = keys[("ECC_SECG_P256K1", "SIGN_VERIFY")]
    calls.append((kms.derive_shared_secret, {"KeyId": k1, "KeyAgreementAlgorithm": "ECDH",
                                             "PublicKey": peer_der}))  # fmt: skip
    for fn, request in calls:
        expect("InvalidKeyUsageException", fn, **request)


# --- RSA Encrypt and Decrypt -----------------------------------------------------------

OAEP_HASHES = {"RSAES_OAEP_SHA_1": hashes.SHA1(), "RSAES_OAEP_SHA_256": hashes.SHA256()}


def _oaep(algorithm: str) -> padding.OAEP:
    digest = OAEP_HASHES[algorithm]
    return padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)


def test_rsa_encrypt_and_decrypt(kms: LocalKMS, keys: dict[tuple[str, str], str]) -> None:
    for spec, key in _of_usage(keys, "ENCRYPT_DECRYPT"):
        public = public_key(kms, key)
        modulus = int(spec[4:]) // 8
        for algorithm in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"):
            limit = modulus - 2 * OAEP_HASHES[algorithm].digest_size - 2
            plaintext = bytes(range(256)) * (limit // 256) + b"x" * (limit % 256)
            assert len(plaintext) == limit
            out = kms.encrypt(KeyId=key, Plaintext=plaintext, EncryptionAlgorithm=algorithm)
            assert out["EncryptionAlgorithm"] == algorithm
            assert len(out["CiphertextBlob"]) == modulus, "the raw RSA ciphertext"
            back = kms.decrypt(
                KeyId=key, CiphertextBlob=out["CiphertextBlob"], EncryptionAlgorithm=algorithm
            )
            assert back["Plaintext"] == plaintext
            assert back["EncryptionAlgorithm"] == algorithm
            assert back["KeyId"] == out["KeyId"]
            assert len(back["KeyMaterialId"]) == 64
            # Encrypted offline with only the public key: the service decrypts it.
            offline = public.encrypt(b"offline secret", _oaep(algorithm))
            assert (
                kms.decrypt(KeyId=key, CiphertextBlob=offline, EncryptionAlgorithm=algorithm)[
                    "Plaintext"
                ]
                == b"offline secret"
            )
            expect("ValidationException", kms.encrypt, KeyId=key, Plaintext=plaintext + b"!",
                   EncryptionAlgorithm=algorithm)  # fmt: skip
            other = "RSAES_OAEP_SHA_256" if algorithm == "RSAES_OAEP_SHA_1" else "RSAES_OAEP_SHA_1"
            expect("InvalidCiphertextException", kms.decrypt, KeyId=key, CiphertextBlob=offline,
                   EncryptionAlgorithm=other)  # fmt: skip


def test_rsa_decrypt_rules(kms: LocalKMS, keys: dict[tuple[str, str], str], symmetric: str) -> None:
    key = keys[("RSA_2048", "ENCRYPT_DECRYPT")]
    other = keys[("RSA_3072", "ENCRYPT_DECRYPT")]
    alg = "RSAES_OAEP_SHA_256"
    ct = kms.encrypt(KeyId=key, Plaintext=b"p", EncryptionAlgorithm=alg)["CiphertextBlob"]
    # EncryptionAlgorithm is required (the default SYMMETRIC_DEFAULT does not fit).
    expect("InvalidKeyUsageException", kms.decrypt, KeyId=key, CiphertextBlob=ct)
    expect("InvalidKeyUsageException", kms.encrypt, KeyId=key, Plaintext=b"p")
    for bad in ("SYMMETRIC_DEFAULT", "SM2PKE"):
        expect("InvalidKeyUsageException", kms.encrypt, KeyId=key, Plaintext=b"p",
               EncryptionAlgorithm=bad)  # fmt: skip
        expect("InvalidKeyUsageException", kms.decrypt, KeyId=key, CiphertextBlob=ct,
               EncryptionAlgorithm=bad)  # fmt: skip
    # KeyId is required: RSA ciphertext does not name its key.
    expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct, EncryptionAlgorithm=alg)
    # Another RSA key cannot decrypt it.
    expect("InvalidCiphertextException", kms.decrypt, KeyId=other, CiphertextBlob=ct,
           EncryptionAlgorithm=alg)  # fmt: skip
    # No encryption context with asymmetric keys.
    expect("ValidationException", kms.encrypt, KeyId=key, Plaintext=b"p",
           EncryptionAlgorithm=alg, EncryptionContext={"a": "b"})  # fmt: skip
    expect("ValidationException", kms.decrypt, KeyId=key, CiphertextBlob=ct,
           EncryptionAlgorithm=alg, EncryptionContext={"a": "b"})  # fmt: skip
    # DryRun after every check.
    expect("DryRunOperationException", kms.decrypt, KeyId=key, CiphertextBlob=ct,
           EncryptionAlgorithm=alg, DryRun=True)  # fmt: skip
    expect("DryRunOperationException", kms.encrypt, KeyId=key, Plaintext=b"p",
           EncryptionAlgorithm=alg, DryRun=True)  # fmt: skip
    # Symmetric blobs keep working, with or without KeyId; an RSA key named for a
    # symmetric blob does not decrypt it.
    blob = kms.encrypt(KeyId=symmetric, Plaintext=b"s", EncryptionContext={"a": "b"})
    blob_ct = blob["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob_ct, EncryptionContext={"a": "b"})["Plaintext"] == b"s"
    assert kms.decrypt(KeyId=symmetric, CiphertextBlob=blob_ct,
                       EncryptionContext={"a": "b"})["Plaintext"] == b"s"  # fmt: skip
    expect("InvalidCiphertextException", kms.decrypt, KeyId=key, CiphertextBlob=blob_ct,
           EncryptionAlgorithm=alg)  # fmt: skip


# --- GenerateDataKeyPair ---------------------------------------------------------------

PAIR_SPECS = ["RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
              "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519"]  # fmt: skip


@pytest.mark.parametrize("spec", PAIR_SPECS)
def test_generate_data_key_pair(kms: LocalKMS, symmetric: str, spec: str) -> None:
    context = {"purpose": "signing", "tenant": "t-1"}
    out = kms.generate_data_key_pair(KeyId=symmetric, KeyPairSpec=spec, EncryptionContext=context)
    assert out["KeyPairSpec"] == spec
    assert len(out["KeyMaterialId"]) == 64
    private = serialization.load_der_private_key(out["PrivateKeyPlaintext"], password=None)
    public_der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert public_der == out["PublicKey"]
    back = kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"], EncryptionContext=context)
    assert back["Plaintext"] == out["PrivateKeyPlaintext"]
    assert back["KeyId"] == out["KeyId"]
    expect("InvalidCiphertextException", kms.decrypt,
           CiphertextBlob=out["PrivateKeyCiphertextBlob"])  # fmt: skip
    # The private key works: sign with it, verify with the public key.
    public = serialization.load_der_public_key(out["PublicKey"])
    if isinstance(private, rsa.RSAPrivateKey):
        assert private.key_size == int(spec[4:])
        sig = private.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
        public.verify(sig, b"m", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        sig = private.sign(b"m", ec.ECDSA(hashes.SHA256()))
        public.verify(sig, b"m", ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr,call-arg]
    else:
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        public.verify(private.sign(b"m"), b"m")  # type: ignore[union-attr,call-arg]

    bare = kms.generate_data_key_pair_without_plaintext(
        KeyId=symmetric, KeyPairSpec=spec, EncryptionContext=context
    )
    assert "PrivateKeyPlaintext" not in bare
    assert bare["PublicKey"] != out["PublicKey"], "a fresh pair each call"
    pkcs8 = kms.decrypt(CiphertextBlob=bare["PrivateKeyCiphertextBlob"], EncryptionContext=context)
    again = serialization.load_der_private_key(pkcs8["Plaintext"], password=None)
    assert (
        again.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == bare["PublicKey"]
    )


def test_generate_data_key_pair_refusals(kms: LocalKMS, symmetric: str) -> None:
    expect("UnsupportedOperationException", kms.generate_data_key_pair, KeyId=symmetric,
           KeyPairSpec="SM2")  # fmt: skip
    for spec in ("ML_DSA_44", "HMAC_256", "SYMMETRIC_DEFAULT"):
        expect("ValidationException", kms.generate_data_key_pair, KeyId=symmetric,
               KeyPairSpec=spec)  # fmt: skip
    expect("DryRunOperationException", kms.generate_data_key_pair_without_plaintext,
           KeyId=symmetric, KeyPairSpec="ECC_NIST_P256", DryRun=True)  # fmt: skip
    expect("UnsupportedOperationException", kms.generate_data_key_pair, KeyId=symmetric,
           KeyPairSpec="ECC_NIST_P256", Recipient={"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256",
                                                   "AttestationDocument": b"doc"})  # fmt: skip


# --- Key state and rotation ------------------------------------------------------------


def test_disabled_and_pending_deletion_keys_refuse(kms: LocalKMS) -> None:
    sign_key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    mac_key = kms.create_key(KeySpec="HMAC_384", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    agree = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    rsa_key = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]
    s, m, a, r = (k["KeyId"] for k in (sign_key, mac_key, agree, rsa_key))
    sig = kms.sign(KeyId=s, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    mac = kms.generate_mac(KeyId=m, Message=b"m", MacAlgorithm="HMAC_SHA_384")["Mac"]
    ct = kms.encrypt(KeyId=r, Plaintext=b"p", EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    peer = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    calls = [
        (kms.sign, {"KeyId": s, "Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256"}),
        (kms.verify, {"KeyId": s, "Message": b"m", "Signature": sig,
                      "SigningAlgorithm": "ECDSA_SHA_256"}),
        (kms.get_public_key, {"KeyId": s}),
        (kms.generate_mac, {"KeyId": m, "Message": b"m", "MacAlgorithm": "HMAC_SHA_384"}),
        (kms.verify_mac, {"KeyId": m, "Message": b"m", "Mac": mac,
                          "MacAlgorithm": "HMAC_SHA_384"}),
        (kms.derive_shared_secret, {"KeyId": a, "KeyAgreementAlgorithm": "ECDH",
                                    "PublicKey": peer}),
        (kms.encrypt, {"KeyId": r, "Plaintext": b"p", "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
        (kms.decrypt, {"KeyId": r, "CiphertextBlob": ct["CiphertextBlob"],
                       "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"}),
    ]  # fmt: skip
    for fn, request in calls:
        fn(**request)
    for key in (s, m, a, r):
        kms.disable_key(KeyId=key)
    for fn, request in calls:
        expect("DisabledException", fn, **request)
    for key in (s, m, a, r):
        kms.enable_key(KeyId=key)
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    for fn, request in calls:
        expect("KMSInvalidStateException", fn, **request)
    for key in (s, m, a, r):
        kms.cancel_key_deletion(KeyId=key)
        kms.enable_key(KeyId=key)
    for fn, request in calls:
        fn(**request)


def test_asymmetric_and_hmac_keys_do_not_rotate(
    kms: LocalKMS, keys: dict[tuple[str, str], str]
) -> None:
    for key in (
        keys[("RSA_2048", "ENCRYPT_DECRYPT")],
        keys[("ECC_NIST_P256", "SIGN_VERIFY")],
        keys[("HMAC_256", "GENERATE_VERIFY_MAC")],
        keys[("ML_DSA_44", "SIGN_VERIFY")],
    ):
        expect("UnsupportedOperationException", kms.enable_key_rotation, KeyId=key)
        expect("UnsupportedOperationException", kms.rotate_key_on_demand, KeyId=key)


# --- Persistence -----------------------------------------------------------------------


def test_keys_survive_reopening(tmp_path: Path) -> None:
    """Material is stored (wrapped under the root key), not regenerated on open."""
    data = tmp_path / "kms"
    with open_kms(data, Clock()) as kms:
        sign_key = kms.create_key(KeySpec="ECC_NIST_EDWARDS25519", KeyUsage="SIGN_VERIFY")
        mac_key = kms.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC")
        s, m = sign_key["KeyMetadata"]["KeyId"], mac_key["KeyMetadata"]["KeyId"]
        pub = kms.get_public_key(KeyId=s)["PublicKey"]
        mac = kms.generate_mac(KeyId=m, Message=b"m", MacAlgorithm="HMAC_SHA_512")["Mac"]
    with open_kms(data, Clock()) as kms:
        assert kms.get_public_key(KeyId=s)["PublicKey"] == pub
        sig = kms.sign(KeyId=s, Message=b"m", SigningAlgorithm="ED25519_SHA_512")["Signature"]
        ed25519.Ed25519PublicKey.from_public_bytes(
            serialization.load_der_public_key(pub).public_bytes(  # type: ignore[arg-type]
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        ).verify(sig, b"m")
        kms.verify_mac(KeyId=m, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_512")


def test_making_an_rsa_4096_key_does_not_hold_the_store(kms: LocalKMS, symmetric: str) -> None:
    """Key generation runs before the store transaction, so other callers go on meanwhile."""
    import threading
    import time

    store = kms.service.store
    made: list[str] = []
    worker = threading.Thread(
        target=lambda: made.append(
            kms.create_key(KeySpec="RSA_4096", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        )
    )
    worst = 0.0
    worker.start()
    while worker.is_alive():
        start = time.perf_counter()
        assert store.get_key(symmetric) is not None
        worst = max(worst, time.perf_counter() - start)
        time.sleep(0.001)
    worker.join()
    assert made
    assert worst < 0.2, f"a store read waited {worst:.3f} s while a key was being made"


def test_re_encrypt_with_rsa_keys(
    kms: LocalKMS, keys: dict[tuple[str, str], str], symmetric: str
) -> None:
    rsa_a = keys[("RSA_2048", "ENCRYPT_DECRYPT")]
    rsa_b = keys[("RSA_3072", "ENCRYPT_DECRYPT")]
    sha1, sha256 = "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"
    context = {"a": "b"}
    blob = kms.encrypt(KeyId=symmetric, Plaintext=b"secret", EncryptionContext=context)
    # Symmetric to RSA.
    out = kms.re_encrypt(
        CiphertextBlob=blob["CiphertextBlob"],
        SourceEncryptionContext=context,
        DestinationKeyId=rsa_a,
        DestinationEncryptionAlgorithm=sha256,
    )
    assert (out["SourceEncryptionAlgorithm"], out["DestinationEncryptionAlgorithm"]) == (
        "SYMMETRIC_DEFAULT",
        sha256,
    )
    assert len(out["CiphertextBlob"]) == 256
    assert len(out["SourceKeyMaterialId"]) == len(out["DestinationKeyMaterialId"]) == 64
    rsa_ct = out["CiphertextBlob"]
    got = kms.decrypt(KeyId=rsa_a, CiphertextBlob=rsa_ct, EncryptionAlgorithm=sha256)
    assert got["Plaintext"] == b"secret"
    # RSA to RSA, and RSA back to symmetric.
    out = kms.re_encrypt(
        CiphertextBlob=rsa_ct,
        SourceKeyId=rsa_a,
        SourceEncryptionAlgorithm=sha256,
        DestinationKeyId=rsa_b,
        DestinationEncryptionAlgorithm=sha1,
    )
    assert out["SourceKeyId"].endswith(rsa_a) and out["KeyId"].endswith(rsa_b)
    got = kms.decrypt(KeyId=rsa_b, CiphertextBlob=out["CiphertextBlob"], EncryptionAlgorithm=sha1)
    assert got["Plaintext"] == b"secret"
    out = kms.re_encrypt(
        CiphertextBlob=rsa_ct,
        SourceKeyId=rsa_a,
        SourceEncryptionAlgorithm=sha256,
        DestinationKeyId=symmetric,
        DestinationEncryptionContext={"c": "d"},
    )
    assert out["SourceEncryptionAlgorithm"] == sha256
    assert out["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    got = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"c": "d"})
    assert got["Plaintext"] == b"secret"
    # The rules of Encrypt and Decrypt hold on each side.
    source = {"CiphertextBlob": rsa_ct, "SourceKeyId": rsa_a, "DestinationKeyId": symmetric}
    expect("InvalidKeyUsageException", kms.re_encrypt, **source)
    expect("ValidationException", kms.re_encrypt, **source, SourceEncryptionAlgorithm=sha256,
           SourceEncryptionContext=context)  # fmt: skip
    expect("InvalidCiphertextException", kms.re_encrypt, **source, SourceEncryptionAlgorithm=sha1)
    expect("InvalidCiphertextException", kms.re_encrypt, CiphertextBlob=rsa_ct,
           DestinationKeyId=symmetric)  # fmt: skip
    dest = {"CiphertextBlob": blob["CiphertextBlob"], "SourceEncryptionContext": context,
            "DestinationKeyId": rsa_a}  # fmt: skip
    expect("InvalidKeyUsageException", kms.re_encrypt, **dest)
    expect("ValidationException", kms.re_encrypt, **dest, DestinationEncryptionAlgorithm=sha1,
           DestinationEncryptionContext=context)  # fmt: skip
    expect("DryRunOperationException", kms.re_encrypt, **dest,
           DestinationEncryptionAlgorithm=sha1, DryRun=True)  # fmt: skip
    big = kms.encrypt(KeyId=symmetric, Plaintext=b"x" * 300)["CiphertextBlob"]
    expect("ValidationException", kms.re_encrypt, CiphertextBlob=big, DestinationKeyId=rsa_a,
           DestinationEncryptionAlgorithm=sha1)  # fmt: skip
