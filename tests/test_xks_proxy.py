"""kmscore as an XKS proxy (kms serve --xks), against AWS's XKS Proxy API specification.

The requests are the specification's own examples (its request payloads,
with a kmscore key as the external key), signed by botocore's SigV4 signer;
the answers are checked against the specification's response shapes, and its
CDIV example vector (Appendix C) is computed by the proxy's own function.
Every error name the specification lists is produced and checked with its
HTTP status, and each request leaves an audit record without secrets.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from xks_support import ACCOUNT, Proxy, running_proxy

from kmscore import errors
from kmscore.errors import DependencyTimeoutException
from kmscore.frontends.xks.handler import xks_error
from kmscore.model.caller import Caller
from kmscore.operations import dispatch
from kmscore.service.xks_proxy import cdiv

ROOT = Caller(arn=f"arn:aws:iam::{ACCOUNT}:root", account=ACCOUNT, principal_id=ACCOUNT)
BASE = "/kms/xks/v1"

# The specification's request payload examples (GetKeyMetadata, Encrypt,
# Decrypt, GetHealthStatus), as JSON objects.
METADATA_EXAMPLE = {
    "requestMetadata": {
        "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
        "kmsKeyArn": "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "kmsOperation": "DescribeKey",
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "kmsViaService": "ebs",
    }
}
ENCRYPT_EXAMPLE = {
    "requestMetadata": {
        "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
        "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "kmsOperation": "Encrypt",
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "kmsViaService": "ebs",
    },
    "additionalAuthenticatedData": "cHJvamVjdD1uaWxlLGRlcGFydG1lbnQ9bWFya2V0aW5n",
    "plaintext": "SGVsbG8gV29ybGQh",
    "encryptionAlgorithm": "AES_GCM",
    "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
}
DECRYPT_METADATA = {
    "awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
    "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "kmsOperation": "Decrypt",
    "kmsRequestId": "5112f4d6-db54-4af4-ae30-c55a22a8dfae",
    "kmsViaService": "ebs",
}
HEALTH_EXAMPLE = {
    "requestMetadata": {
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
        "kmsOperation": "CreateCustomKeyStore",
    }
}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    with running_proxy(tmp_path_factory.mktemp("xks") / "kms") as p:
        yield p


def new_key(proxy: Proxy, **request: Any) -> str:
    return str(dispatch(proxy.service, "CreateKey", request, ROOT)["KeyMetadata"]["KeyId"])


def b64(data: str) -> bytes:
    return base64.b64decode(data)


def encrypt(proxy: Proxy, key_id: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    status, answer = proxy.post(f"{BASE}/keys/{key_id}/encrypt", payload or ENCRYPT_EXAMPLE)
    assert status == 200, answer
    return dict(answer)


def decrypt_payload(encrypted: dict[str, Any], **changes: Any) -> dict[str, Any]:
    payload = {
        "requestMetadata": DECRYPT_METADATA,
        "additionalAuthenticatedData": ENCRYPT_EXAMPLE["additionalAuthenticatedData"],
        "encryptionAlgorithm": "AES_GCM",
        "ciphertext": encrypted["ciphertext"],
        "ciphertextMetadata": encrypted["ciphertextMetadata"],
        "initializationVector": encrypted["initializationVector"],
        "authenticationTag": encrypted["authenticationTag"],
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def test_cdiv_matches_the_specification_example() -> None:
    # Appendix C: 33 bytes of AAD, 13 of metadata, IV, ciphertext and tag.
    value = cdiv(
        b"project=nile,department=marketing",
        b"key_version=1",
        bytes.fromhex("1ccae5470f397002547790 31".replace(" ", "")),
        bytes.fromhex("821c642b5b71783367deaf18"),
        bytes.fromhex("bc1c4dda7707d6812447c5955e99b261"),
    )
    assert base64.b64encode(value).decode() == "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="


def test_get_key_metadata(proxy: Proxy) -> None:
    key_id = new_key(proxy)
    status, answer = proxy.post(f"{BASE}/keys/{key_id}/metadata", METADATA_EXAMPLE)
    assert status == 200
    assert answer == {
        "keySpec": "AES_256",
        "keyUsage": ["ENCRYPT", "DECRYPT"],
        "keyStatus": "ENABLED",
    }
    dispatch(proxy.service, "DisableKey", {"KeyId": key_id}, ROOT)
    status, answer = proxy.post(f"{BASE}/keys/{key_id}/metadata", METADATA_EXAMPLE)
    assert (status, answer["keyStatus"]) == (200, "DISABLED")


def test_encrypt_and_decrypt_the_examples(proxy: Proxy) -> None:
    key_id = new_key(proxy)
    out = encrypt(proxy, key_id)
    assert set(out) == {
        "ciphertext",
        "ciphertextMetadata",
        "initializationVector",
        "authenticationTag",
        "ciphertextDataIntegrityValue",
    }
    ciphertext, iv, tag = (
        b64(out["ciphertext"]),
        b64(out["initializationVector"]),
        b64(out["authenticationTag"]),
    )
    metadata = b64(out["ciphertextMetadata"])
    assert len(ciphertext) == len(b"Hello World!") and len(iv) == 12 and len(tag) == 16
    assert len(metadata) <= 20
    aad = b64(ENCRYPT_EXAMPLE["additionalAuthenticatedData"])
    assert b64(out["ciphertextDataIntegrityValue"]) == cdiv(aad, metadata, iv, ciphertext, tag)
    status, answer = proxy.post(f"{BASE}/keys/{key_id}/decrypt", decrypt_payload(out))
    assert (status, answer) == (200, {"plaintext": "SGVsbG8gV29ybGQh"})
    # Without the optional members: no AAD, no CDIV.
    bare = {k: v for k, v in ENCRYPT_EXAMPLE.items() if k in ("requestMetadata", "plaintext",
                                                               "encryptionAlgorithm")}  # fmt: skip
    plain = encrypt(proxy, key_id, bare)
    assert "ciphertextDataIntegrityValue" not in plain
    status, answer = proxy.post(
        f"{BASE}/keys/{key_id}/decrypt", decrypt_payload(plain, additionalAuthenticatedData=None)
    )
    assert (status, answer) == (200, {"plaintext": "SGVsbG8gV29ybGQh"})


def test_decrypt_after_rotation_uses_the_metadata_version(proxy: Proxy) -> None:
    key_id = new_key(proxy)
    before = encrypt(proxy, key_id)
    dispatch(proxy.service, "RotateKeyOnDemand", {"KeyId": key_id}, ROOT)
    after = encrypt(proxy, key_id)
    assert before["ciphertextMetadata"] != after["ciphertextMetadata"]
    for out in (before, after):
        status, answer = proxy.post(f"{BASE}/keys/{key_id}/decrypt", decrypt_payload(out))
        assert (status, answer) == (200, {"plaintext": "SGVsbG8gV29ybGQh"})


def test_health(proxy: Proxy) -> None:
    status, answer = proxy.post(f"{BASE}/health", HEALTH_EXAMPLE)
    assert status == 200
    assert answer["xksProxyFleetSize"] >= 1
    for name in ("xksProxyVendor", "xksProxyModel", "ekmVendor"):
        assert isinstance(answer[name], str) and answer[name]
    assert 1 <= len(answer["ekmFleetDetails"]) <= 10
    assert answer["ekmFleetDetails"][0]["healthStatus"] in ("ACTIVE", "DEGRADED", "UNAVAILABLE")


def error(proxy: Proxy, path: str, payload: Any, **options: Any) -> tuple[int, str]:
    status, answer = proxy.post(path, payload, **options)
    assert set(answer) <= {"errorName", "errorMessage"}
    assert len(answer.get("errorMessage", "")) < 512
    return status, str(answer["errorName"])


def test_every_error_of_the_specification(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    key_id = new_key(proxy)
    out = encrypt(proxy, key_id)
    enc, dec, meta = (f"{BASE}/keys/{key_id}/{op}" for op in ("encrypt", "decrypt", "metadata"))

    bad_algorithm = {**ENCRYPT_EXAMPLE, "encryptionAlgorithm": "AES_CBC"}
    assert error(proxy, enc, bad_algorithm) == (400, "ValidationException")
    assert error(proxy, enc, {"plaintext": "SGVsbG8="}) == (400, "ValidationException")
    assert error(proxy, enc, b"not json") == (400, "ValidationException")
    not_base64 = {**ENCRYPT_EXAMPLE, "plaintext": "***"}
    assert error(proxy, enc, not_base64) == (400, "ValidationException")

    tampered = decrypt_payload(out, authenticationTag=base64.b64encode(bytes(16)).decode())
    assert error(proxy, dec, tampered) == (400, "InvalidCiphertextException")
    other_aad = decrypt_payload(out, additionalAuthenticatedData="b3RoZXI=")
    assert error(proxy, dec, other_aad) == (400, "InvalidCiphertextException")
    no_metadata = decrypt_payload(out, ciphertextMetadata=None)
    assert error(proxy, dec, no_metadata) == (400, "InvalidCiphertextException")

    hmac_key = new_key(proxy, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    assert error(proxy, f"{BASE}/keys/{hmac_key}/encrypt", ENCRYPT_EXAMPLE) == (
        400,
        "InvalidKeyUsageException",
    )

    disabled = new_key(proxy)
    dispatch(proxy.service, "DisableKey", {"KeyId": disabled}, ROOT)
    assert error(proxy, f"{BASE}/keys/{disabled}/encrypt", ENCRYPT_EXAMPLE) == (
        400,
        "InvalidStateException",
    )

    assert error(proxy, enc, ENCRYPT_EXAMPLE, secret="A" * 44) == (
        401,
        "AuthenticationFailedException",
    )
    assert error(proxy, enc, ENCRYPT_EXAMPLE, access_key_id="AKIAAAAAAAAAAAAAAAAA") == (
        401,
        "AuthenticationFailedException",
    )
    assert error(proxy, enc, ENCRYPT_EXAMPLE, sign=False) == (401, "AuthenticationFailedException")
    assert error(proxy, enc, ENCRYPT_EXAMPLE, region="us-east-1") == (
        401,
        "AuthenticationFailedException",
    )

    # A user of the data dir whose policies allow nothing on keys.
    _, nobody_key, nobody_secret = proxy.service.principals.add("nobody")
    assert error(proxy, meta, METADATA_EXAMPLE, access_key_id=nobody_key, secret=nobody_secret) == (
        403,
        "AccessDeniedException",
    )

    missing = "1234abcd-12ab-34cd-56ef-1234567890ab"
    assert error(proxy, f"{BASE}/keys/{missing}/metadata", METADATA_EXAMPLE) == (
        404,
        "KeyNotFoundException",
    )
    assert error(proxy, f"/other/kms/xks/v1/keys/{key_id}/metadata", METADATA_EXAMPLE) == (
        404,
        "InvalidUriPathException",
    )
    assert error(proxy, f"{BASE}/keys/{key_id}/sign", METADATA_EXAMPLE) == (
        404,
        "InvalidUriPathException",
    )
    assert error(proxy, meta, METADATA_EXAMPLE, method="GET")[0] == 405

    too_long = {**ENCRYPT_EXAMPLE, "plaintext": base64.b64encode(bytes(4301)).decode()}
    assert error(proxy, enc, too_long) == (501, "UnsupportedOperationException")

    def timeout() -> int:
        raise DependencyTimeoutException("the store did not answer")

    with monkeypatch.context() as m:
        m.setattr(proxy.service.store, "change_token", timeout)
        assert error(proxy, f"{BASE}/health", HEALTH_EXAMPLE) == (
            503,
            "DependencyTimeoutException",
        )

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    with monkeypatch.context() as m:
        m.setattr("kmscore.service.xks_proxy.get_key_metadata", broken)
        assert error(proxy, meta, METADATA_EXAMPLE) == (500, "InternalException")

    with monkeypatch.context() as m:
        m.setattr(proxy.server._handler, "max_in_flight", 0)
        assert error(proxy, meta, METADATA_EXAMPLE) == (429, "ThrottlingException")

    # Nothing above changed the key: it still decrypts what it encrypted.
    status, answer = proxy.post(dec, decrypt_payload(out))
    assert (status, answer) == (200, {"plaintext": "SGVsbG8gV29ybGQh"})


def test_each_request_is_audited_without_secrets(proxy: Proxy) -> None:
    from test_awsjson_support import audit_records, flush_audit

    key_id = new_key(proxy)
    out = encrypt(proxy, key_id)
    proxy.post(f"{BASE}/keys/{key_id}/decrypt", decrypt_payload(out))
    flush_audit(proxy.service)
    records = audit_records(proxy.service.data_dir)
    xks = [r for r in records if str(r.get("eventName", "")).startswith("Xks")]
    names = [r["eventName"] for r in xks]
    assert "XksEncrypt" in names and "XksDecrypt" in names
    text = json.dumps(xks)
    assert "4112f4d6-db54-4af4-ae30-c55a22a8dfae" in text  # the KMS request id
    for secret in ("SGVsbG8gV29ybGQh", out["ciphertext"], out["authenticationTag"],
                   ENCRYPT_EXAMPLE["additionalAuthenticatedData"]):  # fmt: skip
        assert secret not in text


@pytest.mark.parametrize(
    ("error", "status", "name"),
    [
        (errors.InvalidSignatureException("x"), 401, "AuthenticationFailedException"),
        (errors.UnrecognizedClientException("x"), 401, "AuthenticationFailedException"),
        (errors.AccessDeniedException("x"), 403, "AccessDeniedException"),
        (errors.NotFoundException("x"), 404, "KeyNotFoundException"),
        (errors.DisabledException("x"), 400, "InvalidStateException"),
        (errors.KMSInvalidStateException("x"), 400, "InvalidStateException"),
        (errors.InvalidCiphertextException(), 400, "InvalidCiphertextException"),
        (errors.InvalidKeyUsageException("x"), 400, "InvalidKeyUsageException"),
        (errors.ValidationException("x"), 400, "ValidationException"),
        (errors.ThrottlingException("x"), 429, "ThrottlingException"),
        (errors.UnsupportedOperationException("x"), 501, "UnsupportedOperationException"),
        (errors.DependencyTimeoutException("x"), 503, "DependencyTimeoutException"),
        (errors.KMSInternalException("x"), 500, "InternalException"),
    ],
)
def test_errors_take_the_specifications_names(
    error: errors.KMSError, status: int, name: str
) -> None:
    assert xks_error(error) == (status, name)
