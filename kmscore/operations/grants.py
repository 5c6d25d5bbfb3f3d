"""Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant."""

from __future__ import annotations

from typing import Any, Final

from kmscore.errors import (
    AccessDeniedException,
    InvalidGrantIdException,
    InvalidGrantTokenException,
    LimitExceededException,
    NotFoundException,
    UnsupportedOperationException,
    ValidationException,
)
from kmscore.model.grant import (
    CONSTRAINT_OPERATIONS,
    GRANT_OPERATIONS,
    Grant,
    new_grant_id,
    new_grant_token,
    operations_for_key,
)
from kmscore.model.validation import List, String, Structure
from kmscore.operations.common import (
    CONTEXT,
    DRY_RUN,
    GRANT_TOKENS,
    KEY_ID,
    LIMIT,
    MARKER,
    OPTIONAL_KEY_ID,
    dry_run,
    page_args,
    page_result,
)
from kmscore.operations.registry import operation
from kmscore.service import Call
from kmscore.service.authorization import GRANT_CONSTRAINTS, UNMAPPED

PRINCIPAL: Final = String(min_len=1, max_len=256, pattern=r"^[\w+=,.@:/-]+$")
GRANT_ID: Final = String(min_len=1, max_len=128)
REQUIRED_GRANT_ID: Final = String(required=True, min_len=1, max_len=128)
SERVICE_PRINCIPAL: Final = String(
    min_len=1, max_len=128, pattern=r"^([A-Za-z0-9\-]+)\.([A-Za-z0-9\-]+)(\.[A-Za-z0-9\-]+)+$"
)
SOURCE_ARN: Final = String(
    min_len=20, max_len=512, pattern=r"^arn:aws[a-z0-9-]*:[a-z0-9-]+:[a-z0-9-]*:[0-9]{12}:.+$"
)
#: AWS allows 50,000 grants per key.
MAX_GRANTS_PER_KEY: Final = 50_000


def _one_of(req: dict[str, Any], first: str, second: str, *, required: bool) -> None:
    """AWS's rule for a principal member and its service-principal twin.

    Raises:
        ValidationException: both are given, or (``required``) neither.
        UnsupportedOperationException: the service-principal member is given:
            kmscore has no AWS service principals to grant to or list for.
    """
    if first in req and second in req:
        raise ValidationException(f"You can specify either {first} or {second}, but not both.")
    if required and first not in req and second not in req:
        raise ValidationException(f"You must specify either {first} or {second}.")
    if second in req:
        raise UnsupportedOperationException(
            f"{second} is not supported: kmscore has no AWS service principals."
        )


def _constraint_pairs(constraints: dict[str, dict[str, str]] | None) -> dict[str, str] | None:
    if not constraints:
        return None
    pairs: dict[str, str] = {}
    for kind in ("EncryptionContextSubset", "EncryptionContextEquals"):
        pairs.update(constraints.get(kind) or {})
    return pairs


@operation(
    "CreateGrant",
    {
        "KeyId": KEY_ID,
        "GranteePrincipal": PRINCIPAL,
        "RetiringPrincipal": PRINCIPAL,
        "Operations": List(item=String(enum=GRANT_OPERATIONS), required=True),
        "Constraints": Structure(
            members={
                "EncryptionContextSubset": CONTEXT,
                "EncryptionContextEquals": CONTEXT,
                "SourceArn": SOURCE_ARN,
            }
        ),
        "GrantTokens": GRANT_TOKENS,
        "Name": String(min_len=1, max_len=256, pattern=r"^[a-zA-Z0-9:/_-]+$"),
        "DryRun": DRY_RUN,
        "GranteeServicePrincipal": SERVICE_PRINCIPAL,
        "RetiringServicePrincipal": SERVICE_PRINCIPAL,
    },
)
def create_grant(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """CreateGrant: let a principal use the key for some operations.

    Idempotent by Name: the same request with the same Name returns the
    existing grant's id and token, as AWS does.
    """
    svc = call.service
    _one_of(req, "GranteePrincipal", "GranteeServicePrincipal", required=True)
    _one_of(req, "RetiringPrincipal", "RetiringServicePrincipal", required=False)
    if "SourceArn" in (req.get("Constraints") or {}):
        raise UnsupportedOperationException(
            "The SourceArn grant constraint is not supported: it is for grants to AWS "
            "service principals, which kmscore does not have."
        )
    key = call.key(req["KeyId"], allow_alias=False)
    operations = tuple(dict.fromkeys(req["Operations"]))
    if not operations:
        raise ValidationException("Operations must name at least one operation.")
    unfit = [op for op in operations if op not in operations_for_key(key.key_spec, key.key_usage)]
    if unfit:
        raise ValidationException(
            f"Grant operations {', '.join(unfit)} are not valid for a key with key spec "
            f"{key.key_spec} and key usage {key.key_usage}."
        )
    # An empty constraint map is no constraint, as AWS treats it.
    constraints = {k: v for k, v in (req.get("Constraints") or {}).items() if v} or None
    if constraints is not None:
        outside = [op for op in operations if op not in CONSTRAINT_OPERATIONS]
        if outside:
            raise ValidationException(
                f"Grant constraints apply only to cryptographic operations with an "
                f"encryption context; not to {', '.join(outside)}."
            )
    grantee = req["GranteePrincipal"]
    retiring = req.get("RetiringPrincipal")
    call.authorize(
        key,
        conditions={
            "kms:GrantOperations": operations,
            "kms:GranteePrincipal": grantee,
            "kms:RetiringPrincipal": retiring,
            "kms:GrantIsForAWSResource": False,
            "kms:GrantConstraintType": tuple(constraints) if constraints else None,
            # In CreateGrant, kms:EncryptionContext: keys see the constraints'
            # pairs, of either type (AWS developer guide, condition keys).
            "kms:EncryptionContext": _constraint_pairs(constraints),
            GRANT_CONSTRAINTS: constraints,
        },
    )
    dry_run(req)
    existing = svc.store.key_grants(key.key_id)
    name = req.get("Name")
    if name is not None:
        for g in existing:
            if (g.name, g.grantee_principal, g.retiring_principal, g.operations) == (
                name, grantee, retiring, operations,
            ) and (g.constraints or None) == constraints:  # fmt: skip
                return {"GrantToken": g.token, "GrantId": g.grant_id}
    if len(existing) >= MAX_GRANTS_PER_KEY:
        raise LimitExceededException(f"{key.arn} has {MAX_GRANTS_PER_KEY} grants already.")
    grant = Grant(
        grant_id=new_grant_id(),
        key_id=key.key_id,
        name=name,
        grantee_principal=grantee,
        retiring_principal=retiring,
        issuing_account=svc.account,
        operations=operations,
        constraints=constraints,
        token=new_grant_token(),
        creation_date=svc.clock(),
    )
    svc.store.create_grant(grant)
    svc.access_changed()
    return {"GrantToken": grant.token, "GrantId": grant.grant_id}


@operation(
    "ListGrants",
    {
        "Limit": LIMIT,
        "Marker": MARKER,
        "KeyId": KEY_ID,
        "GrantId": GRANT_ID,
        "GranteePrincipal": PRINCIPAL,
        "GranteeServicePrincipal": SERVICE_PRINCIPAL,
    },
)
def list_grants(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListGrants: a key's grants, optionally one grant or one grantee's, paged."""
    svc = call.service
    _one_of(req, "GranteePrincipal", "GranteeServicePrincipal", required=False)
    limit, after = page_args(req)
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)
    grants = [
        g
        for g in svc.store.key_grants(key.key_id)
        if (after is None or g.grant_id > after)
        and req.get("GrantId", g.grant_id) == g.grant_id
        and req.get("GranteePrincipal", g.grantee_principal) == g.grantee_principal
    ]
    if "GrantId" in req and not grants and after is None:
        raise InvalidGrantIdException(f"Grant {req['GrantId']} is not a grant of {key.arn}.")
    items = [g.list_entry(key.arn) for g in grants[: limit + 1]]
    last = grants[limit - 1].grant_id if len(grants) > limit else None
    return page_result(items, limit, last, "Grants")


@operation(
    "ListRetirableGrants",
    {
        "Limit": LIMIT,
        "Marker": MARKER,
        "RetiringPrincipal": PRINCIPAL,
        "RetiringServicePrincipal": SERVICE_PRINCIPAL,
    },
)
def list_retirable_grants(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListRetirableGrants: grants naming a principal as their retiring principal."""
    svc = call.service
    _one_of(req, "RetiringPrincipal", "RetiringServicePrincipal", required=True)
    limit, after = page_args(req)
    call.authorize(None)
    grants = svc.store.list_retirable_grants(req["RetiringPrincipal"], after, limit + 1)
    items = [g.list_entry(svc.key_arn(g.key_id)) for g in grants]
    last = grants[limit - 1].grant_id if len(grants) > limit else None
    return page_result(items, limit, last, "Grants")


def _may_retire(call: Call, grant: Grant) -> bool:
    caller = call.caller
    # Decided here, not by the authorizer: refuse who the authorizer refuses
    # whatever a grant names (unmapped callers, users that do not exist).
    if caller.kind == UNMAPPED:
        return False
    if caller.kind == "IAMUser" and call.service.principals.by_arn(caller.arn) is None:
        return False
    if caller.kind == "Root" and caller.account == grant.issuing_account:
        return True
    if grant.retiring_principal == caller.arn:
        return True
    return grant.grantee_principal == caller.arn and "RetireGrant" in grant.operations


@operation(
    "RetireGrant",
    {
        "GrantToken": String(min_len=1, max_len=8192),
        "KeyId": OPTIONAL_KEY_ID,
        "GrantId": GRANT_ID,
        "DryRun": DRY_RUN,
    },
)
def retire_grant(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """RetireGrant: by token, or by KeyId and GrantId; for the grant's own parties."""
    svc = call.service
    if "GrantToken" in req:
        grant = svc.store.get_grant_by_token(req["GrantToken"])
        if grant is None:
            raise InvalidGrantTokenException("The grant token is not valid.")
    elif "KeyId" in req and "GrantId" in req:
        key = call.resolve(req["KeyId"], allow_alias=False)
        grant = svc.store.get_grant(req["GrantId"])
        if grant is None or grant.key_id != key.key_id:
            raise InvalidGrantIdException(f"Grant {req['GrantId']} is not a grant of {key.arn}.")
    else:
        raise ValidationException("Give GrantToken, or KeyId and GrantId.")
    key_record = svc.get_key(grant.key_id)
    if key_record is None:
        raise NotFoundException(f"Key '{svc.key_arn(grant.key_id)}' does not exist")
    call.check_state(key_record)
    call.resources.append(key_record.arn)
    if not _may_retire(call, grant):
        call.authorized = True  # decided here: the grant's parties only
        raise AccessDeniedException(
            f"User: {call.caller.arn} is not authorized to retire grant {grant.grant_id}."
        )
    call.authorized = True
    dry_run(req)
    svc.store.delete_grant(grant.grant_id)
    svc.access_changed()
    return {}


@operation("RevokeGrant", {"KeyId": KEY_ID, "GrantId": REQUIRED_GRANT_ID, "DryRun": DRY_RUN})
def revoke_grant(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """RevokeGrant: delete a grant, with kms:RevokeGrant permission on the key."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)
    grant = svc.store.get_grant(req["GrantId"])
    if grant is None or grant.key_id != key.key_id:
        raise InvalidGrantIdException(f"Grant {req['GrantId']} is not a grant of {key.arn}.")
    dry_run(req)
    svc.store.delete_grant(grant.grant_id)
    svc.access_changed()
    return {}
