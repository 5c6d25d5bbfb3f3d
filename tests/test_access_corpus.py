"""The access decision corpus: cases written from the AWS documentation.

``tests/data/access_corpus.json`` holds one case per decision: a key policy,
identity policies, grants, a request and the decision AWS documents (with the
page it follows in ``cite``). Every case runs through the policy evaluator
(:func:`kmscore.policy.authorize` with the grant decision from
:mod:`kmscore.model.grant`); the cases marked ``"service": true`` also run end to
end through LocalKMS and the real PolicyAuthorizer. A case whose
``known_divergence`` says how kmscore differs from AWS is a strict xfail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from service_helpers import expect

from kmscore.client import LocalKMS
from kmscore.errors import AccessDeniedException
from kmscore.model.grant import Grant, derived_grant_allowed, grant_allows
from kmscore.policy import (
    PolicyKind,
    RequestContext,
    authorize,
    encryption_context_values,
    parse_policy,
)

CORPUS = Path(__file__).parent / "data" / "access_corpus.json"
CASES: list[dict[str, Any]] = json.loads(CORPUS.read_text())["cases"]
DEFAULT_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_DEFAULTS = {
    "spec": "SYMMETRIC_DEFAULT",
    "usage": "ENCRYPT_DECRYPT",
    "origin": "AWS_KMS",
    "multi_region": False,
}
REASONS = {
    "resource": "with an explicit deny in a resource-based policy",
    "identity": "with an explicit deny in an identity-based policy",
    "none": "because no ",
}
DATE_KEYS = frozenset({"aws:currenttime", "aws:tokenissuetime"})
#: Condition values the service fills in itself for CreateGrant.
SERVICE_FILLED = frozenset(
    {"kms:GrantOperations", "kms:GranteePrincipal", "kms:GrantConstraintType"}
)
SERVICE_ACTIONS = frozenset(
    {"kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey", "kms:CreateGrant"}
)


def _params(cases: list[dict[str, Any]]) -> list[Any]:
    params = []
    for case in cases:
        marks = []
        if case.get("known_divergence"):
            marks.append(pytest.mark.xfail(strict=True, reason=case["known_divergence"]))
        params.append(pytest.param(case, id=case["id"], marks=marks))
    return params


def _condition_value(name: str, value: Any) -> Any:
    if name.lower() in DATE_KEYS and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, list):
        return tuple(value)
    return value


def request_context(request: dict[str, Any]) -> RequestContext:
    """The RequestContext a case's request stands for, filled in as PolicyAuthorizer does."""
    key = {**KEY_DEFAULTS, **request.get("key", {})}
    values: dict[str, Any] = {
        "kms:KeySpec": key["spec"],
        "kms:KeyUsage": key["usage"],
        "kms:KeyOrigin": key["origin"],
        "kms:MultiRegion": key["multi_region"],
    }
    context = dict(request.get("encryption_context") or {})
    if request["action"] == "kms:CreateGrant":
        # In CreateGrant, kms:EncryptionContext: keys see the new grant's
        # constraint pairs (KMS developer guide, kms:EncryptionContext:).
        for pairs in (request.get("grant_request", {}).get("constraints") or {}).values():
            context.update(pairs)
    values.update(encryption_context_values(context))
    for name, value in request.get("conditions", {}).items():
        values[name] = _condition_value(name, value)
    principal = request["principal"]
    return RequestContext(
        action=request["action"],
        principal_arn=principal,
        principal_account=principal.split(":")[4],
        resource_arn=request.get("key_arn", DEFAULT_KEY_ARN),
        condition_values=values,
    )


def grants_of(case: dict[str, Any]) -> tuple[Grant, ...]:
    """The case's grants as kmscore Grants on the case's key."""
    return tuple(
        Grant(
            grant_id=f"{index:064x}",
            key_id=DEFAULT_KEY_ARN.rsplit("/", 1)[1],
            name=None,
            grantee_principal=g["grantee"],
            retiring_principal=None,
            issuing_account="111122223333",
            operations=tuple(g["operations"]),
            constraints=g.get("constraints"),
            token="",
            creation_date=datetime.now(UTC),
        )
        for index, g in enumerate(case["grants"])
    )


def grant_decision(case: dict[str, Any]) -> bool:
    """Whether a grant allows the case's request (CreateGrant: a derived grant)."""
    request = case["request"]
    grants = grants_of(case)
    operation = request["action"].split(":", 1)[1]
    if operation == "CreateGrant":
        wanted = request.get("grant_request", {})
        return derived_grant_allowed(
            grants, request["principal"], wanted.get("operations", ()), wanted.get("constraints")
        )
    return grant_allows(grants, request["principal"], operation, request.get("encryption_context"))


# --- the corpus itself ---------------------------------------------------------------------


def test_corpus_size_and_citations() -> None:
    assert len(CASES) >= 300
    assert len({case["id"] for case in CASES}) == len(CASES)
    for case in CASES:
        assert case["cite"]["url"].startswith("https://"), case["id"]
        assert case["cite"]["says"].strip(), case["id"]
        assert case["expect"] in ("Allow", "Deny"), case["id"]
        assert case.get("reason") is None or case["reason"] in REASONS, case["id"]
    assert 25 <= sum(1 for case in CASES if case.get("service")) <= 60


# --- policy level ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", _params(CASES))
def test_policy_decision(case: dict[str, Any]) -> None:
    key_policy = parse_policy(json.dumps(case["key_policy"]))
    identity = [
        parse_policy(json.dumps(p), kind=PolicyKind.IDENTITY) for p in case["identity_policies"]
    ]
    ctx = request_context(case["request"])
    granted = grant_decision(case)
    if case["expect"] == "Allow":
        authorize(key_policy, identity, granted, ctx)
        return
    with pytest.raises(AccessDeniedException) as denied:
        authorize(key_policy, identity, granted, ctx)
    reason = case.get("reason")
    if reason is not None:
        assert REASONS[reason] in denied.value.message


# --- end to end through LocalKMS ----------------------------------------------------------------


def _call(client: LocalKMS, key_id: str, request: dict[str, Any]) -> Any:
    action = request["action"]
    context = request.get("encryption_context") or None
    extra: dict[str, Any] = {"EncryptionContext": context} if context else {}
    if action == "kms:Encrypt":
        return client.encrypt(KeyId=key_id, Plaintext=b"corpus", **extra)
    if action == "kms:GenerateDataKey":
        return client.generate_data_key(KeyId=key_id, KeySpec="AES_256", **extra)
    if action == "kms:DescribeKey":
        return client.describe_key(KeyId=key_id)
    wanted = request["grant_request"]
    if wanted.get("constraints"):
        extra = {"Constraints": wanted["constraints"]}
    return client.create_grant(
        KeyId=key_id, GranteePrincipal=wanted["grantee"], Operations=wanted["operations"], **extra
    )


SERVICE_CASES = [case for case in CASES if case.get("service")]


@pytest.mark.parametrize("case", _params(SERVICE_CASES))
def test_service_decision(case: dict[str, Any], tmp_path: Path) -> None:
    request = case["request"]
    assert request["action"] in SERVICE_ACTIONS
    assert set(request.get("conditions", {})) <= SERVICE_FILLED
    assert len(case["identity_policies"]) <= 1 and not request.get("key")
    principal = request["principal"]
    assert principal.startswith("arn:aws:iam::111122223333:user/")
    data_dir = tmp_path / "kms"
    with LocalKMS(data_dir, audit=False) as admin:
        key_id = admin.create_key()["KeyMetadata"]["KeyId"]
        for g in case["grants"]:
            extra = {"Constraints": g["constraints"]} if g.get("constraints") else {}
            admin.create_grant(
                KeyId=key_id, GranteePrincipal=g["grantee"], Operations=g["operations"], **extra
            )
        admin.put_key_policy(
            KeyId=key_id,
            PolicyName="default",
            Policy=json.dumps(case["key_policy"]),
            BypassPolicyLockoutSafetyCheck=True,
        )
        policy = json.dumps(case["identity_policies"][0]) if case["identity_policies"] else None
        admin.service.principals.add(principal.rsplit("/", 1)[1], policy=policy)
    with LocalKMS(data_dir, principal=principal, audit=False) as client:
        if case["expect"] == "Allow":
            _call(client, key_id, request)
            return
        err = expect("AccessDeniedException", _call, client, key_id, request)
        reason = case.get("reason")
        if reason is not None:
            assert REASONS[reason] in err.message
