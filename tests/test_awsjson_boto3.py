"""boto3 against the HTTP endpoint: every operation, errors, pagination, access.

Every AWS operation kmscore implements is called through a real boto3 client,
and its answer is checked against botocore's output shape (member names and
types after botocore parsed the wire JSON). Every other operation of botocore's
KMS model answers UnsupportedOperationException (never a 500). Failures come
back with AWS's codes and status, and with the request id of the audit record.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import Shape
from hsm_support import custom_key_store_calls
from test_awsjson_support import (
    ACCOUNT,
    REGION,
    Endpoint,
    audit_records,
    flush_audit,
    running_endpoint,
)

from kmscore.operations import OPERATIONS
from kmscore.service.principals import unix_user_name
from kmscore.wire.operations import AWS_OPERATIONS as AWS_KMS_OPERATIONS

MODEL = botocore.session.get_session().get_service_model("kms")
IMPLEMENTED = sorted(set(OPERATIONS) & set(MODEL.operation_names))
NOT_IMPLEMENTED = sorted(set(MODEL.operation_names) - set(OPERATIONS))
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
# The admin that init made for whoever runs the tests.
ADMIN = f"arn:aws:iam::{ACCOUNT}:user/{unix_user_name(os.getuid())}"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path_factory.mktemp("awsjson") / "kms") as ep:
        ep.service.deployment.add_region(REPLICA_REGION)  # for the multi-Region operations
        _SERVICE[:] = [ep.service]
        yield ep


#: The running endpoint's service, for calls that need it (custom key stores).
_SERVICE: list[Any] = []


@pytest.fixture(scope="module")
def kms(endpoint: Endpoint) -> Any:
    return endpoint.client()


def error_of(fn: Callable[..., Any], **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        fn(**kwargs)
    return info.value


def code_of(fn: Callable[..., Any], **kwargs: Any) -> str:
    return str(error_of(fn, **kwargs).response["Error"]["Code"])


def key_arn(key_id: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key_id}"


# --- answers against the model -------------------------------------------------------

_PY_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "blob": bytes,
    "integer": int,
    "long": int,
    "boolean": bool,
    "timestamp": datetime,
    "list": list,
    "map": dict,
    "structure": dict,
}


def check_shape(shape: Shape, value: Any, path: str = "") -> None:
    """The parsed value fits the model's shape: known members, right types, enums."""
    expected = _PY_TYPES[shape.type_name]
    assert isinstance(value, expected), f"{path}: {type(value).__name__} is not {shape.type_name}"
    if shape.type_name == "structure":
        unknown = set(value) - set(shape.members) - {"ResponseMetadata"}  # type: ignore[attr-defined]
        assert not unknown, f"{path}: members not in the model: {unknown}"
        for name, item in value.items():
            if name != "ResponseMetadata":
                check_shape(shape.members[name], item, f"{path}.{name}")  # type: ignore[attr-defined]
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            check_shape(shape.member, item, f"{path}[{i}]")  # type: ignore[attr-defined]
    elif shape.type_name == "map":
        for k, item in value.items():
            check_shape(shape.value, item, f"{path}{{{k}}}")  # type: ignore[attr-defined]
    elif shape.type_name == "string" and shape.enum:
        assert value in shape.enum, f"{path}: {value!r} not in the model's enum"


# --- one call per implemented operation ----------------------------------------------


def new_key(kms: Any, **kwargs: Any) -> str:
    return str(kms.create_key(**kwargs)["KeyMetadata"]["KeyId"])


def new_alias(kms: Any, key_id: str) -> str:
    name = f"alias/t-{uuid.uuid4().hex[:12]}"
    kms.create_alias(AliasName=name, TargetKeyId=key_id)
    return name


def _decrypt(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"secret", EncryptionContext={"a": "b"})
    out: dict[str, Any] = kms.decrypt(
        CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"a": "b"}
    )
    assert out["Plaintext"] == b"secret"
    assert out["KeyId"] == key_arn(key)
    assert out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    return out


def _re_encrypt(kms: Any) -> dict[str, Any]:
    first, second = new_key(kms), new_key(kms)
    blob = kms.encrypt(KeyId=first, Plaintext=b"moving")["CiphertextBlob"]
    out: dict[str, Any] = kms.re_encrypt(
        CiphertextBlob=blob,
        DestinationKeyId=second,
        DestinationEncryptionContext={"to": "second"},
    )
    assert out["SourceKeyId"] == key_arn(first)
    assert out["KeyId"] == key_arn(second)
    again = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"to": "second"})
    assert again["Plaintext"] == b"moving"
    return out


def _generate_data_key(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    out: dict[str, Any] = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    assert len(out["Plaintext"]) == 32
    assert out["KeyId"] == key_arn(key)
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == out["Plaintext"]
    return out


def _update_alias(kms: Any) -> dict[str, Any]:
    first, second = new_key(kms), new_key(kms)
    alias = new_alias(kms, first)
    out: dict[str, Any] = kms.update_alias(AliasName=alias, TargetKeyId=second)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == second
    return out


def _cancel_deletion(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    out: dict[str, Any] = kms.cancel_key_deletion(KeyId=key)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Disabled"
    return out


def _put_key_policy(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    policy = kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]
    doc = json.loads(policy)
    doc["Statement"][0]["Sid"] = "Renamed"
    out: dict[str, Any] = kms.put_key_policy(
        KeyId=key, PolicyName="default", Policy=json.dumps(doc)
    )
    assert json.loads(kms.get_key_policy(KeyId=key)["Policy"])["Statement"][0]["Sid"] == "Renamed"
    return out


def _grant(kms: Any, key: str, **extra: Any) -> dict[str, Any]:
    return dict(
        kms.create_grant(
            KeyId=key,
            GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:user/grantee",
            Operations=["Encrypt", "Decrypt"],
            **extra,
        )
    )


def _retire_grant(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    grant = _grant(kms, key, RetiringPrincipal=ADMIN)
    return dict(kms.retire_grant(GrantToken=grant["GrantToken"]))


def _revoke_grant(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    grant = _grant(kms, key)
    out = dict(kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"]))
    assert kms.list_grants(KeyId=key)["Grants"] == []
    return out


REPLICA_REGION = "us-west-1"


def _replicate_key(kms: Any) -> dict[str, Any]:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    out = dict(kms.replicate_key(KeyId=key, ReplicaRegion=REPLICA_REGION, Description="r"))
    assert out["ReplicaKeyMetadata"]["Arn"].split(":")[3] == REPLICA_REGION
    return out


def _update_primary_region(kms: Any) -> dict[str, Any]:
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=key, ReplicaRegion=REPLICA_REGION)
    out = dict(kms.update_primary_region(KeyId=key, PrimaryRegion=REPLICA_REGION))
    config = kms.describe_key(KeyId=key)["KeyMetadata"]["MultiRegionConfiguration"]
    assert config["MultiRegionKeyType"] == "REPLICA"
    return out


def _rotate_on_demand(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"before")["CiphertextBlob"]
    out = dict(kms.rotate_key_on_demand(KeyId=key))
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
    return out


def _untag(kms: Any) -> dict[str, Any]:
    key = new_key(kms, Tags=[{"TagKey": "team", "TagValue": "a"}])
    out = dict(kms.untag_resource(KeyId=key, TagKeys=["team"]))
    assert kms.list_resource_tags(KeyId=key)["Tags"] == []
    return out


def _list_aliases(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    alias = new_alias(kms, key)
    out = dict(kms.list_aliases(KeyId=key, Limit=10))
    assert [a["AliasName"] for a in out["Aliases"]] == [alias]
    assert out["Aliases"][0]["AliasArn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias}"
    return out


def _list_key_rotations(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    kms.rotate_key_on_demand(KeyId=key)
    out = dict(kms.list_key_rotations(KeyId=key, Limit=10))
    assert len(out["Rotations"]) == 1
    return out


def _list_retirable_grants(kms: Any) -> dict[str, Any]:
    grant = _grant(kms, new_key(kms), RetiringPrincipal=ADMIN)
    out = dict(kms.list_retirable_grants(RetiringPrincipal=ADMIN, Limit=1000))
    assert grant["GrantId"] in [g["GrantId"] for g in out["Grants"]]
    return out


def _list_grants(kms: Any) -> dict[str, Any]:
    key = new_key(kms)
    grant = _grant(kms, key)
    out = dict(kms.list_grants(KeyId=key))
    assert [g["GrantId"] for g in out["Grants"]] == [grant["GrantId"]]
    return out


def _asym_key(kms: Any, spec: str, usage: str) -> str:
    return str(kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"])


def _sign(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "ECC_NIST_P256", "SIGN_VERIFY")
    return dict(kms.sign(KeyId=key, Message=b"m", SigningAlgorithm="ECDSA_SHA_256"))


def _verify(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "RSA_2048", "SIGN_VERIFY")
    alg = "RSASSA_PSS_SHA_256"
    sig = kms.sign(KeyId=key, Message=b"m", SigningAlgorithm=alg)["Signature"]
    out = dict(kms.verify(KeyId=key, Message=b"m", Signature=sig, SigningAlgorithm=alg))
    assert out["SignatureValid"] is True
    with pytest.raises(ClientError) as info:
        kms.verify(KeyId=key, Message=b"n", Signature=sig, SigningAlgorithm=alg)
    assert info.value.response["Error"]["Code"] == "KMSInvalidSignatureException"
    return out


def _generate_mac(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "HMAC_384", "GENERATE_VERIFY_MAC")
    return dict(kms.generate_mac(KeyId=key, Message=b"m", MacAlgorithm="HMAC_SHA_384"))


def _verify_mac(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "HMAC_256", "GENERATE_VERIFY_MAC")
    mac = kms.generate_mac(KeyId=key, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    out = dict(kms.verify_mac(KeyId=key, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_256"))
    assert out["MacValid"] is True
    return out


def _derive_shared_secret(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "ECC_NIST_P256", "KEY_AGREEMENT")
    peer = kms.get_public_key(KeyId=_asym_key(kms, "ECC_NIST_P256", "KEY_AGREEMENT"))
    return dict(
        kms.derive_shared_secret(
            KeyId=key, KeyAgreementAlgorithm="ECDH", PublicKey=peer["PublicKey"]
        )
    )


def _encapsulate(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "ML_KEM_768", "ENCAPSULATE_DECAPSULATE")
    return dict(kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM"))


def _decapsulate(kms: Any) -> dict[str, Any]:
    key = _asym_key(kms, "ML_KEM_1024", "ENCAPSULATE_DECAPSULATE")
    sent = kms.encapsulate(KeyId=key, EncapsulationAlgorithm="ML_KEM")
    out = kms.decapsulate(
        KeyId=key,
        SharedSecretCiphertextBlob=sent["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
    )
    assert out["SharedSecret"] == sent["SharedSecret"]
    return dict(out)


def _external_key(kms: Any) -> str:
    return str(kms.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"])


def _import(kms: Any, key: str | None = None) -> dict[str, Any]:
    from import_helpers import wrap

    key = key or _external_key(kms)
    p = kms.get_parameters_for_import(
        KeyId=key, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    return dict(
        kms.import_key_material(
            KeyId=key,
            ImportToken=p["ImportToken"],
            EncryptedKeyMaterial=wrap(p["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
            ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )
    )


def _delete_imported(kms: Any) -> dict[str, Any]:
    key = _external_key(kms)
    _import(kms, key)
    return dict(kms.delete_imported_key_material(KeyId=key))


OP_CALLS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "CreateKey": lambda kms: kms.create_key(
        Description="made over HTTP", Tags=[{"TagKey": "team", "TagValue": "a"}]
    ),
    "DescribeKey": lambda kms: kms.describe_key(KeyId=new_key(kms)),
    "ListKeys": lambda kms: kms.list_keys(Limit=5),
    "EnableKey": lambda kms: kms.enable_key(KeyId=new_key(kms)),
    "DisableKey": lambda kms: kms.disable_key(KeyId=new_key(kms)),
    "UpdateKeyDescription": lambda kms: kms.update_key_description(
        KeyId=new_key(kms), Description="new"
    ),
    "ScheduleKeyDeletion": lambda kms: kms.schedule_key_deletion(
        KeyId=new_key(kms), PendingWindowInDays=7
    ),
    "CancelKeyDeletion": _cancel_deletion,
    "CreateAlias": lambda kms: kms.create_alias(
        AliasName=f"alias/c-{uuid.uuid4().hex[:12]}", TargetKeyId=new_key(kms)
    ),
    "UpdateAlias": _update_alias,
    "DeleteAlias": lambda kms: kms.delete_alias(AliasName=new_alias(kms, new_key(kms))),
    "ListAliases": _list_aliases,
    "TagResource": lambda kms: kms.tag_resource(
        KeyId=new_key(kms), Tags=[{"TagKey": "env", "TagValue": "test"}]
    ),
    "UntagResource": _untag,
    "ListResourceTags": lambda kms: kms.list_resource_tags(
        KeyId=new_key(kms, Tags=[{"TagKey": "team", "TagValue": "a"}])
    ),
    "Encrypt": lambda kms: kms.encrypt(KeyId=new_key(kms), Plaintext=b"x" * 4096),
    "Decrypt": _decrypt,
    "ReEncrypt": _re_encrypt,
    "GenerateDataKey": _generate_data_key,
    "GenerateDataKeyWithoutPlaintext": lambda kms: kms.generate_data_key_without_plaintext(
        KeyId=new_key(kms), NumberOfBytes=64, EncryptionContext={"purpose": "test"}
    ),
    "GenerateRandom": lambda kms: kms.generate_random(NumberOfBytes=1024),
    "EnableKeyRotation": lambda kms: kms.enable_key_rotation(
        KeyId=new_key(kms), RotationPeriodInDays=90
    ),
    "DisableKeyRotation": lambda kms: kms.disable_key_rotation(KeyId=new_key(kms)),
    "GetKeyRotationStatus": lambda kms: kms.get_key_rotation_status(KeyId=new_key(kms)),
    "RotateKeyOnDemand": _rotate_on_demand,
    "ReplicateKey": _replicate_key,
    "UpdatePrimaryRegion": _update_primary_region,
    "ListKeyRotations": _list_key_rotations,
    "GetKeyPolicy": lambda kms: kms.get_key_policy(KeyId=new_key(kms), PolicyName="default"),
    "PutKeyPolicy": _put_key_policy,
    "ListKeyPolicies": lambda kms: kms.list_key_policies(KeyId=new_key(kms)),
    "CreateGrant": lambda kms: _grant(kms, new_key(kms)),
    "ListGrants": _list_grants,
    "ListRetirableGrants": _list_retirable_grants,
    "RetireGrant": _retire_grant,
    "RevokeGrant": _revoke_grant,
    "Sign": _sign,
    "Verify": _verify,
    "GetPublicKey": lambda kms: kms.get_public_key(
        KeyId=_asym_key(kms, "ECC_NIST_EDWARDS25519", "SIGN_VERIFY")
    ),
    "GenerateMac": _generate_mac,
    "VerifyMac": _verify_mac,
    "DeriveSharedSecret": _derive_shared_secret,
    "Encapsulate": _encapsulate,
    "Decapsulate": _decapsulate,
    "GenerateDataKeyPair": lambda kms: kms.generate_data_key_pair(
        KeyId=new_key(kms), KeyPairSpec="ECC_NIST_P384", EncryptionContext={"purpose": "test"}
    ),
    "GenerateDataKeyPairWithoutPlaintext": lambda kms: kms.generate_data_key_pair_without_plaintext(
        KeyId=new_key(kms), KeyPairSpec="RSA_2048"
    ),
    "GetParametersForImport": lambda kms: kms.get_parameters_for_import(
        KeyId=_external_key(kms),
        WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256",
        WrappingKeySpec="RSA_2048",
    ),
    "ImportKeyMaterial": _import,
    "DeleteImportedKeyMaterial": _delete_imported,
    "GetKeyLastUsage": lambda kms: kms.get_key_last_usage(KeyId=new_key(kms)),
}


OP_CALLS.update(custom_key_store_calls(lambda: _SERVICE[0]))


def test_every_implemented_aws_operation_has_a_call() -> None:
    assert sorted(OP_CALLS) == IMPLEMENTED
    assert len(IMPLEMENTED) >= 34


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_operation_works_and_answers_the_models_shape(kms: Any, name: str) -> None:
    response = OP_CALLS[name](kms)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers["x-amzn-requestid"] == response["ResponseMetadata"]["RequestId"]
    output = MODEL.operation_model(name).output_shape
    if output is not None:
        check_shape(output, response)


def test_key_arns_use_the_data_dirs_region_and_account(kms: Any) -> None:
    meta = kms.create_key()["KeyMetadata"]
    assert meta["Arn"] == key_arn(meta["KeyId"])
    assert meta["AWSAccountId"] == ACCOUNT
    assert isinstance(meta["CreationDate"], datetime)
    assert meta["CreationDate"].tzinfo is not None
    listed = {k["KeyId"]: k["KeyArn"] for k in kms.list_keys(Limit=1000)["Keys"]}
    assert listed[meta["KeyId"]] == meta["Arn"]


# --- conformance: the rest of the model ---------------------------------------------


def sample(shape: Shape) -> Any:
    """A value botocore's client-side validation accepts for a shape."""
    kind = shape.type_name
    low = int(shape.metadata.get("min", 1) or 1)
    if kind == "structure":
        required = shape.required_members  # type: ignore[attr-defined]
        return {n: sample(m) for n, m in shape.members.items() if n in required}  # type: ignore[attr-defined]
    if kind == "string":
        return shape.enum[0] if shape.enum else "x" * max(low, 1)
    if kind == "blob":
        return b"x" * max(low, 1)
    if kind in ("integer", "long"):
        return low
    if kind == "boolean":
        return False
    if kind == "list":
        return [sample(shape.member) for _ in range(max(low, 1))]  # type: ignore[attr-defined]
    if kind == "map":
        return {"k": "v"}
    if kind == "timestamp":
        return datetime(2026, 1, 1)
    raise AssertionError(f"no sample for {kind}")


def test_the_service_knows_every_operation_of_the_model() -> None:
    # Names outside this set are UnknownOperationException; inside, unimplemented
    # ones are UnsupportedOperationException.
    assert set(MODEL.operation_names) <= AWS_KMS_OPERATIONS
    users = {"CreateUser", "DeleteUser", "ListUsers", "TagUser", "UntagUser"}
    assert set(OPERATIONS) - AWS_KMS_OPERATIONS == {"GenerateDataKeys", "DecryptMany"} | users


@pytest.mark.parametrize("name", NOT_IMPLEMENTED)
def test_unimplemented_operation_answers_unsupported(kms: Any, name: str) -> None:
    op = MODEL.operation_model(name)
    params = sample(op.input_shape) if op.input_shape is not None else {}
    method = getattr(kms, botocore.xform_name(name))
    err = error_of(method, **params)
    assert err.response["Error"]["Code"] == "UnsupportedOperationException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert name in err.response["Error"]["Message"]


# --- errors --------------------------------------------------------------------------


def test_main_failures_have_aws_codes_and_statuses(endpoint: Endpoint, kms: Any) -> None:
    key = new_key(kms)
    missing = str(uuid.uuid4())
    raw = endpoint.client(
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1})
    )
    cases: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
        ("NotFoundException", kms.describe_key, {"KeyId": missing}),
        ("NotFoundException", kms.encrypt, {"KeyId": "alias/nothing-here", "Plaintext": b"x"}),
        (
            "NotFoundException",
            kms.describe_key,
            {"KeyId": f"arn:aws:kms:us-west-2:{ACCOUNT}:key/{key}"},
        ),
        ("InvalidCiphertextException", kms.decrypt, {"CiphertextBlob": b"\x00" * 64}),
        (
            "NotAuthorizedException",
            kms.create_alias,
            {"AliasName": "alias/aws/mine", "TargetKeyId": key},
        ),
        ("ValidationException", kms.create_alias, {"AliasName": "mine", "TargetKeyId": key}),
        ("InvalidMarkerException", kms.list_keys, {"Marker": "not-a-marker"}),
        (
            "MalformedPolicyDocumentException",
            kms.put_key_policy,
            {"KeyId": key, "Policy": "{not json", "PolicyName": "default"},
        ),
        (
            "InvalidGrantTokenException",
            kms.encrypt,
            {"KeyId": key, "Plaintext": b"x", "GrantTokens": ["bogus"]},
        ),
        (
            "DryRunOperationException",
            kms.encrypt,
            {"KeyId": key, "Plaintext": b"x", "DryRun": True},
        ),
        ("ValidationException", raw.encrypt, {"KeyId": key, "Plaintext": b"x" * 4097}),
        ("ValidationException", raw.generate_data_key, {"KeyId": key, "KeySpec": "AES_512"}),
        ("ValidationException", raw.generate_random, {"NumberOfBytes": 0}),
        (
            "ValidationException",
            raw.schedule_key_deletion,
            {"KeyId": key, "PendingWindowInDays": 3},
        ),
        ("SerializationException", raw.generate_random, {"NumberOfBytes": "many"}),
        (
            "SerializationException",
            raw.encrypt,
            {"KeyId": key, "Plaintext": b"x", "EncryptionContext": {"a": 1}},
        ),
    ]
    for code, fn, kwargs in cases:
        err = error_of(fn, **kwargs)
        assert err.response["Error"]["Code"] == code, (code, fn, kwargs, err)
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert err.response["ResponseMetadata"]["RequestId"]
    alias = new_alias(kms, key)
    assert code_of(kms.create_alias, AliasName=alias, TargetKeyId=key) == "AlreadyExistsException"
    other = new_key(kms)
    blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    assert code_of(kms.decrypt, CiphertextBlob=blob, KeyId=other) == "IncorrectKeyException"
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "b"}) == (
        "InvalidCiphertextException"
    )
    kms.disable_key(KeyId=key)
    assert code_of(kms.encrypt, KeyId=key, Plaintext=b"x") == "DisabledException"
    assert code_of(kms.decrypt, CiphertextBlob=blob) == "DisabledException"
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    assert code_of(kms.decrypt, CiphertextBlob=blob) == "KMSInvalidStateException"
    assert code_of(kms.enable_key, KeyId=key) == "KMSInvalidStateException"


def test_request_id_is_the_audit_records(endpoint: Endpoint, kms: Any) -> None:
    key = new_key(kms)
    ok = kms.generate_data_key(KeyId=key, KeySpec="AES_128")
    err = error_of(kms.describe_key, KeyId=str(uuid.uuid4()))
    flush_audit(endpoint.service)
    by_id = {r["requestID"]: r for r in audit_records(endpoint.data_dir)}
    record = by_id[ok["ResponseMetadata"]["RequestId"]]
    assert record["eventName"] == "GenerateDataKey"
    assert record["userIdentity"]["accessKeyId"] == endpoint.access_key_id
    assert record["sourceIPAddress"] == "127.0.0.1"
    assert record["userAgent"].startswith("Boto3/")
    failed = by_id[err.response["ResponseMetadata"]["RequestId"]]
    assert failed["errorCode"] == "NotFoundException"
    # Nothing secret in the trail: not the data key, not the access key's secret.
    text = json.dumps(record)
    assert base64.b64encode(ok["Plaintext"]).decode() not in text
    assert (
        endpoint.secret
        not in (endpoint.data_dir / "audit")
        .joinpath(sorted(p.name for p in (endpoint.data_dir / "audit").glob("segment-*"))[-1])
        .read_text()
    )


# --- pagination ----------------------------------------------------------------------


def test_paginators_walk_every_page(kms: Any) -> None:
    key = new_key(kms)
    for _ in range(4):
        new_key(kms)
    everything = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    pages = list(kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 3
    assert all(len(p["Keys"]) <= 2 for p in pages)
    assert all(p["Truncated"] for p in pages[:-1]) and not pages[-1]["Truncated"]
    walked = [k["KeyId"] for p in pages for k in p["Keys"]]
    assert len(walked) == len(set(walked))
    assert set(walked) >= everything

    aliases = sorted(new_alias(kms, key) for _ in range(3))
    pages = list(
        kms.get_paginator("list_aliases").paginate(KeyId=key, PaginationConfig={"PageSize": 1})
    )
    assert sorted(a["AliasName"] for p in pages for a in p["Aliases"]) == aliases
    assert len(pages) == 3

    for _ in range(3):
        _grant(kms, key)
    grants = [
        g["GrantId"]
        for p in kms.get_paginator("list_grants").paginate(
            KeyId=key, PaginationConfig={"PageSize": 2}
        )
        for g in p["Grants"]
    ]
    assert len(grants) == len(set(grants)) == 3


# --- a second principal --------------------------------------------------------------


def test_second_principal_denied_then_grant_then_policy_then_explicit_deny(
    endpoint: Endpoint, kms: Any
) -> None:
    _, bob_key, bob_secret = endpoint.service.principals.add(f"bob{uuid.uuid4().hex[:6]}")
    bob_arn = f"arn:aws:iam::{ACCOUNT}:user/{_.name}"
    bob = endpoint.client(bob_key, bob_secret)
    key = new_key(kms)

    # 1. No identity policy, the default key policy delegates to IAM: denied.
    assert code_of(bob.encrypt, KeyId=key, Plaintext=b"x") == "AccessDeniedException"

    # 2. A grant for Encrypt and Decrypt: allowed, for those operations only.
    grant = kms.create_grant(KeyId=key, GranteePrincipal=bob_arn, Operations=["Encrypt", "Decrypt"])
    blob = bob.encrypt(KeyId=key, Plaintext=b"x", GrantTokens=[grant["GrantToken"]])
    assert bob.decrypt(CiphertextBlob=blob["CiphertextBlob"])["Plaintext"] == b"x"
    assert code_of(bob.describe_key, KeyId=key) == "AccessDeniedException"
    kms.revoke_grant(KeyId=key, GrantId=grant["GrantId"])
    assert code_of(bob.encrypt, KeyId=key, Plaintext=b"x") == "AccessDeniedException"

    # 3. A key policy statement naming bob: allowed again.
    root = {
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": ROOT},
        "Action": "kms:*",
        "Resource": "*",
    }
    allow_bob = {
        "Sid": "Bob",
        "Effect": "Allow",
        "Principal": {"AWS": bob_arn},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
    }
    policy = {"Version": "2012-10-17", "Statement": [root, allow_bob]}
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "blocked"})

    # 4. An explicit Deny with an encryption-context condition wins, for that context.
    deny = {
        "Sid": "NoBlockedTenant",
        "Effect": "Deny",
        "Principal": {"AWS": bob_arn},
        "Action": "kms:Encrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blocked"}},
    }
    policy["Statement"].append(deny)
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    err = error_of(bob.encrypt, KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "blocked"})
    assert err.response["Error"]["Code"] == "AccessDeniedException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "fine"})
    # The admin is not bob: the deny names bob only.
    kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "blocked"})


# --- SigV4 failures through boto3 ----------------------------------------------------


def test_wrong_secret_is_invalid_signature(endpoint: Endpoint) -> None:
    bad = endpoint.client(
        secret=endpoint.secret[:-1] + ("A" if endpoint.secret[-1] != "A" else "B")
    )
    err = error_of(bad.list_keys)
    assert err.response["Error"]["Code"] == "InvalidSignatureException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "signature we calculated does not match" in err.response["Error"]["Message"]


def test_unknown_access_key_is_unrecognized_client(endpoint: Endpoint) -> None:
    bad = endpoint.client("AKIAAAAAAAAAAAAAAAAA", endpoint.secret)
    err = error_of(bad.list_keys)
    assert err.response["Error"]["Code"] == "UnrecognizedClientException"
    assert (
        err.response["Error"]["Message"] == "The security token included in the request is invalid."
    )


def test_removed_user_is_unrecognized_at_once(endpoint: Endpoint) -> None:
    principal, key_id, secret = endpoint.service.principals.add(f"gone{uuid.uuid4().hex[:6]}")
    client = endpoint.client(key_id, secret)
    assert code_of(client.list_keys) == "AccessDeniedException"  # known, but no rights
    endpoint.service.principals.remove(principal.name)
    assert code_of(client.list_keys) == "UnrecognizedClientException"


@pytest.mark.parametrize(
    ("minutes", "phrase"), [(-16, "Signature expired"), (16, "not yet current")]
)
def test_request_time_beyond_15_minutes_is_refused(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, minutes: int, phrase: str
) -> None:
    import datetime as dt

    import botocore.auth

    moved = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moved)
    err = error_of(endpoint.client().list_keys)
    assert err.response["Error"]["Code"] == "InvalidSignatureException"
    assert phrase in err.response["Error"]["Message"]


def test_request_time_within_15_minutes_is_accepted(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    import botocore.auth

    moved = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=14)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moved)
    assert endpoint.client().list_keys(Limit=1)["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_credential_scope_of_another_region_is_refused(endpoint: Endpoint) -> None:
    err = error_of(endpoint.client(region="us-west-2").list_keys)
    assert err.response["Error"]["Code"] == "InvalidSignatureException"
    assert "us-west-2" in err.response["Error"]["Message"]


def test_unsigned_request_is_missing_authentication_token(endpoint: Endpoint) -> None:
    from botocore import UNSIGNED

    client = endpoint.client(
        config=Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1})
    )
    err = error_of(client.list_keys)
    assert err.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_session_tokens_are_not_recognized(endpoint: Endpoint) -> None:
    client = endpoint.client(aws_session_token="FwoGZXIvYXdzEXAMPLE")
    assert code_of(client.list_keys) == "UnrecognizedClientException"


def test_data_dir_fixture_is_private(endpoint: Endpoint) -> None:
    # The endpoint reads its credentials from the data dir the tests made.
    assert Path(endpoint.data_dir, "credentials").stat().st_mode & 0o077 == 0


# --- TLS -----------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from datetime import UTC, timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_counts_as_secure_transport_in_policies(
    endpoint: Endpoint, kms: Any, tmp_path: Path
) -> None:
    import asyncio
    import ssl

    from kmscore.frontends.awsjson import start_http_server

    cert, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key_file)
    server = asyncio.run_coroutine_threadsafe(
        start_http_server(endpoint.service, "127.0.0.1", 0, ssl_context=context), endpoint.loop
    ).result(10)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        tls = endpoint.client(endpoint_url=server.url, verify=str(cert))
        key = new_key(kms)
        admin = f"arn:aws:iam::{ACCOUNT}:user/{unix_user_name(os.getuid())}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ROOT},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Effect": "Deny",
                    "Principal": {"AWS": admin},
                    "Action": "kms:Encrypt",
                    "Resource": "*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
        assert code_of(kms.encrypt, KeyId=key, Plaintext=b"x") == "AccessDeniedException"
        blob = tls.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        assert tls.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), endpoint.loop).result(10)
