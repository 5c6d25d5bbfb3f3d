"""Auditing through LocalKMS(audit=True): one record per call, what records hold,
what they never hold, and a trail that verifies until someone edits it.

Only the trail's public API is used: :func:`kmscore.audit.query`,
:func:`kmscore.audit.verify` and :class:`kmscore.audit.VerifyError`. One trail
has one writer, so calls by other principals go through the same service with
:func:`kmscore.operations.dispatch` and that principal's :class:`Caller`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from import_helpers import wrap
from service_helpers import expect

from kmscore.audit import VerifyError, query, verify
from kmscore.client import LocalKMS
from kmscore.errors import KMSError
from kmscore.operations import OPERATIONS, dispatch
from kmscore.service import Caller

ACCOUNT = "111122223333"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
SECRET_NAMES = {"Plaintext", "CiphertextBlob", "Plaintexts", "CiphertextBlobs"}


def records(data_dir: Path, **filters: Any) -> list[dict[str, Any]]:
    return list(query(data_dir, **filters))


def audit_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "audit").rglob("*") if p.is_file())


class Recorder:
    """A client wrapper that remembers every call and every secret it saw."""

    def __init__(self, kms: LocalKMS) -> None:
        self.kms = kms
        self.calls: list[str] = []
        self.secrets: list[bytes] = []
        self.tokens: list[str] = []

    def _collect(self, value: Any, name: str | None = None) -> None:
        if isinstance(value, bytes) and name in SECRET_NAMES:
            self.secrets.append(value)
        elif isinstance(value, str) and name in ("GrantToken", "GrantTokens"):
            self.tokens.append(value)
        elif isinstance(value, str) and name == "SecretAccessKey":
            self.secrets.append(value.encode())  # a new user's, from CreateUser
        elif isinstance(value, dict):
            for k, v in value.items():
                self._collect(v, k)
        elif isinstance(value, list):
            for item in value:
                self._collect(item, name)

    def __call__(self, operation: str, caller: Caller | None = None, **request: Any) -> Any:
        self.calls.append(operation)
        self._collect(request)
        if caller is None:
            out = self.kms.call(operation, **request)
        else:
            out = dispatch(self.kms.service, operation, request, caller)
        self._collect(out)
        return out


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "kms"


@pytest.fixture
def kms(data_dir: Path) -> Iterator[LocalKMS]:
    client = LocalKMS(data_dir, audit=True)
    yield client
    client.close()


def caller_for(kms: LocalKMS, name: str, policy: str | None = None) -> Caller:
    principal, _, _ = kms.service.principals.add(name, policy=policy)
    return kms.service.principals.caller(principal, source="local:test", user_agent="test")


def run_every_operation(kms: LocalKMS) -> Recorder:
    """Call every operation once, successfully, in an order where each can succeed."""
    call = Recorder(kms)
    bob = caller_for(kms, "bob")
    key = call("CreateKey", Description="audited")["KeyMetadata"]["KeyId"]
    other = call("CreateKey")["KeyMetadata"]["KeyId"]
    call("DescribeKey", KeyId=key)
    call("ListKeys", Limit=10)
    mrk = call("CreateKey", MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.in_region("us-west-2")
    call("ReplicateKey", KeyId=mrk, ReplicaRegion="us-west-2")
    call("UpdatePrimaryRegion", KeyId=mrk, PrimaryRegion="us-west-2")
    call("UpdateKeyDescription", KeyId=key, Description="still audited")
    call("TagResource", KeyId=key, Tags=[{"TagKey": "team", "TagValue": "a"}])
    call("UntagResource", KeyId=key, TagKeys=["team"])
    call("ListResourceTags", KeyId=key)
    call("CreateAlias", AliasName="alias/audited", TargetKeyId=key)
    call("UpdateAlias", AliasName="alias/audited", TargetKeyId=other)
    call("ListAliases")
    call("DeleteAlias", AliasName="alias/audited")
    context = {"tenant": "t-1"}
    blob = call("Encrypt", KeyId=key, Plaintext=os.urandom(48), EncryptionContext=context)[
        "CiphertextBlob"
    ]
    call("Decrypt", CiphertextBlob=blob, EncryptionContext=context)
    call(
        "ReEncrypt",
        CiphertextBlob=blob,
        SourceEncryptionContext=context,
        DestinationKeyId=other,
        DestinationEncryptionContext={"tenant": "t-2"},
    )
    call("GenerateDataKey", KeyId=key, KeySpec="AES_256", EncryptionContext=context)
    call("GenerateDataKeyWithoutPlaintext", KeyId=key, NumberOfBytes=24)
    call("GenerateRandom", NumberOfBytes=32)
    batch = call("GenerateDataKeys", KeyId=key, Count=5, KeySpec="AES_256")
    call("DecryptMany", CiphertextBlobs=batch["CiphertextBlobs"])
    signer = call("CreateKey", KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    sig = call("Sign", KeyId=signer["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    call(
        "Verify",
        KeyId=signer["KeyId"],
        Message=b"m",
        Signature=sig["Signature"],
        SigningAlgorithm="ECDSA_SHA_256",
    )
    peer = call("GetPublicKey", KeyId=signer["KeyId"])["PublicKey"]
    mac_key = call("CreateKey", KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    mac = call("GenerateMac", KeyId=mac_key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
    call(
        "VerifyMac",
        KeyId=mac_key["KeyId"],
        Message=b"m",
        Mac=mac["Mac"],
        MacAlgorithm="HMAC_SHA_256",
    )
    agree = call("CreateKey", KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    call("DeriveSharedSecret", KeyId=agree["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer)
    kem = call("CreateKey", KeySpec="ML_KEM_512", KeyUsage="ENCAPSULATE_DECAPSULATE")["KeyMetadata"]
    sent = call("Encapsulate", KeyId=kem["KeyId"], EncapsulationAlgorithm="ML_KEM")
    call(
        "Decapsulate",
        KeyId=kem["KeyId"],
        SharedSecretCiphertextBlob=sent["SharedSecretCiphertextBlob"],
        EncapsulationAlgorithm="ML_KEM",
    )
    call("GenerateDataKeyPair", KeyId=key, KeyPairSpec="ECC_NIST_P256", EncryptionContext=context)
    call("GenerateDataKeyPairWithoutPlaintext", KeyId=key, KeyPairSpec="ECC_NIST_EDWARDS25519")
    retired = call(
        "CreateGrant",
        KeyId=key,
        GranteePrincipal=BOB,
        RetiringPrincipal=BOB,
        Operations=["Encrypt"],
    )
    revoked = call("CreateGrant", KeyId=key, GranteePrincipal=BOB, Operations=["Decrypt"])
    call("ListGrants", KeyId=key)
    call("ListRetirableGrants", RetiringPrincipal=BOB)
    call("RetireGrant", bob, GrantToken=retired["GrantToken"])
    call("RevokeGrant", KeyId=key, GrantId=revoked["GrantId"])
    policy = call("GetKeyPolicy", KeyId=key)["Policy"]
    call("PutKeyPolicy", KeyId=key, Policy=policy)
    call("ListKeyPolicies", KeyId=key)
    call("EnableKeyRotation", KeyId=key)
    call("GetKeyRotationStatus", KeyId=key)
    call("DisableKeyRotation", KeyId=key)
    call("RotateKeyOnDemand", KeyId=key)
    _custom_key_store_calls(kms, call)
    call("ListKeyRotations", KeyId=key)
    call("DisableKey", KeyId=key)
    call("EnableKey", KeyId=key)
    call("ScheduleKeyDeletion", KeyId=other, PendingWindowInDays=7)
    call("CancelKeyDeletion", KeyId=other)
    call("GetKeyLastUsage", KeyId=key)
    external = call("CreateKey", Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    params = call(
        "GetParametersForImport",
        KeyId=external,
        WrappingAlgorithm="RSAES_OAEP_SHA_256",
        WrappingKeySpec="RSA_2048",
    )
    call(
        "ImportKeyMaterial",
        KeyId=external,
        ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
        ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
    )
    call("DeleteImportedKeyMaterial", KeyId=external)
    account = kms.service.account
    root = Caller(
        arn=f"arn:aws:iam::{account}:root", account=account, principal_id=account,
        kind="Root", source="local:test", user_agent="test",
    )  # fmt: skip
    call("CreateUser", root, UserName="carol", Tags=[{"Key": "team", "Value": "a"}])
    call("TagUser", root, UserName="carol", Tags=[{"Key": "team", "Value": "b"}])
    call("UntagUser", root, UserName="carol", TagKeys=["team"])
    call("ListUsers", root)
    call("DeleteUser", root, UserName="carol")
    return call


def _custom_key_store_calls(kms: LocalKMS, call: Recorder) -> None:
    """The six custom key store operations, on a SoftHSM2 token (tests/hsm_support.py)."""
    from hsm_support import PIN, new_token, softhsm_module

    from kmscore.service.hsm_clusters import register_cluster

    cluster = register_cluster(kms.service.store, softhsm_module(), new_token())
    store = call(
        "CreateCustomKeyStore",
        CustomKeyStoreName="audited",
        CloudHsmClusterId=cluster.cluster_id,
        TrustAnchorCertificate="certificate",
        KeyStorePassword=PIN,
    )["CustomKeyStoreId"]
    call("DescribeCustomKeyStores", CustomKeyStoreId=store)
    call("ConnectCustomKeyStore", CustomKeyStoreId=store)
    call("DisconnectCustomKeyStore", CustomKeyStoreId=store)
    call("UpdateCustomKeyStore", CustomKeyStoreId=store, NewCustomKeyStoreName="audited-2")
    call("DeleteCustomKeyStore", CustomKeyStoreId=store)


# --- one record per call ----------------------------------------------------------------


def test_every_operation_writes_exactly_one_record(data_dir: Path, kms: LocalKMS) -> None:
    call = run_every_operation(kms)
    assert set(call.calls) == set(OPERATIONS)
    found = records(data_dir)
    assert len(found) == len(call.calls)
    assert Counter(r["eventName"] for r in found) == Counter(call.calls)
    assert [r["eventName"] for r in found] == call.calls  # in call order
    ids = [r["requestID"] for r in found]
    assert len(set(ids)) == len(ids)
    assert all(r.get("errorCode") is None for r in found)
    assert [r["seq"] for r in found] == list(range(len(found)))
    # Each record is found by its request id, once.
    for request_id in ids[:5]:
        assert [r["requestID"] for r in found if r["requestID"] == request_id] == [request_id]
    kms.close()
    report = verify(data_dir)
    assert report.records == len(call.calls) and report.unsealed == 0


def test_failed_calls_are_recorded_with_their_error(data_dir: Path, kms: LocalKMS) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    key_arn = kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    bob = caller_for(kms, "bob")
    missing = "11111111-2222-3333-4444-555555555555"
    outcomes: list[tuple[str, str]] = []

    def fail(code: str, operation: str, caller: Caller | None = None, **request: Any) -> None:
        with pytest.raises(KMSError) as info:
            if caller is None:
                kms.call(operation, **request)
            else:
                dispatch(kms.service, operation, request, caller)
        assert info.value.code == code
        outcomes.append((operation, code))

    fail("AccessDeniedException", "Encrypt", bob, KeyId=key, Plaintext=b"secret-bytes")
    fail("AccessDeniedException", "ListKeys", bob)
    fail("AccessDeniedException", "CreateKey", bob)
    fail("ValidationException", "Encrypt", KeyId=key, Plaintext=b"")
    fail("ValidationException", "GenerateDataKey", KeyId=key)
    fail("ValidationException", "CreateKey", Bogus=1)
    fail("NotFoundException", "DescribeKey", KeyId=missing)
    fail("InvalidCiphertextException", "Decrypt", CiphertextBlob=b"\x01" * 60)
    fail("MalformedPolicyDocumentException", "PutKeyPolicy", KeyId=key, Policy="{")
    fail("InvalidGrantTokenException", "Encrypt", KeyId=key, Plaintext=b"x", GrantTokens=["t"])
    fail("DryRunOperationException", "Encrypt", KeyId=key, Plaintext=b"x", DryRun=True)
    fail("UnknownOperationException", "FlyToTheMoon")
    kms.disable_key(KeyId=key)
    fail("DisabledException", "Encrypt", KeyId=key, Plaintext=b"x")

    failed = records(data_dir, error_code=True)
    assert [(r["eventName"], r["errorCode"]) for r in failed] == outcomes
    assert all(r["errorMessage"] for r in failed)
    by_error = {(r["eventName"], r["errorCode"]): r for r in failed}
    denied = by_error[("Encrypt", "AccessDeniedException")]
    assert denied["userIdentity"]["arn"] == BOB
    assert denied["userIdentity"]["type"] == "IAMUser"
    assert denied["userIdentity"]["userName"] == "bob"
    assert [r["ARN"] for r in denied["resources"]] == [key_arn]
    assert denied["readOnly"] is True
    assert by_error[("ListKeys", "AccessDeniedException")]["resources"] == []
    not_found = by_error[("DescribeKey", "NotFoundException")]
    assert not_found["requestParameters"]["keyId"] == missing
    assert records(data_dir, key_id=missing) == [not_found]
    assert by_error[("Decrypt", "InvalidCiphertextException")]["readOnly"] is True
    assert by_error[("PutKeyPolicy", "MalformedPolicyDocumentException")]["readOnly"] is False
    # Successful calls: CreateKey, DescribeKey, DisableKey.
    assert len(records(data_dir, error_code=False)) == 3
    # Found by the key id it was asked with.
    (disabled,) = records(data_dir, error_code="DisabledException", key_id=key)
    assert disabled["eventName"] == "Encrypt"


# --- what a record says -------------------------------------------------------------------


def test_records_name_the_caller_the_key_and_read_only(data_dir: Path, kms: LocalKMS) -> None:
    key = kms.create_key()["KeyMetadata"]
    other = kms.create_key()["KeyMetadata"]
    bob = caller_for(
        kms,
        "bob",
        policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
            }
        ),
    )
    root = Caller(arn=ROOT, account=ACCOUNT, principal_id=ACCOUNT, kind="Root", source="local:1")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"p")["CiphertextBlob"]
    dispatch(kms.service, "Decrypt", {"CiphertextBlob": blob}, bob)
    dispatch(kms.service, "GenerateDataKey", {"KeyId": key["KeyId"], "KeySpec": "AES_256"}, root)
    dispatch(
        kms.service, "ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": other["KeyId"]}, bob
    )
    kms.generate_data_keys(KeyId=key["KeyId"], Count=3, KeySpec="AES_256")
    kms.disable_key(KeyId=key["KeyId"])
    kms.generate_random(NumberOfBytes=8)

    admin_arn = kms.caller.arn
    found = {r["eventName"]: r for r in records(data_dir)}
    assert found["Encrypt"]["userIdentity"]["arn"] == admin_arn
    assert found["Decrypt"]["userIdentity"]["arn"] == BOB
    assert found["Decrypt"]["userIdentity"]["principalId"].startswith("AIDA")
    root_identity = found["GenerateDataKey"]["userIdentity"]
    assert (root_identity["type"], root_identity["arn"]) == ("Root", ROOT)
    assert root_identity["accountId"] == ACCOUNT
    for name in ("Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeys", "DisableKey"):
        assert [r["ARN"] for r in found[name]["resources"]] == [key["Arn"]], name
        assert found[name]["resources"][0]["type"] == "AWS::KMS::Key"
        assert found[name]["resources"][0]["accountId"] == ACCOUNT
    assert {r["ARN"] for r in found["ReEncrypt"]["resources"]} == {key["Arn"], other["Arn"]}
    assert [r["ARN"] for r in found["CreateKey"]["resources"]] == [other["Arn"]]  # the last one
    assert found["GenerateRandom"]["resources"] == []
    for name in (
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeys",
        "ReEncrypt",
        "GenerateRandom",
    ):
        assert found[name]["readOnly"] is True, name
    for name in ("CreateKey", "DisableKey"):
        assert found[name]["readOnly"] is False, name
    assert found["GenerateDataKeys"]["additionalEventData"]["batchSize"] == 3
    for r in found.values():
        assert r["eventSource"] == "kms.amazonaws.com"
        assert r["awsRegion"] == "us-east-1"
        assert r["recipientAccountId"] == ACCOUNT
    # Queries by key and by principal see the same records.
    assert {r["eventName"] for r in records(data_dir, principal=BOB)} == {"Decrypt", "ReEncrypt"}
    by_key = {r["eventName"] for r in records(data_dir, key_id=other["KeyId"])}
    assert by_key == {"CreateKey", "ReEncrypt"}


def test_no_plaintext_or_ciphertext_in_the_trail(data_dir: Path, kms: LocalKMS) -> None:
    call = run_every_operation(kms)
    # More secrets: large plaintexts, every data-key form, a denied call's plaintext.
    key = call("CreateKey")["KeyMetadata"]["KeyId"]
    call("Encrypt", KeyId=key, Plaintext=os.urandom(4096))
    call("GenerateDataKeys", KeyId=key, Count=20, NumberOfBytes=64)
    bob = caller_for(kms, "eve")
    with pytest.raises(KMSError):
        call("Encrypt", bob, KeyId=key, Plaintext=os.urandom(40))
    grant = call("CreateGrant", KeyId=key, GranteePrincipal=BOB, Operations=["Encrypt"])
    kms.close()
    secrets = [s for s in call.secrets if len(s) >= 16]
    assert len(secrets) > 50
    forms: list[bytes] = []
    for s in secrets:
        forms += [s, s.hex().encode(), s.hex().upper().encode(), base64.b64encode(s)]
        forms += [base64.urlsafe_b64encode(s), base64.b64encode(s).rstrip(b"=")]
    assert grant["GrantToken"] in call.tokens and len(set(call.tokens)) >= 3
    forms += [token.encode() for token in call.tokens]
    files = audit_files(data_dir)
    assert any(p.name.startswith("segment-") for p in files)
    for path in files:
        content = path.read_bytes()
        assert content
        for form in forms:
            assert form not in content, f"a secret is in {path.name}"
    # Nor in what query returns (it reads the same files).
    assert all(f not in json.dumps(records(data_dir)).encode() for f in forms if len(f) >= 32)


# --- verify, close, tampering ---------------------------------------------------------------


def test_close_flushes_and_checkpoints(data_dir: Path, kms: LocalKMS) -> None:
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(9):
        kms.encrypt(KeyId=key, Plaintext=b"x")
    # Every call is durable when it returns: visible before close.
    assert len(records(data_dir)) == 10
    kms.close()
    report = verify(data_dir)
    assert report.records == 10
    assert report.unsealed == 0
    assert report.sealed_through == 9
    assert report.checkpoints >= 1
    # Reopening continues the chain.
    with LocalKMS(data_dir, audit=True) as again:
        again.describe_key(KeyId=key)
    report = verify(data_dir)
    assert report.records == 11 and report.unsealed == 0
    assert [r["seq"] for r in records(data_dir)] == list(range(11))


@pytest.fixture
def sealed_trail(tmp_path: Path) -> Path:
    """A closed trail of ten records in one segment."""
    data_dir = tmp_path / "sealed"
    with LocalKMS(data_dir, audit=True) as kms:
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        for i in range(9):
            kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"n": str(i)})
    verify(data_dir)
    return data_dir


def _tampered(source: Path, target: Path, change: Callable[[list[bytes]], None]) -> str:
    shutil.copytree(source, target)
    segments = sorted((target / "audit").glob("segment-*"))
    assert len(segments) == 1
    lines = segments[0].read_bytes().split(b"\n")
    assert lines[-1] == b""
    change(lines)
    segments[0].write_bytes(b"\n".join(lines))
    return segments[0].name


def _edit(lines: list[bytes]) -> None:
    assert b'"n":"3"' in lines[4] or b'"n": "3"' in lines[4]
    lines[4] = lines[4].replace(b'"3"', b'"7"')


def _delete(lines: list[bytes]) -> None:
    del lines[4]


def _swap(lines: list[bytes]) -> None:
    lines[4], lines[5] = lines[5], lines[4]


def _reserialize(lines: list[bytes]) -> None:
    # Same content, other bytes: still a change to the hashed record.
    lines[4] = json.dumps(json.loads(lines[4]), indent=None, separators=(", ", ": ")).encode()


@pytest.mark.parametrize("change", [_edit, _delete, _swap, _reserialize])
def test_verify_names_the_tampered_line(
    sealed_trail: Path, tmp_path: Path, change: Callable[[list[bytes]], None]
) -> None:
    segment = _tampered(sealed_trail, tmp_path / "copy", change)
    with pytest.raises(VerifyError) as info:
        verify(tmp_path / "copy")
    err = info.value
    assert err.file == segment
    assert err.line == 5  # the fifth line, 1-based, is where the trail was changed
    assert f"{segment}:5" in str(err)


def test_verify_detects_a_cut_tail(sealed_trail: Path, tmp_path: Path) -> None:
    _tampered(sealed_trail, tmp_path / "copy", lambda lines: lines.__delitem__(-2))
    with pytest.raises(VerifyError) as info:
        verify(tmp_path / "copy")
    assert "checkpoints" in str(info.value)


def test_verify_fails_on_an_edited_checkpoint(sealed_trail: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(sealed_trail, copy)
    path = copy / "audit" / "checkpoints.jsonl"
    body = json.loads(path.read_bytes().splitlines()[0])
    body["count"] += 1
    path.write_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    with pytest.raises(VerifyError) as info:
        verify(copy)
    assert info.value.file == "checkpoints.jsonl" and info.value.line == 1


def test_unknown_key_reference_is_found_by_query(data_dir: Path, kms: LocalKMS) -> None:
    expect("NotFoundException", kms.encrypt, KeyId="alias/nope", Plaintext=b"x")
    (only,) = records(data_dir, key_id="alias/nope")
    assert only["errorCode"] == "NotFoundException"
