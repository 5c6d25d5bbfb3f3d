"""Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from kmscore.errors import MalformedPolicyDocumentException, NotFoundException
from kmscore.model.key import KeyRecord
from kmscore.model.keystate import KeyState
from kmscore.model.validation import Boolean, String
from kmscore.operations.common import KEY_ID, LIMIT, MARKER, page_args, page_result
from kmscore.operations.registry import operation
from kmscore.policy import PolicyKind, parse_policy, would_lock_out
from kmscore.service import Call

if TYPE_CHECKING:
    from kmscore.policy import PolicyDocument

#: The one policy name AWS KMS keys have.
DEFAULT_POLICY_NAME: Final = "default"
POLICY_NAME: Final = String(min_len=1, max_len=128, pattern=r"[\w]+")
POLICY_TEXT: Final = String(
    required=True, min_len=1, max_len=131072, pattern=r"[\u0009\u000A\u000D\u0020-\u00FF]+"
)


def checked_policy(call: Call, text: str, key_arn: str, bypass: bool) -> PolicyDocument:
    """Parse a proposed key policy and run the lockout safety check.

    Raises:
        MalformedPolicyDocumentException: it does not parse, or it would keep
            the caller from changing it later (unless ``bypass``).
    """
    doc = parse_policy(text, kind=PolicyKind.KEY)
    if bypass:
        return doc
    svc = call.service
    authorizer = svc.authorizer
    ctx_builder = getattr(authorizer, "request_context", None)
    if ctx_builder is None:
        return doc
    stand_in = KeyRecord(
        key_id="", arn=key_arn, account=svc.account, creation_date=svc.clock(),
        description="", key_usage="ENCRYPT_DECRYPT", key_spec="SYMMETRIC_DEFAULT",
        origin="AWS_KMS", state=KeyState.ENABLED, current_version=1,
    )  # fmt: skip
    ctx = ctx_builder(call, "kms:PutKeyPolicy", stand_in, {})
    identity = None
    user = svc.principals.by_arn(call.caller.arn)
    if user is not None and user.identity_policy:
        identity = parse_policy(user.identity_policy, kind=PolicyKind.IDENTITY)
    if would_lock_out(doc, ctx, identity):
        raise MalformedPolicyDocumentException(
            "The new key policy will not allow you to update the key policy in the future."
        )
    return doc


def _policy_name(req: dict[str, Any]) -> None:
    name = req.get("PolicyName", DEFAULT_POLICY_NAME)
    if name != DEFAULT_POLICY_NAME:
        raise NotFoundException(f"Policy {name} does not exist; keys have only 'default'.")


@operation("GetKeyPolicy", {"KeyId": KEY_ID, "PolicyName": POLICY_NAME})
def get_key_policy(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """GetKeyPolicy: the key's policy document."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    call.authorize(key)
    _policy_name(req)
    return {"Policy": key.policy or svc.default_key_policy, "PolicyName": DEFAULT_POLICY_NAME}


@operation(
    "PutKeyPolicy",
    {
        "KeyId": KEY_ID,
        "PolicyName": POLICY_NAME,
        "Policy": POLICY_TEXT,
        "BypassPolicyLockoutSafetyCheck": Boolean(),
    },
)
def put_key_policy(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """PutKeyPolicy: replace the key's policy, refusing one that locks the caller out."""
    svc = call.service
    key = call.key(req["KeyId"], allow_alias=False)
    bypass = bool(req.get("BypassPolicyLockoutSafetyCheck"))
    call.authorize(key, conditions={"kms:BypassPolicyLockoutSafetyCheck": bypass})
    _policy_name(req)
    text = req["Policy"]
    checked_policy(call, text, key.arn, bypass)

    def change(k: KeyRecord) -> KeyRecord:
        call.check_state(k)
        return k.replace(policy=text)

    svc.update_key(key, change)
    svc.access_changed()
    return {}


@operation("ListKeyPolicies", {"KeyId": KEY_ID, "Limit": LIMIT, "Marker": MARKER})
def list_key_policies(call: Call, req: dict[str, Any]) -> dict[str, Any]:
    """ListKeyPolicies: always the one name ``default``."""
    key = call.key(req["KeyId"], allow_alias=False)
    limit, after = page_args(req)
    call.authorize(key)
    names = [] if after is not None else [DEFAULT_POLICY_NAME]
    return page_result(names, limit, None, "PolicyNames")
