"""The state guard: every operation that acts on a key carries its rule, and Call.key applies it."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_helpers import expect, new_key, open_kms

from kmscore.errors import DisabledException, KMSInvalidStateException
from kmscore.model.keystate import STATE_RULES, KeyState, StateRule, state_rule
from kmscore.operations.registry import OPERATIONS

KEY_REFS = {"KeyId", "SourceKeyId", "DestinationKeyId", "TargetKeyId"}


def test_every_operation_that_names_a_key_has_a_state_rule() -> None:
    named = {name for name, op in OPERATIONS.items() if KEY_REFS & set(op.shape)}
    missing = sorted(name for name in named if OPERATIONS[name].states is None)
    assert missing == []
    # DeleteAlias names its key by the alias; every rule is an operation's.
    assert set(STATE_RULES) - named == {"DeleteAlias"}
    assert set(STATE_RULES) <= set(OPERATIONS)


def test_the_registered_rule_is_the_table_rule() -> None:
    for name, op in OPERATIONS.items():
        assert op.states is state_rule(name), name


@pytest.mark.parametrize(
    ("rule", "state", "error"),
    [
        ("Encrypt", KeyState.DISABLED, DisabledException),
        ("Encrypt", KeyState.PENDING_IMPORT, KMSInvalidStateException),
        ("EnableKeyRotation", KeyState.DISABLED, DisabledException),
        ("PutKeyPolicy", KeyState.PENDING_DELETION, KMSInvalidStateException),
        ("CancelKeyDeletion", KeyState.ENABLED, KMSInvalidStateException),
        ("CancelKeyDeletion", KeyState.DISABLED, KMSInvalidStateException),
    ],
)
def test_a_rule_refuses(rule: str, state: KeyState, error: type[Exception]) -> None:
    found = state_rule(rule)
    assert isinstance(found, StateRule)
    with pytest.raises(error, match="arn:key"):
        found.check("arn:key", state)


@pytest.mark.parametrize(
    ("rule", "state"),
    [
        ("Encrypt", KeyState.ENABLED),
        ("DescribeKey", KeyState.PENDING_DELETION),
        ("PutKeyPolicy", KeyState.DISABLED),
        ("CancelKeyDeletion", KeyState.PENDING_DELETION),
    ],
)
def test_a_rule_allows(rule: str, state: KeyState) -> None:
    found = state_rule(rule)
    assert found is not None
    found.check("arn:key", state)


def test_account_operations_have_no_rule() -> None:
    for name in ("CreateKey", "ListKeys", "GenerateRandom"):
        assert OPERATIONS[name].states is None, name


def test_a_disabled_key_is_refused_through_every_frontend_path(tmp_path: Path) -> None:
    with open_kms(tmp_path) as kms:
        key = new_key(kms)
        kms.disable_key(KeyId=key)
        expect("DisabledException", kms.encrypt, KeyId=key, Plaintext=b"x")
        expect("DisabledException", kms.generate_data_keys, KeyId=key, Count=2, KeySpec="AES_256")
        expect("DisabledException", kms.enable_key_rotation, KeyId=key)
        kms.put_key_policy(KeyId=key, Policy=kms.get_key_policy(KeyId=key)["Policy"])
        kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        expect("KMSInvalidStateException", kms.tag_resource, KeyId=key, Tags=[])
        assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "PendingDeletion"
