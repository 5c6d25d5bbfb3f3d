"""Grants made through grants: never wider than the grant they come from.

AWS KMS (CreateGrant API reference, "Granting CreateGrant permission" in the
developer guide): a principal that has CreateGrant through a grant may create
only grants whose operations are a subset of that grant's, and whose
encryption context constraints are equally strict or stricter. A principal
whose key policy or IAM policy allows CreateGrant is not so limited.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_helpers import expect
from service_helpers.access import ROOT, settle, user

from kmscore.client import LocalKMS
from kmscore.model.grant import (
    GRANT_OPERATIONS,
    Grant,
    constraints_within,
    derived_grant_allowed,
    grant_allows,
)

ALICE = user("alice")
BOB = user("bob")
CAROL = user("carol")


@pytest.fixture
def key(admin: LocalKMS) -> str:
    return str(admin.create_key()["KeyMetadata"]["KeyId"])


@pytest.fixture
def alice(as_user: Callable[..., LocalKMS]) -> LocalKMS:
    return as_user("alice")


@pytest.fixture
def bob(as_user: Callable[..., LocalKMS]) -> LocalKMS:
    return as_user("bob")


def grants_of(kms: LocalKMS, key_id: str, grantee: str) -> list[dict[str, Any]]:
    return list(kms.list_grants(KeyId=key_id, GranteePrincipal=grantee)["Grants"])


# --- the escalation the issue reports, refused -----------------------------------------


def test_grantee_cannot_hand_out_operations_it_lacks(
    admin: LocalKMS, alice: LocalKMS, bob: LocalKMS, key: str
) -> None:
    admin.create_grant(KeyId=key, GranteePrincipal=ALICE, Operations=["CreateGrant", "Decrypt"])
    settle()
    expect("AccessDeniedException", alice.encrypt, KeyId=key, Plaintext=b"x")
    # To bob: Encrypt and ReEncrypt are not alice's to give.
    err = expect(
        "AccessDeniedException",
        alice.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt", "ReEncryptFrom", "ReEncryptTo"],
    )
    assert "kms:CreateGrant" in err.message and ALICE in err.message
    # One operation outside the parent spoils the whole request.
    expect(
        "AccessDeniedException",
        alice.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Decrypt", "Encrypt"],
    )
    # To herself: no more than she has either.
    expect(
        "AccessDeniedException",
        alice.create_grant,
        KeyId=key,
        GranteePrincipal=ALICE,
        Operations=["GenerateDataKey"],
    )
    settle()
    expect("AccessDeniedException", bob.encrypt, KeyId=key, Plaintext=b"x")
    expect("AccessDeniedException", alice.generate_data_key, KeyId=key, KeySpec="AES_256")
    assert grants_of(admin, key, BOB) == []
    assert len(grants_of(admin, key, ALICE)) == 1


def test_the_legitimate_subset_still_works(
    admin: LocalKMS, alice: LocalKMS, bob: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    blob = admin.encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"]
    admin.create_grant(
        KeyId=key, GranteePrincipal=ALICE, Operations=["CreateGrant", "Decrypt", "DescribeKey"]
    )
    settle()
    # A proper subset, and the same set (CreateGrant included, so bob may pass on too).
    alice.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Decrypt"])
    alice.create_grant(
        KeyId=key, GranteePrincipal=BOB, Operations=["CreateGrant", "Decrypt", "DescribeKey"]
    )
    settle()
    assert bob.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
    carol = as_user("carol")
    bob.create_grant(KeyId=key, GranteePrincipal=CAROL, Operations=["DescribeKey"])
    expect(
        "AccessDeniedException",
        bob.create_grant,
        KeyId=key,
        GranteePrincipal=CAROL,
        Operations=["Encrypt"],
    )
    settle()
    assert carol.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    expect("AccessDeniedException", carol.decrypt, CiphertextBlob=blob)


def test_policy_granted_create_grant_is_not_limited(
    admin: LocalKMS, bob: LocalKMS, key: str
) -> None:
    # The admin's CreateGrant comes from its identity policy (kms:*), not a grant.
    admin.create_grant(
        KeyId=key, GranteePrincipal=BOB, Operations=["Encrypt", "GenerateDataKey", "Decrypt"]
    )
    settle()
    bob.generate_data_key(KeyId=key, KeySpec="AES_256")


def test_two_grants_do_not_combine(
    admin: LocalKMS, alice: LocalKMS, bob: LocalKMS, key: str
) -> None:
    # AWS evaluates each grant on its own: Decrypt from one and Encrypt from
    # another do not make a parent for a grant of both.
    admin.create_grant(KeyId=key, GranteePrincipal=ALICE, Operations=["CreateGrant", "Decrypt"])
    admin.create_grant(KeyId=key, GranteePrincipal=ALICE, Operations=["CreateGrant", "Encrypt"])
    settle()
    alice.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Decrypt"])
    alice.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Encrypt"])
    expect(
        "AccessDeniedException",
        alice.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Decrypt", "Encrypt"],
    )


def test_grant_tokens_obey_the_same_rule(admin: LocalKMS, alice: LocalKMS, key: str) -> None:
    # Used at once through its token, before alice's instance sees it stored.
    grant = admin.create_grant(
        KeyId=key, GranteePrincipal=ALICE, Operations=["CreateGrant", "Decrypt"]
    )
    token = [grant["GrantToken"]]
    expect(
        "AccessDeniedException",
        alice.create_grant,
        KeyId=key,
        GranteePrincipal=ALICE,
        Operations=["Encrypt"],
        GrantTokens=token,
    )
    made = alice.create_grant(
        KeyId=key, GranteePrincipal=BOB, Operations=["Decrypt"], GrantTokens=token
    )
    assert len(made["GrantId"]) == 64


def test_retiring_principal_gains_nothing(
    admin: LocalKMS, alice: LocalKMS, as_user: Callable[..., LocalKMS], key: str
) -> None:
    carol = as_user("carol")
    grant = admin.create_grant(
        KeyId=key,
        GranteePrincipal=ALICE,
        RetiringPrincipal=CAROL,
        Operations=["CreateGrant", "Decrypt", "Encrypt"],
    )
    settle()
    # Naming carol the retiring principal lets her retire it: no operation, no
    # CreateGrant, with or without the token.
    for tokens in ([], [grant["GrantToken"]]):
        expect(
            "AccessDeniedException", carol.encrypt, KeyId=key, Plaintext=b"x", GrantTokens=tokens
        )
        expect(
            "AccessDeniedException",
            carol.create_grant,
            KeyId=key,
            GranteePrincipal=CAROL,
            Operations=["Encrypt"],
            GrantTokens=tokens,
        )
    # Alice may name any retiring principal on a grant she derives (AWS sets no
    # rule for it); that principal can retire it, and nothing more.
    child = alice.create_grant(
        KeyId=key, GranteePrincipal=BOB, RetiringPrincipal=CAROL, Operations=["Decrypt"]
    )
    settle()
    blob = admin.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    expect("AccessDeniedException", carol.decrypt, CiphertextBlob=blob)
    carol.retire_grant(KeyId=key, GrantId=child["GrantId"])
    carol.retire_grant(GrantToken=grant["GrantToken"])
    settle()
    assert grants_of(admin, key, ALICE) == [] and grants_of(admin, key, BOB) == []


# --- constraints: equally strict or stricter -----------------------------------------------

SUBSET_A1 = {"EncryptionContextSubset": {"a": "1"}}
EQUALS_A1 = {"EncryptionContextEquals": {"a": "1"}}


@pytest.mark.parametrize(
    ("parent", "child", "allowed"),
    [
        (SUBSET_A1, None, False),
        (SUBSET_A1, SUBSET_A1, True),
        (SUBSET_A1, {"EncryptionContextSubset": {"A": "1"}}, True),  # keys fold case
        (SUBSET_A1, {"EncryptionContextSubset": {"a": "1", "b": "2"}}, True),
        (SUBSET_A1, {"EncryptionContextSubset": {"a": "2"}}, False),
        (SUBSET_A1, {"EncryptionContextSubset": {"b": "1"}}, False),
        (SUBSET_A1, {"EncryptionContextEquals": {"a": "1", "b": "2"}}, True),
        (SUBSET_A1, {"EncryptionContextEquals": {"b": "2"}}, False),
        (EQUALS_A1, EQUALS_A1, True),
        (EQUALS_A1, {"EncryptionContextEquals": {"A": "1"}}, True),
        (EQUALS_A1, {"EncryptionContextEquals": {"a": "1", "b": "2"}}, False),
        (EQUALS_A1, SUBSET_A1, False),  # Subset only under Subset
        (EQUALS_A1, None, False),
        (None, SUBSET_A1, True),
        (None, None, True),
    ],
)
def test_constraints_at_least_as_strict(
    admin: LocalKMS,
    alice: LocalKMS,
    key: str,
    parent: dict[str, dict[str, str]] | None,
    child: dict[str, dict[str, str]] | None,
    allowed: bool,
) -> None:
    request: dict[str, Any] = {"KeyId": key, "Operations": ["CreateGrant", "Encrypt"]}
    if parent is not None:
        request["Constraints"] = parent
    admin.create_grant(GranteePrincipal=ALICE, **request)
    settle()
    derived: dict[str, Any] = {"KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt"]}
    if child is not None:
        derived["Constraints"] = child
    if allowed:
        alice.create_grant(**derived)
    else:
        expect("AccessDeniedException", alice.create_grant, **derived)
    assert len(grants_of(admin, key, BOB)) == int(allowed)


# --- the CreateGrant condition keys --------------------------------------------------------


def _allow_create_grant(condition: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "kms:CreateGrant",
                    "Resource": "*",
                    "Condition": condition,
                }
            ],
        }
    )


@pytest.mark.parametrize(
    ("condition", "ok", "bad"),
    [
        (
            {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}},
            {"Operations": ["Decrypt"]},
            {"Operations": ["Decrypt", "GenerateDataKey"]},
        ),
        (
            {"StringEquals": {"kms:GranteePrincipal": BOB}},
            {"GranteePrincipal": BOB},
            {"GranteePrincipal": CAROL},
        ),
        (
            {"StringEquals": {"kms:RetiringPrincipal": CAROL}},
            {"RetiringPrincipal": CAROL},
            {"RetiringPrincipal": BOB},
        ),
        (
            {"StringEquals": {"kms:GrantConstraintType": "EncryptionContextEquals"}},
            {"Constraints": {"EncryptionContextEquals": {"a": "1"}}},
            {"Constraints": {"EncryptionContextSubset": {"a": "1"}}},
        ),
        (
            {"Null": {"kms:GrantConstraintType": "false"}},
            {"Constraints": {"EncryptionContextSubset": {"a": "1"}}},
            {},
        ),
        (
            {"Bool": {"kms:GrantIsForAWSResource": "false"}},
            {},
            None,  # no AWS service calls this KMS, so it is never true here
        ),
        (
            {"StringEquals": {"kms:EncryptionContext:tenant": "t1"}},
            {"Constraints": {"EncryptionContextSubset": {"tenant": "t1"}}},
            {"Constraints": {"EncryptionContextSubset": {"tenant": "t2"}}},
        ),
    ],
)
def test_create_grant_condition_keys(
    as_user: Callable[..., LocalKMS],
    admin: LocalKMS,
    key: str,
    condition: dict[str, Any],
    ok: dict[str, Any],
    bad: dict[str, Any] | None,
) -> None:
    dave = as_user("dave", _allow_create_grant(condition))
    base: dict[str, Any] = {"KeyId": key, "GranteePrincipal": BOB, "Operations": ["Encrypt"]}
    dave.create_grant(**{**base, **ok})
    if bad is not None:
        expect("AccessDeniedException", dave.create_grant, **{**base, **bad})


def test_grant_is_for_aws_resource_true_never_matches(
    as_user: Callable[..., LocalKMS], key: str
) -> None:
    dave = as_user("dave", _allow_create_grant({"Bool": {"kms:GrantIsForAWSResource": "true"}}))
    expect(
        "AccessDeniedException",
        dave.create_grant,
        KeyId=key,
        GranteePrincipal=BOB,
        Operations=["Encrypt"],
    )


# --- property: a derived grant never exceeds its parent ---------------------------------

_KEYS = ("a", "A", "b")
_VALUES = ("1", "2")
_pairs = st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES), min_size=1, max_size=2)
_constraints = st.one_of(
    st.none(),
    st.builds(lambda p: {"EncryptionContextSubset": p}, _pairs),
    st.builds(lambda p: {"EncryptionContextEquals": p}, _pairs),
    st.builds(
        lambda p, q: {"EncryptionContextSubset": p, "EncryptionContextEquals": q},
        _pairs,
        _pairs,
    ),
)
_CRYPTO = ("Encrypt", "Decrypt", "GenerateDataKey", "DescribeKey", "CreateGrant")
_operations = st.lists(st.sampled_from(_CRYPTO), min_size=1, unique=True)
# Every context over the small alphabet: up to one value per folded key, in
# either case for "a".
_CONTEXTS = [
    {k: v for k, v in zip(keys, values, strict=True)}
    for n in range(3)
    for keys in itertools.combinations(("a", "A", "b"), n)
    for values in itertools.product(_VALUES, repeat=n)
]


def _grant(grantee: str, operations: list[str], constraints: Any) -> Grant:
    return Grant(
        grant_id="0" * 64,
        key_id="k",
        name=None,
        grantee_principal=grantee,
        retiring_principal=None,
        issuing_account="111122223333",
        operations=tuple(operations),
        constraints=constraints,
        token="t",
        creation_date=datetime(2026, 1, 1, tzinfo=UTC),
    )


@settings(max_examples=400, deadline=None)
@given(_operations, _constraints, _operations, _constraints)
def test_derived_grant_never_exceeds_parent(
    parent_ops: list[str], parent_c: Any, child_ops: list[str], child_c: Any
) -> None:
    parent = _grant(ALICE, parent_ops, parent_c)
    if not derived_grant_allowed([parent], ALICE, child_ops, child_c):
        return
    child = _grant(BOB, child_ops, child_c)
    assert set(child_ops) <= set(parent_ops)
    for op in GRANT_OPERATIONS:
        for context in _CONTEXTS:
            if grant_allows([child], BOB, op, context):
                assert grant_allows([parent], ALICE, op, context), (op, context)
    # What the child may derive in turn, the parent could derive too.
    for grand_c in (
        None,
        {"EncryptionContextSubset": {"a": "1"}},
        {"EncryptionContextEquals": {"b": "2"}},
    ):
        if derived_grant_allowed([child], BOB, child_ops, grand_c):
            assert derived_grant_allowed([parent], ALICE, child_ops, grand_c)


@settings(max_examples=300, deadline=None)
@given(_constraints)
def test_constraints_within_is_reflexive(constraints: Any) -> None:
    assert constraints_within(constraints, constraints)


def test_root_is_the_account(admin: LocalKMS, key: str) -> None:
    # Sanity for the fixtures above: grants list the issuing account's root.
    admin.create_grant(KeyId=key, GranteePrincipal=BOB, Operations=["Encrypt"])
    assert grants_of(admin, key, BOB)[0]["IssuingAccount"] == ROOT
