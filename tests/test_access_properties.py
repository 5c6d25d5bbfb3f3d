"""Monotonicity of access decisions, over generated policies, grants and requests.

AWS's evaluation logic makes a Deny statement only ever take access away, an
Allow statement only ever give it, and a grant only ever allow its own grantee.
These properties check that of :func:`kmscore.policy.authorize` with the grant
decision of :func:`kmscore.model.grant.grant_allows`, on a small alphabet of
actions, principals and conditions so that statements often apply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kmscore.errors import AccessDeniedException
from kmscore.model.grant import Grant, grant_allows
from kmscore.policy import (
    PolicyKind,
    RequestContext,
    authorize,
    encryption_context_values,
    parse_policy,
)

ACCOUNT = "111122223333"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0987dcba-09fe-87dc-65ba-ab0987654321"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
DAVE = "arn:aws:iam::444455556666:user/dave"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s1"
CALLERS = (ALICE, BOB, ROOT, DAVE, SESSION)
NAMED = (ALICE, BOB, ROOT, "arn:aws:iam::444455556666:root", f"arn:aws:iam::{ACCOUNT}:role/app")
OPERATIONS = ("Encrypt", "Decrypt", "DescribeKey", "GenerateDataKey")
ACTION_PATTERNS = ("kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey",
                   "kms:*", "kms:Gen*", "*")  # fmt: skip
CONDITIONS: tuple[dict[str, Any] | None, ...] = (
    None,
    {"StringEquals": {"kms:EncryptionContext:app": "a"}},
    {"StringNotEquals": {"kms:EncryptionContext:app": ["a", "b"]}},
    {"StringEqualsIfExists": {"kms:EncryptionContext:app": "b"}},
    {"StringLike": {"kms:EncryptionContext:app": "*"}},
    {"Bool": {"aws:SecureTransport": "true"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"Null": {"kms:EncryptionContextKeys": "true"}},
    {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["env"]}},
    {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["app"]}},
    {"StringEquals": {"kms:CallerAccount": ACCOUNT}},
    {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/*"}},
)
CONTEXTS: tuple[dict[str, str], ...] = (
    {},
    {"app": "a"},
    {"app": "b"},
    {"app": "a", "env": "x"},
    {"APP": "a"},
)
CONSTRAINTS = (
    None,
    {"EncryptionContextSubset": {"app": "a"}},
    {"EncryptionContextEquals": {"app": "a"}},
)


def statement(
    effect: str, actions: list[str], condition: dict[str, Any] | None, **fields: Any
) -> dict[str, Any]:
    out = {"Effect": effect, "Action": actions, **fields}
    if condition is not None:
        out["Condition"] = condition
    return out


def statements(effect: st.SearchStrategy[str], key_policy: bool) -> st.SearchStrategy[Any]:
    extra: dict[str, st.SearchStrategy[Any]]
    if key_policy:
        principal = st.one_of(
            st.just("*"),
            st.builds(
                lambda arns: {"AWS": arns}, st.lists(st.sampled_from(NAMED), min_size=1, max_size=2)
            ),
        )
        extra = {"Principal": principal, "Resource": st.just("*")}
    else:
        extra = {"Resource": st.sampled_from(("*", KEY, OTHER_KEY))}
    return st.builds(
        statement,
        effect,
        st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=2, unique=True),
        st.sampled_from(CONDITIONS),
        **extra,
    )


EFFECT = st.sampled_from(("Allow", "Deny"))
KEY_STATEMENTS = st.lists(statements(EFFECT, True), min_size=1, max_size=4)
IDENTITY_POLICIES = st.lists(
    st.lists(statements(EFFECT, False), min_size=1, max_size=3), max_size=2
)
GRANTS = st.lists(
    st.tuples(
        st.sampled_from(CALLERS),
        st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=3, unique=True),
        st.sampled_from(CONSTRAINTS),
    ),
    max_size=2,
)


@dataclass(frozen=True)
class Request:
    principal: str
    operation: str
    context: dict[str, str]
    secure: bool
    source_ip: str | None


REQUESTS = st.builds(
    Request,
    st.sampled_from(CALLERS),
    st.sampled_from(OPERATIONS),
    st.sampled_from(CONTEXTS),
    st.booleans(),
    st.sampled_from((None, "10.1.2.3", "192.168.0.1")),
)


def doc(stmts: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": stmts})


def decide(
    key_statements: list[dict[str, Any]],
    identity: list[list[dict[str, Any]]],
    grants: list[tuple[str, list[str], Any]],
    request: Request,
) -> str | None:
    """None when allowed, else the denial message."""
    values: dict[str, Any] = {"aws:SecureTransport": request.secure}
    if request.source_ip is not None:
        values["aws:SourceIp"] = request.source_ip
    values.update(encryption_context_values(request.context))
    ctx = RequestContext(
        action=f"kms:{request.operation}",
        principal_arn=request.principal,
        principal_account=request.principal.split(":")[4],
        resource_arn=KEY,
        condition_values=values,
    )
    built = [
        Grant(str(i), "k", None, grantee, None, ACCOUNT, tuple(ops), cons, "", datetime.now(UTC))
        for i, (grantee, ops, cons) in enumerate(grants)
    ]
    granted = grant_allows(built, request.principal, request.operation, request.context)
    key_policy = parse_policy(doc(key_statements))
    identity_docs = [parse_policy(doc(p), kind=PolicyKind.IDENTITY) for p in identity if p]
    try:
        authorize(key_policy, identity_docs, granted, ctx)
    except AccessDeniedException as exc:
        return exc.message
    return None


SETTINGS = settings(max_examples=300, deadline=None)
Statement = dict[str, Any]
KeyStatements = list[Statement]
Identity = list[list[Statement]]
Grants = list[tuple[str, list[str], Any]]


@SETTINGS
@given(KEY_STATEMENTS, IDENTITY_POLICIES, GRANTS, REQUESTS, statements(st.just("Deny"), True))
def test_key_policy_deny_never_allows(
    key: KeyStatements, identity: Identity, grants: Grants, request: Request, added: Statement
) -> None:
    before = decide(key, identity, grants, request)
    after = decide([*key, added], identity, grants, request)
    assert before is None or after is not None


@SETTINGS
@given(
    KEY_STATEMENTS,
    IDENTITY_POLICIES,
    GRANTS,
    REQUESTS,
    statements(st.just("Deny"), False),
    st.integers(0, 2),
)
def test_identity_deny_never_allows(
    key: KeyStatements,
    identity: Identity,
    grants: Grants,
    request: Request,
    added: Statement,
    where: int,
) -> None:
    before = decide(key, identity, grants, request)
    changed = [list(p) for p in identity]
    if where < len(changed):
        changed[where].append(added)
    else:
        changed.append([added])
    after = decide(key, changed, grants, request)
    assert before is None or after is not None


@SETTINGS
@given(KEY_STATEMENTS, IDENTITY_POLICIES, GRANTS, REQUESTS, st.booleans())
def test_matching_deny_always_denies(
    key: KeyStatements, identity: Identity, grants: Grants, request: Request, in_identity: bool
) -> None:
    """A Deny statement that matches the request denies it, whatever allows it."""
    action = [f"kms:{request.operation}"]
    resource_deny = "with an explicit deny in a resource-based policy"
    before = decide(key, identity, grants, request)
    if in_identity:
        identity = [*identity, [statement("Deny", action, None, Resource="*")]]
        # The key policy is looked at first: its own deny keeps its reason.
        keeps = before is not None and before.endswith(resource_deny)
        reason = resource_deny if keeps else "with an explicit deny in an identity-based policy"
    else:
        key = [*key, statement("Deny", action, None, Principal="*", Resource="*")]
        reason = resource_deny
    denial = decide(key, identity, grants, request)
    assert denial is not None and denial.endswith(reason)


@SETTINGS
@given(KEY_STATEMENTS, IDENTITY_POLICIES, GRANTS, REQUESTS, st.data())
def test_removing_an_allow_never_allows(
    key: KeyStatements, identity: Identity, grants: Grants, request: Request, data: st.DataObject
) -> None:
    before = decide(key, identity, grants, request)
    places: list[tuple[int | None, int]] = [
        (None, i) for i, s in enumerate(key) if s["Effect"] == "Allow"
    ]
    places += [
        (p, i)
        for p, pol in enumerate(identity)
        for i, s in enumerate(pol)
        if s["Effect"] == "Allow"
    ]
    if not places:
        return
    where, index = data.draw(st.sampled_from(places))
    if where is None:
        key = [s for i, s in enumerate(key) if i != index]
        if not key:
            key = [statement("Deny", ["kms:CreateAlias"], None, Principal="*", Resource="*")]
    else:
        identity = [
            [s for i, s in enumerate(pol) if not (p == where and i == index)]
            for p, pol in enumerate(identity)
        ]
    after = decide(key, identity, grants, request)
    assert not (before is not None and after is None)


@SETTINGS
@given(KEY_STATEMENTS, IDENTITY_POLICIES, GRANTS, REQUESTS, GRANTS)
def test_adding_a_grant_never_denies(
    key: KeyStatements, identity: Identity, grants: Grants, request: Request, added: Grants
) -> None:
    before = decide(key, identity, grants, request)
    after = decide(key, identity, [*grants, *added], request)
    assert before is not None or after is None


@SETTINGS
@given(KEY_STATEMENTS, IDENTITY_POLICIES, GRANTS, REQUESTS, GRANTS)
def test_a_grant_for_another_grantee_changes_nothing(
    key: KeyStatements, identity: Identity, grants: Grants, request: Request, added: Grants
) -> None:
    others = [(g, ops, c) for g, ops, c in added if g != request.principal]
    # Another grantee: even the principal's role or account root is someone else.
    assert decide(key, identity, [*grants, *others], request) == decide(
        key, identity, grants, request
    )


@SETTINGS
@given(KEY_STATEMENTS, IDENTITY_POLICIES, REQUESTS)
def test_an_unconstrained_grant_for_the_caller_allows_unless_denied(
    key: KeyStatements, identity: Identity, request: Request
) -> None:
    """A grant is enough for its grantee and operation, unless a policy denies explicitly."""
    without = decide(key, identity, [], request)
    with_grant = decide(key, identity, [(request.principal, [request.operation], None)], request)
    if without is None or "explicit deny" in without:
        assert with_grant == without
    else:
        assert with_grant is None
