"""The wire format: targets, JSON bodies, shape-driven decoding, answers and errors.

Decoding follows each operation's declared shape, so blobs nested in structures
and lists are found without a table of their own; wrong JSON types are
SerializationException, constraint violations ValidationException (from
:func:`kmscore.model.validation.validate`). Hypothesis checks that no input, however
malformed, gets past the parser as anything but those two errors.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmscore.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    KMSInternalException,
    MissingAuthenticationTokenException,
    NotFoundException,
    SerializationException,
    UnknownOperationException,
    UnrecognizedClientException,
    ValidationException,
)
from kmscore.frontends.awsjson import wire
from kmscore.model.validation import validate
from kmscore.operations import OPERATIONS


def decode(operation: str, members: dict[str, Any]) -> dict[str, Any]:
    return wire.decode_request(OPERATIONS[operation].shape, members)


@pytest.mark.parametrize(
    ("target", "name"),
    [("TrentService.Encrypt", "Encrypt"), ("TrentService.GenerateDataKeys", "GenerateDataKeys")],
)
def test_targets(target: str, name: str) -> None:
    assert wire.operation_name(target) == name


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "TrentService.",
        "trentservice.Encrypt",
        "TrentService.En crypt",
        "Encrypt",
        "TrentService.Encrypt.x",
        "TrentService.Ëncrypt",
    ],
)
def test_bad_targets(target: str | None) -> None:
    with pytest.raises(UnknownOperationException):
        wire.operation_name(target)


def test_parse_body() -> None:
    assert wire.parse_body(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    for bad in (b"", b"[]", b"1", b"{", b'{"a": NaN}', b'{"a": Infinity}', b"\xff",
                b'{"a": "\\ud800"}', b"[" * 2000 + b"]" * 2000):  # fmt: skip
        with pytest.raises(SerializationException):
            wire.parse_body(bad)


def test_blobs_are_decoded_wherever_the_shape_puts_them() -> None:
    raw = bytes(range(40))
    text = base64.b64encode(raw).decode()
    assert decode("Encrypt", {"KeyId": "k", "Plaintext": text}) == {"KeyId": "k", "Plaintext": raw}
    nested = decode("Decrypt", {"CiphertextBlob": text, "Recipient": {"AttestationDocument": text}})
    assert nested["Recipient"]["AttestationDocument"] == raw
    listed = decode("DecryptMany", {"CiphertextBlobs": [text, ""]})
    assert listed["CiphertextBlobs"] == [raw, b""]


def test_other_types_pass_through_checked() -> None:
    members = {
        "KeyId": "k",
        "NumberOfBytes": 32,
        "EncryptionContext": {"a": "b"},
        "GrantTokens": ["t"],
        "DryRun": False,
    }
    assert decode("GenerateDataKey", members) == members
    structure = decode("CreateGrant", {"Constraints": {"EncryptionContextEquals": {"a": "b"}}})
    assert structure == {"Constraints": {"EncryptionContextEquals": {"a": "b"}}}
    # Unknown members are left for validate() to refuse by name; null is absent.
    assert decode("ListKeys", {"Bogus": 1, "Limit": None}) == {"Bogus": 1, "Limit": None}
    with pytest.raises(ValidationException, match="Bogus"):
        validate(OPERATIONS["ListKeys"].shape, decode("ListKeys", {"Bogus": 1}))


@pytest.mark.parametrize(
    ("operation", "members"),
    [
        ("Encrypt", {"KeyId": 1}),
        ("Encrypt", {"Plaintext": 1}),
        ("Encrypt", {"Plaintext": "***"}),
        ("Encrypt", {"Plaintext": "eA"}),
        ("Encrypt", {"Plaintext": "ë"}),
        ("Encrypt", {"EncryptionContext": {"a": 1}}),
        ("Encrypt", {"EncryptionContext": "a"}),
        ("Encrypt", {"GrantTokens": [1]}),
        ("Encrypt", {"GrantTokens": {"a": "b"}}),
        ("GenerateRandom", {"NumberOfBytes": "32"}),
        ("GenerateRandom", {"NumberOfBytes": 32.0}),
        ("GenerateRandom", {"NumberOfBytes": True}),
        ("GenerateRandom", {"NumberOfBytes": 2**31}),
        ("GenerateRandom", {"NumberOfBytes": -(2**31) - 1}),
        ("Encrypt", {"DryRun": 0}),
        ("Decrypt", {"Recipient": []}),
        ("Decrypt", {"Recipient": {"AttestationDocument": 5}}),
        ("DecryptMany", {"CiphertextBlobs": ["eA==", 5]}),
        ("CreateGrant", {"Constraints": {"EncryptionContextSubset": []}}),
    ],
)
def test_wrong_json_types_are_serialization_errors(operation: str, members: dict[str, Any]) -> None:
    with pytest.raises(SerializationException):
        decode(operation, members)


def test_answers_encode_blobs_and_times() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    body = wire.encode_response(
        {"KeyMetadata": {"CreationDate": when, "Arn": "arn"}, "Blobs": [b"\x00\xff", b""], "N": 3}
    )
    assert json.loads(body) == {
        "KeyMetadata": {"CreationDate": when.timestamp(), "Arn": "arn"},
        "Blobs": ["AP8=", ""],
        "N": 3,
    }


def test_answers_with_strings_that_are_not_unicode_still_encode() -> None:
    assert json.loads(wire.encode_response({"Description": "a\ud800b"})) == {
        "Description": "a\ud800b"
    }


def test_errors() -> None:
    assert json.loads(wire.encode_error("NotFoundException", "gone")) == {
        "__type": "NotFoundException",
        "message": "gone",
    }
    assert wire.wire_error(NotFoundException("x")) == (400, "NotFoundException")
    assert wire.wire_error(KMSInternalException()) == (500, "KMSInternalException")
    # AWS JSON services answer authentication failures with 400 and these codes.
    for error, code in [
        (MissingAuthenticationTokenException(), "MissingAuthenticationTokenException"),
        (IncompleteSignatureException(), "IncompleteSignatureException"),
        (InvalidSignatureException(), "InvalidSignatureException"),
        (UnrecognizedClientException(), "UnrecognizedClientException"),
    ]:
        assert wire.wire_error(error) == (400, code)


# --- fuzzing the parser --------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def _member_names() -> st.SearchStrategy[str]:
    names = sorted({name for op in OPERATIONS.values() for name in op.shape})
    return st.sampled_from(names) | st.text(max_size=12)


@settings(max_examples=500, deadline=None)
@given(body=st.binary(max_size=200), operation=st.sampled_from(sorted(OPERATIONS)))
def test_fuzz_bytes_give_only_request_errors(body: bytes, operation: str) -> None:
    try:
        validate(OPERATIONS[operation].shape, decode(operation, wire.parse_body(body)))
    except (SerializationException, ValidationException):
        pass


@settings(max_examples=500, deadline=None)
@given(
    members=st.dictionaries(_member_names(), _json, max_size=6),
    operation=st.sampled_from(sorted(OPERATIONS)),
)
def test_fuzz_json_members_give_only_request_errors(
    members: dict[str, Any], operation: str
) -> None:
    body = json.dumps(members).encode()
    try:
        validate(OPERATIONS[operation].shape, decode(operation, wire.parse_body(body)))
    except (SerializationException, ValidationException):
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_blobs_round_trip(raw: bytes) -> None:
    body = wire.encode_response({"Plaintext": raw})
    assert decode("Encrypt", json.loads(body))["Plaintext"] == raw
