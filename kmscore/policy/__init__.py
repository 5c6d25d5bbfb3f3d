"""The AWS JSON policy language for key policies and identity-based policies.

Parse once with :func:`parse_policy` (anything malformed raises
:class:`~kmscore.errors.MalformedPolicyDocumentException`; nothing is skipped),
then evaluate on every request with :meth:`PolicyDocument.evaluate` or, for the
whole AWS KMS decision (key policy, identity policy, grants), :func:`authorize`.

Example::

    policy = parse_policy(default_key_policy("111122223333"))
    ctx = RequestContext(
        action="kms:Encrypt",
        principal_arn="arn:aws:iam::111122223333:user/alice",
        principal_account="111122223333",
        resource_arn=key_arn,
        condition_values=encryption_context_values({"app": "billing"}),
    )
    authorize(policy, alice_identity_policy, grant_allows=False, ctx=ctx)
"""

from kmscore.policy._context import RequestContext, encryption_context_values
from kmscore.policy._document import (
    MAX_POLICY_BYTES,
    Effect,
    PolicyDocument,
    PolicyKind,
    Statement,
    default_key_policy,
    parse_policy,
)
from kmscore.policy._evaluate import authorize, is_authorized, would_lock_out
from kmscore.policy._values import ConditionValue

__all__ = [
    "MAX_POLICY_BYTES",
    "ConditionValue",
    "Effect",
    "PolicyDocument",
    "PolicyKind",
    "RequestContext",
    "Statement",
    "authorize",
    "default_key_policy",
    "encryption_context_values",
    "is_authorized",
    "parse_policy",
    "would_lock_out",
]
