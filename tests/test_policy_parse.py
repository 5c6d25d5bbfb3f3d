"""Reading policies: the grammar, one test per kind of malformation, and fuzzing.

A policy either parses or raises MalformedPolicyDocumentException whose message
names the problem; nothing else ever escapes, and nothing is skipped.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmscore.errors import MalformedPolicyDocumentException
from kmscore.policy import (
    MAX_POLICY_BYTES,
    Effect,
    PolicyKind,
    RequestContext,
    default_key_policy,
    encryption_context_values,
    parse_policy,
)

ACCOUNT = "111122223333"
KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROOT = "arn:aws:iam::111122223333:root"
GOOD_STATEMENT: dict[str, Any] = {
    "Sid": "Use",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
    "Action": ["kms:Encrypt", "kms:Decrypt"],
    "Resource": "*",
}


def doc(*statements: dict[str, Any], **top: Any) -> str:
    body: dict[str, Any] = {"Version": "2012-10-17", **top}
    if "Statement" not in top:
        body["Statement"] = list(statements)
    return json.dumps(body)


def statement(**changes: Any) -> dict[str, Any]:
    out = {**GOOD_STATEMENT, **changes}
    return {k: v for k, v in out.items() if v is not None}


def malformed(text: Any, kind: PolicyKind = PolicyKind.KEY) -> str:
    with pytest.raises(MalformedPolicyDocumentException) as caught:
        parse_policy(text, kind)
    return caught.value.message


class TestValidDocuments:
    def test_the_default_key_policy(self):
        policy = parse_policy(default_key_policy(ACCOUNT))
        assert policy.version == "2012-10-17"
        assert policy.id == "key-default-1"
        assert [s.sid for s in policy.statements] == ["Enable IAM User Permissions"]
        assert json.loads(default_key_policy(ACCOUNT))["Statement"][0]["Principal"] == {"AWS": ROOT}

    def test_default_key_policy_needs_an_account_id(self):
        with pytest.raises(ValueError, match="12-digit"):
            default_key_policy("1234")

    def test_a_single_statement_object(self):
        policy = parse_policy(doc(Statement=GOOD_STATEMENT))
        assert len(policy.statements) == 1

    def test_version_may_be_absent_or_2008(self):
        assert parse_policy(json.dumps({"Statement": GOOD_STATEMENT})).version == "2008-10-17"
        assert parse_policy(doc(GOOD_STATEMENT, Version="2008-10-17")).version == "2008-10-17"

    def test_string_or_list_everywhere(self):
        parse_policy(
            doc(statement(Action="kms:*", Resource=["*"], Principal={"AWS": [ROOT, ACCOUNT]}))
        )

    @pytest.mark.parametrize(
        "principal",
        [
            "*",
            {"AWS": "*"},
            {"AWS": ROOT},
            {"AWS": ACCOUNT},
            {"AWS": "arn:aws:iam::111122223333:role/path/App"},
            {"AWS": "arn:aws:sts::111122223333:assumed-role/App/session"},
            {"Service": "ec2.amazonaws.com"},
            {"AWS": ROOT, "Service": ["logs.us-east-1.amazonaws.com"]},
        ],
    )
    def test_principal_forms(self, principal):
        parse_policy(doc(statement(Principal=principal)))

    def test_not_elements(self):
        parse_policy(
            doc(
                statement(
                    Principal=None,
                    NotPrincipal={"AWS": ROOT},
                    Action=None,
                    NotAction="kms:Put*",
                    Resource=None,
                    NotResource="arn:aws:kms:*:111122223333:key/other",
                )
            )
        )

    def test_sid_may_hold_spaces_in_a_key_policy(self):
        assert (
            parse_policy(doc(statement(Sid="Allow use of the key"))).statements[0].sid
            == "Allow use of the key"
        )

    def test_identity_policy_has_no_principal(self):
        policy = parse_policy(doc(statement(Principal=None)), PolicyKind.IDENTITY)
        assert policy.kind is PolicyKind.IDENTITY

    def test_exactly_the_size_limit_is_accepted(self):
        text = doc(GOOD_STATEMENT)
        text = text[:-1] + " " * (MAX_POLICY_BYTES - len(text)) + "}"
        assert len(text.encode()) == MAX_POLICY_BYTES
        parse_policy(text)

    def test_latin1_is_allowed(self):
        parse_policy(doc(statement(Sid="Schlüssel für Zürich")))


# One test per kind of malformation: (policy text, words the message must contain).
MALFORMED = [
    ("", "the policy is empty"),
    ("   ", "the policy is empty"),
    ("{", "not valid JSON"),
    ('{"Statement": []} trailing', "not valid JSON"),
    ("[]", "the policy must be a JSON object"),
    ('"just a string"', "the policy must be a JSON object"),
    (
        '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}',
        "duplicate JSON key 'Version'",
    ),
    ('{"Statement": [{"Effect": NaN}]}', "NaN is not valid JSON"),
    ('{"Statement": [{"Effect": Infinity}]}', "Infinity is not valid JSON"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ('{"Sid": "\u4e2d"}', "U+4E2D at offset 9"),
    ('{"Sid": "\x00"}', "U+0000"),
    (doc(GOOD_STATEMENT, Extra=1), "unknown top-level field 'Extra'"),
    (doc(GOOD_STATEMENT, Version="2012-10-18"), "unsupported Version '2012-10-18'"),
    (doc(GOOD_STATEMENT, Version=2012), "unsupported Version 2012"),
    (doc(GOOD_STATEMENT, Id=["x"]), "Id must be a string"),
    (json.dumps({"Version": "2012-10-17"}), "missing Statement"),
    (doc(Statement=[]), "Statement must be an object or a non-empty list"),
    (doc(Statement="Allow"), "Statement must be an object or a non-empty list"),
    (doc(GOOD_STATEMENT, "Allow"), "Statement 2: must be an object"),
    (doc(statement(effect="Allow")), "Statement 1 (Sid 'Use'): unknown field 'effect'"),
    (doc(statement(Effect=None)), "Statement 1 (Sid 'Use'): missing Effect"),
    (
        doc(GOOD_STATEMENT, statement(Sid="X", Effect="allow")),
        "Statement 2 (Sid 'X'): unknown Effect 'allow'",
    ),
    (doc(statement(Sid=7)), "Statement 1: Sid must be a string"),
    (doc(statement(Action=None)), "missing Action (or NotAction)"),
    (doc(statement(NotAction="kms:Encrypt")), "Action and NotAction cannot both be present"),
    (doc(statement(Action=[])), "Action must not be an empty list"),
    (doc(statement(Action=["kms:Encrypt", 5])), "Action must be a string or a list of strings"),
    (doc(statement(Action="Encrypt")), "Action 'Encrypt' is not of the form service:action"),
    (doc(statement(Action="kms:Encrypt Decrypt")), "is not of the form service:action"),
    (doc(statement(Resource=None)), "missing Resource (or NotResource)"),
    (doc(statement(NotResource="*")), "Resource and NotResource cannot both be present"),
    (doc(statement(Resource="key/1234")), "Resource 'key/1234' is neither \"*\" nor an ARN"),
    (doc(statement(Resource="arn:aws:kms:*")), 'is neither "*" nor an ARN'),
    (
        doc(statement(Resource="arn:aws:kms:us-east-1:111122223333:key/${}")),
        "invalid policy variable",
    ),
    (doc(statement(Principal=None)), "missing Principal (or NotPrincipal)"),
    (doc(statement(NotPrincipal="*")), "Principal and NotPrincipal cannot both be present"),
    (doc(statement(Principal=ROOT)), 'Principal must be "*" or an object'),
    (doc(statement(Principal={})), 'Principal must be "*" or an object'),
    (doc(statement(Principal={"AWS": []})), "Principal AWS must not be an empty list"),
    (
        doc(statement(Principal={"Federated": "cognito-identity.amazonaws.com"})),
        "unsupported principal type 'Federated'",
    ),
    (doc(statement(Principal={"AWS": "alice"})), "invalid AWS principal 'alice'"),
    (doc(statement(Principal={"AWS": "arn:aws:iam::1111:root"})), "invalid AWS principal"),
    (
        doc(statement(Principal={"AWS": "arn:aws:iam::111122223333:user/*"})),
        "wildcards are not allowed in principal",
    ),
    (
        doc(statement(Principal={"AWS": "arn:aws:iam::*:root"})),
        "wildcards are not allowed in principal",
    ),
    (doc(statement(Principal={"Service": "bad service"})), "invalid service principal"),
    (doc(statement(Condition="StringEquals")), "Condition must be an object"),
    (doc(GOOD_STATEMENT, Id=None), "Id must be a string"),
    (doc({**GOOD_STATEMENT, "Sid": None}), "Statement 1: Sid must be a string"),
    (
        doc({**GOOD_STATEMENT, "Condition": None}),
        "Statement 1 (Sid 'Use'): Condition must be an object",
    ),
    (doc({**GOOD_STATEMENT, "Effect": None}), "Statement 1 (Sid 'Use'): missing Effect"),
    (doc({**GOOD_STATEMENT, "Action": None}), "Action must be a string or a list of strings"),
    (doc({**GOOD_STATEMENT, "Principal": None}), 'Principal must be "*" or an object'),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed(text, message):
    assert message in malformed(text)


def test_malformation_messages_name_the_statement_and_sid():
    text = doc(GOOD_STATEMENT, statement(Sid="X", Effect="allow"))
    assert malformed(text) == "Statement 2 (Sid 'X'): unknown Effect 'allow'"


def test_too_large():
    text = doc(statement(Sid="x" * MAX_POLICY_BYTES))
    assert f"the limit is {MAX_POLICY_BYTES}" in malformed(text)


def test_size_counts_utf8_bytes():
    text = doc(GOOD_STATEMENT)
    text = text[:-1] + "é" * ((MAX_POLICY_BYTES - len(text)) // 2 + 1) + "}"
    assert len(text) <= MAX_POLICY_BYTES < len(text.encode())
    assert "bytes; the limit" in malformed(text)


def test_not_a_string():
    assert "must be a JSON string" in malformed(b'{"Statement": []}')


def test_principal_is_not_allowed_in_an_identity_policy():
    message = malformed(doc(GOOD_STATEMENT), PolicyKind.IDENTITY)
    assert (
        message == "Statement 1 (Sid 'Use'): Principal is not allowed in an identity-based policy"
    )
    not_principal = doc(statement(Principal=None, NotPrincipal={"AWS": ROOT}))
    assert "NotPrincipal is not allowed" in malformed(not_principal, PolicyKind.IDENTITY)


# --- fuzzing ---------------------------------------------------------------

CTX = RequestContext(
    "kms:Decrypt",
    "arn:aws:iam::111122223333:user/alice",
    ACCOUNT,
    KEY_ARN,
    {**encryption_context_values({"AppName": "x"}), "kms:grantoperations": ("Decrypt",)},
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def _check(text: str, kind: PolicyKind = PolicyKind.KEY) -> None:
    try:
        policy = parse_policy(text, kind)
    except MalformedPolicyDocumentException as error:
        assert error.message
        return
    # Whatever parses also evaluates without error.
    assert policy.evaluate(CTX) in Effect
    assert isinstance(policy.delegates_to_iam(CTX), bool)


@given(json_values)
def test_fuzz_arbitrary_json(value):
    _check(json.dumps(value))


@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text):
    _check(text)


# Policy-shaped documents with plausible and implausible parts, so the fuzzer
# reaches statement, principal and condition validation.
leaf = (
    st.sampled_from(
        [
            "*",
            "kms:*",
            "kms:Encrypt",
            "kms:Re?ncrypt*",
            "Allow",
            "Deny",
            ROOT,
            ACCOUNT,
            KEY_ARN,
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:kms:*:111122223333:key/*",
            "true",
            "false",
            "2024-01-01T00:00:00Z",
            "365",
            "x",
            "",
            "${aws:username}",
            "${",
            "aGVsbG8=",
            "10.0.0.0/8",
        ]
    )
    | json_scalars
)
leaves = leaf | st.lists(leaf, max_size=3)
operators = st.sampled_from(
    [
        "StringEquals",
        "StringNotLike",
        "ForAnyValue:StringEquals",
        "ForAllValues:StringLike",
        "NumericLessThan",
        "DateGreaterThan",
        "Bool",
        "Null",
        "ArnLike",
        "BinaryEquals",
        "IpAddress",
        "StringEqualsIfExists",
        "NullIfExists",
        "Bogus",
    ]
) | st.text(max_size=10)
condition_keys = st.sampled_from(
    [
        "kms:EncryptionContext:AppName",
        "kms:EncryptionContextKeys",
        "kms:GrantOperations",
        "aws:username",
        "aws:CurrentTime",
        "kms:KeySpec",
        "kms:Bogus",
        "nocolon",
    ]
) | st.text(max_size=10)
conditions = st.dictionaries(
    operators, st.dictionaries(condition_keys, leaves, max_size=3) | leaf, max_size=3
)
principals = leaf | st.dictionaries(
    st.sampled_from(["AWS", "Service", "Federated"]), leaves, max_size=2
)
fields = {
    "Sid": leaf,
    "Effect": leaf,
    "Principal": principals,
    "NotPrincipal": principals,
    "Action": leaves,
    "NotAction": leaves,
    "Resource": leaves,
    "NotResource": leaves,
    "Condition": conditions | leaf,
    "Bogus": leaf,
}
statements = st.fixed_dictionaries(
    {}, optional={name: strategy for name, strategy in fields.items()}
)
documents = st.fixed_dictionaries(
    {"Statement": st.lists(statements, max_size=3) | statements},
    optional={"Version": st.sampled_from(["2012-10-17", "2008-10-17", "2012"]), "Id": leaf},
)


@given(documents, st.sampled_from(PolicyKind))
def test_fuzz_policy_shaped_documents(document, kind):
    _check(json.dumps(document), kind)


# Mostly-valid statements, so the fuzzer gets past the skeleton and into
# condition compilation and evaluation.
valid_operators = st.sampled_from(
    [
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "NumericEquals",
        "NumericLessThan",
        "DateEquals",
        "DateGreaterThan",
        "Bool",
        "Null",
        "ArnEquals",
        "ArnNotLike",
        "BinaryEquals",
        "IpAddress",
        "NotIpAddress",
        "ForAnyValue:StringLike",
        "ForAllValues:StringNotEquals",
        "StringEqualsIfExists",
        "ForAnyValue:NumericGreaterThanIfExists",
    ]
)
valid_keys = st.sampled_from(
    [
        "kms:EncryptionContext:AppName",
        "kms:EncryptionContextKeys",
        "kms:GrantOperations",
        "kms:CallerAccount",
        "aws:username",
        "aws:CurrentTime",
        "kms:RotationPeriodInDays",
        "aws:SecureTransport",
        "kms:GranteePrincipal",
        "aws:SourceIp",
        "aws:PrincipalArn",
    ]
)
plausible = st.sampled_from(
    [
        "*",
        "x",
        "AppName",
        "true",
        "false",
        "365",
        "1.5",
        "2024-01-01T00:00:00Z",
        "1704067200",
        "aGVsbG8=",
        "10.0.0.0/8",
        ACCOUNT,
        ROOT,
        "arn:aws:iam::*:role/*",
        "${aws:username}",
        "a${*}b",
        "alias/*",
        "Decrypt",
    ]
)
plausible_values = plausible | st.lists(plausible, min_size=1, max_size=3) | st.booleans()
valid_conditions = st.dictionaries(
    valid_operators,
    st.dictionaries(valid_keys, plausible_values, min_size=1, max_size=3),
    max_size=3,
)
valid_statements = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Principal": st.sampled_from(
            ["*", {"AWS": ROOT}, {"AWS": [ACCOUNT, "arn:aws:iam::111122223333:user/alice"]}]
        ),
        "Action": st.sampled_from(["kms:*", "kms:Decrypt", ["kms:Encrypt", "kms:Re*"]]),
        "Resource": st.sampled_from(["*", KEY_ARN, "arn:aws:kms:*:111122223333:key/*"]),
    },
    optional={"Condition": valid_conditions, "Sid": st.text(alphabet="abc ", max_size=5)},
)


@given(st.lists(valid_statements, min_size=1, max_size=3))
def test_fuzz_mostly_valid_statements(statement_list):
    _check(json.dumps({"Version": "2012-10-17", "Statement": statement_list}))
