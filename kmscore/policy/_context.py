"""The request context: who asks to do what to which key, and the condition values.

Condition keys are case-insensitive in policies, so the context stores them
lower-cased. That includes the encryption context key in
``kms:encryptioncontext:<key>``: the AWS KMS developer guide says the whole
condition key, prefix and context key, is not case sensitive, while the value's
case sensitivity is the operator's (``StringEquals`` vs
``StringEqualsIgnoreCase``). Policies that need a case-sensitive context key use
``kms:EncryptionContextKeys``, whose values keep their case.

If two context keys differ only by case (``{"Dept": "a", "dept": "b"}``), the
condition key has two values. Conditions then evaluate fail-closed: an Allow
needs the condition to hold for every value, a Deny fires if it holds for any.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from kmscore.policy._values import ConditionValue

__all__ = ["RequestContext", "encryption_context_values"]


def _is_account(text: str) -> bool:
    return len(text) == 12 and text.isascii() and text.isdigit()


_SCALARS = (str, bool, int, float, datetime, bytes)


def _merge(old: ConditionValue, new: ConditionValue, key: str) -> tuple[str, ...]:
    """Two values for one case-folded key: both are kept (see the module docstring)."""
    merged: list[str] = []
    for value in (old, new):
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if not isinstance(item, str):
                raise ValueError(f"condition key {key!r} is given twice with non-string values")
            if item not in merged:
                merged.append(item)
    return tuple(merged)


def _normalize(values: Mapping[str, ConditionValue]) -> dict[str, ConditionValue]:
    out: dict[str, ConditionValue] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"condition key {key!r} is not a string")
        if type(value) is str:
            pass
        elif isinstance(value, list | tuple | frozenset | set):
            items = sorted(value) if isinstance(value, frozenset | set) else list(value)
            if not all(isinstance(item, str) for item in items):
                raise TypeError(f"condition key {key!r}: a multi-valued key holds strings only")
            value = tuple(items)
        elif not isinstance(value, _SCALARS):
            raise TypeError(f"condition key {key!r}: unsupported value type {type(value).__name__}")
        folded = key.lower()
        out[folded] = _merge(out[folded], value, folded) if folded in out else value
    return out


def encryption_context_values(encryption_context: Mapping[str, str]) -> dict[str, ConditionValue]:
    """The condition values for an encryption context.

    One ``kms:encryptioncontext:<key>`` per pair (key lower-cased) and
    ``kms:encryptioncontextkeys`` with the keys in their own case. An empty
    context gives no values, so the keys are absent (``Null`` is true).

    Args:
        encryption_context: The request's encryption context.

    Returns:
        The entries to merge into :attr:`RequestContext.condition_values`.
    """
    out: dict[str, ConditionValue] = {}
    for key, value in encryption_context.items():
        name = "kms:encryptioncontext:" + key.lower()
        out[name] = _merge(out[name], value, name) if name in out else value
    if encryption_context:
        out["kms:encryptioncontextkeys"] = tuple(encryption_context)
    return out


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything a policy may look at for one request.

    Attributes:
        action: The action, such as ``"kms:Encrypt"``.
        principal_arn: The caller's ARN (an IAM user or role, an assumed-role
            session, the account root ``arn:aws:iam::<account>:root``, or the
            name of an AWS service principal).
        principal_account: The caller's 12-digit account.
        resource_arn: The key ARN, or None for operations on no key.
        condition_values: Condition values by condition key, stored lower-cased.
            ``aws:principalarn`` (a role session's role ARN), ``aws:principalaccount``,
            ``kms:calleraccount``, ``aws:username`` (IAM users) and
            ``aws:currenttime`` / ``aws:epochtime`` are filled in when absent.
        action_folded: ``action`` lower-cased (derived).
        principal_ids: The ARNs that name the caller: its own, plus the role's
            ARN for an assumed-role session (derived).
        root_account: The account, when the caller is the account root (derived).
        lookup: Every value a policy sees: the filled-in keys overlaid with
            ``condition_values`` (derived).

    Raises:
        TypeError: A condition value is not a str, bool, int, float, datetime,
            bytes or a sequence of str (a caller bug).
        ValueError: Two condition keys differ only by case and do not both hold
            strings (a caller bug).
    """

    action: str
    principal_arn: str
    principal_account: str
    resource_arn: str | None = None
    condition_values: Mapping[str, ConditionValue] = field(default_factory=dict)
    action_folded: str = field(init=False, repr=False, compare=False)
    principal_ids: frozenset[str] = field(init=False, repr=False, compare=False)
    root_account: str | None = field(init=False, repr=False, compare=False)
    lookup: Mapping[str, ConditionValue] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = _normalize(self.condition_values)
        object.__setattr__(self, "condition_values", MappingProxyType(values))
        object.__setattr__(self, "action_folded", self.action.lower())

        # One split instead of regular expressions: this runs on every request.
        arn = self.principal_arn
        parts = arn.split(":", 5)
        ids = {arn}
        root_account = user_name = None
        # aws:PrincipalArn of a role session is the role's ARN (AWS global
        # condition keys: never the assumed-role session ARN).
        principal_key = arn
        if len(parts) == 6 and parts[0] == "arn" and _is_account(parts[4]):
            service, account, resource = parts[2], parts[4], parts[5]
            if service == "iam" and resource == "root":
                root_account = account
            elif service == "iam" and resource.startswith("user/"):
                user_name = resource.rsplit("/", 1)[1]
            elif service == "sts" and resource.startswith("assumed-role/"):
                # A role session is also matched by the role's ARN, as in AWS.
                pieces = resource.split("/", 2)
                if len(pieces) == 3 and pieces[1] and pieces[2]:
                    role = pieces[1]
                    principal_key = f"arn:{parts[1]}:iam::{account}:role/{role}"
                    ids.add(principal_key)
        object.__setattr__(self, "principal_ids", frozenset(ids))
        object.__setattr__(self, "root_account", root_account)

        lookup: dict[str, ConditionValue] = {
            "aws:principalarn": principal_key,
            "aws:principalaccount": self.principal_account,
            "kms:calleraccount": self.principal_account,
        }
        if user_name:
            lookup["aws:username"] = user_name
        if "aws:currenttime" not in values or "aws:epochtime" not in values:
            now = values.get("aws:currenttime")
            moment = now if isinstance(now, datetime) else datetime.now(UTC)
            lookup["aws:currenttime"] = moment
            lookup["aws:epochtime"] = int(moment.timestamp())
        lookup.update(values)
        object.__setattr__(self, "lookup", MappingProxyType(lookup))
