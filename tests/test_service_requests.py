"""Across every operation: key references, unknown keys, unknown members, wrong
types, missing members, and the shapes of responses.

One table below says how to make a valid request of each operation for a given
key reference; the tests then vary one thing at a time.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from service_helpers import (
    ACCOUNT,
    OTHER_ACCOUNT,
    OTHER_REGION,
    REGION,
    Clock,
    alias_arn,
    expect,
    key_arn,
    new_key,
    open_kms,
)

from kmscore.client import LocalKMS, method_name
from kmscore.errors import KMSError
from kmscore.model import validation as v
from kmscore.operations import OPERATIONS


@pytest.fixture
def kms(tmp_path: Path) -> LocalKMS:
    with open_kms(tmp_path / "kms", Clock()) as k:
        yield k


Builder = Callable[[LocalKMS, str, str], dict[str, Any]]


def _blob(kms: LocalKMS, key_id: str) -> bytes:
    return kms.encrypt(KeyId=key_id, Plaintext=b"p", EncryptionContext={"c": "d"})["CiphertextBlob"]


def _scheduled(kms: LocalKMS, ref: str, key_id: str) -> dict[str, Any]:
    kms.schedule_key_deletion(KeyId=key_id)
    return {"KeyId": ref}


def _update_alias(kms: LocalKMS, ref: str, key_id: str) -> dict[str, Any]:
    name = f"alias/upd-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=name, TargetKeyId=new_key(kms))
    return {"AliasName": name, "TargetKeyId": ref}


def _re_encrypt_source(kms: LocalKMS, ref: str, key_id: str) -> dict[str, Any]:
    return {
        "CiphertextBlob": _blob(kms, key_id),
        "SourceEncryptionContext": {"c": "d"},
        "SourceKeyId": ref,
        "DestinationKeyId": key_id,
    }


def _re_encrypt_destination(kms: LocalKMS, ref: str, key_id: str) -> dict[str, Any]:
    return {
        "CiphertextBlob": _blob(kms, key_id),
        "SourceEncryptionContext": {"c": "d"},
        "DestinationKeyId": ref,
    }


#: (operation, builder) -> a valid request naming the key by ``ref``; the
#: builder may prepare the key (whose id is ``key_id``) first.
KEY_REF_REQUESTS: dict[str, Builder] = {
    "CancelKeyDeletion": _scheduled,
    "CreateAlias": lambda k, r, i: {
        "AliasName": f"alias/c-{uuid.uuid4().hex[:8]}",
        "TargetKeyId": r,
    },
    "Decrypt": lambda k, r, i: {
        "CiphertextBlob": _blob(k, i),
        "KeyId": r,
        "EncryptionContext": {"c": "d"},
    },
    "DecryptMany": lambda k, r, i: {
        "CiphertextBlobs": [_blob(k, i)],
        "KeyId": r,
        "EncryptionContext": {"c": "d"},
    },
    "DescribeKey": lambda k, r, i: {"KeyId": r},
    "DisableKey": lambda k, r, i: {"KeyId": r},
    "DisableKeyRotation": lambda k, r, i: {"KeyId": r},
    "EnableKey": lambda k, r, i: {"KeyId": r},
    "EnableKeyRotation": lambda k, r, i: {"KeyId": r, "RotationPeriodInDays": 100},
    "Encrypt": lambda k, r, i: {"KeyId": r, "Plaintext": b"p"},
    "GenerateDataKey": lambda k, r, i: {"KeyId": r, "KeySpec": "AES_256"},
    "GenerateDataKeyWithoutPlaintext": lambda k, r, i: {"KeyId": r, "NumberOfBytes": 8},
    "GenerateDataKeys": lambda k, r, i: {"KeyId": r, "KeySpec": "AES_128", "Count": 2},
    "GetKeyRotationStatus": lambda k, r, i: {"KeyId": r},
    "ListAliases": lambda k, r, i: {"KeyId": r},
    "ListKeyRotations": lambda k, r, i: {"KeyId": r},
    "ListResourceTags": lambda k, r, i: {"KeyId": r},
    "ReEncrypt(source)": _re_encrypt_source,
    "ReEncrypt(destination)": _re_encrypt_destination,
    "RotateKeyOnDemand": lambda k, r, i: {"KeyId": r},
    "ScheduleKeyDeletion": lambda k, r, i: {"KeyId": r, "PendingWindowInDays": 7},
    "TagResource": lambda k, r, i: {"KeyId": r, "Tags": [{"TagKey": "a", "TagValue": "b"}]},
    "UntagResource": lambda k, r, i: {"KeyId": r, "TagKeys": ["a"]},
    "UpdateAlias": _update_alias,
    "UpdateKeyDescription": lambda k, r, i: {"KeyId": r, "Description": "d"},
}

#: Members that name a key to point at, where AWS takes only a key id or ARN.
#: Operations whose KeyId AWS documents as "key ID or key ARN" only: an alias
#: there is NotFoundException ("Invalid keyId"), as AWS's key id parsing answers.
NO_ALIAS_REFS = {
    "CreateAlias", "UpdateAlias", "ListAliases", "EnableKey", "DisableKey",
    "UpdateKeyDescription", "ScheduleKeyDeletion", "CancelKeyDeletion", "TagResource",
    "UntagResource", "ListResourceTags", "EnableKeyRotation", "DisableKeyRotation",
    "GetKeyRotationStatus", "RotateKeyOnDemand", "ListKeyRotations", "GetKeyPolicy",
    "PutKeyPolicy", "ListKeyPolicies", "CreateGrant", "ListGrants", "RevokeGrant",
    "RetireGrant",
}  # fmt: skip

#: Valid requests of the operations that name no key.
KEYLESS_REQUESTS: dict[str, Builder] = {
    "CreateKey": lambda k, r, i: {"Description": "x"},
    "DeleteAlias": lambda k, r, i: (
        (k.create_alias(AliasName="alias/del", TargetKeyId=i) and {"AliasName": "alias/del"})
        or {"AliasName": "alias/del"}
    ),
    "GenerateRandom": lambda k, r, i: {"NumberOfBytes": 8},
    "ListKeys": lambda k, r, i: {"Limit": 5},
}

#: Response members that AWS fills with a full key ARN.
ARN_MEMBERS = {
    "Encrypt": ["KeyId"],
    "Decrypt": ["KeyId"],
    "ReEncrypt": ["KeyId", "SourceKeyId"],
    "GenerateDataKey": ["KeyId"],
    "GenerateDataKeyWithoutPlaintext": ["KeyId"],
    "GenerateDataKeys": ["KeyId"],
    "ScheduleKeyDeletion": ["KeyId"],
    "CancelKeyDeletion": ["KeyId"],
    "GetKeyRotationStatus": ["KeyId"],
    "RotateKeyOnDemand": ["KeyId"],
}

SYMMETRIC_CORE = sorted({name.split("(")[0] for name in KEY_REF_REQUESTS} | set(KEYLESS_REQUESTS))


def _op(name: str) -> str:
    return name.split("(")[0]


def _call(kms: LocalKMS, name: str, request: dict[str, Any]) -> dict[str, Any]:
    return getattr(kms, method_name(_op(name)))(**request)


def test_the_table_covers_the_symmetric_core() -> None:
    assert set(SYMMETRIC_CORE) <= set(OPERATIONS)
    assert len(SYMMETRIC_CORE) == 28


def _forms(kms: LocalKMS, key_id: str) -> dict[str, str]:
    name = f"alias/ref-{uuid.uuid4().hex[:10]}"
    kms.create_alias(AliasName=name, TargetKeyId=key_id)
    return {
        "id": key_id,
        "arn": key_arn(key_id),
        "alias": name,
        "alias-arn": alias_arn(name),
    }


def _walk(value: Any) -> list[Any]:
    out = [value]
    if isinstance(value, dict):
        for item in value.values():
            out += _walk(item)
    elif isinstance(value, list):
        for item in value:
            out += _walk(item)
    return out


@pytest.mark.parametrize("name", sorted(KEY_REF_REQUESTS))
def test_every_key_reference_form(kms: LocalKMS, name: str) -> None:
    for form in ("id", "arn", "alias", "alias-arn"):
        key_id = new_key(kms)
        ref = _forms(kms, key_id)[form]
        request = KEY_REF_REQUESTS[name](kms, ref, key_id)
        if _op(name) in NO_ALIAS_REFS and form.startswith("alias"):
            expect("NotFoundException", _call, kms, name, request)
            continue
        response = _call(kms, name, request)
        for member in ARN_MEMBERS.get(_op(name), []):
            if name == "ReEncrypt(source)" and member == "KeyId":
                continue
            assert response[member] == key_arn(key_id), (name, form, member)
        if _op(name) == "DescribeKey":
            assert response["KeyMetadata"]["Arn"] == key_arn(key_id)
        for item in _walk(response):
            if isinstance(item, datetime):
                assert item.tzinfo is not None and item.utcoffset().total_seconds() == 0
            if isinstance(item, str) and item.startswith("arn:"):
                assert item.startswith(f"arn:aws:kms:{REGION}:{ACCOUNT}:")


def _missing_refs(kms: LocalKMS) -> dict[str, str]:
    existing = new_key(kms)
    kms.create_alias(AliasName="alias/exists", TargetKeyId=existing)
    ghost = str(uuid.uuid4())
    return {
        "unknown id": ghost,
        "unknown mrk id": "mrk-" + uuid.uuid4().hex,
        "unknown arn": key_arn(ghost),
        "unknown alias": "alias/ghost",
        "unknown alias arn": alias_arn("alias/ghost"),
        "other region arn": key_arn(existing, region=OTHER_REGION),
        "other account arn": key_arn(existing, account=OTHER_ACCOUNT),
        "other partition arn": key_arn(existing).replace("arn:aws:", "arn:aws-cn:"),
        "other region alias arn": alias_arn("alias/exists", region=OTHER_REGION),
        "other account alias arn": alias_arn("alias/exists", account=OTHER_ACCOUNT),
        "malformed id": "1234abcd",
        "upper-case id": existing.upper(),
        "malformed arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/not-a-uuid",
        "bare alias prefix": "alias/",
        "alias with bad characters": "alias/a b",
    }


@pytest.mark.parametrize("name", sorted(KEY_REF_REQUESTS))
def test_unknown_keys_are_not_found(kms: LocalKMS, name: str) -> None:
    for label, ref in _missing_refs(kms).items():
        key_id = new_key(kms)
        request = KEY_REF_REQUESTS[name](kms, ref, key_id)
        # A well-formed alias where only a key id or ARN may stand is refused
        # as such; a malformed one names nothing.
        alias_form = "alias" in label and label not in (
            "bare alias prefix",
            "alias with bad characters",
        )
        want = "NotFoundException"
        if _op(name) in NO_ALIAS_REFS and alias_form:
            want = "NotFoundException"
        if _op(name) == "DecryptMany":
            # Per item: the blob's key is not the one expected.
            try:
                results = _call(kms, name, request)["Results"]
            except KMSError as exc:
                assert exc.code == want, label
            else:
                assert [r["Error"]["Code"] for r in results] == [want], label
            continue
        with pytest.raises(KMSError) as info:
            _call(kms, name, request)
        assert info.value.code == want, (label, info.value.message)


def _valid(kms: LocalKMS, name: str) -> dict[str, Any]:
    key_id = new_key(kms)
    builders = {**KEY_REF_REQUESTS, **KEYLESS_REQUESTS}
    return builders[name](kms, key_id, key_id)


def _state(kms: LocalKMS) -> Any:
    """Everything the store holds that a call could change."""
    store = kms.service.store
    keys = store.list_keys(None, 10_000)
    return (
        keys,
        store.list_aliases(None, None, 10_000),
        {k.key_id: store.list_tags(k.key_id) for k in keys},
        {
            k.key_id: [(m.version, m.material_id) for m in store.list_materials(k.key_id)]
            for k in keys
        },
    )


ALL_REQUESTS = sorted({**KEY_REF_REQUESTS, **KEYLESS_REQUESTS})


@pytest.mark.parametrize("name", ALL_REQUESTS)
def test_unknown_members_are_refused(kms: LocalKMS, name: str) -> None:
    request = _valid(kms, name)
    before = _state(kms)
    for extra in ("Unknown", "keyId", "KEYID", "Dryrun", "GrantToken"):
        if extra in OPERATIONS[_op(name)].shape:
            continue
        err = expect("ValidationException", _call, kms, name, {**request, extra: "x"})
        assert extra in err.message
    assert _state(kms) == before


_WRONG: dict[type, list[Any]] = {
    v.String: [12, b"bytes", ["s"], True],
    v.Blob: ["text", 12, [1]],
    v.Integer: ["1", 1.0, True, None.__class__],
    v.Boolean: ["true", 1, 0],
    v.List: ["s", {"a": 1}, 5],
    v.Map: [["a"], "a=b", {"a": 1}, {1: "a"}],
    v.Structure: ["s", 5, ["a"]],
}


@pytest.mark.parametrize("name", ALL_REQUESTS)
def test_wrong_types_are_refused(kms: LocalKMS, name: str) -> None:
    shape = OPERATIONS[_op(name)].shape
    request = _valid(kms, name)
    before = _state(kms)
    checked = 0
    for member, spec in shape.items():
        for wrong in _WRONG[type(spec)]:
            if wrong is None.__class__:
                continue
            bad = {**request, member: wrong}
            err = expect("ValidationException", _call, kms, name, bad)
            wire = member[:1].lower() + member[1:]
            assert wire in err.message or member in err.message, (member, err.message)
            checked += 1
    assert checked > 0
    assert _state(kms) == before


@pytest.mark.parametrize("name", ALL_REQUESTS)
def test_missing_required_members(kms: LocalKMS, name: str) -> None:
    shape = OPERATIONS[_op(name)].shape
    request = _valid(kms, name)
    before = _state(kms)
    for member, spec in shape.items():
        if spec.required:
            partial = {k: val for k, val in request.items() if k != member}
            err = expect("ValidationException", _call, kms, name, partial)
            assert member[:1].lower() + member[1:] in err.message
            none = {**request, member: None}
            expect("ValidationException", _call, kms, name, none)
    assert _state(kms) == before


@pytest.mark.parametrize("name", ALL_REQUESTS)
def test_requests_are_not_mutated(kms: LocalKMS, name: str) -> None:
    request = _valid(kms, name)
    snapshot = copy.deepcopy(request)
    _call(kms, name, request)
    assert request == snapshot


def test_unknown_operation(kms: LocalKMS) -> None:
    expect("UnknownOperationException", kms.call, "MakeCoffee")
    expect("UnknownOperationException", kms.call, "encrypt", KeyId="x")
    with pytest.raises(AttributeError):
        kms.make_coffee()  # type: ignore[attr-defined]


def test_request_must_be_a_mapping(kms: LocalKMS) -> None:
    from kmscore.operations import dispatch

    expect("ValidationException", dispatch, kms.service, "ListKeys", ["Limit", 1], kms.caller)


def test_message_never_echoes_secret_values(kms: LocalKMS) -> None:
    key_id = new_key(kms)
    secret = b"TOPSECRET-" * 500
    err = expect("ValidationException", kms.encrypt, KeyId=key_id, Plaintext=secret)
    assert b"TOPSECRET" not in err.message.encode()
    err = expect("ValidationException", kms.encrypt, KeyId=key_id, Plaintext="TOPSECRET-str")
    assert "TOPSECRET" not in err.message
