"""The endpoint at the HTTP level: the protocol's edges, extensions, and fuzzing.

Requests here are built by hand (and signed by botocore's own SigV4 signer), so
they can be wrong in ways no SDK would send: other methods and content types,
broken JSON, unknown targets, tampered bodies, unsigned headers. Every answer
must be an AWS error with ``x-amzn-RequestId``, never a 500. Hypothesis then
throws arbitrary bodies, JSON members and headers at the running endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_awsjson_support import (
    Answer,
    Endpoint,
    call,
    running_endpoint,
    send,
    signed_request,
)

from kmscore.operations import OPERATIONS

AUTH_CODES = {
    "MissingAuthenticationTokenException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path_factory.mktemp("awsjson-http") / "kms") as ep:
        yield ep


@pytest.fixture(scope="module")
def key_id(endpoint: Endpoint) -> str:
    answer = call(endpoint, "CreateKey", {"Description": "http tests"})
    assert answer.status == 200
    return str(answer.json()["KeyMetadata"]["KeyId"])


def aws_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    """The answer is the AWS error ``code`` with ``status``, JSON-shaped, with a request id."""
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"] == "application/x-amz-json-1.1"
    assert answer.headers["x-amzn-requestid"]
    body: dict[str, Any] = answer.json()
    assert body["__type"] == code, body
    assert isinstance(body["message"], str)
    return body


# --- not KMS requests ----------------------------------------------------------------


def test_other_methods_are_not_found(endpoint: Endpoint) -> None:
    for method in ("GET", "PUT", "DELETE"):
        aws_error(send(endpoint, method, "/", {}, b""), 404, "UnknownOperationException")


def test_a_body_that_is_not_json_typed_is_not_found(endpoint: Endpoint) -> None:
    method, path, headers, body = signed_request(
        endpoint, "TrentService.ListKeys", b"{}", headers={"Content-Type": "text/plain"}
    )
    aws_error(send(endpoint, method, path, headers, body), 404, "UnknownOperationException")


def test_application_json_is_accepted(endpoint: Endpoint) -> None:
    request = signed_request(
        endpoint, "TrentService.ListKeys", b"{}", headers={"Content-Type": "application/json"}
    )
    assert send(endpoint, *request).status == 200


# --- targets and bodies --------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [None, "TrentService.", "TrentService.NoSuchThing", "DynamoDB_20120810.GetItem", "ListKeys"],
)
def test_unknown_targets(endpoint: Endpoint, target: str | None) -> None:
    answer = send(endpoint, *signed_request(endpoint, target, b"{}"))
    aws_error(answer, 400, "UnknownOperationException")


def test_unknown_target_is_found_before_authentication(endpoint: Endpoint) -> None:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.Nope"}
    aws_error(send(endpoint, "POST", "/", headers, b"{}"), 400, "UnknownOperationException")


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"KeyId": NaN}', b"{}{}", b"[" * 5000],
)
def test_bodies_that_are_not_a_json_object(endpoint: Endpoint, body: bytes) -> None:
    answer = send(endpoint, *signed_request(endpoint, "TrentService.ListKeys", body))
    aws_error(answer, 400, "SerializationException")


def test_malformed_json_is_found_before_authentication(endpoint: Endpoint) -> None:
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.ListKeys",
    }
    aws_error(send(endpoint, "POST", "/", headers, b"{oops"), 400, "SerializationException")


def test_an_empty_body_is_a_serialization_error_after_authentication(endpoint: Endpoint) -> None:
    answer = send(endpoint, *signed_request(endpoint, "TrentService.ListKeys", b""))
    aws_error(answer, 400, "SerializationException")
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.ListKeys",
    }
    aws_error(send(endpoint, "POST", "/", headers, b""), 400, "MissingAuthenticationTokenException")


def test_member_types_and_constraints(endpoint: Endpoint, key_id: str) -> None:
    wrong_types: list[dict[str, Any]] = [
        {"KeyId": 7, "Plaintext": "eA=="},
        {"KeyId": key_id, "Plaintext": "not base64!"},
        {"KeyId": key_id, "Plaintext": "eA==", "EncryptionContext": ["a"]},
        {"KeyId": key_id, "Plaintext": "eA==", "EncryptionContext": {"a": None}},
        {"KeyId": key_id, "Plaintext": "eA==", "GrantTokens": "one"},
        {"KeyId": key_id, "Plaintext": "eA==", "DryRun": "yes"},
    ]
    for members in wrong_types:
        aws_error(call(endpoint, "Encrypt", members), 400, "SerializationException")
    aws_error(
        call(endpoint, "GenerateRandom", {"NumberOfBytes": 2**40}), 400, "SerializationException"
    )
    aws_error(
        call(endpoint, "GenerateRandom", {"NumberOfBytes": 1.5}), 400, "SerializationException"
    )
    body = aws_error(
        call(endpoint, "GenerateRandom", {"NumberOfBytes": 5000}), 400, "ValidationException"
    )
    assert "numberOfBytes" in body["message"]
    # kmscore refuses members it does not know, where AWS would ignore them: a
    # member it silently dropped could be one that changes what the call does.
    body = aws_error(
        call(endpoint, "ListKeys", {"Limit": 5, "Extra": 1}), 400, "ValidationException"
    )
    assert "Extra" in body["message"]
    # null stands for an absent member.
    assert call(endpoint, "ListKeys", {"Limit": None, "Marker": None}).status == 200


def test_body_limit(endpoint: Endpoint) -> None:
    big = b'{"Pad":"' + b"x" * (9 * 1024 * 1024) + b'"}'
    answer = send(endpoint, *signed_request(endpoint, "TrentService.ListKeys", big))
    aws_error(answer, 413, "RequestEntityTooLargeException")


def test_blobs_go_both_ways_in_base64(endpoint: Endpoint, key_id: str) -> None:
    plaintext = bytes(range(256))
    answer = call(
        endpoint,
        "Encrypt",
        {"KeyId": key_id, "Plaintext": base64.b64encode(plaintext).decode()},
    )
    assert answer.status == 200
    blob = answer.json()["CiphertextBlob"]
    decrypted = call(endpoint, "Decrypt", {"CiphertextBlob": blob}).json()
    assert base64.b64decode(decrypted["Plaintext"]) == plaintext
    described = call(endpoint, "DescribeKey", {"KeyId": key_id}).json()["KeyMetadata"]
    assert isinstance(described["CreationDate"], float)


def test_batch_extensions_are_served(endpoint: Endpoint, key_id: str) -> None:
    answer = call(
        endpoint,
        "GenerateDataKeys",
        {"KeyId": key_id, "Count": 5, "KeySpec": "AES_256", "EncryptionContext": {"t": "1"}},
    )
    assert answer.status == 200
    keys = answer.json()
    assert len(keys["CiphertextBlobs"]) == len(keys["Plaintexts"]) == 5
    many = call(
        endpoint,
        "DecryptMany",
        {"CiphertextBlobs": [*keys["CiphertextBlobs"], "AAAA"], "EncryptionContext": {"t": "1"}},
    ).json()
    assert [r.get("Plaintext") for r in many["Results"][:5]] == keys["Plaintexts"]
    assert many["Results"][5]["Error"]["Code"] == "InvalidCiphertextException"


def test_keep_alive_serves_many_requests_on_one_connection(endpoint: Endpoint, key_id: str) -> None:
    conn = http.client.HTTPConnection(endpoint.host, timeout=10)
    try:
        ids = set()
        for i in range(20):
            body = json.dumps({"KeyId": key_id, "NumberOfBytes": 16 + i}).encode()
            request = signed_request(endpoint, "TrentService.GenerateDataKey", body)
            answer = send(endpoint, *request, connection=conn)
            assert answer.status == 200
            assert len(base64.b64decode(answer.json()["Plaintext"])) == 16 + i
            ids.add(answer.headers["x-amzn-requestid"])
        assert len(ids) == 20
    finally:
        conn.close()


# --- signatures at the HTTP level ----------------------------------------------------


def test_a_tampered_body_fails_the_signature(endpoint: Endpoint) -> None:
    method, path, headers, _ = signed_request(endpoint, "TrentService.ListKeys", b'{"Limit":1}')
    answer = send(endpoint, method, path, headers, b'{"Limit":2}')
    aws_error(answer, 400, "InvalidSignatureException")


def test_an_unsigned_target_is_refused(endpoint: Endpoint) -> None:
    # Sign without the target, then add it: a relay could otherwise turn a
    # signed EnableKey into DisableKey (same body).
    method, path, headers, body = signed_request(endpoint, None, b"{}")
    headers["X-Amz-Target"] = "TrentService.ListKeys"
    body_json = aws_error(
        send(endpoint, method, path, headers, body), 400, "InvalidSignatureException"
    )
    assert "X-Amz-Target" in body_json["message"]


def test_a_swapped_target_fails_the_signature(endpoint: Endpoint, key_id: str) -> None:
    body = json.dumps({"KeyId": key_id}).encode()
    method, path, headers, _ = signed_request(endpoint, "TrentService.DescribeKey", body)
    headers["X-Amz-Target"] = "TrentService.DisableKey"
    aws_error(send(endpoint, method, path, headers, body), 400, "InvalidSignatureException")


def test_content_sha256_header_must_be_the_bodys_hash(endpoint: Endpoint) -> None:
    body = b'{"Limit":1}'
    good = hashlib.sha256(body).hexdigest()
    request = signed_request(
        endpoint, "TrentService.ListKeys", body, headers={"X-Amz-Content-SHA256": good}
    )
    assert send(endpoint, *request).status == 200
    for claimed in ("UNSIGNED-PAYLOAD", hashlib.sha256(b"other").hexdigest()):
        request = signed_request(
            endpoint, "TrentService.ListKeys", body, headers={"X-Amz-Content-SHA256": claimed}
        )
        aws_error(send(endpoint, *request), 400, "InvalidSignatureException")


def test_the_date_header_may_carry_the_request_time(endpoint: Endpoint) -> None:
    request = signed_request(
        endpoint, "TrentService.ListKeys", b"{}", headers={"Date": "placeholder"}
    )
    assert "X-Amz-Date" not in request[2] and "Date" in request[2]
    assert send(endpoint, *request).status == 200


def test_paths_and_query_strings_are_signed_canonically(endpoint: Endpoint) -> None:
    for path in ("/?b=2&a=1&a=0", "/?x=a%20b&y=~_.-", "/./a/../"):
        request = signed_request(endpoint, "TrentService.ListKeys", b"{}", path=path)
        assert send(endpoint, *request).status == 200, path


def test_a_signature_for_another_access_key_is_refused(endpoint: Endpoint) -> None:
    _, other_key, _ = endpoint.service.principals.add("mallory")
    request = signed_request(endpoint, "TrentService.ListKeys", b"{}", access_key_id=other_key)
    aws_error(send(endpoint, *request), 400, "InvalidSignatureException")


# --- fuzzing the running endpoint ----------------------------------------------------

_FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

# Reading operations and the batch extensions: fuzzing them changes nothing
# that later examples depend on.
_READ_ONLY = sorted(name for name, op in OPERATIONS.items() if op.read_only)


def _never_a_server_error(answer: Answer) -> None:
    assert answer.status in (200, 400, 404, 413), (answer.status, answer.body[:200])
    assert answer.headers["x-amzn-requestid"]
    if answer.status != 200:
        body = answer.json()
        assert isinstance(body["__type"], str) and body["__type"].isalpha()


@_FUZZ
@given(body=st.binary(max_size=300), name=st.sampled_from([*_READ_ONLY, "Nope", "Sign"]))
def test_fuzz_signed_bytes(endpoint: Endpoint, body: bytes, name: str) -> None:
    _never_a_server_error(send(endpoint, *signed_request(endpoint, f"TrentService.{name}", body)))


@_FUZZ
@given(
    name=st.sampled_from(_READ_ONLY),
    members=st.dictionaries(
        st.sampled_from(
            ["KeyId", "Plaintext", "CiphertextBlob", "EncryptionContext", "GrantTokens",
             "NumberOfBytes", "KeySpec", "Limit", "Marker", "DryRun", "Count",
             "CiphertextBlobs", "EncryptionContexts", "Recipient", "DestinationKeyId"]
        ) | st.text(max_size=8),
        _json_values,
        max_size=5,
    ),
)  # fmt: skip
def test_fuzz_signed_members(endpoint: Endpoint, name: str, members: dict[str, Any]) -> None:
    _never_a_server_error(call(endpoint, name, members))


_header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@_FUZZ
@given(
    authorization=st.one_of(
        st.none(),
        _header_text,
        _header_text.map(lambda t: "AWS4-HMAC-SHA256 " + t),
        st.builds(
            "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={}, Signature={}".format,
            _header_text, _header_text, _header_text,
        ),
    ),
    amz_date=st.one_of(st.none(), _header_text, st.just("20260101T000000Z")),
    date=st.one_of(st.none(), _header_text),
    extra=st.dictionaries(
        st.sampled_from(["X-Amz-Security-Token", "X-Amz-Content-SHA256", "Host"]), _header_text
    ),
)  # fmt: skip
def test_fuzz_authentication_headers(
    endpoint: Endpoint,
    authorization: str | None,
    amz_date: str | None,
    date: str | None,
    extra: dict[str, str],
) -> None:
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.ListKeys",
    }
    for name, value in (("Authorization", authorization), ("X-Amz-Date", amz_date), ("Date", date)):
        if value is not None:
            headers[name] = value
    headers.update(extra)
    answer = send(endpoint, "POST", "/", headers, b"{}")
    assert answer.status == 400, answer.body
    assert answer.json()["__type"] in AUTH_CODES


def test_an_unexpected_failure_is_a_500_that_logs_no_request_data(
    endpoint: Endpoint,
    key_id: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kmscore.frontends.awsjson import app

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app, "dispatch", broken)
    secret_context = "tenant-7f3a9c"
    body = json.dumps(
        {"KeyId": key_id, "Plaintext": "c2VjcmV0", "EncryptionContext": {"t": secret_context}}
    )
    with caplog.at_level("ERROR", logger="kmscore.frontends.awsjson"):
        answer = send(endpoint, *signed_request(endpoint, "TrentService.Encrypt", body.encode()))
    body_json = aws_error(answer, 500, "KMSInternalException")
    assert "a bug" not in body_json["message"]
    logged = caplog.text
    assert answer.headers["x-amzn-requestid"] in logged
    assert "TrentService.Encrypt" in logged
    for secret in (secret_context, "c2VjcmV0", endpoint.secret, endpoint.access_key_id):
        assert secret not in logged
