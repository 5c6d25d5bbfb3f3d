"""The KMS operations: one handler per operation, registered by AWS name.

Also the user administration kmscore serves in IAM's words (:mod:`.users`).

Importing this package registers every handler in
:data:`~kmscore.operations.registry.OPERATIONS`; frontends call
:func:`~kmscore.operations.registry.dispatch`.
"""

from kmscore.operations import (
    aliases,
    asymmetric,
    batch,
    crypto,
    custom_key_stores,
    encapsulation,
    grants,
    importing,
    keys,
    last_usage,
    multi_region,
    policies,
    rotation,
    tags,
    users,
)
from kmscore.operations.registry import OPERATIONS, Operation, dispatch, operation
from kmscore.wire.operations import SERVED_OPERATIONS

if SERVED_OPERATIONS != OPERATIONS.keys():  # pragma: no cover - a programming error
    raise ImportError(
        "kmscore.wire.operations lists as served but no handler registers: "
        f"{sorted(SERVED_OPERATIONS - OPERATIONS.keys())}"
    )

__all__ = [
    "OPERATIONS",
    "Operation",
    "aliases",
    "asymmetric",
    "batch",
    "crypto",
    "custom_key_stores",
    "dispatch",
    "encapsulation",
    "grants",
    "importing",
    "keys",
    "last_usage",
    "multi_region",
    "operation",
    "policies",
    "rotation",
    "tags",
    "users",
]
