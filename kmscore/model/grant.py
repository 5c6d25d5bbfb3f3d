"""Grants: delegated permission to use one KMS key, as AWS KMS has them.

A grant lets its grantee principal perform some operations on one key,
optionally only with certain encryption contexts. Constraint keys compare
case-insensitively and values case-sensitively, as AWS does.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = [
    "CONSTRAINT_OPERATIONS",
    "GRANT_OPERATIONS",
    "Grant",
    "constraints_allow",
    "constraints_within",
    "derived_grant_allowed",
    "grant_allows",
    "new_grant_id",
    "new_grant_token",
    "operations_for_key",
]

#: The operations a grant may allow (botocore's GrantOperation enum).
GRANT_OPERATIONS: Final = (
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
)
#: Operations whose request has an encryption context, so a grant's
#: constraints are checked against it.
CONTEXT_OPERATIONS: Final = frozenset(
    {
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
    }
)
_COMMON_OPERATIONS: Final = frozenset({"CreateGrant", "DescribeKey", "RetireGrant"})
#: Operations a constrained grant may hold: those with a context, and the
#: common ones. For DescribeKey and RetireGrant the constraint does not apply
#: (AWS GrantConstraints); for CreateGrant it applies to the constraints of the
#: grant being created.
CONSTRAINT_OPERATIONS: Final = CONTEXT_OPERATIONS | _COMMON_OPERATIONS
_OPERATIONS_BY_USAGE: Final = {
    # (symmetric?, key usage) -> the grant operations AWS accepts for that key type.
    (True, "ENCRYPT_DECRYPT"): frozenset(
        {
            "Decrypt",
            "Encrypt",
            "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
            "ReEncryptFrom",
            "ReEncryptTo",
        }
    ),
    (False, "ENCRYPT_DECRYPT"): frozenset(
        {"Decrypt", "Encrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"}
    ),
    (False, "SIGN_VERIFY"): frozenset({"Sign", "Verify", "GetPublicKey"}),
    (True, "GENERATE_VERIFY_MAC"): frozenset({"GenerateMac", "VerifyMac"}),
    (False, "KEY_AGREEMENT"): frozenset({"DeriveSharedSecret", "GetPublicKey"}),
    (False, "ENCAPSULATE_DECAPSULATE"): frozenset({"Encapsulate", "Decapsulate", "GetPublicKey"}),
}


def operations_for_key(key_spec: str, key_usage: str) -> frozenset[str]:
    """The grant operations AWS KMS accepts for a key of this spec and usage.

    A grant for an operation the key cannot perform (Sign on a symmetric key,
    Encrypt on an HMAC key) is refused at CreateGrant, as AWS refuses it.
    """
    symmetric = key_spec == "SYMMETRIC_DEFAULT" or key_spec.startswith("HMAC_")
    return _COMMON_OPERATIONS | _OPERATIONS_BY_USAGE.get((symmetric, key_usage), frozenset())


def new_grant_id() -> str:
    """A fresh grant id: 64 hex digits, as AWS's."""
    return os.urandom(32).hex()


def new_grant_token() -> str:
    """A fresh opaque grant token."""
    return base64.urlsafe_b64encode(os.urandom(48)).decode("ascii").rstrip("=")


@dataclass(frozen=True, slots=True)
class Grant:
    """One grant on one key."""

    grant_id: str
    key_id: str
    name: str | None
    grantee_principal: str
    retiring_principal: str | None
    issuing_account: str
    operations: tuple[str, ...]
    constraints: Mapping[str, Mapping[str, str]] | None
    token: str
    creation_date: datetime

    def list_entry(self, key_arn: str) -> dict[str, Any]:
        """The ``GrantListEntry`` AWS returns for this grant."""
        entry: dict[str, Any] = {
            "KeyId": key_arn,
            "GrantId": self.grant_id,
            "Name": self.name or "",
            "CreationDate": self.creation_date,
            "GranteePrincipal": self.grantee_principal,
            "IssuingAccount": f"arn:aws:iam::{self.issuing_account}:root",
            "Operations": list(self.operations),
        }
        if self.retiring_principal is not None:
            entry["RetiringPrincipal"] = self.retiring_principal
        if self.constraints:
            entry["Constraints"] = {k: dict(v) for k, v in self.constraints.items()}
        return entry


def _folded(context: Mapping[str, str]) -> set[tuple[str, str]]:
    # Pairs, not a dict: "Tenant" and "tenant" are two keys of one context and
    # must not overwrite each other when their case is folded.
    return {(k.lower(), v) for k, v in context.items()}


def constraints_allow(
    constraints: Mapping[str, Mapping[str, str]] | None, context: Mapping[str, str]
) -> bool:
    """Whether a request's encryption context meets a grant's constraints.

    ``EncryptionContextEquals``: the context has exactly these pairs.
    ``EncryptionContextSubset``: the context has at least these pairs.
    Keys compare case-insensitively, values case-sensitively.
    """
    if not constraints:
        return True
    ctx = _folded(context)
    equals = constraints.get("EncryptionContextEquals")
    if equals is not None and (len(equals) != len(context) or _folded(equals) != ctx):
        return False
    subset = constraints.get("EncryptionContextSubset")
    return subset is None or _folded(subset) <= ctx


def grant_allows(
    grants: Iterable[Grant], grantee: str, operation: str, context: Mapping[str, str] | None
) -> bool:
    """Whether any grant lets ``grantee`` perform ``operation`` with ``context``.

    Constraints apply only to operations with an encryption context (a
    missing context counts as the empty one); CreateGrant through a grant is
    decided by :func:`derived_grant_allowed`, never here.
    """
    if operation == "CreateGrant":
        return False
    checked = operation in CONTEXT_OPERATIONS
    for g in grants:
        if g.grantee_principal == grantee and operation in g.operations:
            if not (checked and g.constraints) or constraints_allow(g.constraints, context or {}):
                return True
    return False


def constraints_within(
    child: Mapping[str, Mapping[str, str]] | None,
    parent: Mapping[str, Mapping[str, str]] | None,
) -> bool:
    """Whether every context ``child`` allows is one that ``parent`` allows.

    This is AWS's "equally strict or stricter" rule for a grant created
    through a parent grant's CreateGrant: under ``EncryptionContextSubset`` S a
    child may have a Subset or an Equals that holds S; under
    ``EncryptionContextEquals`` E only an Equals of the same pairs; under no
    constraint, anything. Keys compare case-insensitively, values exactly.
    """
    if not parent:
        return True
    if not child:
        return False
    equals = child.get("EncryptionContextEquals")
    if equals is not None:
        # The child allows one context at most: equals itself (if it meets
        # the child's own subset too; if not, the child allows nothing).
        subset = child.get("EncryptionContextSubset")
        if subset is not None and not _folded(subset) <= _folded(equals):
            return True
        return constraints_allow(parent, equals)
    # The child allows every context holding its subset: so must the parent,
    # which an Equals never does.
    if parent.get("EncryptionContextEquals") is not None:
        return False
    child_subset = child.get("EncryptionContextSubset") or {}
    return _folded(parent.get("EncryptionContextSubset") or {}) <= _folded(child_subset)


def derived_grant_allowed(
    grants: Iterable[Grant],
    grantee: str,
    operations: Iterable[str],
    constraints: Mapping[str, Mapping[str, str]] | None,
) -> bool:
    """Whether a grant of ``grantee``'s lets it create this grant (CreateGrant).

    A parent grant must allow CreateGrant, hold every operation of the new
    grant, and have constraints no stricter than the new grant's
    (:func:`constraints_within`). One parent must cover the whole new grant:
    two grants do not combine, as in AWS.
    """
    wanted = set(operations)
    for g in grants:
        if (
            g.grantee_principal == grantee
            and "CreateGrant" in g.operations
            and wanted <= set(g.operations)
            and constraints_within(constraints, g.constraints)
        ):
            return True
    return False
