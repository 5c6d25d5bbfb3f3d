"""Evaluating policies and combining them the way AWS KMS does."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmscore.errors import AccessDeniedException
from kmscore.policy import (
    Effect,
    PolicyDocument,
    PolicyKind,
    RequestContext,
    authorize,
    default_key_policy,
    encryption_context_values,
    is_authorized,
    parse_policy,
    would_lock_out,
)

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{OTHER_ACCOUNT}:user/carol"
APP_ROLE = f"arn:aws:iam::{ACCOUNT}:role/App"
APP_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/App/worker-1"


def ctx(
    principal: str = ALICE,
    action: str = "kms:Encrypt",
    resource: str | None = KEY_ARN,
    values: dict[str, Any] | None = None,
) -> RequestContext:
    account = ACCOUNT if principal == "ec2.amazonaws.com" else principal.split(":")[4]
    return RequestContext(action, principal, account, resource, values or {})


def key_policy(*statements: dict[str, Any]) -> PolicyDocument:
    return parse_policy(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}))


def identity_policy(*statements: dict[str, Any]) -> PolicyDocument:
    text = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return parse_policy(text, PolicyKind.IDENTITY)


def allow(principal: Any, action: Any = "kms:*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*", **extra}


def deny(principal: Any, action: Any = "kms:*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": principal, "Action": action, "Resource": "*", **extra}


def id_allow(action: Any = "kms:*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def id_deny(action: Any = "kms:*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


class TestStatements:
    def test_explicit_deny_beats_allow(self):
        policy = key_policy(allow("*"), deny({"AWS": ALICE}, "kms:Decrypt"))
        assert policy.evaluate(ctx(action="kms:Decrypt")) is Effect.EXPLICIT_DENY
        assert policy.evaluate(ctx(action="kms:Encrypt")) is Effect.ALLOW
        assert policy.evaluate(ctx(BOB, action="kms:Decrypt")) is Effect.ALLOW

    def test_nothing_applies(self):
        policy = key_policy(allow({"AWS": BOB}))
        assert policy.evaluate(ctx()) is Effect.NOT_APPLICABLE

    @pytest.mark.parametrize(
        ("pattern", "action", "expected"),
        [
            ("kms:*", "kms:Encrypt", True),
            ("*", "kms:ScheduleKeyDeletion", True),
            ("kms:Generate*", "kms:GenerateDataKey", True),
            ("kms:Generate*", "kms:GenerateDataKeyWithoutPlaintext", True),
            ("kms:Generate*", "kms:Encrypt", False),
            ("kms:GenerateDataKey*", "kms:GenerateDataKeyPair", True),
            ("kms:ReEncrypt*", "kms:ReEncryptFrom", True),
            ("kms:Re?ncrypt*", "kms:ReEncryptTo", True),
            ("kms:*Key", "kms:DescribeKey", True),
            ("kms:*Key*", "kms:GetKeyPolicy", True),
            ("KMS:ENCRYPT", "kms:Encrypt", True),
            ("kms:encrypt", "KMS:Encrypt", True),
            ("kms:Encrypt", "kms:EncryptX", False),
            ("kms:Encrypt", "s3:Encrypt", False),
            ("s3:*", "kms:Encrypt", False),
        ],
    )
    def test_action_wildcards(self, pattern, action, expected):
        policy = key_policy(allow("*", pattern))
        assert (policy.evaluate(ctx(action=action)) is Effect.ALLOW) is expected

    def test_not_action(self):
        policy = key_policy(
            {
                "Effect": "Allow",
                "Principal": "*",
                "NotAction": ["kms:ScheduleKeyDeletion", "kms:Put*"],
                "Resource": "*",
            }
        )
        assert policy.evaluate(ctx(action="kms:Encrypt")) is Effect.ALLOW
        assert policy.evaluate(ctx(action="kms:ScheduleKeyDeletion")) is Effect.NOT_APPLICABLE
        assert policy.evaluate(ctx(action="kms:PutKeyPolicy")) is Effect.NOT_APPLICABLE

    def test_not_principal(self):
        policy = key_policy(
            allow("*"),
            {
                "Effect": "Deny",
                "NotPrincipal": {"AWS": [ALICE, ROOT]},
                "Action": "kms:Decrypt",
                "Resource": "*",
            },
        )
        assert policy.evaluate(ctx(ALICE, "kms:Decrypt")) is Effect.ALLOW
        assert policy.evaluate(ctx(ROOT, "kms:Decrypt")) is Effect.ALLOW
        assert policy.evaluate(ctx(BOB, "kms:Decrypt")) is Effect.EXPLICIT_DENY
        assert policy.evaluate(ctx(BOB, "kms:Encrypt")) is Effect.ALLOW

    def test_not_principal_allow_excludes_a_whole_account(self):
        policy = key_policy(
            {
                "Effect": "Allow",
                "NotPrincipal": {"AWS": OTHER_ACCOUNT},
                "Action": "kms:*",
                "Resource": "*",
            }
        )
        assert policy.evaluate(ctx(ALICE)) is Effect.ALLOW
        assert policy.evaluate(ctx(CAROL)) is Effect.NOT_APPLICABLE

    @pytest.mark.parametrize("principal", ["*", {"AWS": "*"}, {"AWS": ["*"]}])
    def test_principal_star_is_everyone(self, principal):
        policy = key_policy(allow(principal))
        for caller in (ALICE, CAROL, ROOT, APP_SESSION):
            assert policy.evaluate(ctx(caller)) is Effect.ALLOW

    def test_principal_arn_matches_exactly(self):
        policy = key_policy(allow({"AWS": ALICE}))
        assert policy.evaluate(ctx(ALICE)) is Effect.ALLOW
        assert policy.evaluate(ctx(BOB)) is Effect.NOT_APPLICABLE
        assert policy.evaluate(ctx(ALICE.replace("alice", "Alice"))) is Effect.NOT_APPLICABLE
        assert (
            policy.evaluate(ctx(f"arn:aws:iam::{OTHER_ACCOUNT}:user/alice"))
            is Effect.NOT_APPLICABLE
        )

    def test_role_session_matches_its_role(self):
        assert key_policy(allow({"AWS": APP_ROLE})).evaluate(ctx(APP_SESSION)) is Effect.ALLOW
        assert key_policy(allow({"AWS": APP_SESSION})).evaluate(ctx(APP_SESSION)) is Effect.ALLOW
        other = f"arn:aws:iam::{ACCOUNT}:role/Other"
        assert key_policy(allow({"AWS": other})).evaluate(ctx(APP_SESSION)) is Effect.NOT_APPLICABLE

    @pytest.mark.parametrize("root", [ROOT, ACCOUNT])
    def test_account_principal_allows_the_root_but_not_its_users(self, root):
        policy = key_policy(allow({"AWS": root}))
        assert policy.evaluate(ctx(ROOT)) is Effect.ALLOW
        assert policy.evaluate(ctx(ALICE)) is Effect.NOT_APPLICABLE
        assert policy.evaluate(ctx(APP_SESSION)) is Effect.NOT_APPLICABLE

    def test_account_principal_in_a_deny_denies_the_whole_account(self):
        policy = key_policy(allow("*"), deny({"AWS": OTHER_ACCOUNT}))
        assert policy.evaluate(ctx(CAROL)) is Effect.EXPLICIT_DENY
        assert policy.evaluate(ctx(ALICE)) is Effect.ALLOW

    def test_service_principal(self):
        policy = key_policy(allow({"Service": "ec2.amazonaws.com"}))
        assert policy.evaluate(ctx("ec2.amazonaws.com")) is Effect.ALLOW
        assert policy.evaluate(ctx(ALICE)) is Effect.NOT_APPLICABLE

    @pytest.mark.parametrize(
        ("resource", "request_resource", "expected"),
        [
            ("*", KEY_ARN, True),
            ("*", None, True),
            (KEY_ARN, KEY_ARN, True),
            (KEY_ARN, OTHER_KEY_ARN, False),
            (KEY_ARN, None, False),
            ("arn:aws:kms:*:111122223333:key/*", KEY_ARN, True),
            ("arn:aws:kms:us-east-1:444455556666:key/*", KEY_ARN, False),
            ("arn:aws:kms:us-east-1:111122223333:alias/*", KEY_ARN, False),
            ("arn:aws:kms:us-east-1:111122223333:key/1234abcd-*", KEY_ARN, True),
            ("arn:aws:kms:us-east-1:111122223333:key/1234abcd-*", OTHER_KEY_ARN, False),
        ],
    )
    def test_resource(self, resource, request_resource, expected):
        policy = identity_policy(id_allow(resource=resource))
        result = policy.evaluate(ctx(resource=request_resource))
        assert (result is Effect.ALLOW) is expected

    def test_not_resource(self):
        policy = identity_policy(
            {"Effect": "Allow", "Action": "kms:*", "NotResource": OTHER_KEY_ARN}
        )
        assert policy.evaluate(ctx(resource=KEY_ARN)) is Effect.ALLOW
        assert policy.evaluate(ctx(resource=OTHER_KEY_ARN)) is Effect.NOT_APPLICABLE
        assert policy.evaluate(ctx(resource=None)) is Effect.ALLOW

    def test_resource_with_a_policy_variable(self):
        text = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    id_allow(resource="arn:aws:kms:us-east-1:111122223333:key/${aws:username}-*")
                ],
            }
        )
        policy = parse_policy(text, PolicyKind.IDENTITY)
        mine = "arn:aws:kms:us-east-1:111122223333:key/alice-1"
        assert policy.evaluate(ctx(ALICE, resource=mine)) is Effect.ALLOW
        assert policy.evaluate(ctx(BOB, resource=mine)) is Effect.NOT_APPLICABLE
        # No aws:username for a role session: an Allow does not apply, a Deny does.
        assert policy.evaluate(ctx(APP_SESSION, resource=mine)) is Effect.NOT_APPLICABLE
        denied = parse_policy(text.replace('"Allow"', '"Deny"'), PolicyKind.IDENTITY)
        assert denied.evaluate(ctx(APP_SESSION, resource=mine)) is Effect.EXPLICIT_DENY

    def test_encryption_context_condition_allows_one_context_and_denies_another(self):
        policy = key_policy(
            allow(
                {"AWS": APP_ROLE},
                ["kms:Encrypt", "kms:Decrypt"],
                Condition={"StringEquals": {"kms:EncryptionContext:AppName": "Billing"}},
            ),
            deny(
                {"AWS": APP_ROLE},
                "kms:Decrypt",
                Condition={"StringEquals": {"kms:EncryptionContext:Stage": "Restricted"}},
            ),
        )

        def decrypt(context: dict[str, str]) -> Effect:
            return policy.evaluate(
                ctx(APP_SESSION, "kms:Decrypt", values=encryption_context_values(context))
            )

        assert decrypt({"AppName": "Billing"}) is Effect.ALLOW
        assert decrypt({"AppName": "Billing", "Stage": "Test"}) is Effect.ALLOW
        assert decrypt({"AppName": "Payroll"}) is Effect.NOT_APPLICABLE
        assert decrypt({}) is Effect.NOT_APPLICABLE
        assert decrypt({"AppName": "Billing", "Stage": "Restricted"}) is Effect.EXPLICIT_DENY

    def test_an_exact_encryption_context(self):
        # Require AppName=Billing and no other context keys (AWS KMS guide example).
        policy = key_policy(
            allow(
                {"AWS": ALICE},
                "kms:Decrypt",
                Condition={
                    "StringEquals": {"kms:EncryptionContext:AppName": "Billing"},
                    "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["AppName"]},
                },
            )
        )

        def decrypt(context: dict[str, str]) -> Effect:
            return policy.evaluate(
                ctx(action="kms:Decrypt", values=encryption_context_values(context))
            )

        assert decrypt({"AppName": "Billing"}) is Effect.ALLOW
        assert decrypt({"AppName": "Billing", "Extra": "x"}) is Effect.NOT_APPLICABLE
        assert decrypt({}) is Effect.NOT_APPLICABLE

    def test_caller_account_with_principal_star(self):
        policy = key_policy(
            allow(
                {"AWS": "*"},
                Condition={
                    "StringEquals": {
                        "kms:CallerAccount": ACCOUNT,
                        "kms:ViaService": "ec2.us-east-1.amazonaws.com",
                    }
                },
            )
        )
        via_ec2 = {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}
        assert policy.evaluate(ctx(ALICE, values=via_ec2)) is Effect.ALLOW
        assert policy.evaluate(ctx(ALICE)) is Effect.NOT_APPLICABLE
        assert policy.evaluate(ctx(CAROL, values=via_ec2)) is Effect.NOT_APPLICABLE


class TestDelegation:
    DEFAULT = parse_policy(default_key_policy(ACCOUNT))

    def test_the_default_policy_delegates_to_the_account(self):
        assert self.DEFAULT.delegates_to_iam(ctx(ALICE))
        assert self.DEFAULT.delegates_to_iam(ctx(APP_SESSION, "kms:ScheduleKeyDeletion"))
        assert not self.DEFAULT.delegates_to_iam(ctx(CAROL))

    def test_delegation_is_per_action_and_condition(self):
        policy = key_policy(
            allow(
                {"AWS": ROOT},
                ["kms:Encrypt", "kms:Decrypt"],
                Condition={"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
            )
        )
        via_s3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
        assert policy.delegates_to_iam(ctx(values=via_s3))
        assert not policy.delegates_to_iam(ctx())
        assert not policy.delegates_to_iam(ctx(action="kms:PutKeyPolicy", values=via_s3))

    def test_principal_star_or_a_user_is_not_delegation(self):
        assert not key_policy(allow("*")).delegates_to_iam(ctx())
        assert not key_policy(allow({"AWS": ALICE})).delegates_to_iam(ctx())
        assert not key_policy(deny({"AWS": ROOT})).delegates_to_iam(ctx())
        not_principal = {
            "Effect": "Allow",
            "NotPrincipal": {"AWS": ROOT},
            "Action": "kms:*",
            "Resource": "*",
        }
        assert not key_policy(not_principal).delegates_to_iam(ctx())

    def test_identity_policy_allows_through_delegation(self):
        authorize(self.DEFAULT, identity_policy(id_allow("kms:Encrypt")), False, ctx())

    def test_identity_policy_alone_is_not_enough(self):
        policy = key_policy(allow({"AWS": BOB}))
        with pytest.raises(AccessDeniedException) as caught:
            authorize(policy, identity_policy(id_allow()), False, ctx())
        assert caught.value.message.endswith(
            "because no resource-based policy allows the kms:Encrypt action"
        )

    def test_cross_account_needs_both_policies(self):
        policy = key_policy(
            allow({"AWS": ROOT}),
            allow({"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}, ["kms:Decrypt"]),
        )
        carol_may = identity_policy(id_allow("kms:Decrypt", KEY_ARN))
        authorize(policy, carol_may, False, ctx(CAROL, "kms:Decrypt"))
        assert not is_authorized(policy, None, False, ctx(CAROL, "kms:Decrypt"))
        assert not is_authorized(policy, carol_may, False, ctx(CAROL, "kms:Encrypt"))

    def test_cross_account_user_named_in_key_policy_needs_its_identity_policy(self):
        policy = key_policy(allow({"AWS": ROOT}), allow({"AWS": CAROL}, ["kms:Decrypt"]))
        with pytest.raises(AccessDeniedException) as caught:
            authorize(policy, None, False, ctx(CAROL, "kms:Decrypt"))
        assert caught.value.message.endswith(
            "because no identity-based policy allows the kms:Decrypt action"
        )
        authorize(
            policy, identity_policy(id_allow("kms:Decrypt")), False, ctx(CAROL, "kms:Decrypt")
        )
        # A grant still suffices, and the other account's root needs no IAM policy.
        authorize(policy, None, True, ctx(CAROL, "kms:Decrypt"))
        other_root = f"arn:aws:iam::{OTHER_ACCOUNT}:root"
        root_policy = key_policy(allow({"AWS": ROOT}), allow({"AWS": other_root}))
        authorize(root_policy, None, False, ctx(other_root, "kms:Decrypt"))

    def test_several_identity_policies(self):
        policies = [
            identity_policy(id_allow("kms:Decrypt")),
            identity_policy(id_deny("kms:Encrypt")),
        ]
        assert is_authorized(self.DEFAULT, policies, False, ctx(action="kms:Decrypt"))
        assert not is_authorized(self.DEFAULT, policies, True, ctx(action="kms:Encrypt"))


class TestAuthorize:
    def test_key_policy_allow(self):
        authorize(key_policy(allow({"AWS": ALICE})), None, False, ctx())

    def test_key_policy_deny_message(self):
        policy = key_policy(allow("*"), deny({"AWS": ALICE}, "kms:Encrypt"))
        with pytest.raises(AccessDeniedException) as caught:
            authorize(policy, identity_policy(id_allow()), True, ctx())
        assert caught.value.message == (
            f"User: {ALICE} is not authorized to perform: kms:Encrypt on resource: {KEY_ARN} "
            "with an explicit deny in a resource-based policy"
        )

    def test_identity_policy_deny_wins_over_key_policy_allow_and_grants(self):
        with pytest.raises(AccessDeniedException) as caught:
            authorize(
                key_policy(allow({"AWS": ALICE})),
                identity_policy(id_deny("kms:Encrypt")),
                True,
                ctx(),
            )
        assert caught.value.message.endswith("with an explicit deny in an identity-based policy")

    def test_identity_deny_counts_without_delegation(self):
        policy = key_policy(allow("*"))
        assert not is_authorized(policy, identity_policy(id_deny()), False, ctx())

    def test_no_allow_message(self):
        with pytest.raises(AccessDeniedException) as caught:
            authorize(key_policy(allow({"AWS": BOB})), None, False, ctx())
        assert caught.value.message == (
            f"User: {ALICE} is not authorized to perform: kms:Encrypt on resource: {KEY_ARN} "
            "because no resource-based policy allows the kms:Encrypt action"
        )

    def test_delegated_but_no_identity_allow_message(self):
        policy = parse_policy(default_key_policy(ACCOUNT))
        with pytest.raises(AccessDeniedException) as caught:
            authorize(policy, identity_policy(id_allow("kms:Decrypt")), False, ctx())
        assert caught.value.message.endswith(
            "because no identity-based policy allows the kms:Encrypt action"
        )

    def test_grant_allows_when_no_policy_does(self):
        policy = key_policy(allow({"AWS": BOB}))
        authorize(policy, None, True, ctx())

    def test_grant_does_not_override_a_deny(self):
        policy = key_policy(allow({"AWS": BOB}), deny("*", "kms:Encrypt"))
        assert not is_authorized(policy, None, True, ctx())

    def test_root_caller_is_allowed_by_the_default_policy(self):
        authorize(
            parse_policy(default_key_policy(ACCOUNT)),
            None,
            False,
            ctx(ROOT, "kms:ScheduleKeyDeletion"),
        )


class TestLockout:
    ADMIN = identity_policy(id_allow())
    DEFAULT = parse_policy(default_key_policy(ACCOUNT))

    def test_default_policy_with_an_admin_identity_policy(self):
        assert not would_lock_out(self.DEFAULT, ctx(ALICE, "kms:CreateKey"), self.ADMIN)

    def test_default_policy_without_identity_permission(self):
        assert would_lock_out(self.DEFAULT, ctx(ALICE))
        assert would_lock_out(self.DEFAULT, ctx(ALICE), identity_policy(id_allow("kms:Encrypt")))

    def test_root_caller_with_the_default_policy(self):
        assert not would_lock_out(self.DEFAULT, ctx(ROOT))

    def test_direct_permission(self):
        assert not would_lock_out(key_policy(allow({"AWS": ALICE}, "kms:Put*")), ctx(ALICE))
        assert not would_lock_out(
            key_policy(allow({"AWS": APP_ROLE}, "kms:PutKeyPolicy")), ctx(APP_SESSION)
        )

    def test_policy_that_only_allows_use(self):
        policy = key_policy(allow({"AWS": ALICE}, ["kms:Encrypt", "kms:Decrypt"]))
        assert would_lock_out(policy, ctx(ALICE, "kms:PutKeyPolicy"), self.ADMIN)

    def test_policy_that_denies_put_key_policy(self):
        policy = key_policy(allow({"AWS": ROOT}), deny("*", "kms:PutKeyPolicy"))
        assert would_lock_out(policy, ctx(ALICE), self.ADMIN)
        assert would_lock_out(policy, ctx(ROOT))

    def test_condition_on_bypass_flag(self):
        policy = key_policy(
            allow(
                {"AWS": ALICE},
                "kms:PutKeyPolicy",
                Condition={"Null": {"kms:BypassPolicyLockoutSafetyCheck": "true"}},
            )
        )
        assert not would_lock_out(policy, ctx(ALICE))
        flagged = ctx(ALICE, values={"kms:BypassPolicyLockoutSafetyCheck": True})
        assert would_lock_out(policy, flagged)


class TestRequestContext:
    def test_keys_are_lower_cased_and_lists_become_tuples(self):
        context = ctx(values={"KMS:GrantOperations": ["Encrypt", "Decrypt"], "kms:KeySpec": "X"})
        assert dict(context.condition_values) == {
            "kms:grantoperations": ("Encrypt", "Decrypt"),
            "kms:keyspec": "X",
        }

    def test_replace_recomputes_derived_fields(self):
        context = dataclasses.replace(ctx(ALICE), action="kms:PutKeyPolicy", principal_arn=BOB)
        assert context.action_folded == "kms:putkeypolicy"
        assert context.lookup["aws:username"] == "bob"

    def test_caller_identity(self):
        assert ctx(ROOT).root_account == ACCOUNT
        assert ctx(ALICE).root_account is None
        assert ctx(APP_SESSION).principal_ids == {APP_SESSION, APP_ROLE}

    def test_bad_values_are_caller_bugs(self):
        with pytest.raises(TypeError):
            ctx(values={"kms:keyspec": None})
        with pytest.raises(TypeError):
            ctx(values={"kms:grantoperations": ["a", 1]})
        with pytest.raises(ValueError, match="twice"):
            ctx(values={"kms:rotationperiodindays": 1, "KMS:RotationPeriodInDays": 2})

    def test_encryption_context_values(self):
        assert encryption_context_values({}) == {}
        assert encryption_context_values({"A": "1", "b": "2"}) == {
            "kms:encryptioncontext:a": "1",
            "kms:encryptioncontext:b": "2",
            "kms:encryptioncontextkeys": ("A", "b"),
        }
        assert encryption_context_values({"A": "1", "a": "2"})["kms:encryptioncontext:a"] == (
            "1",
            "2",
        )


# --- robustness: any request context, any value types ----------------------

EVERY_OPERATOR_POLICY = key_policy(
    allow(
        "*",
        Condition={
            "StringEquals": {"kms:EncryptionContext:a": "${aws:username}"},
            "StringLikeIfExists": {"kms:RequestAlias": "alias/*"},
            "ForAllValues:StringEqualsIgnoreCase": {"kms:GrantOperations": "decrypt"},
            "NumericLessThanIfExists": {"kms:RotationPeriodInDays": "400"},
            "DateLessThanIfExists": {"aws:CurrentTime": "2999-01-01T00:00:00Z"},
            "BoolIfExists": {"aws:SecureTransport": "true"},
            "BinaryEqualsIfExists": {"aws:ExampleBinary": "aGVsbG8="},
            "ArnLikeIfExists": {"kms:GranteePrincipal": "arn:aws:iam::*:role/${aws:username}"},
            "IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"},
            "Null": {"kms:ViaService": "true"},
        },
    ),
    deny(
        {"AWS": ACCOUNT},
        "kms:Decrypt",
        Condition={"ForAllValues:StringNotLike": {"kms:EncryptionContextKeys": ["a", "b*"]}},
    ),
)
KEYS = [
    "kms:encryptioncontext:a",
    "kms:requestalias",
    "kms:grantoperations",
    "kms:rotationperiodindays",
    "aws:currenttime",
    "aws:securetransport",
    "aws:examplebinary",
    "kms:granteeprincipal",
    "aws:sourceip",
    "kms:viaservice",
    "kms:encryptioncontextkeys",
    "aws:username",
]
any_value = (
    st.text(max_size=20)
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.binary(max_size=8)
    | st.datetimes(timezones=st.just(UTC) | st.none())
    | st.tuples(st.text(max_size=5), st.text(max_size=5))
    | st.just(())
)


@given(
    st.dictionaries(st.sampled_from(KEYS), any_value),
    st.sampled_from([ALICE, BOB, ROOT, APP_SESSION, CAROL, "ec2.amazonaws.com"]),
    st.sampled_from(["kms:Decrypt", "kms:Encrypt", "kms:PutKeyPolicy"]),
)
def test_any_context_is_allowed_or_denied_never_an_error(values, principal, action):
    context = ctx(principal, action, values=values)
    try:
        authorize(EVERY_OPERATOR_POLICY, identity_policy(id_allow()), False, context)
    except AccessDeniedException:
        pass
    assert isinstance(would_lock_out(EVERY_OPERATOR_POLICY, context), bool)


def test_the_every_operator_policy_allows_a_plain_request():
    now = datetime(2025, 1, 1, tzinfo=UTC)
    values = {
        "kms:encryptioncontext:a": "alice",
        "aws:currenttime": now,
        "aws:securetransport": True,
    }
    authorize(EVERY_OPERATOR_POLICY, None, False, ctx(ALICE, "kms:Encrypt", values=values))
