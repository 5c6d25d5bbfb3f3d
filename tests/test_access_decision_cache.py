"""The decision cache across encryption contexts.

A decision that no policy or grant can base on the encryption context is made
once for every context; one that can is made for each context. These tests run
one caller through several contexts in turn, so a decision cached for one
context and wrongly reused for another fails them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from service_helpers import expect
from service_helpers.access import ACCOUNT, ROOT, identity, settle, user

from kmscore.client import LocalKMS
from kmscore.policy import PolicyKind, parse_policy
from kmscore.service.authorization import PolicyAuthorizer

BOB = user("bob")


@pytest.fixture
def decisions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The actions each full policy evaluation was for, in order."""
    made: list[str] = []
    decide = PolicyAuthorizer._decide

    def counted(self: PolicyAuthorizer, svc: Any, call: Any, action: str, *rest: Any) -> None:
        made.append(action)
        decide(self, svc, call, action, *rest)

    monkeypatch.setattr(PolicyAuthorizer, "_decide", counted)
    return made


def _contexts(n: int) -> list[dict[str, str]]:
    return [{"tenant": f"t-{i}", "object": f"o-{i}"} for i in range(n)]


def test_a_policy_blind_to_the_context_decides_once(admin: LocalKMS, decisions: list[str]) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    decisions.clear()
    for context in _contexts(50):
        admin.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=context)
    assert decisions == ["kms:GenerateDataKey"]


def _context_policy(tenant_condition: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": BOB},
                    "Action": "kms:GenerateDataKey",
                    "Resource": "*",
                    "Condition": tenant_condition,
                },
            ],
        }
    )


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"kms:EncryptionContext:tenant": "t-1"}},
        # The same key name spelled with JSON escapes is the same condition key.
        {"StringEquals": {"\\u006bms:EncryptionContext:tenant": "t-1"}},
        {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tenant"]}},
    ],
    ids=["key", "escaped-key", "context-keys"],
)
def test_a_key_policy_that_reads_the_context_decides_per_context(
    admin: LocalKMS,
    as_user: Callable[..., LocalKMS],
    decisions: list[str],
    condition: dict[str, Any],
) -> None:
    policy = _context_policy(condition).replace("\\\\u006b", "\\u006b")
    assert parse_policy(policy, PolicyKind.KEY).reads_encryption_context
    key = admin.create_key(Policy=policy)["KeyMetadata"]["KeyId"]
    bob = as_user("bob")
    allowed = {"tenant": "t-1"}
    other = {"tenant": "t-2"} if "Keys" not in json.dumps(condition) else {"other": "x"}
    for _ in range(2):
        bob.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=allowed)
        expect(
            "AccessDeniedException",
            bob.generate_data_key,
            KeyId=key,
            KeySpec="AES_256",
            EncryptionContext=other,
        )
    # Each context decided once, then cached for itself only.
    assert decisions.count("kms:GenerateDataKey") == 2


def test_an_identity_policy_that_reads_the_context_decides_per_context(
    admin: LocalKMS, as_user: Callable[..., LocalKMS]
) -> None:
    policy = json.loads(identity("kms:Encrypt"))
    policy["Statement"][0]["Condition"] = {"StringEquals": {"kms:EncryptionContext:app": "web"}}
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    bob = as_user("bob", json.dumps(policy))
    for _ in range(2):
        bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"app": "web"})
        expect(
            "AccessDeniedException",
            bob.encrypt,
            KeyId=key,
            Plaintext=b"x",
            EncryptionContext={"app": "batch"},
        )


def test_a_constrained_grant_decides_per_context(
    admin: LocalKMS, as_user: Callable[..., LocalKMS]
) -> None:
    key = admin.create_key()["KeyMetadata"]["KeyId"]
    bob = as_user("bob")
    admin.create_grant(
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextSubset": {"tenant": "A"}},
    )
    settle()
    for _ in range(2):
        bob.encrypt(KeyId=key, Plaintext=b"x", EncryptionContext={"tenant": "A", "n": "1"})
        expect(
            "AccessDeniedException",
            bob.encrypt,
            KeyId=key,
            Plaintext=b"x",
            EncryptionContext={"tenant": "B"},
        )


def test_a_policy_change_to_read_the_context_applies_at_once(
    admin: LocalKMS, as_user: Callable[..., LocalKMS]
) -> None:
    blind = _context_policy({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}})
    assert not parse_policy(blind, PolicyKind.KEY).reads_encryption_context
    key = admin.create_key(Policy=blind)["KeyMetadata"]["KeyId"]
    bob = as_user("bob")
    bob.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"tenant": "t-2"})
    admin.put_key_policy(
        KeyId=key,
        PolicyName="default",
        Policy=_context_policy({"StringEquals": {"kms:EncryptionContext:tenant": "t-1"}}),
    )
    settle()
    expect(
        "AccessDeniedException",
        bob.generate_data_key,
        KeyId=key,
        KeySpec="AES_256",
        EncryptionContext={"tenant": "t-2"},
    )
    bob.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext={"tenant": "t-1"})
