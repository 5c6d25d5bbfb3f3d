"""Audit events: CloudTrail shape, and the scrubber that keeps secrets out of them."""

from __future__ import annotations

import base64
import enum
import json
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_audit_support import ACCOUNT, ALICE, KEY_ARN, KEY_ID, REGION, event

from kmscore.audit import (
    SECRET_FIELDS,
    AuditEvent,
    AuditTrail,
    Identity,
    build_event,
    scrub_event,
    scrub_parameters,
)
from kmscore.audit._format import encode_event


def test_event_has_the_cloudtrail_shape() -> None:
    e = event("Decrypt", EncryptionContext={"Department": "Engineering"})
    assert list(e) == [
        "eventVersion",
        "userIdentity",
        "eventTime",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "requestParameters",
        "responseElements",
        "requestID",
        "eventID",
        "readOnly",
        "resources",
        "eventType",
        "managementEvent",
        "recipientAccountId",
        "eventCategory",
    ]
    assert e["eventVersion"] == "1.08"
    assert e["eventSource"] == "kms.amazonaws.com"
    assert e["eventType"] == "AwsApiCall"
    assert e["eventName"] == "Decrypt"
    assert e["awsRegion"] == REGION
    assert e["recipientAccountId"] == ACCOUNT
    assert e["managementEvent"] is True
    assert e["readOnly"] is False
    assert e["responseElements"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["eventTime"])
    assert uuid.UUID(e["eventID"]).version == 4
    assert e["userIdentity"] == {
        "type": "IAMUser",
        "principalId": "AIDAALICE",
        "arn": ALICE.arn,
        "accountId": ACCOUNT,
        "accessKeyId": "AKIAALICE",
        "userName": "alice",
    }
    assert e["resources"] == [{"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": KEY_ARN}]
    assert e["requestParameters"] == {
        "keyId": KEY_ARN,
        "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "encryptionContext": {"Department": "Engineering"},
    }
    assert "errorCode" not in e and "errorMessage" not in e
    json.dumps(e, allow_nan=False)


def test_error_event_and_identity_mapping() -> None:
    e = build_event(
        "GenerateDataKey",
        region=REGION,
        account_id=ACCOUNT,
        identity={
            "type": "IAMUser",
            "principalId": "P",
            "arn": "a",
            "accountId": "1",
            "accessKeyId": None,
        },
        source_ip="192.0.2.1",
        user_agent="aws-cli/2",
        request_parameters={"KeyId": "alias/missing", "NumberOfBytes": 32},
        read_only=True,
        error_code="NotFoundException",
        error_message="Alias alias/missing is not found.",
        event_time=datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))),
        request_id="req-1",
    )
    assert e["errorCode"] == "NotFoundException"
    assert e["errorMessage"] == "Alias alias/missing is not found."
    assert e["userIdentity"] == {
        "type": "IAMUser",
        "principalId": "P",
        "arn": "a",
        "accountId": "1",
    }
    assert e["eventTime"] == "2024-05-01T12:00:00Z"
    assert e["requestID"] == "req-1"
    assert e["resources"] == []
    assert e["readOnly"] is True
    assert e["requestParameters"] == {"keyId": "alias/missing", "numberOfBytes": 32}


def test_builder_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        event("")
    with pytest.raises(ValueError):
        build_event(
            "Encrypt",
            region=REGION,
            account_id=ACCOUNT,
            identity=ALICE,
            source_ip="x",
            user_agent="x",
            request_parameters={},
            read_only=False,
            error_message="no code",
        )


def test_resource_account_comes_from_the_arn() -> None:
    other = "arn:aws:kms:us-east-1:444455556666:key/" + KEY_ID
    assert event(key_arn=other)["resources"][0]["accountId"] == "444455556666"


class Color(enum.Enum):
    RED = "red"


def test_scrub_rule() -> None:
    secret = b"\x01" * 32
    params = {
        "KeyId": KEY_ID,
        "Plaintext": secret,
        "plaintext": "c2VjcmV0",  # base64 as a string: dropped by name, any case
        "CiphertextBlob": secret,
        "SourceCiphertextBlob": secret,
        "GrantTokens": ["token-1"],
        "WrappingKeyCertificate": "-----BEGIN",
        "WrappingKeySpec": "RSA_4096",
        "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
        "KeySpec": "AES_256",
        "Opaque": bytearray(secret),
        "View": memoryview(secret),
        "Set": {1, 2},
        "Object": object(),
        "NaN": float("nan"),
        "Ratio": 0.5,
        "Color": Color.RED,
        "When": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "List": [1, b"x", "y", {"Plaintext": secret, "KeyId": "k"}],
        "EncryptionContext": {"Plaintext": "kept: context is not secret", "b": b"dropped"},
        "Constraints": {"EncryptionContextSubset": {"Key": "v"}},
        b"bytes-key": "dropped",
    }
    assert scrub_parameters(params) == {
        "keyId": KEY_ID,
        "wrappingKeySpec": "RSA_4096",
        "wrappingAlgorithm": "RSAES_OAEP_SHA_256",
        "keySpec": "AES_256",
        "ratio": 0.5,
        "color": "red",
        "when": "2024-01-02T03:04:05Z",
        "list": [1, "y", {"keyId": "k"}],
        "encryptionContext": {"Plaintext": "kept: context is not secret"},
        "constraints": {"encryptionContextSubset": {"Key": "v"}},
    }


def test_every_named_secret_is_dropped_in_any_case_at_any_depth() -> None:
    for name in SECRET_FIELDS:
        for variant in (name, name.lower(), name.upper(), name[:1].lower() + name[1:]):
            params = {"Outer": [{"Inner": {variant: "x"}}], variant: "y"}
            assert scrub_parameters(params) == {"outer": [{"inner": {}}]}


def test_scrub_event_cannot_be_bypassed_by_a_hand_made_event() -> None:
    raw = {
        "eventName": "Encrypt",
        "seq": 99,
        "prevHash": "forged",
        "requestParameters": {"Plaintext": "hunter2", "KeyId": "k"},
        "responseElements": b"raw",
        "userIdentity": {"arn": "a", "Signature": "sig", "blob": b"x"},
        "additionalEventData": {"keyMaterialId": "m", "KeyMaterial": "secret"},
        "PrivateKeyPlaintext": "top level",
        "extra": [b"x", bytearray(b"y")],
    }
    assert scrub_event(raw) == {
        "eventName": "Encrypt",
        "requestParameters": {"keyId": "k"},
        "userIdentity": {"arn": "a"},
        "additionalEventData": {"keyMaterialId": "m"},
        "extra": [],
    }


def test_deep_nesting_is_cut_not_crashing() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["Next"] = {}
        node = node["Next"]
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    json.dumps(scrub_parameters({"Deep": deep, "Cycle": cyclic}))


# --- property: no bytes survive, whatever the shape -----------------------------

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.binary(min_size=1, max_size=40),
    st.binary(min_size=1, max_size=40).map(bytearray),
    st.binary(min_size=1, max_size=40).map(memoryview),
)
names = st.one_of(st.sampled_from(sorted(SECRET_FIELDS)), st.text(max_size=12))
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(names, children, max_size=4),
    ),
    max_leaves=30,
)


def _walk(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield None, item
            yield from _walk(item)


@given(st.dictionaries(names, trees, max_size=6))
def test_scrubbed_parameters_never_hold_bytes_or_secret_names(params: dict[str, Any]) -> None:
    clean = scrub_parameters(params)
    text = json.dumps(clean, allow_nan=False)  # JSON-ready: no bytes, no NaN
    secret_names = {n.lower() for n in SECRET_FIELDS}
    for key, value in _walk(clean):
        assert not isinstance(value, bytes | bytearray | memoryview)
        assert key is None or key.lower() not in secret_names
    blobs = [v for _, v in _walk(params) if isinstance(v, bytes | bytearray | memoryview)]
    strings = {v for _, v in _walk(params) if isinstance(v, str)}
    for blob in blobs:
        raw = bytes(blob)
        if len(raw) >= 8:
            for form in (raw.hex(), base64.b64encode(raw).decode()):
                assert form not in text or any(form in s for s in strings)
    assert scrub_parameters(clean) == clean  # idempotent


# --- scrubbing end to end: scan the files ----------------------------------------


def _forms(secret: bytes) -> list[bytes]:
    b64 = base64.b64encode(secret)
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        b64,
        b64.rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        json.dumps(secret.decode("latin-1")).encode()[1:-1],
    ]


def test_no_plaintext_or_ciphertext_reaches_the_files(tmp_path: Path) -> None:
    import os

    secrets = [os.urandom(32) for _ in range(8)]
    p, c, sig, mac, shared, priv, wrapped, msg = secrets
    with AuditTrail.open(tmp_path, checkpoint_interval=None) as trail:
        trail.append(event("Encrypt", Plaintext=p, EncryptionContext={"purpose": "test"}))
        trail.append(
            build_event(
                "GenerateDataKeyPair",
                region=REGION,
                account_id=ACCOUNT,
                identity=ALICE,
                source_ip="unix:1",
                user_agent="t",
                request_parameters={"KeyId": KEY_ARN, "KeyPairSpec": "ECC_NIST_P256"},
                response_elements={
                    "KeyId": KEY_ARN,
                    "PrivateKeyPlaintext": priv,
                    "PrivateKeyCiphertextBlob": wrapped,
                    "PublicKey": base64.b64encode(shared).decode(),
                    "CiphertextBlob": c,
                },
                resources=[KEY_ARN],
                read_only=False,
            )
        )
        trail.append(event("Sign", Message=msg, MessageType="RAW"))
        trail.append(
            {
                "eventName": "Verify",
                "requestParameters": {"Signature": sig, "Mac": base64.b64encode(mac).decode()},
                "responseElements": {"Anything": [bytearray(c), memoryview(p)]},
            }
        )
        trail.append_many(
            [
                event("ReEncrypt", CiphertextBlob=c, SourceCiphertextBlob=c),
                event("GenerateDataKeys", Batch=[{"Plaintext": p}, {"Ciphertext": c}]),
            ]
        )
    stored = b"".join(f.read_bytes() for f in (tmp_path / "audit").iterdir())
    assert b'"eventName":"Sign"' in stored
    for secret in secrets:
        for form in _forms(secret):
            assert form not in stored


# --- sealed events: build_event's JSON is what the scrubber makes of the dict -------


T0 = datetime(2024, 5, 1, 12, 30, 15, tzinfo=timezone(timedelta(hours=-7)))


def _general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make build_event take its general path (scrub and encode at append)."""
    from kmscore.audit import event as event_module

    def unusual(*_: object) -> None:
        raise event_module._Unusual

    monkeypatch.setattr(event_module, "_identity_part", unusual)


context_values = st.one_of(st.text(max_size=8), st.binary(max_size=4), st.integers())
contexts = st.dictionaries(st.text(max_size=8), context_values, max_size=3)
sections = st.one_of(
    st.none(),
    st.dictionaries(
        st.one_of(
            names,
            st.sampled_from(["KeyId", "EncryptionContext", "Constraints", "GrantTokens"]),
        ),
        st.one_of(trees, contexts),
        max_size=5,
    ),
)
identities = st.one_of(
    st.just(ALICE),
    st.builds(
        Identity,
        type=st.sampled_from(["IAMUser", "AssumedRole"]),
        principal_id=st.text(max_size=10),
        arn=st.text(max_size=30),
        account_id=st.just(ACCOUNT),
        access_key_id=st.one_of(st.none(), st.text(max_size=10)),
        user_name=st.one_of(st.none(), st.text(max_size=10)),
    ),
    st.dictionaries(
        st.sampled_from(["type", "arn", "principalId", "Signature"]),
        st.one_of(st.none(), st.text(max_size=6), st.binary(max_size=3)),
    ),
)


_TRICKY: Final = {
    "KeyId": KEY_ARN,
    "keyId": "collides with KeyId: the last one wins",
    "EncryptionContext": {'q"uote\\': "caf\u00e9 \u2603\n\x00", "\ud7ff": "v", "b": b"dropped"},
    "Nested": {"List": [1.5, -0.0, 10**20, True, None, {"Plaintext": "x"}], "When": T0},
    "Count": 3,
    "Flag": False,
    "Nothing": None,
    "Blob": b"\x00",
}


@example(
    name="CreateGrant",
    identity={"type": "IAMUser", "arn": "\u00e9", "principalId": None, "Signature": "s"},
    request=_TRICKY,
    response=_TRICKY,
    extra=_TRICKY,
    error=("AccessDenied\u00e9", 'no "way"\n'),
    resources=[KEY_ARN, "odd"],
    when=T0,
    user_agent="agent/\u2603",
    read_only=True,
)
@given(
    name=st.sampled_from(["Encrypt", "GenerateDataKey", "CreateGrant"]),
    identity=identities,
    request=sections,
    response=sections,
    extra=sections,
    error=st.one_of(st.none(), st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=20))),
    resources=st.lists(st.sampled_from([KEY_ARN, "arn:aws:kms:x:444455556666:key/k", "odd"])),
    when=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
    user_agent=st.text(max_size=20),
    read_only=st.booleans(),
)
def test_sealed_json_equals_the_scrubbed_event(
    name: str,
    identity: Any,
    request: Any,
    response: Any,
    extra: Any,
    error: Any,
    resources: list[str],
    when: datetime | None,
    user_agent: str,
    read_only: bool,
) -> None:
    arguments: dict[str, Any] = {
        "region": REGION,
        "account_id": ACCOUNT,
        "identity": identity,
        "source_ip": "192.0.2.7",
        "user_agent": user_agent,
        "request_parameters": request,
        "response_elements": response,
        "additional_event_data": extra,
        "resources": resources,
        "read_only": read_only,
        "error_code": error[0] if error else None,
        "error_message": error[1] if error else None,
        "request_id": "req",
        "event_time": when,
    }
    built = build_event(name, **arguments)
    sealed = built.sealed_record()
    assert sealed is not None
    stored, event_time = sealed
    assert b"{" + stored[1:] == encode_event(scrub_event(built))
    assert scrub_event(built) == built  # a fixed point of the scrubber
    assert event_time == built["eventTime"]
    # ... and the same event the general path (scrub everything at append) makes.
    with pytest.MonkeyPatch.context() as patch:
        _general_path(patch)
        general = build_event(name, **arguments)
    assert general.sealed_record() is None
    # Built a moment later: with no fixed event_time, its clock may have moved.
    moved = {"eventTime": general["eventTime"]} if when is None else {}
    assert scrub_event(general) == dict(built, eventID=general["eventID"], **moved)


def test_changing_a_built_event_unseals_it(tmp_path: Path) -> None:
    e = event(request_id="changed")
    assert e.sealed_record() is not None
    e["requestParameters"] = {"KeyId": "other", "Plaintext": b"\x01" * 32}
    assert e.sealed_record() is None
    for change in (
        lambda x: x.update(extra=1),
        lambda x: x.pop("userAgent"),
        lambda x: x.setdefault("new", 1),
        lambda x: x.__delitem__("awsRegion"),
        lambda x: x.popitem(),
        lambda x: x.__ior__({"a": 1}),
        lambda x: x.clear(),
    ):
        other = event()
        change(other)
        assert other.sealed_record() is None
    with AuditTrail.open(tmp_path, checkpoint_interval=None) as trail:
        trail.append(e)
    stored = next((tmp_path / "audit").glob("segment-*")).read_bytes()
    assert b'"requestParameters":{"keyId":"other"}' in stored
    assert b"plaintext" not in stored.lower()


def test_nested_members_of_a_built_event_are_read_only() -> None:
    e = event(EncryptionContext={"k": "v"}, Grants=[{"Name": "g"}])
    for container, change in (
        (e["requestParameters"], lambda c: c.__setitem__("Plaintext", "x")),
        (e["requestParameters"], lambda c: c.update(Plaintext="x")),
        (e["requestParameters"]["encryptionContext"], lambda c: c.__setitem__("k", "w")),
        (e["requestParameters"]["grants"], lambda c: c.append({"Plaintext": "x"})),
        (e["requestParameters"]["grants"][0], lambda c: c.pop("name")),
        (e["userIdentity"], lambda c: c.__setitem__("arn", "x")),
        (e["resources"], lambda c: c.clear()),
        (e["resources"][0], lambda c: c.__setitem__("ARN", "x")),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change(container)
    assert e.sealed_record() is not None
    # Cached parts are shared between events, safely: nobody can change them.
    assert event()["userIdentity"] is e["userIdentity"]


def test_copies_are_plain_and_low_level_changes_never_reach_the_disk(tmp_path: Path) -> None:
    import copy
    import pickle

    e = event(request_id="kept", EncryptionContext={"k": "v"})
    deep = copy.deepcopy(e)
    assert deep == e and deep.sealed_record() is None
    assert type(deep["requestParameters"]) is dict
    deep["requestParameters"]["Plaintext"] = "hunter2"  # an ordinary dict now
    assert pickle.loads(pickle.dumps(e)) == e
    dict.__setitem__(e, "Plaintext", "hunter2")  # sidesteps the unsealing
    dict.__setitem__(e["requestParameters"], "Plaintext", "hunter2")

    class Forged(AuditEvent):
        pass

    forged = Forged(event(request_id="forged"))
    forged._stored = b',"Plaintext":"hunter2"}'
    with AuditTrail.open(tmp_path, checkpoint_interval=None) as trail:
        trail.append(e)  # what build_event scrubbed, not what was slipped in
        trail.append(deep)
        trail.append(forged)  # not an AuditEvent itself: scrubbed at append
    stored = next((tmp_path / "audit").glob("segment-*")).read_bytes()
    assert b"hunter2" not in stored
    assert stored.count(b'"requestID":"kept"') == 2
    assert b'"requestID":"forged"' in stored
