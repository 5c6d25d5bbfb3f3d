"""Authorization through LocalKMS: key policies, identity policies, the account root.

Each test acts as real principals of one data dir: the admin that a new data dir
makes for this uid (identity policy ``kms:*``), users added with
``principals.add``, and the account root, each through its own LocalKMS. An
admin change made in one instance is seen by the others within 50 ms, so the
tests wait :func:`settle` between a change and a check in another instance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from service_helpers import expect
from service_helpers.access import ACCOUNT, ROOT, identity, settle, user

from kmscore.client import LocalKMS
from kmscore.errors import KMSError
from kmscore.operations import OPERATIONS, dispatch
from kmscore.service import Caller


def key_policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal: str | list[str], actions: str | list[str], **extra: Any) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": actions,
        "Resource": "*",
        **extra,
    }


ROOT_STATEMENT = allow(ROOT, "kms:*", Sid="Enable IAM User Permissions")


@pytest.fixture
def key(admin: LocalKMS) -> str:
    return str(admin.create_key(Description="shared")["KeyMetadata"]["KeyId"])


def policy_of(kms: LocalKMS, key_id: str) -> str:
    return str(kms.get_key_policy(KeyId=key_id)["Policy"])


# --- key policy statements ------------------------------------------------------------


def test_second_principal_is_denied_by_default(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob")
    err = expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"data")
    assert user("bob") in err.message and "kms:Encrypt" in err.message
    expect("AccessDeniedException", bob.describe_key, KeyId=key)
    # The admin (identity policy kms:*, default key policy) is allowed.
    assert admin.encrypt(KeyId=key, Plaintext=b"data")["CiphertextBlob"]


def test_key_policy_statement_naming_the_user_allows_it(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob")
    carol = as_user("carol")
    policy = key_policy(ROOT_STATEMENT, allow(user("bob"), ["kms:Encrypt", "kms:Decrypt"]))
    admin.put_key_policy(KeyId=key, Policy=policy)
    settle()
    blob = bob.encrypt(KeyId=key, Plaintext=b"data")["CiphertextBlob"]
    assert bob.decrypt(CiphertextBlob=blob)["Plaintext"] == b"data"
    # Only the named actions, and only for the named user.
    expect("AccessDeniedException", bob.generate_data_key, KeyId=key, KeySpec="AES_256")
    expect("AccessDeniedException", bob.describe_key, KeyId=key)
    expect("AccessDeniedException", carol.encrypt, KeyId=key, Plaintext=b"data")


def test_explicit_deny_with_context_condition(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob", identity("kms:*"))
    deny = {
        "Sid": "NoBlockedTenant",
        "Effect": "Deny",
        "Principal": {"AWS": user("bob")},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blocked"}},
    }
    admin.put_key_policy(KeyId=key, Policy=key_policy(ROOT_STATEMENT, deny))
    settle()
    ok = bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "fine"})
    bob.encrypt(KeyId=key, Plaintext=b"x")  # no context: the condition does not match
    err = expect(
        "AccessDeniedException",
        bob.encrypt,
        KeyId=key,
        Plaintext=b"x",
        EncryptionContext={"tenant": "blocked"},
    )
    assert "explicit deny" in err.message
    # The deny wins over the identity policy's kms:*, but only for that context.
    assert (
        bob.decrypt(CiphertextBlob=ok["CiphertextBlob"], EncryptionContext={"tenant": "fine"})[
            "Plaintext"
        ]
        == b"x"
    )
    # The admin made a ciphertext under the blocked context; bob may not open it.
    blocked = admin.encrypt(KeyId=key, Plaintext=b"y", EncryptionContext={"tenant": "blocked"})
    expect(
        "AccessDeniedException",
        bob.decrypt,
        CiphertextBlob=blocked["CiphertextBlob"],
        EncryptionContext={"tenant": "blocked"},
    )
    # A deny in the identity policy wins over the key policy too.
    admin.service.principals.set_policy(
        "bob",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"},
                ],
            }
        ),
    )
    settle()
    expect(
        "AccessDeniedException",
        bob.encrypt,
        KeyId=key,
        Plaintext=b"x",
        EncryptionContext={"tenant": "fine"},
    )
    assert bob.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key


def test_identity_policy_counts_only_while_the_key_policy_delegates(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob", identity("kms:Encrypt", "kms:DescribeKey"))
    # The default key policy delegates to the account: IAM decides.
    assert "Enable IAM User Permissions" in policy_of(admin, key)
    blob = bob.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    bob.describe_key(KeyId=key)
    expect("AccessDeniedException", bob.decrypt, CiphertextBlob=blob)
    # A key policy without the account statement, naming only the admin: the
    # admin's own PutKeyPolicy passes the lockout check (it is named).
    admin_arn = admin.caller.arn
    admin.put_key_policy(KeyId=key, Policy=key_policy(allow(admin_arn, "kms:*")))
    settle()
    err = expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    assert "resource-based policy" in err.message
    expect("AccessDeniedException", bob.describe_key, KeyId=key)
    admin.encrypt(KeyId=key, Plaintext=b"x")
    # Back to delegating: bob's identity policy counts again.
    admin.put_key_policy(KeyId=key, Policy=key_policy(ROOT_STATEMENT))
    settle()
    bob.encrypt(KeyId=key, Plaintext=b"x")


def test_removing_the_root_statement_removes_the_admins_identity_allow(
    admin: LocalKMS, key: str
) -> None:
    # A policy that names nobody useful locks the admin out: refused...
    other_only = key_policy(allow(user("nobody"), "kms:*"))
    err = expect(
        "MalformedPolicyDocumentException", admin.put_key_policy, KeyId=key, Policy=other_only
    )
    assert "update the key policy" in err.message
    # ...unless the check is bypassed; then the admin's kms:* no longer counts.
    admin.put_key_policy(KeyId=key, Policy=other_only, BypassPolicyLockoutSafetyCheck=True)
    expect("AccessDeniedException", admin.encrypt, KeyId=key, Plaintext=b"x")
    expect("AccessDeniedException", admin.get_key_policy, KeyId=key)
    expect(
        "AccessDeniedException", admin.put_key_policy, KeyId=key, Policy=key_policy(ROOT_STATEMENT)
    )
    # Account-level actions are still decided by the identity policy.
    keys = [k["KeyId"] for k in admin.list_keys()["Keys"]]
    assert key in keys


def test_not_action_and_wildcards_in_a_key_policy(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob")
    carol = as_user("carol")
    statements = [
        ROOT_STATEMENT,
        {
            "Effect": "Allow",
            "Principal": {"AWS": user("bob")},
            "NotAction": ["kms:Decrypt", "kms:*KeyPolicy", "kms:ScheduleKeyDeletion"],
            "Resource": "*",
        },
        allow(user("carol"), ["kms:GenerateDataKey*", "kms:Describe?ey"]),
    ]
    admin.put_key_policy(KeyId=key, Policy=key_policy(*statements))
    settle()
    blob = bob.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    bob.describe_key(KeyId=key)
    bob.generate_data_key(KeyId=key, KeySpec="AES_256")
    bob.disable_key(KeyId=key)
    bob.enable_key(KeyId=key)
    expect("AccessDeniedException", bob.decrypt, CiphertextBlob=blob)
    expect("AccessDeniedException", bob.get_key_policy, KeyId=key)
    expect("AccessDeniedException", bob.schedule_key_deletion, KeyId=key)

    carol.generate_data_key(KeyId=key, KeySpec="AES_256")
    carol.generate_data_key_without_plaintext(KeyId=key, KeySpec="AES_128")
    carol.generate_data_keys(KeyId=key, Count=3, KeySpec="AES_256")
    carol.describe_key(KeyId=key)
    expect("AccessDeniedException", carol.encrypt, KeyId=key, Plaintext=b"x")
    expect("AccessDeniedException", carol.decrypt, CiphertextBlob=blob)
    expect("AccessDeniedException", carol.list_grants, KeyId=key)


def test_actions_in_a_policy_match_case_insensitively(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob")
    admin.put_key_policy(
        KeyId=key, Policy=key_policy(ROOT_STATEMENT, allow(user("bob"), "KMS:encrypt"))
    )
    settle()
    bob.encrypt(KeyId=key, Plaintext=b"x")


# --- PutKeyPolicy: the lockout check, malformed and oversized policies ----------------


def test_lockout_check_for_a_user_who_relies_on_its_identity_policy(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob", identity("kms:PutKeyPolicy", "kms:GetKeyPolicy"))
    before = policy_of(admin, key)
    # Keeping the account statement keeps bob's identity policy effective: fine.
    bob.put_key_policy(KeyId=key, Policy=key_policy(ROOT_STATEMENT))
    # Dropping it, with bob not named, would lock bob out: refused.
    locked = key_policy(allow(admin.caller.arn, "kms:*"))
    settle()
    current = policy_of(admin, key)
    assert current != before
    expect("MalformedPolicyDocumentException", bob.put_key_policy, KeyId=key, Policy=locked)
    assert policy_of(admin, key) == current
    # A statement naming bob for PutKeyPolicy passes without delegation.
    named = key_policy(allow(admin.caller.arn, "kms:*"), allow(user("bob"), "kms:PutKeyPolicy"))
    bob.put_key_policy(KeyId=key, Policy=named)
    settle()
    assert policy_of(admin, key) == named
    # Bypassing the check: accepted, and then bob is out for good.
    bob.put_key_policy(KeyId=key, Policy=locked, BypassPolicyLockoutSafetyCheck=True)
    settle()
    assert policy_of(admin, key) == locked
    expect("AccessDeniedException", bob.put_key_policy, KeyId=key, Policy=named)


@pytest.mark.parametrize(
    "policy",
    [
        "{",
        "[]",
        '{"Version": "2012-10-17"}',
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*"}]}',
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Principal": "*",'
        ' "Action": "kms:*", "Resource": "*"}]}',
        '{"Version": "2099-01-01", "Statement": []}',
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    ROOT_STATEMENT,
                    {
                        **ROOT_STATEMENT,
                        "Sid": "Big",
                        "Condition": {
                            "StringEquals": {"kms:EncryptionContext:k": ["v" * 100] * 330}
                        },
                    },
                ],
            }
        ),
    ],
    ids=["truncated", "array", "no-statement", "no-principal", "bad-effect", "bad-version", "33KB"],
)
def test_malformed_and_oversized_policies_change_nothing(
    admin: LocalKMS, key: str, policy: str
) -> None:
    before = policy_of(admin, key)
    expect("MalformedPolicyDocumentException", admin.put_key_policy, KeyId=key, Policy=policy)
    assert policy_of(admin, key) == before
    # The same on CreateKey: refused, no key made.
    count = len(admin.list_keys()["Keys"])
    expect("MalformedPolicyDocumentException", admin.create_key, Policy=policy)
    assert len(admin.list_keys()["Keys"]) == count


def test_policy_size_limit_is_32_kilobytes(admin: LocalKMS, key: str) -> None:
    def padded(size: int) -> str:
        base = key_policy({**ROOT_STATEMENT, "Sid": ""})
        pad = size - len(base)
        return key_policy({**ROOT_STATEMENT, "Sid": "S" * pad})

    admin.put_key_policy(KeyId=key, Policy=padded(32768))
    assert len(policy_of(admin, key)) == 32768
    expect(
        "MalformedPolicyDocumentException", admin.put_key_policy, KeyId=key, Policy=padded(32769)
    )
    assert len(policy_of(admin, key)) == 32768


def test_put_key_policy_other_name_and_missing_key(admin: LocalKMS, key: str) -> None:
    before = policy_of(admin, key)
    expect(
        "NotFoundException",
        admin.put_key_policy,
        KeyId=key,
        PolicyName="other",
        Policy=key_policy(ROOT_STATEMENT),
    )
    assert policy_of(admin, key) == before
    expect(
        "NotFoundException",
        admin.put_key_policy,
        KeyId="11111111-2222-3333-4444-555555555555",
        Policy=key_policy(ROOT_STATEMENT),
    )


# --- CreateKey with a Policy; GetKeyPolicy / ListKeyPolicies --------------------------


def test_create_key_with_a_policy(admin: LocalKMS, as_user: Callable[..., LocalKMS]) -> None:
    bob = as_user("bob")
    policy = key_policy(allow(admin.caller.arn, "kms:*"), allow(user("bob"), "kms:Encrypt"))
    key_id = admin.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    assert policy_of(admin, key_id) == policy
    settle()
    bob.encrypt(KeyId=key_id, Plaintext=b"x")
    expect("AccessDeniedException", bob.describe_key, KeyId=key_id)
    # A policy the creator could not change later: refused, unless bypassed.
    bob_only = key_policy(allow(user("bob"), "kms:*"))
    count = len(admin.list_keys()["Keys"])
    expect("MalformedPolicyDocumentException", admin.create_key, Policy=bob_only)
    assert len(admin.list_keys()["Keys"]) == count
    bypassed = admin.create_key(Policy=bob_only, BypassPolicyLockoutSafetyCheck=True)
    new_id = bypassed["KeyMetadata"]["KeyId"]
    expect("AccessDeniedException", admin.describe_key, KeyId=new_id)
    settle()
    assert policy_of(bob, new_id) == bob_only


def test_get_and_list_key_policies(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    doc = json.loads(policy_of(admin, key))
    assert doc["Statement"][0]["Principal"] == {"AWS": ROOT}
    assert doc["Statement"][0]["Action"] == "kms:*"
    out = admin.get_key_policy(KeyId=key, PolicyName="default")
    assert out["PolicyName"] == "default"
    expect("NotFoundException", admin.get_key_policy, KeyId=key, PolicyName="other")
    assert admin.list_key_policies(KeyId=key) == {"PolicyNames": ["default"], "Truncated": False}
    assert admin.list_key_policies(KeyId=key, Limit=1)["PolicyNames"] == ["default"]
    bob = as_user("bob")
    expect("AccessDeniedException", bob.get_key_policy, KeyId=key)
    expect("AccessDeniedException", bob.list_key_policies, KeyId=key)


# --- calls on no key; the account root; unmapped callers -------------------------------


def test_account_level_actions_need_an_identity_policy(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob")
    for call in (bob.create_key, bob.list_keys, bob.list_aliases):
        err = expect("AccessDeniedException", call)
        assert "resource: *" in err.message
    expect("AccessDeniedException", bob.list_retirable_grants, RetiringPrincipal=user("bob"))
    assert len(admin.list_keys()["Keys"]) == 1
    carol = as_user("carol", identity("kms:CreateKey", "kms:ListKeys"))
    made = carol.create_key()["KeyMetadata"]["KeyId"]
    assert {k["KeyId"] for k in carol.list_keys()["Keys"]} == {key, made}
    expect("AccessDeniedException", carol.list_aliases)
    # An identity deny wins for account-level actions too.
    admin.service.principals.set_policy("carol", identity("kms:*", effect="Deny"))
    settle()
    err = expect("AccessDeniedException", carol.list_keys)
    assert "explicit deny" in err.message


def test_unknown_user_is_denied(data_dir: Path, admin: LocalKMS, key: str) -> None:
    with LocalKMS(data_dir, principal=user("ghost"), audit=False) as ghost:
        err = expect("AccessDeniedException", ghost.describe_key, KeyId=key)
        assert "does not exist" in err.message
        expect("AccessDeniedException", ghost.list_keys)


def test_removed_user_loses_access(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob", identity("kms:*"))
    bob.describe_key(KeyId=key)
    admin.service.principals.remove("bob")
    settle()
    expect("AccessDeniedException", bob.describe_key, KeyId=key)


def test_account_root_may_do_account_level_actions(
    data_dir: Path, admin: LocalKMS, key: str
) -> None:
    with LocalKMS(data_dir, principal=ROOT, audit=False) as root:
        assert root.caller.kind == "Root"
        made = root.create_key(Description="by root")["KeyMetadata"]["KeyId"]
        assert {k["KeyId"] for k in root.list_keys()["Keys"]} == {key, made}
        root.list_aliases()
        assert len(root.generate_random(NumberOfBytes=16)["Plaintext"]) == 16
        # The default key policy names the account, so root may use the key.
        root.encrypt(KeyId=key, Plaintext=b"x")
        # A key policy that does not name the account keeps root out too.
        admin.put_key_policy(
            KeyId=key,
            Policy=key_policy(allow(admin.caller.arn, "kms:*")),
        )
        settle()
        expect("AccessDeniedException", root.encrypt, KeyId=key, Plaintext=b"x")
    other = "arn:aws:iam::999988887777:root"
    with LocalKMS(data_dir, principal=other, audit=False) as stranger:
        expect("AccessDeniedException", stranger.list_keys)
        expect("AccessDeniedException", stranger.create_key)


def _unmapped() -> Caller:
    return Caller(
        arn="unix-uid:4242",
        account="",
        principal_id="4242",
        kind="Unmapped",
        source="unix:1",
        user_agent="test",
    )


def test_unmapped_caller_may_only_generate_random(admin: LocalKMS, key: str) -> None:
    svc = admin.service
    caller = _unmapped()
    blob = admin.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    grant = admin.create_grant(
        KeyId=key,
        GranteePrincipal=caller.arn,
        RetiringPrincipal=caller.arn,
        Operations=["Encrypt", "Decrypt", "RetireGrant"],
    )
    admin.create_alias(AliasName="alias/shared", TargetKeyId=key)
    doomed = admin.create_key()["KeyMetadata"]["KeyId"]
    admin.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    signer, mac, agree, kem = (
        admin.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
        for spec, usage in (
            ("ECC_NIST_P256", "SIGN_VERIFY"),
            ("HMAC_256", "GENERATE_VERIFY_MAC"),
            ("ECC_NIST_P256", "KEY_AGREEMENT"),
            ("ML_KEM_768", "ENCAPSULATE_DECAPSULATE"),
        )
    )
    peer = admin.get_public_key(KeyId=agree)["PublicKey"]
    external = admin.create_key(Origin="EXTERNAL")["KeyMetadata"]["KeyId"]
    params = admin.get_parameters_for_import(
        KeyId=external, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"
    )
    mrk = admin.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    admin.in_region("us-west-2")
    requests: dict[str, dict[str, Any]] = {
        "ReplicateKey": {"KeyId": mrk, "ReplicaRegion": "us-west-2"},
        "UpdatePrimaryRegion": {"KeyId": mrk, "PrimaryRegion": "us-west-2"},
        "GetKeyLastUsage": {"KeyId": key},
        "GetParametersForImport": {
            "KeyId": external,
            "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
            "WrappingKeySpec": "RSA_2048",
        },
        "ImportKeyMaterial": {
            "KeyId": external,
            "ImportToken": params["ImportToken"],
            "EncryptedKeyMaterial": b"\x00" * 256,
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
        },
        "DeleteImportedKeyMaterial": {"KeyId": external},
        "CreateAlias": {"AliasName": "alias/u", "TargetKeyId": key},
        "UpdateAlias": {"AliasName": "alias/shared", "TargetKeyId": key},
        "DeleteAlias": {"AliasName": "alias/shared"},
        "ListAliases": {},
        "Encrypt": {"KeyId": key, "Plaintext": b"x"},
        "Decrypt": {"CiphertextBlob": blob},
        "ReEncrypt": {"CiphertextBlob": blob, "DestinationKeyId": key},
        "GenerateDataKey": {"KeyId": key, "KeySpec": "AES_256"},
        "GenerateDataKeyWithoutPlaintext": {"KeyId": key, "KeySpec": "AES_256"},
        "GenerateDataKeys": {"KeyId": key, "Count": 2, "KeySpec": "AES_256"},
        "DecryptMany": {"CiphertextBlobs": [blob]},
        "CreateGrant": {"KeyId": key, "GranteePrincipal": caller.arn, "Operations": ["Encrypt"]},
        "ListGrants": {"KeyId": key},
        "ListRetirableGrants": {"RetiringPrincipal": caller.arn},
        "RetireGrant": {"GrantToken": grant["GrantToken"]},
        "RevokeGrant": {"KeyId": key, "GrantId": grant["GrantId"]},
        "TagResource": {"KeyId": key, "Tags": [{"TagKey": "a", "TagValue": "b"}]},
        "UntagResource": {"KeyId": key, "TagKeys": ["a"]},
        "ListResourceTags": {"KeyId": key},
        "CreateKey": {},
        "DescribeKey": {"KeyId": key},
        "ListKeys": {},
        "EnableKey": {"KeyId": key},
        "DisableKey": {"KeyId": key},
        "UpdateKeyDescription": {"KeyId": key, "Description": "u"},
        "ScheduleKeyDeletion": {"KeyId": key, "PendingWindowInDays": 7},
        "CancelKeyDeletion": {"KeyId": doomed},
        "GetKeyPolicy": {"KeyId": key},
        "PutKeyPolicy": {"KeyId": key, "Policy": key_policy(allow("*", "kms:*"))},
        "ListKeyPolicies": {"KeyId": key},
        "EnableKeyRotation": {"KeyId": key},
        "DisableKeyRotation": {"KeyId": key},
        "GetKeyRotationStatus": {"KeyId": key},
        "RotateKeyOnDemand": {"KeyId": key},
        "ListKeyRotations": {"KeyId": key},
        "Sign": {"KeyId": signer, "Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256"},
        "Verify": {
            "KeyId": signer,
            "Message": b"m",
            "Signature": b"s",
            "SigningAlgorithm": "ECDSA_SHA_256",
        },
        "GetPublicKey": {"KeyId": signer},
        "GenerateMac": {"KeyId": mac, "Message": b"m", "MacAlgorithm": "HMAC_SHA_256"},
        "VerifyMac": {"KeyId": mac, "Message": b"m", "Mac": b"x", "MacAlgorithm": "HMAC_SHA_256"},
        "DeriveSharedSecret": {"KeyId": agree, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer},
        "Encapsulate": {"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM"},
        "Decapsulate": {
            "KeyId": kem,
            "SharedSecretCiphertextBlob": b"\x00" * 1088,
            "EncapsulationAlgorithm": "ML_KEM",
        },
        "GenerateDataKeyPair": {"KeyId": key, "KeyPairSpec": "ECC_NIST_P256"},
        "GenerateDataKeyPairWithoutPlaintext": {"KeyId": key, "KeyPairSpec": "RSA_2048"},
        "CreateUser": {"UserName": "intruder", "PolicyDocument": identity("kms:*")},
        "DeleteUser": {"UserName": "intruder"},
        "ListUsers": {},
        "TagUser": {"UserName": "intruder", "Tags": [{"Key": "a", "Value": "b"}]},
        "UntagUser": {"UserName": "intruder", "TagKeys": ["a"]},
        # Custom key stores: refused before the store (or cluster) is looked at.
        "CreateCustomKeyStore": {
            "CustomKeyStoreName": "intruder",
            "CloudHsmClusterId": "cluster-aaaaaaaaaaaaa",
            "TrustAnchorCertificate": "certificate",
            "KeyStorePassword": "password",
        },
        "ConnectCustomKeyStore": {"CustomKeyStoreId": "cks-00000000000000000"},
        "DisconnectCustomKeyStore": {"CustomKeyStoreId": "cks-00000000000000000"},
        "DescribeCustomKeyStores": {},
        "UpdateCustomKeyStore": {"CustomKeyStoreId": "cks-00000000000000000"},
        "DeleteCustomKeyStore": {"CustomKeyStoreId": "cks-00000000000000000"},
    }
    assert set(requests) | {"GenerateRandom"} == set(OPERATIONS)
    for name, request in requests.items():
        with pytest.raises(KMSError) as info:
            dispatch(svc, name, request, caller)
        assert info.value.code == "AccessDeniedException", (name, info.value.code)
    out = dispatch(svc, "GenerateRandom", {"NumberOfBytes": 24}, caller)
    assert len(out["Plaintext"]) == 24
    # Nothing changed: the grant, the alias, the key's state and policy are as before.
    assert [g["GrantId"] for g in admin.list_grants(KeyId=key)["Grants"]] == [grant["GrantId"]]
    meta = admin.describe_key(KeyId=key)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled" and meta["Description"] == "shared"
    assert "Enable IAM User Permissions" in policy_of(admin, key)
    assert [a["AliasName"] for a in admin.list_aliases(KeyId=key)["Aliases"]] == ["alias/shared"]
    assert len(admin.list_keys()["Keys"]) == 8  # six, the ML-KEM key and the multi-Region key
    config = admin.describe_key(KeyId=mrk)["KeyMetadata"]["MultiRegionConfiguration"]
    assert config["MultiRegionKeyType"] == "PRIMARY" and config["ReplicaKeys"] == []
    assert admin.describe_key(KeyId=external)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert admin.describe_key(KeyId=doomed)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert svc.store.get_principal("intruder") is None


def test_identity_policy_resource_names_one_key(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    other = admin.create_key()["KeyMetadata"]["KeyId"]
    arn = admin.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt", "Resource": arn}],
        }
    )
    bob = as_user("bob", policy)
    admin.create_alias(AliasName="alias/bobs", TargetKeyId=key)
    bob.encrypt(KeyId=key, Plaintext=b"x")
    bob.encrypt(KeyId="alias/bobs", Plaintext=b"x")  # the key is decided, not the name
    bob.encrypt(KeyId=arn, Plaintext=b"x")
    expect("AccessDeniedException", bob.encrypt, KeyId=other, Plaintext=b"x")


def test_account_principal_forms_and_principal_conditions(
    admin: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    bob = as_user("bob", identity("kms:*"))
    carol = as_user("carol", identity("kms:*"))
    # The account id alone names the account, as its root ARN does.
    admin.put_key_policy(KeyId=key, Policy=key_policy(allow(ACCOUNT, "kms:*")))
    settle()
    bob.encrypt(KeyId=key, Plaintext=b"x")
    deny_b_users = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "kms:Encrypt",
        "Resource": "*",
        "Condition": {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/b*"}},
    }
    other_accounts = allow(
        "*",
        "kms:DescribeKey",
        Condition={"StringEquals": {"kms:CallerAccount": "999988887777"}},
    )
    admin.put_key_policy(KeyId=key, Policy=key_policy(ROOT_STATEMENT, deny_b_users, other_accounts))
    settle()
    expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    carol.encrypt(KeyId=key, Plaintext=b"x")
    bob.describe_key(KeyId=key)
    # The statement for another account: its root may describe the key, no more.
    arn = admin.describe_key(KeyId=key)["KeyMetadata"]["Arn"]
    with LocalKMS(
        admin.service.data_dir, principal="arn:aws:iam::999988887777:root", audit=False
    ) as stranger:
        assert stranger.describe_key(KeyId=arn)["KeyMetadata"]["Arn"] == arn
        expect("AccessDeniedException", stranger.encrypt, KeyId=arn, Plaintext=b"x")
