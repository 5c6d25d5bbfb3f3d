"""Condition operators, condition keys, set operators and policy variables.

Each case is one condition in an Allow statement that applies to everyone, so
the statement applies exactly when the condition holds. ``MISSING`` means the
condition key is absent from the request context.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kmscore.errors import MalformedPolicyDocumentException
from kmscore.policy import (
    Effect,
    RequestContext,
    encryption_context_values,
    parse_policy,
)

ACCOUNT = "111122223333"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALICE = "arn:aws:iam::111122223333:user/alice"
MISSING = object()


def make_ctx(
    values: dict[str, Any] | None = None,
    *,
    principal: str = ALICE,
    action: str = "kms:Encrypt",
) -> RequestContext:
    account = principal.split(":")[4]  # the caller's account is in its ARN
    return RequestContext(action, principal, account, KEY_ARN, values or {})


def policy_with(condition: dict[str, Any], effect: str = "Allow", version: str = "2012-10-17"):
    statement = {
        "Effect": effect,
        "Principal": "*",
        "Action": "kms:*",
        "Resource": "*",
        "Condition": condition,
    }
    return parse_policy(json.dumps({"Version": version, "Statement": [statement]}))


def holds(
    condition: dict[str, Any],
    values: dict[str, Any] | None = None,
    *,
    effect: str = "Allow",
    principal: str = ALICE,
    version: str = "2012-10-17",
) -> bool:
    """Whether the condition holds: the statement's effect is what the policy returns."""
    policy = policy_with(condition, effect, version)
    result = policy.evaluate(make_ctx(values, principal=principal))
    applied = Effect.ALLOW if effect == "Allow" else Effect.EXPLICIT_DENY
    assert result in (applied, Effect.NOT_APPLICABLE)
    return result is applied


def single(operator: str, key: str, policy_values: Any, request: Any) -> bool:
    values = {} if request is MISSING else {key: request}
    return holds({operator: {key: policy_values}}, values)


T0 = datetime(2024, 1, 1, tzinfo=UTC)

# (operator, condition key, policy value(s), request value, expected)
OPERATOR_CASES = [
    # String
    ("StringEquals", "kms:KeySpec", "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT", True),
    ("StringEquals", "kms:KeySpec", "SYMMETRIC_DEFAULT", "symmetric_default", False),
    ("StringEquals", "kms:KeySpec", "SYMMETRIC_DEFAULT", MISSING, False),
    ("StringEquals", "kms:KeySpec", ["RSA_2048", "SYMMETRIC_DEFAULT"], "SYMMETRIC_DEFAULT", True),
    ("StringNotEquals", "kms:KeySpec", "RSA_2048", "SYMMETRIC_DEFAULT", True),
    ("StringNotEquals", "kms:KeySpec", "RSA_2048", "RSA_2048", False),
    ("StringNotEquals", "kms:KeySpec", "RSA_2048", MISSING, True),
    ("StringNotEquals", "kms:KeySpec", ["RSA_2048", "RSA_4096"], "RSA_4096", False),
    ("StringNotEquals", "kms:KeySpec", ["RSA_2048", "RSA_4096"], "HMAC_256", True),
    ("StringEqualsIgnoreCase", "kms:KeyUsage", "encrypt_decrypt", "ENCRYPT_DECRYPT", True),
    ("StringEqualsIgnoreCase", "kms:KeyUsage", "encrypt_decrypt", "SIGN_VERIFY", False),
    ("StringEqualsIgnoreCase", "kms:KeyUsage", "encrypt_decrypt", MISSING, False),
    ("StringNotEqualsIgnoreCase", "kms:KeyUsage", "encrypt_decrypt", "ENCRYPT_DECRYPT", False),
    ("StringNotEqualsIgnoreCase", "kms:KeyUsage", "encrypt_decrypt", "SIGN_VERIFY", True),
    ("StringNotEqualsIgnoreCase", "kms:KeyUsage", "encrypt_decrypt", MISSING, True),
    ("StringLike", "kms:RequestAlias", "alias/app-*", "alias/app-prod", True),
    ("StringLike", "kms:RequestAlias", "alias/app-*", "alias/other", False),
    ("StringLike", "kms:RequestAlias", "alias/app-*", "ALIAS/APP-PROD", False),
    ("StringLike", "kms:RequestAlias", "alias/a?c", "alias/abc", True),
    ("StringLike", "kms:RequestAlias", "alias/a?c", "alias/abbc", False),
    ("StringLike", "kms:RequestAlias", "*a*b*c*", "xxaxxbxxcxx", True),
    ("StringLike", "kms:RequestAlias", "*a*b*c*", "xxcxxbxxaxx", False),
    ("StringLike", "kms:RequestAlias", "alias/app-*", MISSING, False),
    ("StringNotLike", "kms:RequestAlias", "alias/app-*", "alias/app-prod", False),
    ("StringNotLike", "kms:RequestAlias", "alias/app-*", "alias/other", True),
    ("StringNotLike", "kms:RequestAlias", "alias/app-*", MISSING, True),
    # Numeric
    ("NumericEquals", "kms:RotationPeriodInDays", "365", 365, True),
    ("NumericEquals", "kms:RotationPeriodInDays", 365, 366, False),
    ("NumericEquals", "kms:RotationPeriodInDays", "365", "365", True),
    ("NumericEquals", "kms:RotationPeriodInDays", "365", MISSING, False),
    ("NumericEquals", "kms:RotationPeriodInDays", "365", "not a number", False),
    ("NumericNotEquals", "kms:RotationPeriodInDays", "365", 365, False),
    ("NumericNotEquals", "kms:RotationPeriodInDays", "365", 90, True),
    ("NumericNotEquals", "kms:RotationPeriodInDays", "365", MISSING, True),
    ("NumericLessThan", "kms:RotationPeriodInDays", "180", 90, True),
    ("NumericLessThan", "kms:RotationPeriodInDays", "180", 180, False),
    ("NumericLessThan", "kms:RotationPeriodInDays", "180", MISSING, False),
    ("NumericLessThan", "kms:RotationPeriodInDays", "1.5", 1.25, True),
    ("NumericLessThanEquals", "kms:RotationPeriodInDays", "180", 180, True),
    ("NumericLessThanEquals", "kms:RotationPeriodInDays", "180", 181, False),
    ("NumericGreaterThan", "kms:RotationPeriodInDays", "90", 91, True),
    ("NumericGreaterThan", "kms:RotationPeriodInDays", "90", 90, False),
    ("NumericGreaterThanEquals", "kms:RotationPeriodInDays", "90", 90, True),
    ("NumericGreaterThanEquals", "kms:RotationPeriodInDays", "90", 89, False),
    ("NumericGreaterThanEquals", "kms:RotationPeriodInDays", "90", MISSING, False),
    # Date (kms:ValidTo is a date key that is often absent)
    ("DateEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", T0, True),
    ("DateEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", T0 + timedelta(seconds=1), False),
    ("DateEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", MISSING, False),
    ("DateEquals", "kms:ValidTo", "1704067200", T0, True),
    ("DateEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", 1704067200, True),
    ("DateEquals", "kms:ValidTo", "2024-01-01T02:00:00+02:00", T0, True),
    ("DateEquals", "kms:ValidTo", "2024-01-01", T0, True),
    ("DateEquals", "kms:ValidTo", "2024-01", T0, True),
    ("DateEquals", "kms:ValidTo", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00Z", True),
    ("DateNotEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", T0, False),
    ("DateNotEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", T0 + timedelta(days=1), True),
    ("DateNotEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", MISSING, True),
    ("DateLessThan", "kms:ValidTo", "2030-01-01T00:00:00Z", T0, True),
    ("DateLessThan", "kms:ValidTo", "2024-01-01T00:00:00Z", T0, False),
    ("DateLessThan", "kms:ValidTo", "2030-01-01T00:00:00Z", MISSING, False),
    ("DateLessThanEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", T0, True),
    ("DateLessThanEquals", "kms:ValidTo", "2023-12-31T23:59:59Z", T0, False),
    ("DateGreaterThan", "kms:ValidTo", "2023-12-31T23:59:59Z", T0, True),
    ("DateGreaterThan", "kms:ValidTo", "2024-01-01T00:00:00Z", T0, False),
    ("DateGreaterThanEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", T0, True),
    ("DateGreaterThanEquals", "kms:ValidTo", "2024-01-01T00:00:01Z", T0, False),
    ("DateGreaterThanEquals", "kms:ValidTo", "2024-01-01T00:00:00Z", MISSING, False),
    # Bool
    ("Bool", "aws:SecureTransport", "true", True, True),
    ("Bool", "aws:SecureTransport", "true", False, False),
    ("Bool", "aws:SecureTransport", "true", MISSING, False),
    ("Bool", "aws:SecureTransport", True, True, True),
    ("Bool", "aws:SecureTransport", "false", False, True),
    ("Bool", "aws:SecureTransport", "True", "true", True),
    ("Bool", "kms:GrantIsForAWSResource", "true", "yes", False),
    # Binary
    ("BinaryEquals", "aws:ExampleBinary", "aGVsbG8=", b"hello", True),
    ("BinaryEquals", "aws:ExampleBinary", "aGVsbG8=", b"bye", False),
    ("BinaryEquals", "aws:ExampleBinary", "aGVsbG8=", "aGVsbG8=", True),
    ("BinaryEquals", "aws:ExampleBinary", "aGVsbG8=", MISSING, False),
    # ARN: each of the six parts separately, ArnEquals and ArnLike alike
    (
        "ArnEquals",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:role/App",
        "arn:aws:iam::111122223333:role/App",
        True,
    ),
    (
        "ArnEquals",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:role/App",
        "arn:aws:iam::111122223333:role/Other",
        False,
    ),
    (
        "ArnEquals",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:role/*",
        "arn:aws:iam::111122223333:role/App",
        True,
    ),
    ("ArnEquals", "kms:GranteePrincipal", "arn:aws:iam::111122223333:role/App", MISSING, False),
    (
        "ArnLike",
        "kms:GranteePrincipal",
        "arn:aws:iam::*:role/App",
        "arn:aws:iam::444455556666:role/App",
        True,
    ),
    (
        "ArnLike",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:role/Ap?",
        "arn:aws:iam::111122223333:role/App",
        True,
    ),
    (
        "ArnLike",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:*",
        "arn:aws:iam::111122223333:role/a:b",
        True,
    ),
    # A star in one part does not reach into the next part (a StringLike would match)
    (
        "ArnLike",
        "kms:GranteePrincipal",
        "arn:aws:iam:*:111122223333:role/*",
        "arn:aws:iam:x:999999999999:user/abc:111122223333:role/App",
        False,
    ),
    (
        "StringLike",
        "kms:GranteePrincipal",
        "arn:aws:iam:*:111122223333:role/*",
        "arn:aws:iam:x:999999999999:user/abc:111122223333:role/App",
        True,
    ),
    ("ArnLike", "kms:GranteePrincipal", "arn:aws:iam::111122223333:role/*", "not-an-arn", False),
    ("ArnLike", "kms:GranteePrincipal", "*", "arn:aws:iam::111122223333:role/App", True),
    (
        "ArnNotEquals",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:role/App",
        "arn:aws:iam::111122223333:role/App",
        False,
    ),
    (
        "ArnNotEquals",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:role/App",
        "arn:aws:iam::111122223333:role/Other",
        True,
    ),
    ("ArnNotEquals", "kms:GranteePrincipal", "arn:aws:iam::111122223333:role/App", MISSING, True),
    (
        "ArnNotLike",
        "kms:RetiringPrincipal",
        "arn:aws:iam::111122223333:role/*",
        "arn:aws:iam::111122223333:role/App",
        False,
    ),
    (
        "ArnNotLike",
        "kms:RetiringPrincipal",
        "arn:aws:iam::111122223333:role/*",
        "arn:aws:iam::111122223333:user/bob",
        True,
    ),
    ("ArnNotLike", "kms:RetiringPrincipal", "arn:aws:iam::111122223333:role/*", MISSING, True),
    # IP address
    ("IpAddress", "aws:SourceIp", "203.0.113.0/24", "203.0.113.7", True),
    ("IpAddress", "aws:SourceIp", "203.0.113.0/24", "198.51.100.1", False),
    ("IpAddress", "aws:SourceIp", "2001:db8::/32", "2001:db8::1", True),
    ("IpAddress", "aws:SourceIp", "203.0.113.0/24", MISSING, False),
    ("NotIpAddress", "aws:SourceIp", "203.0.113.0/24", "203.0.113.7", False),
    ("NotIpAddress", "aws:SourceIp", "203.0.113.0/24", "198.51.100.1", True),
    ("NotIpAddress", "aws:SourceIp", "203.0.113.0/24", MISSING, True),
]


@pytest.mark.parametrize(
    ("operator", "key", "policy_values", "request_value", "expected"), OPERATOR_CASES
)
def test_operator(operator, key, policy_values, request_value, expected):
    assert single(operator, key, policy_values, request_value) is expected


NULL_CASES = [
    ("true", MISSING, True),
    ("true", ("AppName",), False),
    ("false", MISSING, False),
    ("false", ("AppName",), True),
    (True, MISSING, True),
    (False, (), False),  # an empty multi-valued key counts as absent
    ("true", (), True),
]


@pytest.mark.parametrize(("policy_value", "request_value", "expected"), NULL_CASES)
def test_null(policy_value, request_value, expected):
    assert single("Null", "kms:EncryptionContextKeys", policy_value, request_value) is expected


def test_null_with_a_real_encryption_context():
    condition = {"Null": {"kms:EncryptionContextKeys": "false"}}
    assert holds(condition, encryption_context_values({"app": "x"}))
    assert not holds(condition, encryption_context_values({}))


# (operator, policy value, request value, expected): the same test with ...IfExists
IF_EXISTS_CASES = [
    ("StringEqualsIfExists", "kms:KeySpec", "SYMMETRIC_DEFAULT", MISSING, True),
    ("StringEqualsIfExists", "kms:KeySpec", "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT", True),
    ("StringEqualsIfExists", "kms:KeySpec", "SYMMETRIC_DEFAULT", "RSA_2048", False),
    ("StringNotEqualsIfExists", "kms:KeySpec", "RSA_2048", MISSING, True),
    ("StringNotEqualsIfExists", "kms:KeySpec", "RSA_2048", "RSA_2048", False),
    ("StringLikeIfExists", "kms:RequestAlias", "alias/app-*", MISSING, True),
    ("StringLikeIfExists", "kms:RequestAlias", "alias/app-*", "alias/x", False),
    ("NumericLessThanIfExists", "kms:RotationPeriodInDays", "100", MISSING, True),
    ("NumericLessThanIfExists", "kms:RotationPeriodInDays", "100", 200, False),
    ("DateLessThanIfExists", "kms:ValidTo", "2030-01-01T00:00:00Z", MISSING, True),
    ("DateLessThanIfExists", "kms:ValidTo", "2030-01-01T00:00:00Z", T0, True),
    ("BoolIfExists", "aws:SecureTransport", "true", MISSING, True),
    ("BoolIfExists", "aws:SecureTransport", "true", False, False),
    ("ArnLikeIfExists", "kms:GranteePrincipal", "arn:aws:iam::111122223333:*", MISSING, True),
    (
        "ArnNotLikeIfExists",
        "kms:GranteePrincipal",
        "arn:aws:iam::111122223333:*",
        "arn:aws:iam::111122223333:role/x",
        False,
    ),
    ("BinaryEqualsIfExists", "aws:ExampleBinary", "aGVsbG8=", MISSING, True),
    ("IpAddressIfExists", "aws:SourceIp", "10.0.0.0/8", MISSING, True),
    ("stringequalsifexists", "kms:KeySpec", "SYMMETRIC_DEFAULT", MISSING, True),
]


@pytest.mark.parametrize(
    ("operator", "key", "policy_values", "request_value", "expected"), IF_EXISTS_CASES
)
def test_if_exists(operator, key, policy_values, request_value, expected):
    assert single(operator, key, policy_values, request_value) is expected


# (operator, policy values, request set, expected) on a multi-valued key
SET_CASES = [
    ("ForAllValues:StringEquals", ["a", "b"], ("a",), True),
    ("ForAllValues:StringEquals", ["a", "b"], ("a", "b"), True),
    ("ForAllValues:StringEquals", ["a", "b"], ("a", "c"), False),
    ("ForAllValues:StringEquals", ["a", "b"], MISSING, True),
    ("ForAllValues:StringEquals", ["a", "b"], (), True),
    ("ForAnyValue:StringEquals", ["a", "b"], ("a", "c"), True),
    ("ForAnyValue:StringEquals", ["a", "b"], ("c",), False),
    ("ForAnyValue:StringEquals", ["a", "b"], MISSING, False),
    ("ForAnyValue:StringEquals", ["a", "b"], (), False),
    ("ForAllValues:StringNotEquals", ["a"], ("b", "c"), True),
    ("ForAllValues:StringNotEquals", ["a"], ("a", "b"), False),
    ("ForAllValues:StringNotEquals", ["a"], MISSING, True),
    ("ForAnyValue:StringNotEquals", ["a"], ("a", "b"), True),
    ("ForAnyValue:StringNotEquals", ["a"], ("a",), False),
    ("ForAnyValue:StringNotEquals", ["a"], MISSING, False),
    ("ForAllValues:StringLike", ["app-*"], ("app-1", "app-2"), True),
    ("ForAllValues:StringLike", ["app-*"], ("app-1", "db-1"), False),
    ("ForAnyValue:StringLike", ["app-*"], ("db-1", "app-2"), True),
    ("ForAnyValue:StringNotLike", ["app-*"], ("app-1",), False),
    ("ForAllValues:StringEqualsIgnoreCase", ["AppName"], ("appname", "APPNAME"), True),
    ("ForAnyValue:StringEqualsIfExists", ["a"], MISSING, True),
    ("ForAnyValue:StringEqualsIfExists", ["a"], ("b",), False),
    ("forallvalues:stringequals", ["a"], ("a",), True),
]


@pytest.mark.parametrize(("operator", "policy_values", "request_value", "expected"), SET_CASES)
def test_set_operators(operator, policy_values, request_value, expected):
    assert single(operator, "kms:EncryptionContextKeys", policy_values, request_value) is expected


def test_set_operator_on_a_single_valued_key_treats_it_as_a_one_element_set():
    assert single("ForAnyValue:StringEquals", "kms:KeySpec", ["A", "B"], "A")
    assert not single("ForAnyValue:StringEquals", "kms:KeySpec", ["A", "B"], "C")
    # An empty string is an empty data set (IAM: ForAllValues true, ForAnyValue false).
    assert single("ForAllValues:StringEquals", "kms:KeySpec", ["A"], "")
    assert not single("ForAnyValue:StringEquals", "kms:KeySpec", ["A"], "")


def test_grant_operations_limits_a_grant_to_listed_operations():
    condition = {"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}}
    assert holds(condition, {"kms:grantoperations": ("Decrypt",)})
    assert not holds(condition, {"kms:grantoperations": ("Decrypt", "RetireGrant")})


def test_several_values_are_ored_keys_and_operators_are_anded():
    condition = {
        "StringEquals": {
            "kms:EncryptionContext:dept": ["it", "hr"],
            "kms:EncryptionContext:project": "alpha",
        },
        "NumericLessThan": {"kms:RotationPeriodInDays": "400"},
    }
    both = {
        **encryption_context_values({"dept": "hr", "project": "alpha"}),
        "kms:rotationperiodindays": 365,
    }
    assert holds(condition, both)
    assert not holds(condition, {**both, "kms:rotationperiodindays": 500})
    assert not holds(
        condition, encryption_context_values({"dept": "hr"}) | {"kms:rotationperiodindays": 1}
    )
    other = encryption_context_values({"dept": "ops", "project": "alpha"})
    assert not holds(condition, other | {"kms:rotationperiodindays": 1})


def test_condition_key_names_are_case_insensitive_values_are_not():
    # The AWS KMS guide: the whole condition key, context key included, is not
    # case sensitive; the value's case sensitivity is the operator's.
    condition = {"StringEquals": {"KMS:ENCRYPTIONCONTEXT:AppName": "Billing"}}
    assert holds(condition, encryption_context_values({"appname": "Billing"}))
    assert holds(condition, encryption_context_values({"APPNAME": "Billing"}))
    assert not holds(condition, encryption_context_values({"AppName": "billing"}))
    ignore_case = {"StringEqualsIgnoreCase": {"kms:EncryptionContext:appname": "Billing"}}
    assert holds(ignore_case, encryption_context_values({"AppName": "billing"}))


def test_encryption_context_keys_keep_their_case():
    condition = {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "AppName"}}
    assert holds(condition, encryption_context_values({"AppName": "x"}))
    assert not holds(condition, encryption_context_values({"appname": "x"}))


def test_context_keys_that_differ_only_by_case_fail_closed():
    context = encryption_context_values({"Stage": "prod", "stage": "test"})
    # An Allow needs every reading to match; a Deny fires on any.
    assert not holds({"StringEquals": {"kms:EncryptionContext:stage": "test"}}, context)
    assert holds({"StringEquals": {"kms:EncryptionContext:stage": "prod"}}, context, effect="Deny")
    assert holds(
        {"StringNotEquals": {"kms:EncryptionContext:stage": "test"}}, context, effect="Deny"
    )
    assert holds({"StringLike": {"kms:EncryptionContext:stage": "*"}}, context)


# Every condition key the service puts in a request context:
# (key as AWS spells it, operator, policy value, a matching value, a non-matching value)
CONDITION_KEYS = [
    ("kms:EncryptionContext:AppName", "StringEquals", "Billing", "Billing", "Payroll"),
    ("kms:EncryptionContextKeys", "ForAnyValue:StringEquals", "AppName", ("AppName", "x"), ("x",)),
    ("kms:CallerAccount", "StringEquals", ACCOUNT, ACCOUNT, "444455556666"),
    (
        "kms:ViaService",
        "StringEquals",
        "ec2.us-east-1.amazonaws.com",
        "ec2.us-east-1.amazonaws.com",
        "s3.us-east-1.amazonaws.com",
    ),
    (
        "kms:GrantOperations",
        "ForAllValues:StringEquals",
        ["Encrypt", "Decrypt"],
        ("Encrypt",),
        ("Encrypt", "CreateGrant"),
    ),
    (
        "kms:GranteePrincipal",
        "ArnLike",
        "arn:aws:iam::111122223333:role/*",
        "arn:aws:iam::111122223333:role/App",
        "arn:aws:iam::111122223333:user/App",
    ),
    (
        "kms:RetiringPrincipal",
        "StringEquals",
        "arn:aws:iam::111122223333:role/Retire",
        "arn:aws:iam::111122223333:role/Retire",
        "arn:aws:iam::111122223333:role/Other",
    ),
    ("kms:GrantIsForAWSResource", "Bool", "true", True, False),
    ("kms:KeySpec", "StringEquals", "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT", "RSA_2048"),
    ("kms:KeyUsage", "StringEquals", "ENCRYPT_DECRYPT", "ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    ("kms:KeyOrigin", "StringEquals", "AWS_KMS", "AWS_KMS", "EXTERNAL"),
    (
        "kms:EncryptionAlgorithm",
        "StringEquals",
        "SYMMETRIC_DEFAULT",
        "SYMMETRIC_DEFAULT",
        "RSAES_OAEP_SHA_256",
    ),
    ("kms:RequestAlias", "StringLike", "alias/app-*", "alias/app-1", "alias/db-1"),
    (
        "kms:ResourceAliases",
        "ForAnyValue:StringLike",
        "alias/app-*",
        ("alias/app-1", "alias/other"),
        ("alias/other",),
    ),
    ("kms:RotationPeriodInDays", "NumericLessThanEquals", "365", 365, 366),
    ("kms:ScheduleKeyDeletionPendingWindowInDays", "NumericGreaterThanEquals", "30", 30, 7),
    ("aws:PrincipalArn", "ArnEquals", ALICE, ALICE, "arn:aws:iam::111122223333:user/bob"),
    ("aws:username", "StringEquals", "alice", "alice", "bob"),
    (
        "aws:CurrentTime",
        "DateLessThan",
        "2030-01-01T00:00:00Z",
        T0,
        datetime(2031, 1, 1, tzinfo=UTC),
    ),
    ("aws:SecureTransport", "Bool", "true", True, False),
]


@pytest.mark.parametrize(("key", "operator", "policy_value", "good", "bad"), CONDITION_KEYS)
def test_condition_key(key, operator, policy_value, good, bad):
    condition = {operator: {key: policy_value}}
    assert holds(condition, {key.lower(): good})
    assert not holds(condition, {key.lower(): bad})
    # Keys given in any case are stored lower-cased.
    assert holds(condition, {key.upper(): good})


def test_keys_filled_in_from_the_caller():
    bob = "arn:aws:iam::444455556666:user/team/bob"
    assert holds({"StringEquals": {"kms:CallerAccount": "444455556666"}}, principal=bob)
    assert holds({"ArnEquals": {"aws:PrincipalArn": bob}}, principal=bob)
    assert holds({"StringEquals": {"aws:username": "bob"}}, principal=bob)
    assert holds({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}})
    assert holds({"NumericGreaterThan": {"aws:EpochTime": "1577836800"}})
    role_session = "arn:aws:sts::111122223333:assumed-role/App/session-1"
    assert holds({"Null": {"aws:username": "true"}}, principal=role_session)


def test_deprecated_kms_key_names_are_the_new_keys():
    assert holds(
        {"StringEquals": {"kms:CustomerMasterKeySpec": "RSA_2048"}}, {"kms:keyspec": "RSA_2048"}
    )
    assert holds(
        {"StringEquals": {"kms:CustomerMasterKeyUsage": "SIGN_VERIFY"}},
        {"kms:keyusage": "SIGN_VERIFY"},
    )


def test_json_numbers_and_booleans_in_string_conditions_compare_as_their_text():
    assert holds(
        {"StringEquals": {"kms:EncryptionContext:n": 10103.0}},
        encryption_context_values({"n": "10103.0"}),
    )
    assert holds(
        {"StringEquals": {"kms:EncryptionContext:flag": True}},
        encryption_context_values({"flag": "true"}),
    )


SAME_USER = {"StringEquals": {"kms:EncryptionContext:user": "${aws:username}"}}


class TestPolicyVariables:
    def test_substituted_from_the_request(self):
        assert holds(SAME_USER, encryption_context_values({"user": "alice"}))
        assert not holds(SAME_USER, encryption_context_values({"user": "bob"}))

    def test_unresolved_variable_fails_closed(self):
        session = "arn:aws:sts::111122223333:assumed-role/App/s1"
        context = encryption_context_values({"user": "alice"})
        assert not holds(SAME_USER, context, principal=session)
        deny_others = {"StringNotEquals": {"kms:EncryptionContext:user": "${aws:username}"}}
        assert holds(deny_others, context, principal=session, effect="Deny")
        assert holds(SAME_USER, context, principal=session, effect="Deny")

    def test_default_value(self):
        condition = {"StringEquals": {"kms:EncryptionContext:user": "${aws:username, 'anonymous'}"}}
        session = "arn:aws:sts::111122223333:assumed-role/App/s1"
        assert holds(condition, encryption_context_values({"user": "anonymous"}), principal=session)
        assert holds(condition, encryption_context_values({"user": "alice"}))

    def test_substituted_text_is_literal_in_like_patterns(self):
        condition = {"StringLike": {"kms:RequestAlias": "alias/${aws:username}-*"}}
        assert holds(condition, {"kms:requestalias": "alias/alice-1"})
        assert not holds(condition, {"kms:requestalias": "alias/bob-1"})
        star_user = "arn:aws:iam::111122223333:user/a*"
        assert not holds(condition, {"kms:requestalias": "alias/abc-1"}, principal=star_user)

    def test_escapes(self):
        condition = {"StringLike": {"kms:RequestAlias": "alias/x${*}${?}${$}"}}
        assert holds(condition, {"kms:requestalias": "alias/x*?$"})
        assert not holds(condition, {"kms:requestalias": "alias/xab$"})

    def test_arn_operators_take_variables(self):
        condition = {"ArnEquals": {"kms:GranteePrincipal": "${aws:PrincipalArn}"}}
        assert holds(condition, {"kms:granteeprincipal": ALICE})
        assert not holds(condition, {"kms:granteeprincipal": "arn:aws:iam::111122223333:user/bob"})

    def test_version_2008_treats_variables_as_text(self):
        assert holds(
            SAME_USER,
            encryption_context_values({"user": "${aws:username}"}),
            version="2008-10-17",
        )
        assert not holds(
            SAME_USER, encryption_context_values({"user": "alice"}), version="2008-10-17"
        )

    def test_invalid_variable_is_malformed(self):
        with pytest.raises(
            MalformedPolicyDocumentException, match=r"invalid policy variable '\$\{\}'"
        ):
            policy_with({"StringEquals": {"kms:EncryptionContext:user": "${}"}})


# Condition errors found at parse time: (condition, words the message must contain)
BAD_CONDITIONS = [
    ({"StringEqualz": {"kms:KeySpec": "x"}}, "unknown condition operator 'StringEqualz'"),
    ({"NullIfExists": {"kms:KeySpec": "true"}}, "unknown condition operator 'NullIfExists'"),
    (
        {"ForAnyValue:Null": {"kms:KeySpec": "true"}},
        "unknown condition operator 'ForAnyValue:Null'",
    ),
    ({"ForSomeValues:StringEquals": {"kms:KeySpec": "x"}}, "unknown condition operator"),
    (
        {"ForAllValues:StringEquals": {"kms:EncryptionContext:app": "x"}},
        "OverlyPermissiveCondition",
    ),
    ({"NumericLessThan": {"kms:RotationPeriodInDays": "ninety"}}, "'ninety' is not a number"),
    ({"NumericLessThan": {"kms:RotationPeriodInDays": "NaN"}}, "'NaN' is not a number"),
    ({"DateLessThan": {"aws:CurrentTime": "yesterday"}}, "'yesterday' is not an ISO 8601 date"),
    ({"DateLessThan": {"aws:CurrentTime": "99999999999999999999"}}, "not an ISO 8601 date"),
    ({"Bool": {"aws:SecureTransport": "yes"}}, "'yes' is not true or false"),
    ({"Null": {"kms:KeySpec": "maybe"}}, "'maybe' is not true or false"),
    ({"BinaryEquals": {"aws:X": "not base64!"}}, "is not base64"),
    ({"IpAddress": {"aws:SourceIp": "300.1.1.1"}}, "is not an IP address"),
    ({"ArnLike": {"kms:GranteePrincipal": "role/App"}}, "'role/App' is not an ARN pattern"),
    ({"StringEquals": {"kms:KeySpec": []}}, "has no values"),
    ({"StringEquals": {"kms:KeySpec": None}}, "values must be strings, numbers or booleans"),
    ({"StringEquals": {"kms:KeySpec": {"a": "b"}}}, "values must be strings, numbers or booleans"),
    (
        {"StringEquals": {"kms:KeySpec": "a", "KMS:KEYSPEC": "b"}},
        "names the key 'KMS:KEYSPEC' twice",
    ),
    ({"StringEquals": {"kms:KeySpek": "a"}}, "unknown AWS KMS condition key 'kms:KeySpek'"),
    ({"StringEquals": {"kms:EncryptionContext:": "a"}}, "names no context key"),
    ({"StringEquals": {"nocolon": "a"}}, "invalid condition key 'nocolon'"),
    ({"StringEquals": "kms:KeySpec"}, "must be an object of condition keys to values"),
    ({"StringEquals": {}}, "must be an object of condition keys to values"),
]


@pytest.mark.parametrize(("condition", "message"), BAD_CONDITIONS)
def test_malformed_condition(condition, message):
    with pytest.raises(MalformedPolicyDocumentException) as caught:
        policy_with(condition)
    assert message in caught.value.message
    assert caught.value.message.startswith("Statement 1: ")


def test_condition_must_be_an_object():
    with pytest.raises(
        MalformedPolicyDocumentException, match="Statement 1: Condition must be an object"
    ):
        policy_with(["StringEquals"])  # type: ignore[arg-type]
