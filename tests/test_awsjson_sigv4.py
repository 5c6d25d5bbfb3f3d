"""SigV4 verification: known answers, AWS's failure codes in AWS's order, fuzzing.

Known answers are from AWS's public SigV4 test suite (``get-vanilla``,
``post-vanilla``, ``get-vanilla-query-order-key-case``: service ``service``,
Region us-east-1, 2015-08-30T12:36:00Z), which botocore's signer reproduces too.
"""

from __future__ import annotations

import calendar
import hmac
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from kmscore.errors import (
    IncompleteSignatureException,
    InvalidSignatureException,
    KMSError,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)
from kmscore.frontends.awsjson import sigv4
from kmscore.frontends.awsjson.sigv4 import SigV4Verifier, canonical_query, canonical_uri

KEY_ID = "AKIDEXAMPLE"
SECRET = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
STAMP = "20150830T123600Z"
NOW = float(calendar.timegm((2015, 8, 30, 12, 36, 0, 0, 0, 0)))
SCOPE = "20150830/us-east-1/service/aws4_request"

VANILLA = {
    ("GET", "/"): "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ("POST", "/"): "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ("GET", "/?Param2=value2&Param1=value1"): (
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    ),
}


def verifier(now: float = NOW, **kwargs: Any) -> SigV4Verifier[str]:
    users = {KEY_ID: ("the user", SECRET)}
    return SigV4Verifier("us-east-1", users.get, service="service", clock=lambda: now, **kwargs)


def headers(signature: str, **overrides: str | None) -> CIMultiDict[str]:
    values: dict[str, str | None] = {
        "Host": "example.amazonaws.com",
        "X-Amz-Date": STAMP,
        "Authorization": (
            f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{SCOPE}, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}"
        ),
    }
    values.update(overrides)
    return CIMultiDict((k, v) for k, v in values.items() if v is not None)


def refused(
    error: type[KMSError], hdrs: CIMultiDict[str], v: SigV4Verifier[str] | None = None
) -> str:
    with pytest.raises(error) as info:
        (v or verifier()).verify("GET", "/", hdrs, b"")
    return info.value.message


@pytest.mark.parametrize(("method", "path"), sorted(VANILLA))
def test_known_answers_from_the_aws_test_suite(method: str, path: str) -> None:
    hdrs = headers(VANILLA[method, path])
    assert verifier().verify(method, path, hdrs, b"") == ("the user", KEY_ID)


def test_any_change_breaks_the_signature() -> None:
    good = VANILLA["GET", "/"]
    v = verifier()
    for method, path, hdrs, body in [
        ("POST", "/", headers(good), b""),
        ("GET", "/x", headers(good), b""),
        ("GET", "/?a=b", headers(good), b""),
        ("GET", "/", headers(good, Host="example.amazonaws.com:443"), b""),
        ("GET", "/", headers(good), b"body"),
        ("GET", "/", headers(good[:-1] + "0"), b""),
        ("GET", "/", headers(good.upper()), b""),
    ]:
        with pytest.raises(InvalidSignatureException, match="does not match"):
            v.verify(method, path, hdrs, body)


def test_signatures_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(sigv4.hmac, "compare_digest", spy)
    verifier().verify("GET", "/", headers(VANILLA["GET", "/"]), b"")
    assert seen == [(VANILLA["GET", "/"].encode(), VANILLA["GET", "/"].encode())]


def test_signing_keys_are_cached_per_key_day_and_secret() -> None:
    lookups: list[str] = []
    secrets = {KEY_ID: SECRET}

    def lookup(key_id: str) -> tuple[str, bytes] | None:
        lookups.append(key_id)
        return ("user", secrets[key_id]) if key_id in secrets else None

    v = SigV4Verifier("us-east-1", lookup, service="service", clock=lambda: NOW)
    for _ in range(3):
        v.verify("GET", "/", headers(VANILLA["GET", "/"]), b"")
    assert list(v._keys) == [(KEY_ID, "20150830", SECRET)]
    # A changed secret gets its own key (and the old signature no longer verifies).
    secrets[KEY_ID] = b"another secret"
    with pytest.raises(InvalidSignatureException):
        v.verify("GET", "/", headers(VANILLA["GET", "/"]), b"")
    assert len(v._keys) == 2
    assert lookups == [KEY_ID] * 4  # looked up every time: removal takes effect at once


# --- failures, in AWS's order --------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "", "Basic dXNlcjpwYXNz", "Bearer x", "AWS x:y"])
def test_no_aws4_authorization_is_missing_authentication_token(authorization: str | None) -> None:
    message = refused(
        MissingAuthenticationTokenException, headers("x", Authorization=authorization)
    )
    assert message == "Missing Authentication Token"


def test_missing_parts_are_incomplete() -> None:
    message = refused(
        IncompleteSignatureException,
        headers("x", Authorization=f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{SCOPE}"),
    )
    assert "requires 'Signature' parameter" in message
    assert "requires 'SignedHeaders' parameter" in message
    assert "requires 'Credential'" not in message
    message = refused(IncompleteSignatureException, headers("x", **{"X-Amz-Date": None}))
    assert "either a 'X-Amz-Date' or a 'Date' header" in message


def test_a_part_without_equals_is_incomplete() -> None:
    auth = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{SCOPE}, SignedHeaders, Signature=ab"
    message = refused(IncompleteSignatureException, headers("x", Authorization=auth))
    assert "'SignedHeaders' not a valid key=value pair (missing equal-sign)" in message


@pytest.mark.parametrize(
    "stamp", ["2015-08-30T12:36:00Z", "20150830T123600", "20151330T123600Z", "now"]
)
def test_a_malformed_date_is_incomplete(stamp: str) -> None:
    message = refused(IncompleteSignatureException, headers("x", **{"X-Amz-Date": stamp}))
    assert "ISO-8601 'basic format'" in message


def test_fifteen_minutes_either_way() -> None:
    good = headers(VANILLA["GET", "/"])
    verifier(NOW + 15 * 60).verify("GET", "/", good, b"")
    verifier(NOW - 15 * 60).verify("GET", "/", good, b"")
    late = refused(InvalidSignatureException, good, verifier(NOW + 15 * 60 + 1))
    assert late == (
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z "
        "(20150830T125101Z - 15 min.)"
    )
    early = refused(InvalidSignatureException, good, verifier(NOW - 15 * 60 - 1))
    assert early.startswith("Signature not yet current: 20150830T123600Z is still later than")


def test_expiry_is_checked_before_the_credential() -> None:
    # An expired request with an unknown key and a bad signature: expiry wins.
    auth = "AWS4-HMAC-SHA256 Credential=NOBODY/20150830/x/y/z, SignedHeaders=host, Signature=00"
    message = refused(
        InvalidSignatureException, headers("x", Authorization=auth), verifier(NOW + 3600)
    )
    assert message.startswith("Signature expired")


def test_host_must_be_signed() -> None:
    auth = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{SCOPE}, SignedHeaders=x-amz-date, Signature=00"
    message = refused(InvalidSignatureException, headers("x", Authorization=auth))
    assert "'Host' or ':authority' must be a 'SignedHeader'" in message


def test_other_algorithms_are_incomplete() -> None:
    auth = f"AWS4-HMAC-SHA512 Credential={KEY_ID}/{SCOPE}, SignedHeaders=host, Signature=00"
    message = refused(IncompleteSignatureException, headers("x", Authorization=auth))
    assert "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512'" in message


def test_a_credential_needs_five_parts() -> None:
    auth = (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20150830/us-east-1, SignedHeaders=host, Signature=00"
    )
    message = refused(IncompleteSignatureException, headers("x", Authorization=auth))
    assert "exactly 5 slash-delimited elements" in message


def test_a_scope_of_another_region_service_terminator_or_day() -> None:
    scope = "20150829/eu-west-1/kms/aws5_request"
    auth = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, SignedHeaders=host, Signature=00"
    message = refused(InvalidSignatureException, headers("x", Authorization=auth))
    assert "scoped to a valid region, not 'eu-west-1'" in message
    assert "scoped to correct service: 'service'" in message
    assert "valid terminator: 'aws4_request', not 'aws5_request'" in message
    assert "'20150829' != '20150830'" in message


def test_a_trailing_slash_in_the_credential_is_ignored() -> None:
    auth = headers(VANILLA["GET", "/"])["Authorization"].replace("aws4_request,", "aws4_request/,")
    verifier().verify("GET", "/", headers("x", Authorization=auth), b"")


def test_an_unknown_access_key_is_unrecognized() -> None:
    auth = headers(VANILLA["GET", "/"])["Authorization"].replace(KEY_ID, "AKIDOTHER")
    message = refused(UnrecognizedClientException, headers("x", Authorization=auth))
    assert message == "The security token included in the request is invalid."


def test_a_session_token_is_unrecognized() -> None:
    hdrs = headers(VANILLA["GET", "/"], **{"X-Amz-Security-Token": "token"})
    refused(UnrecognizedClientException, hdrs)


# --- canonical forms -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/", "/"),
        ("", "/"),
        ("//a///b/", "/a/b/"),
        ("/a/./b/../c", "/a/c"),
        ("/../..", "/"),
        ("/a%20b", "/a%2520b"),
        ("/~user/x-y_z.q", "/~user/x-y_z.q"),
    ],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("", ""),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        ("x=a%20b&y=~_.-", "x=a%20b&y=~_.-"),
        ("k", "k="),
        ("k=v&&", "k=v"),
        ("%41=%2f", "A=%2F"),
        ("s=a+b", "s=a%2Bb"),
    ],
)
def test_canonical_query(raw: str, canonical: str) -> None:
    assert canonical_query(raw) == canonical


def test_header_values_are_trimmed_and_repeats_joined() -> None:
    hdrs: CIMultiDict[str] = CIMultiDict([("X-A", "  one   two "), ("X-B", "b1"), ("X-B", " b2 ")])
    assert sigv4._header_value(hdrs, "x-a") == "one two"
    assert sigv4._header_value(hdrs, "x-b") == "b1,b2"
    assert sigv4._header_value(hdrs, "x-none") == ""


# --- fuzzing the header parser -------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)
_auth = st.one_of(
    _text,
    _text.map("AWS4-HMAC-SHA256 ".__add__),
    st.builds(
        "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/{}, SignedHeaders={}, Signature={}".format,
        st.sampled_from([KEY_ID, "", "AKIDOTHER"]) | _text,
        st.sampled_from(["20150830", ""]) | _text,
        st.sampled_from(["us-east-1", "eu-west-1"]),
        st.sampled_from(["service", "kms"]),
        st.sampled_from(["aws4_request", ""]),
        st.sampled_from(["host;x-amz-date", "host", ""]) | _text,
        st.sampled_from([VANILLA["GET", "/"], ""]) | _text,
    ),
)


_extra_names = st.sampled_from(["host", "x-amz-target", "x-amz-date", "x-amz-content-sha256"])


@settings(max_examples=400, deadline=None)
@given(
    authorization=st.none() | _auth,
    amz_date=st.none() | st.just(STAMP) | _text,
    date=st.none() | _text,
    extra=st.lists(st.tuples(_extra_names, _text), max_size=3),
    path=st.just("/") | _text.map("/".__add__),
    body=st.binary(max_size=16),
)  # fmt: skip
def test_fuzz_only_authentication_errors(
    authorization: str | None,
    amz_date: str | None,
    date: str | None,
    extra: list[tuple[str, str]],
    path: str,
    body: bytes,
) -> None:
    hdrs = headers("x", Authorization=authorization, **{"X-Amz-Date": amz_date, "Date": date})
    for name, value in extra:
        hdrs.add(name, value)
    try:
        verifier().verify("GET", path, hdrs, body)
    except (
        MissingAuthenticationTokenException,
        IncompleteSignatureException,
        InvalidSignatureException,
        UnrecognizedClientException,
    ):
        pass
