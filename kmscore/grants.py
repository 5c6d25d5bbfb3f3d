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
)
#: Operations that take an encryption context, so constraints may apply.
CONSTRAINT_OPERATIONS: Final = frozenset(
    {
        "Decrypt",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "CreateGrant",
        "RetireGrant",
    }
)


_COMMON_OPERATIONS: Final = frozenset({"CreateGrant", "DescribeKey", "RetireGrant"})
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
    """Whether any grant lets ``grantee`` perform ``operation`` with ``context``."""
    for g in grants:
        if g.grantee_principal == grantee and operation in g.operations:
            if context is None:
                if not g.constraints:
                    return True
            elif constraints_allow(g.constraints, context):
                return True
    return False
