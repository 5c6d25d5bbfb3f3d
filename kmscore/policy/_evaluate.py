"""Combining key policy, identity-based policy and grants, as AWS KMS does.

1. An explicit Deny in the key policy or in an identity-based policy wins.
2. Otherwise an Allow in the key policy for the caller allows.
3. Otherwise, if the key policy allows the caller's account principal for this
   action (it "delegates to IAM"), an Allow in an identity-based policy allows.
4. Otherwise a grant allows.
5. Otherwise the request is denied.

A caller of another account than the key's (other than that account's root)
needs both: the key policy's Allow, for it or its account, and an Allow in its
identity-based policy (IAM cross-account evaluation; KMS "Allowing users in
other accounts to use a KMS key").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import Enum

from kmscore.errors import AccessDeniedException
from kmscore.policy._context import RequestContext
from kmscore.policy._document import Effect, PolicyDocument

__all__ = ["authorize", "is_authorized", "would_lock_out"]

PUT_KEY_POLICY = "kms:PutKeyPolicy"


class _Outcome(Enum):
    KEY_POLICY_DENY = "with an explicit deny in a resource-based policy"
    IDENTITY_POLICY_DENY = "with an explicit deny in an identity-based policy"
    NO_IDENTITY_ALLOW = "because no identity-based policy allows the {action} action"
    NO_RESOURCE_ALLOW = "because no resource-based policy allows the {action} action"
    ALLOWED = ""


def _identity_policies(
    identity_policy: PolicyDocument | Sequence[PolicyDocument] | None,
) -> tuple[PolicyDocument, ...]:
    if identity_policy is None:
        return ()
    if isinstance(identity_policy, PolicyDocument):
        return (identity_policy,)
    return tuple(identity_policy)


def _external(ctx: RequestContext) -> bool:
    """Whether an IAM principal of another account than the key's is calling."""
    if ctx.resource_arn is None or ctx.root_account is not None:
        return False
    key_parts = ctx.resource_arn.split(":", 5)
    caller_parts = ctx.principal_arn.split(":", 5)
    if len(key_parts) != 6 or len(caller_parts) != 6 or caller_parts[0] != "arn":
        return False
    return caller_parts[4] != key_parts[4]


def _decide(
    key_policy: PolicyDocument,
    identity_policies: tuple[PolicyDocument, ...],
    grant_allows: bool,
    ctx: RequestContext,
) -> _Outcome:
    key_effect = key_policy.evaluate(ctx)
    if key_effect is Effect.EXPLICIT_DENY:
        return _Outcome.KEY_POLICY_DENY
    identity_effects = [policy.evaluate(ctx) for policy in identity_policies]
    if Effect.EXPLICIT_DENY in identity_effects:
        return _Outcome.IDENTITY_POLICY_DENY
    if key_effect is Effect.ALLOW:
        if not _external(ctx) or Effect.ALLOW in identity_effects:
            return _Outcome.ALLOWED
    delegated = key_policy.delegates_to_iam(ctx)
    if delegated and Effect.ALLOW in identity_effects:
        return _Outcome.ALLOWED
    if grant_allows:
        return _Outcome.ALLOWED
    if delegated or key_effect is Effect.ALLOW:
        return _Outcome.NO_IDENTITY_ALLOW
    return _Outcome.NO_RESOURCE_ALLOW


def is_authorized(
    key_policy: PolicyDocument,
    identity_policy: PolicyDocument | Sequence[PolicyDocument] | None,
    grant_allows: bool,
    ctx: RequestContext,
) -> bool:
    """Whether :func:`authorize` would allow the request.

    Args:
        key_policy: The key's policy.
        identity_policy: The caller's identity-based policy or policies, if any.
        grant_allows: Whether a grant on the key allows this request.
        ctx: The request.

    Returns:
        True when the request is allowed.
    """
    outcome = _decide(key_policy, _identity_policies(identity_policy), grant_allows, ctx)
    return outcome is _Outcome.ALLOWED


def authorize(
    key_policy: PolicyDocument,
    identity_policy: PolicyDocument | Sequence[PolicyDocument] | None,
    grant_allows: bool,
    ctx: RequestContext,
) -> None:
    """Allow or deny a request the way AWS KMS does (see the module docstring).

    Args:
        key_policy: The key's policy.
        identity_policy: The caller's identity-based policy or policies, if any.
        grant_allows: Whether a grant on the key allows this request (the
            caller checks grantee, operations and constraints).
        ctx: The request.

    Raises:
        AccessDeniedException: The request is not allowed; the message says why
            in AWS's words.
    """
    outcome = _decide(key_policy, _identity_policies(identity_policy), grant_allows, ctx)
    if outcome is _Outcome.ALLOWED:
        return
    resource = ctx.resource_arn if ctx.resource_arn is not None else "*"
    reason = outcome.value.format(action=ctx.action)
    raise AccessDeniedException(
        f"User: {ctx.principal_arn} is not authorized to perform: {ctx.action} "
        f"on resource: {resource} {reason}"
    )


def would_lock_out(
    policy: PolicyDocument,
    ctx_for_caller: RequestContext,
    identity_policy: PolicyDocument | Sequence[PolicyDocument] | None = None,
) -> bool:
    """The PutKeyPolicy / CreateKey lockout safety check.

    A new key policy must let the principal who sets it call
    ``kms:PutKeyPolicy`` on the key later: directly, or by delegating to the
    caller's account when the caller's identity-based policy allows it. Grants
    do not count (a grant cannot allow PutKeyPolicy).

    Args:
        policy: The proposed key policy.
        ctx_for_caller: The caller's request context for the key; its action
            is replaced by ``kms:PutKeyPolicy``.
        identity_policy: The caller's identity-based policy or policies.

    Returns:
        True when the policy would lock the caller out.
    """
    ctx = dataclasses.replace(ctx_for_caller, action=PUT_KEY_POLICY)
    return not is_authorized(policy, identity_policy, False, ctx)
