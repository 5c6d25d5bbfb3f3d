"""Key states: one enum, one transition table, one guard.

Every operation that acts on a key has a :class:`StateRule`, and handlers
get their keys through one call that applies it (``Call.key``), so a disabled
key can never encrypt because some code path forgot a flag. The tables follow
AWS KMS's "Key states of AWS KMS keys" reference.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from kmscore.errors import DisabledException, KMSInvalidStateException

__all__ = [
    "STATE_RULES",
    "KeyState",
    "StateRule",
    "can_transition",
    "require_transition",
    "state_rule",
]


class KeyState(enum.StrEnum):
    """The states of a KMS key, spelled as AWS spells them."""

    CREATING = "Creating"
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    PENDING_IMPORT = "PendingImport"
    PENDING_REPLICA_DELETION = "PendingReplicaDeletion"
    UNAVAILABLE = "Unavailable"
    UPDATING = "Updating"


S = KeyState

# Which states each state may move to.
_TRANSITIONS: Final[dict[KeyState, frozenset[KeyState]]] = {
    S.CREATING: frozenset({S.ENABLED, S.PENDING_IMPORT}),
    S.ENABLED: frozenset(
        {S.DISABLED, S.PENDING_DELETION, S.PENDING_IMPORT, S.PENDING_REPLICA_DELETION}
    ),
    S.DISABLED: frozenset(
        {S.ENABLED, S.PENDING_DELETION, S.PENDING_IMPORT, S.PENDING_REPLICA_DELETION}
    ),
    S.PENDING_DELETION: frozenset({S.DISABLED, S.PENDING_IMPORT}),
    S.PENDING_IMPORT: frozenset({S.ENABLED, S.PENDING_DELETION}),
    # A multi-Region primary waiting for its replicas to be deleted.
    S.PENDING_REPLICA_DELETION: frozenset({S.PENDING_DELETION, S.DISABLED}),
    S.UNAVAILABLE: frozenset({S.ENABLED, S.DISABLED, S.PENDING_DELETION}),
    S.UPDATING: frozenset({S.ENABLED, S.DISABLED}),
}

_ALL: Final = frozenset(KeyState)
# Operations that use key material. Disabled keys answer DisabledException,
# every other non-enabled state KMSInvalidStateException.
_CRYPTO: Final = frozenset(
    {
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeys",
        "DecryptMany",
        "Sign",
        "Verify",
        "GenerateMac",
        "VerifyMac",
        "GetPublicKey",
        "DeriveSharedSecret",
        "Encapsulate",
        "Decapsulate",
    }
)
_USABLE: Final = frozenset({S.ENABLED, S.DISABLED})
# Key management that AWS allows also while the key's custom key store is
# disconnected (Unavailable) or its imported material is missing.
_MANAGEABLE: Final = _USABLE | {S.PENDING_IMPORT, S.UNAVAILABLE}

# Non-crypto operations and the states in which they are allowed.
_ALLOWED: Final[dict[str, frozenset[KeyState]]] = {
    "DescribeKey": _ALL,
    "ListResourceTags": _ALL,
    "ListAliases": _ALL,
    "DeleteAlias": _ALL,
    "GetKeyPolicy": _ALL,
    "ListKeyPolicies": _ALL,
    "ListGrants": _ALL,
    "RevokeGrant": _ALL,
    "RetireGrant": _ALL,
    "EnableKey": _USABLE,
    "DisableKey": _USABLE,
    "ScheduleKeyDeletion": _MANAGEABLE,
    "CancelKeyDeletion": frozenset({S.PENDING_DELETION, S.PENDING_REPLICA_DELETION}),
    "UpdateKeyDescription": _MANAGEABLE,
    "CreateAlias": _MANAGEABLE,
    "UpdateAlias": _MANAGEABLE,
    "TagResource": _MANAGEABLE,
    "UntagResource": _MANAGEABLE,
    "PutKeyPolicy": _MANAGEABLE,
    # AWS's key-state table: CreateGrant needs the key enabled ([1] disabled,
    # [5] pending import, [3] pending deletion), like the operations it grants.
    "CreateGrant": frozenset({S.ENABLED}),
    # AWS's key-state table lets GetKeyRotationStatus read a key pending
    # deletion; ListKeyRotations, the newer read, is taken to do the same.
    "GetKeyRotationStatus": _MANAGEABLE | {S.PENDING_DELETION},
    "ListKeyRotations": _USABLE | {S.PENDING_IMPORT, S.PENDING_DELETION},
    # Rotation changes need the key enabled; a disabled key answers
    # DisabledException, as AWS does. Only EXTERNAL keys are PendingImport, and
    # for them AWS answers UnsupportedOperationException (origin EXTERNAL), not
    # a state error: the state lets them through to the handler's origin check.
    "EnableKeyRotation": frozenset({S.ENABLED, S.PENDING_IMPORT}),
    "DisableKeyRotation": frozenset({S.ENABLED, S.PENDING_IMPORT}),
    "RotateKeyOnDemand": frozenset({S.ENABLED}),
    # Importing key material (AWS's key-state table): not while pending
    # deletion, except that deleting material leaves such a key as it is.
    "GetParametersForImport": _USABLE | {S.PENDING_IMPORT},
    "ImportKeyMaterial": _USABLE | {S.PENDING_IMPORT},
    "DeleteImportedKeyMaterial": _USABLE | {S.PENDING_IMPORT, S.PENDING_DELETION},
    "GetKeyLastUsage": _ALL,
    # Multi-Region keys (the primary's state; a replica's own is checked apart).
    # A primary of imported material replicates before its import, as at AWS.
    "ReplicateKey": _USABLE | {S.PENDING_IMPORT},
    "UpdatePrimaryRegion": _USABLE,
}
_DISABLED_MEANS_DISABLED: Final = _CRYPTO | {
    "CreateGrant",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "RotateKeyOnDemand",
}


def can_transition(current: KeyState, target: KeyState) -> bool:
    """Whether the transition table allows moving from ``current`` to ``target``."""
    return target in _TRANSITIONS[current]


def require_transition(key_arn: str, current: KeyState, target: KeyState) -> None:
    """Refuse a transition the table does not allow.

    Raises:
        KMSInvalidStateException: ``current`` may not move to ``target``.
    """
    if current != target and not can_transition(current, target):
        raise KMSInvalidStateException(
            f"{key_arn} is {current.value} and cannot become {target.value}."
        )


@dataclass(frozen=True, slots=True)
class StateRule:
    """The key states in which one operation may act on a key.

    Attributes:
        operation: The AWS operation name.
        allowed: The states it acts in.
        disabled_means_disabled: A disabled key answers
            :class:`~kmscore.errors.DisabledException` (the operations that use
            key material, and rotation changes), not
            :class:`~kmscore.errors.KMSInvalidStateException`.
    """

    operation: str
    allowed: frozenset[KeyState]
    disabled_means_disabled: bool

    def check(self, key_arn: str, state: KeyState) -> None:
        """Refuse a key whose state this operation may not act in.

        Raises:
            DisabledException: The key is disabled and the operation needs it
                enabled.
            KMSInvalidStateException: The key's state does not allow the
                operation.
        """
        if state in self.allowed:
            return
        if self.operation == "CancelKeyDeletion":
            raise KMSInvalidStateException(f"{key_arn} is not pending deletion.")
        if state is S.DISABLED and self.disabled_means_disabled:
            raise DisabledException(f"{key_arn} is disabled.")
        if state is S.PENDING_DELETION:
            raise KMSInvalidStateException(f"{key_arn} is pending deletion.")
        if state is S.PENDING_IMPORT:
            raise KMSInvalidStateException(f"{key_arn} is pending import.")
        raise KMSInvalidStateException(
            f"{key_arn} is {state.value}, so {self.operation} is not allowed."
        )


#: Every operation that acts on a key, and its rule.
STATE_RULES: Final[dict[str, StateRule]] = {
    **{
        name: StateRule(name, frozenset({S.ENABLED}), disabled_means_disabled=True)
        for name in sorted(_CRYPTO)
    },
    **{
        name: StateRule(name, allowed, disabled_means_disabled=name in _DISABLED_MEANS_DISABLED)
        for name, allowed in _ALLOWED.items()
    },
}


def state_rule(operation: str) -> StateRule | None:
    """The state rule of an operation that acts on a key; None for one that does not."""
    return STATE_RULES.get(operation)
