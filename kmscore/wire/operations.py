"""Every operation name a client may send, with the facts frontends need.

This is the one table of operation names: the whole AWS KMS API (botocore's
``kms`` 2014-11-01 model), kmscore's own batch extensions, and the user
administration it serves in IAM's words. It is static, so
a client learns an operation's facts without loading the server:

- ``served``: kmscore implements it. An AWS operation it does not serve
  answers ``UnsupportedOperationException``; a name outside the table,
  ``UnknownOperationException`` (as AWS answers an unknown ``X-Amz-Target``).
- ``read_only``: it changes nothing in the store (CloudTrail's ``readOnly``).
  The dispatcher runs it without a store transaction, and the socket client
  may send it again after a broken connection.
- ``inline``: a data-plane call of a few microseconds, which the socket
  daemon runs on its event loop rather than in a worker thread.
- ``batch_member``: the request member that counts a batch's items.
- ``event_source``: the service its audit records name (CloudTrail's
  ``eventSource``): ``kms.amazonaws.com``, or ``iam.amazonaws.com`` for the
  user administration kmscore serves itself (``CreateUser``, ...), so a
  trail consumer finds identity changes where it looks for IAM's.

:mod:`kmscore.operations` registers one handler for each served name, and
checks at import that the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "AWS_OPERATIONS",
    "IAM_EVENT_SOURCE",
    "KMS_EVENT_SOURCE",
    "OPERATION_FACTS",
    "SERVED_OPERATIONS",
    "OperationFacts",
    "is_retry_safe",
    "method_name",
]


KMS_EVENT_SOURCE: Final = "kms.amazonaws.com"
IAM_EVENT_SOURCE: Final = "iam.amazonaws.com"


@dataclass(frozen=True, slots=True)
class OperationFacts:
    """What is known about an operation before any handler runs.

    Attributes:
        name: The operation name (``GenerateDataKey``).
        aws: Part of the AWS KMS API (False for kmscore's extensions).
        served: kmscore implements it.
        read_only: It changes nothing in the store.
        inline: The socket daemon runs it on its event loop.
        batch_member: The member that counts a batch's items, for batches.
        event_source: CloudTrail's ``eventSource`` of its audit records.
    """

    name: str
    aws: bool
    served: bool
    read_only: bool
    inline: bool = False
    batch_member: str | None = None
    event_source: str = KMS_EVENT_SOURCE


def _table(*rows: OperationFacts) -> Mapping[str, OperationFacts]:
    return {row.name: row for row in sorted(rows, key=lambda r: r.name)}


def _aws(
    name: str, *, read_only: bool, served: bool = True, inline: bool = False
) -> OperationFacts:
    return OperationFacts(name, aws=True, served=served, read_only=read_only, inline=inline)


def _iam(name: str, *, read_only: bool) -> OperationFacts:
    """A user administration operation: IAM's name, served by kmscore itself."""
    return OperationFacts(
        name, aws=False, served=True, read_only=read_only, event_source=IAM_EVENT_SOURCE
    )


_READ, _WRITE = True, False

OPERATION_FACTS: Final[Mapping[str, OperationFacts]] = _table(
    # The data plane.
    _aws("Decrypt", read_only=_READ, inline=True),
    _aws("Encrypt", read_only=_READ, inline=True),
    _aws("GenerateDataKey", read_only=_READ, inline=True),
    _aws("GenerateDataKeyWithoutPlaintext", read_only=_READ, inline=True),
    _aws("GenerateRandom", read_only=_READ, inline=True),
    _aws("ReEncrypt", read_only=_READ, inline=True),
    _aws("DescribeKey", read_only=_READ, inline=True),
    _aws("DeriveSharedSecret", read_only=_READ),
    _aws("Encapsulate", read_only=_READ),
    _aws("Decapsulate", read_only=_READ),
    _aws("GenerateDataKeyPair", read_only=_READ),
    _aws("GenerateDataKeyPairWithoutPlaintext", read_only=_READ),
    _aws("GenerateMac", read_only=_READ),
    _aws("GetPublicKey", read_only=_READ),
    _aws("Sign", read_only=_READ),
    _aws("Verify", read_only=_READ),
    _aws("VerifyMac", read_only=_READ),
    # Key management.
    _aws("CancelKeyDeletion", read_only=_WRITE),
    _aws("CreateKey", read_only=_WRITE),
    _aws("DisableKey", read_only=_WRITE),
    _aws("DisableKeyRotation", read_only=_WRITE),
    _aws("EnableKey", read_only=_WRITE),
    _aws("EnableKeyRotation", read_only=_WRITE),
    _aws("GetKeyPolicy", read_only=_READ),
    _aws("GetKeyRotationStatus", read_only=_READ),
    _aws("ListKeyPolicies", read_only=_READ),
    _aws("ListKeyRotations", read_only=_READ),
    _aws("ListKeys", read_only=_READ),
    _aws("PutKeyPolicy", read_only=_WRITE),
    _aws("RotateKeyOnDemand", read_only=_WRITE),
    _aws("ScheduleKeyDeletion", read_only=_WRITE),
    _aws("UpdateKeyDescription", read_only=_WRITE),
    # Aliases, tags and grants.
    _aws("CreateAlias", read_only=_WRITE),
    _aws("DeleteAlias", read_only=_WRITE),
    _aws("ListAliases", read_only=_READ),
    _aws("UpdateAlias", read_only=_WRITE),
    _aws("ListResourceTags", read_only=_READ),
    _aws("TagResource", read_only=_WRITE),
    _aws("UntagResource", read_only=_WRITE),
    _aws("CreateGrant", read_only=_WRITE),
    _aws("ListGrants", read_only=_READ),
    _aws("ListRetirableGrants", read_only=_READ),
    _aws("RetireGrant", read_only=_WRITE),
    _aws("RevokeGrant", read_only=_WRITE),
    # AWS operations kmscore does not serve yet.
    _aws("ConnectCustomKeyStore", read_only=_WRITE),
    _aws("CreateCustomKeyStore", read_only=_WRITE),
    _aws("DeleteCustomKeyStore", read_only=_WRITE),
    _aws("DeleteImportedKeyMaterial", read_only=_WRITE),
    _aws("DescribeCustomKeyStores", read_only=_READ),
    _aws("DisconnectCustomKeyStore", read_only=_WRITE),
    _aws("GetKeyLastUsage", read_only=_READ),
    _aws("GetParametersForImport", read_only=_READ),
    _aws("ImportKeyMaterial", read_only=_WRITE),
    _aws("ReplicateKey", read_only=_WRITE),
    _aws("UpdateCustomKeyStore", read_only=_WRITE),
    _aws("UpdatePrimaryRegion", read_only=_WRITE),
    # kmscore's batch extensions.
    OperationFacts(
        "GenerateDataKeys",
        aws=False,
        served=True,
        read_only=True,
        inline=True,
        batch_member="Count",
    ),
    # kmscore's user administration, in IAM's words (kms principal ... uses them).
    _iam("CreateUser", read_only=_WRITE),
    _iam("DeleteUser", read_only=_WRITE),
    _iam("ListUsers", read_only=_READ),
    _iam("TagUser", read_only=_WRITE),
    _iam("UntagUser", read_only=_WRITE),
    OperationFacts(
        "DecryptMany",
        aws=False,
        served=True,
        read_only=True,
        inline=True,
        batch_member="CiphertextBlobs",
    ),
)

#: Every operation of the AWS KMS API.
AWS_OPERATIONS: Final = frozenset(n for n, f in OPERATION_FACTS.items() if f.aws)
#: The operations kmscore serves, AWS's and its own.
SERVED_OPERATIONS: Final = frozenset(n for n, f in OPERATION_FACTS.items() if f.served)


def is_retry_safe(name: str) -> bool:
    """Whether a request may be sent again when its answer was lost.

    True only for served read-only operations: repeating them changes no key.
    """
    facts = OPERATION_FACTS.get(name)
    return facts is not None and facts.served and facts.read_only


def method_name(operation: str) -> str:
    """boto3's method name of an operation: ``ReEncrypt`` -> ``re_encrypt``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", operation)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
