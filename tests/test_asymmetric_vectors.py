"""Wycheproof vectors through the asymmetric core's verify, decrypt and MAC functions.

The vectors live in ``shared/vectors/wycheproof/`` beside the repository (or where
``KMSCORE_VECTORS`` points); :mod:`vectors` fails the run if they are missing.

Wycheproof results and how they map onto kmscore:

- ``valid``: must verify / decrypt to ``msg`` / produce ``tag``.
- ``invalid``: must be ``False`` / ``InvalidCiphertextException``, never another error.
- ``acceptable`` (none in today's files): either outcome is allowed, since the
  vector marks behaviour that is legitimate but weak (e.g. a BER signature some
  libraries accept); only an unexpected exception fails the test.

Two AWS rules narrow what counts as valid here, and both are tested as such:

- ``VerifyMac`` compares full-length MACs, so a truncated-tag vector must fail
  even when Wycheproof marks it valid for a truncating MAC API.
- RSA OAEP in AWS uses an empty label, so a vector encrypted with a label must
  not decrypt, even when Wycheproof marks it valid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest
import vectors

from kmscore.crypto import asymmetric as A
from kmscore.errors import InvalidCiphertextException

HMAC_FILES = {
    "wycheproof/hmac_sha256_test.json": ("HMAC_256", "HMAC_SHA_256", 256),
    "wycheproof/hmac_sha384_test.json": ("HMAC_384", "HMAC_SHA_384", 384),
    "wycheproof/hmac_sha512_test.json": ("HMAC_512", "HMAC_SHA_512", 512),
}
ECDSA_DER = "wycheproof/ecdsa_secp256r1_sha256_test.json"
ECDSA_P1363 = "wycheproof/ecdsa_secp256r1_sha256_p1363_test.json"
ED25519 = "wycheproof/ed25519_test.json"
RSA_OAEP = "wycheproof/rsa_oaep_2048_sha256_mgf1sha256_test.json"


@dataclass(frozen=True)
class Case:
    """One Wycheproof test with its group's fields."""

    group: dict[str, Any]
    test: dict[str, Any]

    @property
    def result(self) -> str:
        return str(self.test["result"])

    def hex(self, name: str) -> bytes:
        return bytes.fromhex(self.test[name])

    def __str__(self) -> str:
        return f"tc{self.test['tcId']}-{self.result}"


def cases(relative: str) -> list[Case]:
    doc = vectors.load_json(relative)
    out = [Case(g, t) for g in doc["testGroups"] for t in g["tests"]]
    assert len(out) == doc["numberOfTests"], f"{relative}: loader lost tests"
    assert {c.result for c in out} <= {"valid", "invalid", "acceptable"}
    return out


def _ids(items: list[Case]) -> list[str]:
    return [str(c) for c in items]


# --- HMAC ------------------------------------------------------------------

HMAC_CASES = [(f, c) for f in HMAC_FILES for c in cases(f)]


@pytest.mark.parametrize(
    ("relative", "case"), HMAC_CASES, ids=[f"{f[11:-10]}-{c}" for f, c in HMAC_CASES]
)
def test_hmac_vectors(relative, case):
    spec, algorithm, full_bits = HMAC_FILES[relative]
    key = A.LoadedKey.load(spec, case.hex("key"))
    msg, tag = case.hex("msg"), case.hex("tag")
    verified = A.verify_mac(key, algorithm, msg, tag)
    if case.group["tagSize"] != full_bits:
        # AWS MACs are never truncated: a short tag fails whatever its result.
        assert not verified
        if case.result == "valid":
            assert A.generate_mac(key, algorithm, msg).startswith(tag)
        return
    if case.result == "valid":
        assert verified
        assert A.generate_mac(key, algorithm, msg) == tag
    elif case.result == "invalid":
        assert not verified


# --- ECDSA P-256 / SHA-256 (DER) -------------------------------------------

ECDSA_CASES = cases(ECDSA_DER)


@pytest.mark.parametrize("case", ECDSA_CASES, ids=_ids(ECDSA_CASES))
def test_ecdsa_der_vectors(case):
    key = A.LoadedKey.load_public("ECC_NIST_P256", bytes.fromhex(case.group["publicKeyDer"]))
    msg, sig = case.hex("msg"), case.hex("sig")
    raw = A.verify(key, "ECDSA_SHA_256", msg, "RAW", sig)
    # The same signature checked over the digest (MessageType DIGEST) agrees.
    digest = A.verify(key, "ECDSA_SHA_256", hashlib.sha256(msg).digest(), "DIGEST", sig)
    assert raw == digest
    if case.result == "valid":
        assert raw
    elif case.result == "invalid":
        assert not raw


P1363_VALID = [c for c in cases(ECDSA_P1363) if c.result == "valid"]


@pytest.mark.parametrize("case", P1363_VALID, ids=_ids(P1363_VALID))
def test_ecdsa_raw_r_s_signatures_are_not_aws_signatures(case):
    # AWS ECDSA signatures are DER; a valid IEEE P1363 (r || s) signature is not one.
    key = A.LoadedKey.load_public("ECC_NIST_P256", bytes.fromhex(case.group["publicKeyDer"]))
    assert not A.verify(key, "ECDSA_SHA_256", case.hex("msg"), "RAW", case.hex("sig"))


# --- Ed25519 -----------------------------------------------------------------

ED25519_CASES = cases(ED25519)


@pytest.mark.parametrize("case", ED25519_CASES, ids=_ids(ED25519_CASES))
def test_ed25519_vectors(case):
    key = A.LoadedKey.load_public(
        "ECC_NIST_EDWARDS25519", bytes.fromhex(case.group["publicKeyDer"])
    )
    verified = A.verify(key, "ED25519_SHA_512", case.hex("msg"), "RAW", case.hex("sig"))
    if case.result == "valid":
        assert verified
    elif case.result == "invalid":
        assert not verified


# --- RSA OAEP 2048 / SHA-256 / MGF1-SHA-256 -----------------------------------

OAEP_CASES = cases(RSA_OAEP)


@pytest.mark.parametrize("case", OAEP_CASES, ids=_ids(OAEP_CASES))
def test_rsa_oaep_vectors(case):
    key = A.LoadedKey.load("RSA_2048", bytes.fromhex(case.group["privateKeyPkcs8"]))
    ct = case.hex("ct")
    aws_compatible = case.result == "valid" and not case.test["label"]
    if aws_compatible:
        assert A.rsa_decrypt(key, "RSAES_OAEP_SHA_256", ct) == case.hex("msg")
        return
    try:
        A.rsa_decrypt(key, "RSAES_OAEP_SHA_256", ct)
    except InvalidCiphertextException:
        return
    # Only an "acceptable" vector may decrypt; invalid or labelled ones must not.
    assert case.result == "acceptable", "decrypted a ciphertext AWS would reject"


def test_the_vector_files_cover_what_they_should():
    assert sum(c.result == "valid" for c in ECDSA_CASES) > 100
    assert sum(c.result == "invalid" for c in ED25519_CASES) > 50
    assert any(c.test["label"] for c in OAEP_CASES)
    assert {c.group["tagSize"] for _, c in HMAC_CASES} > {256, 384, 512}
